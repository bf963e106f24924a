"""Which address a request came from: the peer, or what trusted proxies say in forwarded headers.

Both middlewares share this. A forwarded header is read only when the immediate peer is a
configured trusted proxy; its chain of hops is then walked from the right (the hops the proxies
appended themselves), skipping trusted proxies, and the first other address is the client. Anything
to the left of it was written by the client and is never believed.

- ``X-Forwarded-For: client, proxy1, proxy2``: comma-separated addresses, ports tolerated.
- ``Forwarded: for=192.0.2.60;proto=https, for="[2001:db8::17]:4711"`` (RFC 7239): the ``for``
  parameter of each element. See https://www.rfc-editor.org/rfc/rfc7239#section-4.

A hop that is not an address leads to a deliberate answer rather than an error: ``unknown`` or an
obfuscated identifier (``_hidden``) means a trusted proxy chose not to disclose the client, so the
address is unknown (``None``); a malformed value means the header cannot be believed, so the peer
address is used. Nothing that is not a valid IP address ever comes out of this module.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import Final, Literal, TypeAlias

from ..exceptions import ConfigurationError

__all__ = [
    "PROXY_HEADERS",
    "ProxyHeader",
    "TrustedProxies",
    "check_proxy_header",
    "client_address",
    "forwarded_nodes",
    "parse_ip",
    "x_forwarded_for_nodes",
]

IPAddress: TypeAlias = "ipaddress.IPv4Address | ipaddress.IPv6Address"
IPNetwork: TypeAlias = "ipaddress.IPv4Network | ipaddress.IPv6Network"
ProxyHeader = Literal["x-forwarded-for", "forwarded"]
PROXY_HEADERS: Final = ("x-forwarded-for", "forwarded")


class _Hidden:
    """A hop a proxy named ``unknown`` or by an obfuscated identifier."""

    def __repr__(self) -> str:
        return "HIDDEN"


class _Malformed:
    """A hop that is neither an address nor a valid identifier."""

    def __repr__(self) -> str:
        return "MALFORMED"


HIDDEN: Final = _Hidden()
MALFORMED: Final = _Malformed()
Node: TypeAlias = "IPAddress | _Hidden | _Malformed"

# RFC 7230 token characters; the obfuscated identifiers of RFC 7239 section 6.3.
_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_PAIR = re.compile(rf'[ \t]*({_TOKEN})=({_TOKEN}|"(?:[^"\\]|\\.)*")[ \t]*')
_QUOTED_PAIR = re.compile(r"\\(.)")
_OBFUSCATED = re.compile(r"_[A-Za-z0-9._-]+")
_PORT = re.compile(r"[0-9]{1,5}|_[A-Za-z0-9._-]+")
_MAX_HOPS = 64


def parse_ip(text: str) -> IPAddress | None:
    """``text`` as an IP address, or None; zone ids dropped, IPv4-mapped IPv6 as IPv4.

    ``ipaddress`` rejects leading zeros and other ambiguous forms. A zone id (``fe80::1%eth0``)
    names an interface of the host that saw it, which means nothing in an audit log.
    """
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id is not None:
            address = ipaddress.IPv6Address(int(address))
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
    return address


def _node(text: str) -> Node:
    """One hop: an address with an optional port, ``[v6]:port``, ``unknown`` or ``_obfuscated``."""
    text = text.strip()
    address = parse_ip(text)
    if address is not None:
        return address
    port: str | None = None
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            return MALFORMED
        port = rest[1:] if rest else None
        v6 = parse_ip(host) if ":" in host else None
        if v6 is None or (port is not None and not _PORT.fullmatch(port)):
            return MALFORMED
        return v6
    if text.count(":") == 1:
        text, port = text.split(":")
        if not _PORT.fullmatch(port):
            return MALFORMED
        address = parse_ip(text)
        if address is not None:
            return address
    if text.lower() == "unknown" or _OBFUSCATED.fullmatch(text):
        return HIDDEN
    return MALFORMED


def x_forwarded_for_nodes(value: str) -> list[Node]:
    """The hops of an ``X-Forwarded-For`` value, left (client) to right (nearest proxy)."""
    return [_node(part) for part in value.split(",")[-_MAX_HOPS:] if part.strip()] or [MALFORMED]


def forwarded_nodes(value: str) -> list[Node]:
    """The ``for`` hops of a ``Forwarded`` value (RFC 7239), left to right.

    A value that does not follow the grammar is one malformed hop; an element without ``for``
    (allowed: a proxy may withhold it) is a hidden hop.
    """
    elements: list[Node] = []
    current: dict[str, str] = {}
    empty = True
    pos, end = 0, len(value)
    while True:
        match = _PAIR.match(value, pos)
        if match:
            name, raw = match.group(1).lower(), match.group(2)
            if name in current:
                return [MALFORMED]  # RFC 7239 section 4: a parameter at most once per element
            if raw.startswith('"'):
                raw = _QUOTED_PAIR.sub(r"\1", raw[1:-1])
            current[name] = raw
            empty = False
            pos = match.end()
        else:
            while pos < end and value[pos] in " \t":
                pos += 1
        if pos >= end or value[pos] == ",":
            if not empty:
                elements.append(_node(current["for"]) if "for" in current else HIDDEN)
            if pos >= end:
                break
            current, empty, pos = {}, True, pos + 1
        elif value[pos] == ";":
            pos += 1
        else:
            return [MALFORMED]
    return elements[-_MAX_HOPS:] or [MALFORMED]


class TrustedProxies:
    """The addresses and networks whose forwarded headers are believed.

    >>> proxies = TrustedProxies(["10.0.0.0/8", "127.0.0.1"])
    >>> "10.1.2.3" in proxies, "203.0.113.7" in proxies
    (True, False)
    """

    __slots__ = ("networks",)

    def __init__(self, proxies: Iterable[str | IPAddress | IPNetwork] = ()) -> None:
        if isinstance(proxies, str):
            proxies = [proxies]
        networks: list[IPNetwork] = []
        for proxy in proxies:
            try:
                network = ipaddress.ip_network(proxy)
            except (TypeError, ValueError):
                raise ConfigurationError(
                    f"trusted_proxies: {proxy!r} is not an IP address or network "
                    "(write networks with their host bits clear, e.g. '10.0.0.0/8')"
                ) from None
            networks.append(network)
            networks.extend(_mapped(network))
        self.networks = tuple(networks)

    def __contains__(self, address: object) -> bool:
        if isinstance(address, str):
            address = parse_ip(address)
        if not isinstance(address, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
            return False
        return any(address in network for network in self.networks)

    def __bool__(self) -> bool:
        return bool(self.networks)

    def __repr__(self) -> str:
        return f"TrustedProxies({[str(n) for n in self.networks]!r})"


_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


def _mapped(network: IPNetwork) -> list[IPNetwork]:
    """The IPv4 addresses an IPv6 network holds in their IPv4-mapped form (``::ffff:10.0.0.5``,
    as a dual-stack server reports an IPv4 peer): peers are compared as IPv4 (:func:`parse_ip`),
    so the proxy's IPv4 network is trusted too."""
    if not isinstance(network, ipaddress.IPv6Network) or not network.overlaps(_MAPPED):
        return []
    if network.prefixlen <= 96:  # holds the whole mapped range
        return [ipaddress.IPv4Network("0.0.0.0/0")]
    first = network.network_address.ipv4_mapped
    assert first is not None
    return [ipaddress.IPv4Network(f"{first}/{network.prefixlen - 96}")]


def check_proxy_header(value: str) -> ProxyHeader:
    """``value`` if it names a supported forwarded header, else a ConfigurationError."""
    if value == "x-forwarded-for":
        return "x-forwarded-for"
    if value == "forwarded":
        return "forwarded"
    raise ConfigurationError(f"proxy_header: expected one of {PROXY_HEADERS}, got {value!r}")


def client_address(
    peer: str | None,
    header_value: str | None,
    trusted: TrustedProxies,
    header: ProxyHeader = "x-forwarded-for",
) -> str | None:
    """The client's IP address as text, or None when it is unknown.

    ``peer`` is the address of the immediate peer (``REMOTE_ADDR``, the ASGI ``client``);
    ``header_value`` the forwarded header, several occurrences joined with ``,``.
    """
    peer_ip = parse_ip(peer.strip()) if peer else None
    if peer_ip is None:
        return None
    if not header_value or peer_ip not in trusted:
        return str(peer_ip)
    if header == "forwarded":
        hops = forwarded_nodes(header_value)
    else:
        hops = x_forwarded_for_nodes(header_value)
    for hop in reversed(hops):
        if hop is MALFORMED:
            return str(peer_ip)
        if hop is HIDDEN:
            return None
        if hop not in trusted:
            return str(hop)
    # Every hop is a trusted proxy: the request started on one of them.
    return str(hops[0])
