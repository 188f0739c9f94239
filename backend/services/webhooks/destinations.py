"""Where a webhook may be sent: public http(s) addresses only, checked after DNS resolution, and pinned.

A webhook URL is chosen by a customer, and LockN's workers sit inside someone's network: without this a URL
could make a worker call the cloud metadata service, the database or an admin page on loopback (SSRF). So:
- the scheme is http or https, and the URL carries no user name or password;
- the host is resolved (within `LOCKN_WEBHOOK_DNS_TIMEOUT_S`: a resolver that never answers must not hold a
  web thread or a delivery slot), and every address it resolves to must be globally reachable (`is_global`):
  loopback, private (RFC 1918, ULA), link-local (169.254/16, which holds cloud metadata), site-local
  (fec0::/10, which Python still calls global), shared (100.64/10), multicast, reserved and unspecified ranges
  are refused. An IPv6 address that carries an IPv4 one (IPv4-mapped, 6to4 2002::/16, Teredo 2001::/32, NAT64
  64:ff9b::/96) is checked for the addresses it carries too, since that is where its packets end up. Outside
  production, loopback is allowed so a developer (and the tests) can receive on 127.0.0.1;
- the request goes to the address that was checked, not to a second lookup (a DNS answer that changes between
  check and connect, "DNS rebinding", cannot move it), with the original host in `Host` and TLS SNI;
- redirects are never followed: a 3xx answer is a failed delivery like any non-2xx.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

#: Longest URL an endpoint may have.
MAX_URL_CHARS = 2000
#: The well-known NAT64 prefix: its last 32 bits are the IPv4 address packets go to.
NAT64_PREFIX = ipaddress.ip_network("64:ff9b::/96")
SHARED_NETWORK = ipaddress.ip_network("100.64.0.0/10")


def _new_resolver() -> ThreadPoolExecutor:
    """Lookups run in this pool so a caller can stop waiting (`getaddrinfo` itself has no timeout); a lookup the
    resolver never answers keeps its thread only until the system resolver gives up, and never its caller."""
    return ThreadPoolExecutor(max_workers=8, thread_name_prefix="lockn-dns")


_resolver = _new_resolver()


def _renew_resolver_after_fork() -> None:
    """A forked process (a Celery pool child) inherits the pool but none of its threads: it gets its own."""
    global _resolver
    _resolver = _new_resolver()


os.register_at_fork(after_in_child=_renew_resolver_after_fork)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class DestinationRefused(ValueError):
    """The URL is not a public http(s) destination; the message says why, for the person who gave it."""


class UnresolvedHost(DestinationRefused):
    """The host did not resolve (or not in time): unlike a refusal, a later try may succeed."""


@dataclass(frozen=True)
class Destination:
    """A checked URL: connect to `address`, say `host` (Host header, SNI)."""

    url: str
    host: str
    address: str

    @property
    def pinned_url(self) -> str:
        """The URL with its host replaced by the checked address (port, path and query kept)."""
        parts = urlsplit(self.url)
        literal = f"[{self.address}]" if ":" in self.address else self.address
        netloc = literal + (f":{parts.port}" if parts.port else "")
        return urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))


def check_destination(url: str, allow_loopback: bool, dns_timeout_s: float = 2.0) -> Destination:
    """`url` as a `Destination` whose address is public (or loopback, when allowed); `DestinationRefused` if not
    (`UnresolvedHost` when the name did not resolve within `dns_timeout_s`)."""
    if len(url) > MAX_URL_CHARS:
        raise DestinationRefused(f"the URL is {len(url)} characters; the limit is {MAX_URL_CHARS}")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DestinationRefused("the URL must start with http:// or https:// and name a host")
    if parts.username or parts.password:
        raise DestinationRefused("the URL must not carry a user name or password")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise DestinationRefused("the URL's port is not a number from 0 to 65535") from exc
    answers = _resolve(parts.hostname, port, dns_timeout_s)
    addresses = sorted({str(answer[4][0]) for answer in answers})
    for address in addresses:
        if (reason := _refusal(ipaddress.ip_address(address.split("%")[0]), allow_loopback)) is not None:
            raise DestinationRefused(f"{parts.hostname} resolves to {address}, {reason}; webhooks go to public "
                                     "addresses only")
    return Destination(url, parts.hostname, addresses[0])


def _resolve(host: str, port: int, timeout_s: float) -> list[tuple]:
    """`getaddrinfo`, waited for at most `timeout_s`."""
    lookup = _resolver.submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
    try:
        return lookup.result(timeout=timeout_s)
    except FutureTimeout:
        lookup.cancel()
        raise UnresolvedHost(f"the host {host!r} could not be resolved within {timeout_s:g} s") from None
    except (socket.gaierror, UnicodeError, ValueError) as exc:
        raise UnresolvedHost(f"the host {host!r} could not be resolved") from exc


def _carried(address: IPAddress) -> list[IPAddress]:
    """The IPv4 addresses an IPv6 address carries (where its packets really go): IPv4-mapped, 6to4, Teredo
    (server and client), NAT64."""
    if isinstance(address, ipaddress.IPv4Address):
        return []
    carried: list[IPAddress] = [a for a in (address.ipv4_mapped, address.sixtofour) if a is not None]
    carried += list(address.teredo or ())
    if address in NAT64_PREFIX:
        carried.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return carried


def _refusal(address: IPAddress, allow_loopback: bool) -> str | None:
    """Why `address` is no webhook destination, or None: it and every address it carries must be global."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback:
        return None if allow_loopback else "a loopback address"
    checks = (("a private address", address.is_private), ("a link-local address", address.is_link_local),
              ("a site-local address", isinstance(address, ipaddress.IPv6Address) and address.is_site_local),
              ("a multicast address", address.is_multicast), ("a reserved address", address.is_reserved),
              ("an unspecified address", address.is_unspecified),
              ("a shared (carrier-grade NAT) address", address in SHARED_NETWORK),
              ("not a globally reachable address", not address.is_global))
    if (reason := next((reason for reason, refused in checks if refused), None)) is not None:
        return reason
    for inner in _carried(address):
        if (reason := _refusal(inner, allow_loopback=False)) is not None:
            return f"which carries {inner}, {reason}"
    return None
