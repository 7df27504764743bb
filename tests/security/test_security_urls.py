"""Outbound URL validation: schemes, internal and metadata addresses in every spelling, DNS, redirects."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import pytest

from llmops.errors import InvalidInput
from llmops.security.urls import (
    URLPolicy,
    ValidatedURL,
    blocked_reason,
    parse_ipv4_forms,
    system_resolver,
    validate_redirect,
    validate_url,
)

PUBLIC = "93.184.216.34"


class FakeDNS:
    """A resolver with fixed answers that records what it was asked."""

    def __init__(self, answers: dict[str, Sequence[str]]) -> None:
        self.answers = answers
        self.asked: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int) -> Sequence[str]:
        self.asked.append((host, port))
        if host not in self.answers:
            raise OSError(f"no such host {host}")
        return self.answers[host]


def refused(url: str, policy: URLPolicy | None = None, dns: FakeDNS | None = None) -> str:
    with pytest.raises(InvalidInput) as caught:
        validate_url(url, policy, resolver=dns or FakeDNS({}))
    assert caught.value.param == "url"
    return caught.value.message


def test_public_https_url_is_accepted_and_normalised() -> None:
    dns = FakeDNS({"api.example.com": [PUBLIC, "2606:2800:220:1:248:1893:25c8:1946"]})
    result = validate_url("HTTPS://API.Example.com./v1/chat?x=1#frag", resolver=dns)
    assert result == ValidatedURL(
        url="https://api.example.com/v1/chat?x=1",
        scheme="https",
        host="api.example.com",
        port=443,
        addresses=("2606:2800:220:1:248:1893:25c8:1946", PUBLIC),
    )
    assert dns.asked == [("api.example.com", 443)]
    assert validate_url(f"http://{PUBLIC}:8080/", resolver=dns).port == 8080


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "gopher://127.0.0.1:6379/_INFO", "ftp://example.com/",
            "javascript:alert(1)", "//example.com/x", "example.com", "dict://localhost:11211/"],
)  # fmt: skip
def test_schemes_other_than_http_and_https_are_refused(url: str) -> None:
    assert "is not allowed; use one of: http, https" in refused(url)


@pytest.mark.parametrize(
    ("url", "address", "reason"),
    [
        ("http://127.0.0.1/", "127.0.0.1", "loopback"),
        ("http://127.1/", "127.0.0.1", "loopback"),
        ("http://2130706433/", "127.0.0.1", "loopback"),
        ("http://0x7f000001/", "127.0.0.1", "loopback"),
        ("http://0177.0.0.1/", "127.0.0.1", "loopback"),
        ("http://0x7f.1/", "127.0.0.1", "loopback"),
        ("http://017700000001/", "127.0.0.1", "loopback"),
        ("http://[::1]:8000/", "::1", "loopback"),
        ("http://[::ffff:127.0.0.1]/", "::ffff:7f00:1", "loopback, embedded in an IPv6 address"),
        ("http://[::ffff:7f00:1]/", "::ffff:7f00:1", "loopback, embedded in an IPv6 address"),
        ("http://[64:ff9b::7f00:1]/", "64:ff9b::7f00:1", "loopback, embedded in an IPv6 address"),
        ("http://0.0.0.0:8000/", "0.0.0.0", "the unspecified address"),
        ("http://0/", "0.0.0.0", "the unspecified address"),
        ("http://[::]/", "::", "the unspecified address"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254", "a cloud metadata service"),
        ("http://2852039166/", "169.254.169.254", "a cloud metadata service"),
        ("http://[fd00:ec2::254]/", "fd00:ec2::254", "a cloud metadata service"),
        ("http://[::ffff:169.254.169.254]/", "::ffff:a9fe:a9fe", "a cloud metadata service, embedded"),
        ("http://169.254.10.1/", "169.254.10.1", "link-local"),
        ("http://[fe80::1]/", "fe80::1", "link-local"),
        ("http://10.0.0.1/", "10.0.0.1", "a private network"),
        ("http://172.16.5.4/", "172.16.5.4", "a private network"),
        ("http://192.168.1.1./", "192.168.1.1", "a private network"),
        ("http://[fc00::1]/", "fc00::1", "a private network"),
        ("http://100.64.0.1/", "100.64.0.1", "carrier-grade NAT space"),
        ("http://224.0.0.1/", "224.0.0.1", "multicast"),
    ],
)
def test_internal_addresses_in_every_spelling_are_refused(url: str, address: str, reason: str) -> None:
    message = refused(url)
    assert f"is {address}, which is {reason}" in message


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://localhost:8000/", "localhost is loopback"),
        ("http://LOCALHOST./", "localhost is loopback"),
        ("http://api.localhost/", "api.localhost is loopback"),
        (
            "http://metadata.google.internal/computeMetadata/v1/",
            "metadata.google.internal is a cloud metadata",
        ),
        ("http://metadata.google.internal./", "metadata.google.internal is a cloud metadata"),
        ("http://evil@127.0.0.1/", "credentials in the URL"),
        ("http://user:pass@example.com/", "credentials in the URL"),
        ("http://evil.com\\@127.0.0.1/", "backslashes"),
        ("http://exa mple.com/", "whitespace"),
        ("http://example.com:99999/", "invalid port"),
        ("http://999.1.1.1/", "out of range"),
        ("http://1.2.3.4.5/", "numeric but not an IPv4 address"),
        ("http://08.0.0.1/", "octal"),
        ("http://[::1/", "cannot be parsed"),
        ("http://exa_mple..com/", "not a valid host name"),
        ("http://example.com../", "no valid host"),
        ("http://-bad-.example.com/", "not a valid host name"),
        ("http:///path", "no valid host"),
    ],
)
def test_tricky_hosts_are_refused_with_a_reason(url: str, reason: str) -> None:
    assert reason in refused(url)


def test_userinfo_when_allowed_still_checks_the_real_host() -> None:
    policy = URLPolicy(allow_userinfo=True)
    assert "is 127.0.0.1, which is loopback" in refused("http://evil.com@127.0.0.1/", policy)
    assert "is 127.0.0.1" in refused("http://127.0.0.1#@evil.com/", policy)
    dns = FakeDNS({"example.com": [PUBLIC]})
    result = validate_url("http://user:pw@example.com/x", policy, resolver=dns)
    assert result.url == "http://user:pw@example.com/x" and result.host == "example.com"


def test_non_canonical_public_ipv4_is_refused() -> None:
    assert "non-canonical spelling of 8.8.8.8; write 8.8.8.8" in refused("http://134744072/")


def test_every_resolved_address_is_checked() -> None:
    dns = FakeDNS({"rebind.example.com": [PUBLIC, "127.0.0.1"], "meta.example.com": ["169.254.169.254"]})
    assert "rebind.example.com resolves to 127.0.0.1, which is loopback" in refused(
        "https://rebind.example.com/", dns=dns
    )
    assert "resolves to 169.254.169.254, which is a cloud metadata service" in refused(
        "http://meta.example.com/", dns=dns
    )
    assert "could not be resolved" in refused("http://nowhere.example.com/", dns=dns)
    assert "resolved to no address" in refused(
        "http://empty.example.com/", dns=FakeDNS({"empty.example.com": []})
    )
    assert "not an address" in refused(
        "http://junk.example.com/", dns=FakeDNS({"junk.example.com": ["junk"]})
    )


def test_explicit_allowances() -> None:
    in_cluster = URLPolicy(allowed_networks=(ipaddress.ip_network("10.0.0.0/8"),))
    assert validate_url("http://10.1.2.3:8000/v1", in_cluster).addresses == ("10.1.2.3",)
    assert "loopback" in refused("http://127.0.0.1/", in_cluster)
    dev = URLPolicy(allow_private=True)
    assert validate_url("http://127.0.0.1:8000/", dev).host == "127.0.0.1"
    assert (
        validate_url("http://localhost:8000/", dev, resolver=FakeDNS({"localhost": ["127.0.0.1"]})).port
        == 8000
    )
    assert "metadata" in refused("http://169.254.169.254/", dev)  # never opened by allow_private
    named = URLPolicy(allowed_hosts=frozenset({"replica.internal"}))
    dns = FakeDNS({"replica.internal": ["10.0.0.5"], "other.internal": ["10.0.0.6"]})
    assert validate_url("http://replica.internal/", named, resolver=dns).addresses == ("10.0.0.5",)
    assert "a private network" in refused("http://other.internal/", named, dns)
    rebound = FakeDNS({"replica.internal": ["169.254.169.254"]})
    assert "metadata" in refused("http://replica.internal/", named, rebound)
    ports = URLPolicy(allowed_ports=frozenset({443}))
    assert "port 80 is not allowed" in refused("http://example.com/", ports)


def test_redirects_are_validated_like_new_urls() -> None:
    dns = FakeDNS({"api.example.com": [PUBLIC], "cdn.example.net": ["151.101.1.1"]})
    start = validate_url("https://api.example.com/v1/models", resolver=dns)
    assert (
        validate_redirect(start, "/v1/models?page=2", resolver=dns).url
        == "https://api.example.com/v1/models?page=2"
    )
    assert validate_redirect(start, "https://cdn.example.net/x", resolver=dns).host == "cdn.example.net"
    with pytest.raises(InvalidInput, match=r"169\.254\.169\.254, which is a cloud metadata service"):
        validate_redirect(start, "https://169.254.169.254/latest/meta-data/iam", resolver=dns)
    with pytest.raises(InvalidInput, match="https to http"):
        validate_redirect(start, "http://api.example.com/v1/models", resolver=dns)
    with pytest.raises(InvalidInput, match="scheme 'file'"):
        validate_redirect(start, "file:///etc/passwd", resolver=dns)


def test_ipv4_number_forms_and_address_classes() -> None:
    assert parse_ipv4_forms("example.com") is None
    assert parse_ipv4_forms("3232235777") == ipaddress.IPv4Address("192.168.1.1")
    assert parse_ipv4_forms("0xc0.0250.1.1") == ipaddress.IPv4Address("192.168.1.1")
    assert parse_ipv4_forms("192.168.257") == ipaddress.IPv4Address("192.168.1.1")
    with pytest.raises(ValueError):
        parse_ipv4_forms("256.1.1.1")
    assert blocked_reason(ipaddress.ip_address(PUBLIC)) is None
    assert (
        blocked_reason(ipaddress.ip_address("2002:7f00:1::")) == "loopback, embedded in an IPv6 address"
    )  # 6to4
    assert blocked_reason(ipaddress.ip_address("192.0.2.1")) is not None  # documentation range


def test_resolution_can_be_skipped_and_the_system_resolver_reads_literals() -> None:
    assert validate_url("https://example.com/", URLPolicy(resolve=False)).addresses == ()
    assert system_resolver("127.0.0.1", 80) == ["127.0.0.1"]
