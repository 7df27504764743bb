"""Validation of replica URLs (gateway config and admin API): ``security.urls`` with the gateway's policy.

A replica URL must be plain http(s) without credentials; its host and every address it resolves to
must be public unless the configuration allows loopback (local replicas) or private networks
explicitly. Cloud metadata endpoints are always refused (``security.urls``). Resolution happens
when a replica is configured; connections resolve again (pinning the checked addresses is left to
a later change).
"""

from __future__ import annotations

import ipaddress

from llmops.errors import InvalidInput
from llmops.security.urls import Resolver, URLPolicy, validate_url

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
PRIVATE = (
    ipaddress.ip_network("10.0.0.0/8"),
    ipaddress.ip_network("172.16.0.0/12"),
    ipaddress.ip_network("192.168.0.0/16"),
    ipaddress.ip_network("fc00::/7"),
)


# what check_upstream_url reads as well formed, for API schemas: http(s), a canonical IPv4 address or
# a host name (its last label starting with a letter), a port from 1 to 65535, a path without
# whitespace or backslashes; no credentials. Whether the address may be reached is the policy's
# question (PolicyRefused, 403).
_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_LAST_LABEL = r"[A-Za-z]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_PORT = r"([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
UPSTREAM_URL_PATTERN = (
    rf"^[hH][tT][tT][pP][sS]?://({_OCTET}(\.{_OCTET}){{3}}|({_LABEL}\.)*{_LAST_LABEL})"
    rf"(:{_PORT})?(/[!-\[\]-~]*)?$"
)


def upstream_policy(*, allow_loopback: bool, allow_private: bool) -> URLPolicy:
    networks = (LOOPBACK if allow_loopback else ()) + (PRIVATE if allow_private else ())
    hosts = frozenset({"localhost"}) if allow_loopback else frozenset()
    return URLPolicy(allowed_networks=networks, allowed_hosts=hosts)


def check_upstream_url(
    url: str, *, allow_loopback: bool = False, allow_private: bool = False, resolver: Resolver | None = None
) -> str:
    """The normalised URL without a trailing slash, or ``InvalidInput`` saying what to change."""
    policy = upstream_policy(allow_loopback=allow_loopback, allow_private=allow_private)
    try:
        return validate_url(url, policy, resolver=resolver).url.rstrip("/")
    except InvalidInput as exc:
        hint = (
            "; replicas on this machine need allow_loopback_upstreams: true, on an internal network "
            "allow_private_upstreams: true (gateway config)"
        )
        raise type(exc)(exc.message + hint, param="url", code=exc.code) from None
