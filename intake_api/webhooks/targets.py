"""Where deliveries may go: https only, and never into the office's own network.

A name is checked again after resolution at each attempt, and the attempt connects to the very
address that was checked, so a name that changes its answer (DNS rebinding) cannot slip through.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_URL_LENGTH = 2000
RESOLVE_TIMEOUT_SECONDS = 5.0

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class TargetRefused(ValueError):
    """The URL or the address it resolves to may not receive deliveries."""


class Unresolvable(TargetRefused):
    """The name has no address now; at subscription that is no reason to refuse it."""


@dataclass(frozen=True)
class Policy:
    allow_http: bool = False
    allow_private: bool = False


DEFAULT_PORTS = {"https": 443, "http": 80}


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int


def origin_of(url: str) -> str:
    """``scheme://host:port`` of the server a URL reaches, one spelling for each: the host
    lower-cased, in IDNA (ASCII) form, without the root's trailing dot, and the port always
    written (the scheme's default when the URL has none). ``https://H.``, ``https://h:443``
    and ``https://h/x`` are one origin, whose share of the dispatcher's slots they share.
    A URL that is no URL (stored before it was checked) is its own origin, lower-cased."""
    try:
        parts = urlsplit(url)
        scheme, hostname = parts.scheme.lower(), parts.hostname
        port = parts.port or DEFAULT_PORTS.get(scheme)
        if not hostname or port is None:
            raise ValueError("no host or no port")
        host = hostname.rstrip(".")
        # An IPv6 address is bracketed, as in the URL.
        host = f"[{host}]" if ":" in host else host.encode("idna").decode("ascii").lower()
    except (ValueError, UnicodeError):
        return url.lower()
    return f"{scheme}://{host}:{port}"


def parse(url: str, policy: Policy) -> Target:
    if len(url) > MAX_URL_LENGTH or not url.isprintable() or any(c.isspace() for c in url):
        raise TargetRefused(f"the URL must be at most {MAX_URL_LENGTH} printable characters "
                            "without spaces")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TargetRefused(f"not a valid URL: {exc}") from None
    allowed = ("https", "http") if policy.allow_http else ("https",)
    if parts.scheme not in allowed:
        raise TargetRefused("the URL must use https" if not policy.allow_http
                            else "the URL must use http or https")
    if not parts.hostname:
        raise TargetRefused("the URL has no host")
    try:
        # As the resolver will encode it: a name with an empty label or one over 63 characters
        # is no name at all.
        parts.hostname.encode("idna")
    except UnicodeError:
        raise TargetRefused("the URL's host is not a valid name: its labels must be 1 to 63 "
                            "characters") from None
    if parts.username is not None or parts.password is not None:
        raise TargetRefused("credentials in the URL are not accepted; verify the signature")
    if parts.fragment:
        raise TargetRefused("the URL may not have a fragment")
    host = parts.hostname.rstrip(".")
    if not policy.allow_private and (host == "localhost" or host.endswith(".localhost")):
        raise TargetRefused("localhost is a loopback address")
    return Target(parts.scheme, parts.hostname, port or DEFAULT_PORTS[parts.scheme])


# RFC 6052's well-known NAT64 prefix: a translator on the path hands the last 32 bits on as an
# IPv4 address, so 64:ff9b::7f00:1 reaches 127.0.0.1 wherever NAT64 runs. The local-use prefix
# 64:ff9b:1::/48 (RFC 8215) places the IPv4 address where its operator chooses; it is refused
# whole (the stdlib counts it as reserved, below).
NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")


def embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses a packet to ``address`` may end up at: IPv4-mapped, NAT64, 6to4
    (the relay's address) and Teredo (its server and its client)."""
    if address.ipv4_mapped is not None:
        return [address.ipv4_mapped]
    if address in NAT64_WELL_KNOWN:
        return [ipaddress.IPv4Address(address.packed[-4:])]
    if address.sixtofour is not None:
        return [address.sixtofour]
    if address.teredo is not None:
        return list(address.teredo)
    return []


def is_public(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return is_public(address.ipv4_mapped)
        embedded = embedded_ipv4(address)
        if embedded:
            # The IPv6 form must be global too: Teredo's 2001::/32 is not, whatever it embeds.
            return address.is_global and all(is_public(ipv4) for ipv4 in embedded)
        # IPv4-compatible (::a.b.c.d), 64:ff9b:1::/48 and the rest outside 2000::/3; the
        # stdlib still counts some of them as global.
        if address.is_reserved or address.is_site_local:
            return False
    return address.is_global and not address.is_multicast


def check_address(address: IPAddress, policy: Policy) -> None:
    if not policy.allow_private and not is_public(address):
        raise TargetRefused(f"{address} is a private, loopback, link-local or reserved address")


async def resolve(target: Target, policy: Policy) -> list[IPAddress]:
    """Every address the host stands for, each checked; raises when any is refused."""
    try:
        literal: IPAddress | None = ipaddress.ip_address(target.host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [literal]
    else:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(RESOLVE_TIMEOUT_SECONDS):
                infos = await loop.getaddrinfo(target.host, target.port,
                                               type=socket.SOCK_STREAM)
        except (OSError, TimeoutError) as exc:
            raise Unresolvable(f"{target.host} cannot be resolved: {exc}") from None
        except UnicodeError:  # a name parse() would have refused
            raise TargetRefused(f"{target.host} is not a valid name") from None
        addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))
        if not addresses:
            raise Unresolvable(f"{target.host} resolves to no address")
    for address in addresses:
        check_address(address, policy)
    return addresses
