"""Outbound URL validation for admin-configured upstreams (SSRF defence).

``validate_url`` accepts an ``http``/``https`` URL only when its host, and every address the host
resolves to, is publicly routable, unless the policy explicitly allows an internal network or host.
It understands the spellings attackers use to reach internal services past naive checks: decimal,
octal and hex IPv4 (``http://2130706433/``, ``0177.0.0.1``, ``0x7f.1``), IPv6 forms that embed an
IPv4 address (``::ffff:127.0.0.1``, NAT64, 6to4), ``0.0.0.0``, trailing-dot names (``localhost.``),
``user@host`` userinfo, and backslashes that parsers disagree on. Cloud metadata endpoints are
refused even when private ranges are allowed. The returned ``ValidatedURL`` lists the checked
addresses: connect to those (pin them) so a second DNS answer cannot swap in another address, and
call ``validate_redirect`` on every redirect before following it.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import SplitResult, urljoin, urlsplit

from pydantic import BaseModel, ConfigDict, Field

from llmops.errors import InvalidInput, PolicyRefused

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Sequence[str]]

METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200", "192.0.0.192")
)
METADATA_HOSTS = frozenset(
    {"metadata.google.internal", "metadata.goog", "metadata", "instance-data", "instance-data.ec2.internal"}
)
SHARED_ADDRESS_SPACE = ipaddress.ip_network("100.64.0.0/10")
NAT64 = ipaddress.ip_network("64:ff9b::/96")
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
UNSAFE_CHARS_RE = re.compile(r"[\x00-\x20\x7f\\]")
NUMERIC_LABEL_RE = re.compile(r"^(?:0x[0-9a-f]*|\d+)$")
HOST_LABEL_RE = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")
DEFAULT_PORTS = {"http": 80, "https": 443}
MAX_URL_LENGTH = 2048


class URLPolicy(BaseModel):
    """What outbound URLs an admin may configure."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    allowed_schemes: frozenset[str] = Field(
        default=frozenset({"http", "https"}), description="URL schemes accepted (lower case)."
    )
    allowed_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = Field(
        default=(),
        description="Internal networks explicitly allowed, e.g. 10.0.0.0/8 for in-cluster replicas.",
    )
    allowed_hosts: frozenset[str] = Field(
        default=frozenset(), description="Host names allowed to resolve to internal (not metadata) addresses."
    )
    allow_private: bool = Field(
        default=False, description="Allow every loopback, private and link-local address (development only)."
    )
    allow_userinfo: bool = Field(
        default=False, description="Accept user:password@ in URLs; send credentials in headers instead."
    )
    allow_https_downgrade: bool = Field(default=False, description="Follow redirects from https to http.")
    allowed_ports: frozenset[int] | None = Field(default=None, description="Ports accepted; None: any.")
    resolve: bool = Field(default=True, description="Resolve host names and check every address.")


@dataclass(frozen=True)
class ValidatedURL:
    """A URL that passed the policy, normalised, with every address its host was checked at."""

    url: str
    scheme: str
    host: str
    port: int
    addresses: tuple[str, ...]


def _refuse(url: str, reason: str) -> InvalidInput:
    return InvalidInput(f"refusing URL {url[:200]!r}: {reason}", param="url")


def _forbid(url: str, reason: str) -> PolicyRefused:
    """A well-formed URL whose address the policy does not let requests reach (403, not 400)."""
    return PolicyRefused(f"refusing URL {url[:200]!r}: {reason}", param="url", code="url_not_allowed")


def system_resolver(host: str, port: int) -> list[str]:
    """Every A and AAAA address of ``host`` (``socket.getaddrinfo``), scope ids removed."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]).split("%")[0] for info in infos})


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in NAT64 or (ip in IPV4_COMPATIBLE and int(ip) > 1):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def blocked_reason(ip: IPAddress) -> str | None:
    """Why ``ip`` is not a public destination (metadata, loopback, private...), or None if it is."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            inner = blocked_reason(embedded)
            return f"{inner}, embedded in an IPv6 address" if inner else None
    checks = (
        (ip in METADATA_ADDRESSES, "a cloud metadata service"),
        (ip.is_unspecified, "the unspecified address"),
        (ip.is_loopback, "loopback"),
        (ip.is_link_local, "link-local"),
        (ip.is_multicast, "multicast"),
        (ip.is_private, "a private network"),
        (ip in SHARED_ADDRESS_SPACE, "carrier-grade NAT space"),
        (ip.is_reserved, "a reserved range"),
        (not ip.is_global, "not globally routable"),
    )
    return next((reason for hit, reason in checks if hit), None)


def _ip_allowed(ip: IPAddress, host: str, policy: URLPolicy) -> str | None:
    """None when the policy lets the URL reach ``ip``; otherwise the reason it does not."""
    reason = blocked_reason(ip)
    if reason is None or any(ip in network for network in policy.allowed_networks):
        return None
    if "metadata" in reason:
        return reason  # only an explicit allowed_networks entry opens a metadata address
    if policy.allow_private or host in policy.allowed_hosts:
        return None
    return reason


def parse_ipv4_forms(host: str) -> ipaddress.IPv4Address | None:
    """Read ``host`` the way inet_aton and browsers do (1-4 parts, each decimal, 0-octal or 0x-hex).

    Returns None when the last label is not numeric (a host name); raises ValueError for a numeric
    host that is no IPv4 address (``999.1.1.1``, ``1.2.3.4.5``).
    """
    labels = host.split(".")
    if not NUMERIC_LABEL_RE.match(labels[-1]):
        return None
    if len(labels) > 4 or not all(NUMERIC_LABEL_RE.match(label) for label in labels):
        raise ValueError(f"{host} is numeric but not an IPv4 address")
    values = []
    for label in labels:
        if label.startswith("0x"):
            values.append(int(label[2:] or "0", 16))
        elif len(label) > 1 and label.startswith("0"):
            if not set(label) <= set("01234567"):
                raise ValueError(f"{host} has a leading-zero (octal) part with digits 8 or 9")
            values.append(int(label, 8))
        else:
            values.append(int(label))
    if any(v > 255 for v in values[:-1]) or values[-1] >= 256 ** (5 - len(values)):
        raise ValueError(f"{host} has a part out of range for IPv4")
    number = values[-1] + sum(v << (8 * (3 - i)) for i, v in enumerate(values[:-1]))
    return ipaddress.IPv4Address(number)


def _split(url: str, policy: URLPolicy) -> tuple[SplitResult, str, int]:
    """Syntax checks: safe characters, scheme, userinfo, port. Returns the parts, host and port."""
    if len(url) > MAX_URL_LENGTH:
        raise _refuse(url, f"longer than {MAX_URL_LENGTH} characters")
    if UNSAFE_CHARS_RE.search(url):
        raise _refuse(url, "it contains whitespace, control characters or backslashes")
    try:
        parts = urlsplit(url)
        raw_host = parts.hostname or ""  # ValueError for a malformed bracketed host
    except ValueError as exc:
        raise _refuse(url, f"it cannot be parsed ({exc})") from exc
    scheme = parts.scheme.lower()
    if scheme not in policy.allowed_schemes:
        allowed = ", ".join(sorted(policy.allowed_schemes))
        raise _refuse(url, f"scheme {scheme or '(none)'!r} is not allowed; use one of: {allowed}")
    if "@" in parts.netloc and not policy.allow_userinfo:
        raise _refuse(url, "credentials in the URL (user@host) are not accepted; send them in a header")
    host = "" if raw_host.endswith("..") else raw_host.rstrip(".")  # "localhost." is localhost
    if not host:
        raise _refuse(url, "it has no valid host")
    try:
        port = parts.port or DEFAULT_PORTS.get(scheme, 0)
    except ValueError as exc:
        raise _refuse(url, f"invalid port ({exc})") from exc
    if not 0 < port < 65536 or (policy.allowed_ports is not None and port not in policy.allowed_ports):
        raise _refuse(url, f"port {port} is not allowed")
    return parts, host, port


def _ip_literal(url: str, parts: SplitResult, host: str) -> IPAddress | None:
    if "[" in parts.netloc:
        try:
            return ipaddress.IPv6Address(host)
        except ValueError as exc:
            raise _refuse(url, f"{host!r} is not a valid IPv6 address") from exc
    try:
        return parse_ipv4_forms(host)
    except ValueError as exc:
        raise _refuse(url, str(exc)) from exc


def _host_name(url: str, host: str, policy: URLPolicy) -> str:
    try:
        ascii_host = host.encode("idna").decode("ascii").lower()
    except UnicodeError as exc:
        raise _refuse(url, f"host {host!r} is not a valid host name") from exc
    if not all(HOST_LABEL_RE.match(label) for label in ascii_host.split(".")):
        raise _refuse(url, f"host {host!r} is not a valid host name")
    if ascii_host in policy.allowed_hosts:
        return ascii_host
    if ascii_host in METADATA_HOSTS:
        raise _forbid(url, f"{ascii_host} is a cloud metadata service")
    if (ascii_host == "localhost" or ascii_host.endswith(".localhost")) and not policy.allow_private:
        raise _forbid(url, f"{ascii_host} is loopback")
    return ascii_host


def _resolve(url: str, host: str, port: int, policy: URLPolicy, resolver: Resolver) -> tuple[str, ...]:
    try:
        answers = list(resolver(host, port))
    except OSError as exc:
        raise _forbid(url, f"{host} could not be resolved ({exc})") from exc
    if not answers:
        raise _forbid(url, f"{host} resolved to no address")
    addresses: list[str] = []
    for answer in answers:
        try:
            ip = ipaddress.ip_address(answer.split("%")[0])
        except ValueError as exc:
            raise _refuse(url, f"{host} resolved to something that is not an address: {answer!r}") from exc
        reason = _ip_allowed(ip, host, policy)
        if reason:
            raise _forbid(url, f"{host} resolves to {ip}, which is {reason}")
        addresses.append(str(ip))
    return tuple(sorted(set(addresses)))


def validate_url(
    url: str, policy: URLPolicy | None = None, *, resolver: Resolver | None = None
) -> ValidatedURL:
    """Check an outbound URL against ``policy``; raise ``InvalidInput`` naming the reason."""
    policy = policy or URLPolicy()
    parts, host, port = _split(url, policy)
    ip = _ip_literal(url, parts, host)
    if ip is not None:
        reason = _ip_allowed(ip, str(ip), policy)
        if reason:
            raise _forbid(url, f"host {host} is {ip}, which is {reason}")
        if isinstance(ip, ipaddress.IPv4Address) and host != str(ip):
            raise _refuse(url, f"host {host} is a non-canonical spelling of {ip}; write {ip}")
        name, addresses = str(ip), tuple([str(ip)])
    else:
        name = _host_name(url, host, policy)
        addresses = _resolve(url, name, port, policy, resolver or system_resolver) if policy.resolve else ()
    netloc = f"[{name}]" if ":" in name else name
    if parts.port is not None:
        netloc = f"{netloc}:{port}"
    if "@" in parts.netloc:
        netloc = f"{parts.netloc.rsplit('@', 1)[0]}@{netloc}"
    normalised = parts._replace(scheme=parts.scheme.lower(), netloc=netloc, fragment="").geturl()
    return ValidatedURL(normalised, parts.scheme.lower(), name, port, addresses)


def validate_redirect(
    current: ValidatedURL,
    location: str,
    policy: URLPolicy | None = None,
    *,
    resolver: Resolver | None = None,
) -> ValidatedURL:
    """Check a redirect's ``Location`` (absolute or relative to ``current``) before following it."""
    policy = policy or URLPolicy()
    target = urljoin(current.url, location.strip())
    if (
        current.scheme == "https"
        and urlsplit(target).scheme.lower() == "http"
        and not policy.allow_https_downgrade
    ):
        raise _refuse(target, "redirect from https to http is not followed")
    return validate_url(target, policy, resolver=resolver)
