"""Who the client is: the direct peer, or what trusted proxies say it was.

Both the Thrad rows' ``ip_address`` and the failed-login throttle's key come
from here, so a client can't store one address and be throttled as another.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable

from starlette.datastructures import Headers

from app.settings import IPNetwork


# A backend sends from a few addresses: each is parsed once (a bounded LRU).
@functools.lru_cache(maxsize=4096)
def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def _trusted(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, proxies: Iterable[IPNetwork]
) -> bool:
    return any(address in network for network in proxies)


def forwarded_for(headers: Headers) -> str | None:
    """Every X-Forwarded-For line, joined in order, or None if there is none.

    Several lines of one header are one comma-separated list (RFC 9110,
    5.3). A proxy that appends its own line after the client's would
    otherwise be ignored, and the client's made-up first line believed: it
    could store any address and rotate its throttle identity at will.
    """
    lines = headers.getlist("x-forwarded-for")
    return ", ".join(lines) if lines else None


def client_address(
    peer: str | None, forwarded_for: str | None, trusted_proxies: tuple[IPNetwork, ...]
) -> str | None:
    """The client's address: the direct peer, unless that is a trusted proxy.

    Behind trusted proxies, X-Forwarded-For is read from the right (each
    proxy appends the address it saw) and the first hop that is not itself a
    trusted proxy is the client; anything left of it could be made up by
    the client. A peer that is not a trusted proxy can't vouch for any
    header, so a spoofed X-Forwarded-For is ignored.
    """
    current = _address(peer) if peer else None
    if current is None:
        return None
    if forwarded_for and _trusted(current, trusted_proxies):
        for hop in reversed(forwarded_for.split(",")):
            address = _address(hop)
            if address is None:
                break  # garbage from here leftwards: keep the last hop we could believe
            current = address
            if not _trusted(current, trusted_proxies):
                break
    return str(current)


def forwarded_scheme(
    peer: str | None, headers: Headers, trusted_proxies: tuple[IPNetwork, ...]
) -> str | None:
    """The scheme a trusted proxy says the client used (X-Forwarded-Proto), else None.

    uvicorn runs without proxy headers (Inlet decides trust itself), so
    behind a TLS-terminating proxy the request's own scheme is http. Only a
    peer in INLET_TRUSTED_PROXIES is believed, and of a list the last value
    is the one our peer set.
    """
    current = _address(peer) if peer else None
    if current is None or not _trusted(current, trusted_proxies):
        return None
    values = ",".join(headers.getlist("x-forwarded-proto")).split(",")
    scheme = values[-1].strip().lower()
    return scheme or None
