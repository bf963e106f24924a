"""Client address from the peer and forwarded headers: trusted proxies only, walked from the right."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from auditlog import ConfigurationError
from auditlog.integrations.proxies import (
    HIDDEN,
    MALFORMED,
    TrustedProxies,
    check_proxy_header,
    client_address,
    forwarded_nodes,
    parse_ip,
    x_forwarded_for_nodes,
)

PROXIES = TrustedProxies(["10.0.0.0/8", "127.0.0.1", "2001:db8:ffff::/48"])
CLIENT = "203.0.113.7"


def ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


# --- trusted proxies ----------------------------------------------------------------------------


def test_trusted_proxies_match_addresses_and_networks() -> None:
    assert "10.200.3.4" in PROXIES
    assert "127.0.0.1" in PROXIES
    assert "127.0.0.2" not in PROXIES
    assert "2001:db8:ffff:1::9" in PROXIES
    assert CLIENT not in PROXIES
    assert "not an ip" not in PROXIES
    assert None not in PROXIES


def test_trusted_proxies_match_ipv4_mapped_ipv6_peers() -> None:
    """A dual-stack server reports IPv4 peers as ::ffff:a.b.c.d."""
    assert "::ffff:10.0.0.1" in PROXIES


@pytest.mark.parametrize(
    ("configured", "inside", "outside"),
    [
        ("::ffff:10.0.0.5", ["10.0.0.5", "::ffff:10.0.0.5"], ["10.0.0.6", "::1"]),
        ("::ffff:10.0.0.0/104", ["10.9.9.9", "::ffff:10.1.2.3"], ["11.0.0.1"]),
        ("::/0", ["203.0.113.7", "::ffff:203.0.113.7", "2001:db8::1"], []),
        ("2001:db8::/32", ["2001:db8::7"], ["10.0.0.5", "::ffff:10.0.0.5"]),
    ],
)
def test_a_proxy_configured_in_its_ipv4_mapped_form_is_trusted(
    configured: str, inside: list[str], outside: list[str]
) -> None:
    """The form a dual-stack server reports an IPv4 peer in: peers are compared as IPv4."""
    proxies = TrustedProxies([configured])
    assert all(a in proxies for a in inside) and not any(a in proxies for a in outside)
    trusted = "10.0.0.5" in proxies  # then its header is read, else the peer is the client
    expected = "198.51.100.7" if trusted else "10.0.0.5"
    assert client_address("::ffff:10.0.0.5", "198.51.100.7", proxies) == expected


def test_no_trusted_proxies_is_falsy_and_trusts_nobody() -> None:
    nobody = TrustedProxies()
    assert not nobody
    assert "127.0.0.1" not in nobody
    assert client_address("127.0.0.1", CLIENT, nobody) == "127.0.0.1"


def test_a_single_string_is_one_proxy() -> None:
    assert "10.1.1.1" in TrustedProxies("10.0.0.0/8")


@pytest.mark.parametrize("bad", ["10.0.0.1/8", "localhost", "10.0.0.0/33", "", "*"])
def test_invalid_trusted_proxy_is_a_configuration_error_naming_the_argument(bad: str) -> None:
    with pytest.raises(ConfigurationError, match="trusted_proxies"):
        TrustedProxies([bad])


def test_unknown_proxy_header_is_a_configuration_error() -> None:
    assert check_proxy_header("forwarded") == "forwarded"
    with pytest.raises(ConfigurationError, match="proxy_header"):
        check_proxy_header("x-real-ip")


# --- single addresses ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("192.0.2.1", "192.0.2.1"),
        ("2001:DB8::1", "2001:db8::1"),
        ("::ffff:192.0.2.1", "192.0.2.1"),
        ("fe80::1%eth0", "fe80::1"),
        ("01.2.3.4", None),  # leading zeros are ambiguous (octal?) and rejected
        ("1.2.3", None),
        ("256.1.1.1", None),
        ("", None),
        ("unknown", None),
    ],
)
def test_parse_ip(text: str, expected: str | None) -> None:
    parsed = parse_ip(text)
    assert (None if parsed is None else str(parsed)) == expected


# --- X-Forwarded-For ----------------------------------------------------------------------------


def test_x_forwarded_for_hops_with_ports_brackets_and_hidden_nodes() -> None:
    assert x_forwarded_for_nodes("1.2.3.4:80, [2001:db8::1]:443 ,2001:db8::2, unknown, _x") == [
        ip("1.2.3.4"),
        ip("2001:db8::1"),
        ip("2001:db8::2"),
        HIDDEN,
        HIDDEN,
    ]


@pytest.mark.parametrize(
    "value", ["junk", "1.2.3.4:http", "[2001:db8::1", "[1.2.3.4]", "1.2.3.4:80:90", '"1.2.3.4"']
)
def test_x_forwarded_for_malformed_hop(value: str) -> None:
    assert x_forwarded_for_nodes(value) == [MALFORMED]


def test_x_forwarded_for_empty_elements_are_skipped() -> None:
    assert x_forwarded_for_nodes(" , 1.2.3.4,, ") == [ip("1.2.3.4")]
    assert x_forwarded_for_nodes(" , ") == [MALFORMED]


# --- Forwarded (RFC 7239) -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # the examples of RFC 7239 section 4 and 7.4
        ('for="_gazonk"', [HIDDEN]),
        ('For="[2001:db8:cafe::17]:4711"', [ip("2001:db8:cafe::17")]),
        ("for=192.0.2.60;proto=http;by=203.0.113.43", [ip("192.0.2.60")]),
        ("for=192.0.2.43, for=198.51.100.17", [ip("192.0.2.43"), ip("198.51.100.17")]),
        ("for=unknown", [HIDDEN]),
        ('for="192.0.2.43:8080"', [ip("192.0.2.43")]),
        ('for="[2001:db8::1]:_port"', [ip("2001:db8::1")]),
        ("for = 192.0.2.43", [MALFORMED]),  # no whitespace around "="
        # tolerated: blanks around pairs, empty pairs and elements, escapes in quoted strings
        (
            ' for=192.0.2.43 ; proto=https ;, ,for="198.51.100.1\\7"',
            [
                ip("192.0.2.43"),
                ip("198.51.100.17"),
            ],
        ),
        ("proto=https", [HIDDEN]),  # a proxy may withhold "for"
    ],
)
def test_forwarded_hops(value: str, expected: list[object]) -> None:
    assert forwarded_nodes(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "for=192.0.2.43:80",  # ":" is not a token character: the value must be quoted
        "for=[2001:db8::1]",  # brackets likewise
        'for="192.0.2.43',  # unterminated quoted string
        "for=192.0.2.43 for=192.0.2.44",
        "for=192.0.2.43;for=192.0.2.44",  # a parameter twice in one element
        "=192.0.2.43",
        "for",
        'for="not an address"',
        "",
    ],
)
def test_forwarded_malformed(value: str) -> None:
    assert MALFORMED in forwarded_nodes(value)


# --- the walk -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("peer", "header", "expected"),
    [
        # an untrusted peer: its headers are ignored, whatever they say
        (CLIENT, "198.51.100.1", CLIENT),
        ("192.0.2.9", "10.0.0.1", "192.0.2.9"),
        # a trusted peer without a header is the client itself
        ("10.0.0.1", None, "10.0.0.1"),
        ("10.0.0.1", "", "10.0.0.1"),
        # one proxy, then several: the right-most untrusted hop is the client
        ("10.0.0.1", CLIENT, CLIENT),
        ("10.0.0.1", f"{CLIENT}, 10.0.0.2, 127.0.0.1", CLIENT),
        # what the client wrote to the left of its own address is never believed
        ("10.0.0.1", f"198.51.100.66, 10.9.9.9, {CLIENT}", CLIENT),
        ("10.0.0.1", f"garbage, {CLIENT}", CLIENT),
        # every hop trusted: the request started on the left-most proxy
        ("10.0.0.1", "10.0.0.3, 10.0.0.2", "10.0.0.3"),
        # a malformed hop where the walk needs it: the header is not believed
        ("10.0.0.1", f"{CLIENT}, garbage", "10.0.0.1"),
        ("10.0.0.1", "💥" * 1000, "10.0.0.1"),
        # a trusted proxy that hides the client: unknown
        ("10.0.0.1", f"{CLIENT}, unknown", None),
        # peers that are not IP addresses (a unix socket, a test client name): unknown
        ("testclient", CLIENT, None),
        ("/run/app.sock", CLIENT, None),
        (None, CLIENT, None),
        ("", None, None),
        # normalised: IPv4-mapped peers and hops, IPv6 in canonical form, ports dropped
        ("::ffff:10.0.0.1", "[2001:DB8::7]:1234", "2001:db8::7"),
        ("2001:db8:ffff::1", f"{CLIENT}:5555", CLIENT),
        ("::ffff:192.0.2.1", None, "192.0.2.1"),
    ],
)
def test_client_address_from_x_forwarded_for(
    peer: str | None, header: str | None, expected: str | None
) -> None:
    assert client_address(peer, header, PROXIES) == expected


@pytest.mark.parametrize(
    ("peer", "header", "expected"),
    [
        ("10.0.0.1", f"for={CLIENT};proto=https", CLIENT),
        ("10.0.0.1", f'for="{CLIENT}:443", for=10.0.0.2;by=10.0.0.1', CLIENT),
        ("10.0.0.1", f'for=198.51.100.66, for="[2001:db8::5]", for={CLIENT}', CLIENT),
        ("10.0.0.1", f'for="{CLIENT}', "10.0.0.1"),
        ("10.0.0.1", "for=_hidden", None),
        (CLIENT, "for=198.51.100.1", CLIENT),
    ],
)
def test_client_address_from_forwarded(peer: str, header: str, expected: str | None) -> None:
    assert client_address(peer, header, PROXIES, "forwarded") == expected


def test_header_kinds_do_not_mix() -> None:
    """An X-Forwarded-For value read as Forwarded is malformed: the peer is used."""
    assert client_address("10.0.0.1", CLIENT, PROXIES, "forwarded") == "10.0.0.1"
    assert client_address("10.0.0.1", f"for={CLIENT}", PROXIES) == "10.0.0.1"


@given(header=st.text(max_size=300), peer=st.sampled_from(["10.0.0.1", "127.0.0.1", CLIENT]))
def test_any_header_gives_none_or_a_valid_address(header: str, peer: str) -> None:
    for kind in ("x-forwarded-for", "forwarded"):
        result = client_address(peer, header, PROXIES, kind)  # type: ignore[arg-type]
        assert result is None or str(ipaddress.ip_address(result)) == result


@given(prefix=st.text(max_size=200))
def test_client_written_prefix_cannot_change_the_result(prefix: str) -> None:
    """Whatever a client puts before the hop our proxy appended, the appended hop wins."""
    assert client_address("10.0.0.1", f"{prefix},{CLIENT}", PROXIES) == CLIENT
    forwarded = f"{prefix}, for={CLIENT}"
    assert client_address("10.0.0.1", forwarded, PROXIES, "forwarded") in (CLIENT, "10.0.0.1")


def test_very_long_chains_are_bounded() -> None:
    chain = ", ".join(["10.0.0.5"] * 10_000)
    assert client_address("10.0.0.1", chain, PROXIES) == "10.0.0.5"
    assert client_address("10.0.0.1", f"{CLIENT}, {chain}", PROXIES) == "10.0.0.5"
