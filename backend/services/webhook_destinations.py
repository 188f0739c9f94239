"""Where a webhook may be sent: public http(s) addresses only, checked after DNS resolution, and pinned.

A webhook URL is chosen by a customer, and LockN's workers sit inside someone's network: without this a URL
could make a worker call the cloud metadata service, the database or an admin page on loopback (SSRF). So:
- the scheme is http or https, and the URL carries no user name or password;
- the host is resolved, and every address it resolves to must be public: loopback, private (RFC 1918, ULA),
  link-local (169.254/16, which holds cloud metadata), shared (100.64/10), multicast, reserved and unspecified
  ranges are refused, IPv4-mapped IPv6 included. Outside production, loopback is allowed so a developer (and
  the tests) can receive on 127.0.0.1;
- the request goes to the address that was checked, not to a second lookup (a DNS answer that changes between
  check and connect, "DNS rebinding", cannot move it), with the original host in `Host` and TLS SNI;
- redirects are never followed: a 3xx answer is a failed delivery like any non-2xx.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

#: Longest URL an endpoint may have.
MAX_URL_CHARS = 2000


class DestinationRefused(ValueError):
    """The URL is not a public http(s) destination; the message says why, for the person who gave it."""


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


def check_destination(url: str, allow_loopback: bool) -> Destination:
    """`url` as a `Destination` whose address is public (or loopback, when allowed); `DestinationRefused` if not."""
    if len(url) > MAX_URL_CHARS:
        raise DestinationRefused(f"the URL is {len(url)} characters; the limit is {MAX_URL_CHARS}")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DestinationRefused("the URL must start with http:// or https:// and name a host")
    if parts.username or parts.password:
        raise DestinationRefused("the URL must not carry a user name or password")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        answers = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, ValueError) as exc:
        raise DestinationRefused(f"the host {parts.hostname!r} could not be resolved") from exc
    addresses = sorted({str(answer[4][0]) for answer in answers})
    for address in addresses:
        if (reason := _refusal(ipaddress.ip_address(address.split("%")[0]), allow_loopback)) is not None:
            raise DestinationRefused(f"{parts.hostname} resolves to {address}, {reason}; webhooks go to public "
                                     "addresses only")
    return Destination(url, parts.hostname, addresses[0])


def _refusal(address: ipaddress.IPv4Address | ipaddress.IPv6Address, allow_loopback: bool) -> str | None:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback:
        return None if allow_loopback else "a loopback address"
    checks = (("a private address", address.is_private), ("a link-local address", address.is_link_local),
              ("a multicast address", address.is_multicast), ("a reserved address", address.is_reserved),
              ("an unspecified address", address.is_unspecified),
              ("a shared (carrier-grade NAT) address", address in ipaddress.ip_network("100.64.0.0/10")))
    return next((reason for reason, refused in checks if refused), None)
