"""Whether a host names this machine: one rule for every place that asks.

A plain ``http://`` url to this machine (a local test double, the standalone sandbox) is no
secret crossing the network, and a sandbox listening there is no sandbox anyone may read.
Each place judged loopback on its own: the urls' check exempted ``127.0.0.2`` but warned of
``127.1`` and ``[::ffff:127.0.0.1]``, which the system resolves to this machine too.
Also which numeric hosts the hub's HTTP client calls at all (:func:`uncallable_ipv4`).
"""

from __future__ import annotations

import ipaddress
import re
import socket

#: What the system's own IPv4 parser (``inet_aton``) may read as an address: digits, hex
#: (``0x7f.1``) and dots only, so that it never reads a host name.
_NUMERIC = re.compile(r"[0-9a-fA-FxX.]+")


#: An IPv4 address as the hub's HTTP client takes one: four numbers from 0 to 255, each
#: written without a leading zero.
_DOTTED_QUAD = re.compile(
    r"(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}"
    r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
)


def uncallable_ipv4(host: str) -> str | None:
    """Why a url's ``host`` of digits and dots that is no plain dotted quad (``127.1``,
    ``2130706433``, ``127.000.000.001``, ``10.0.0.1.``) cannot be called, or None (any other
    host: a target's url, an API url, a proxy variable's). The system reads most of these
    as an address, and check took them (``127.1`` as this machine), but the hub's HTTP
    client (aiohttp) refuses such a host: every call failed as a network error ("is not a
    canonical IPv4 address"), retried until the event gave up."""
    if not re.fullmatch(r"[0-9.]+", host) or _DOTTED_QUAD.fullmatch(host):
        return None
    try:
        meant = f", here {socket.inet_ntoa(socket.inet_aton(host))}"
    except OSError:
        meant = ""
    return (
        f"names the host {host!r}, which the hub's HTTP client does not call: it takes an "
        f"IPv4 address only as four numbers from 0 to 255 without leading zeros{meant}"
    )


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a url's host or a ``--host``; in brackets or not, any case, a
    trailing dot) is this machine: ``localhost`` and its subdomains, a loopback address
    (``127.0.0.0/8``, ``::1``, ``::ffff:127.x.x.x``), or a short IPv4 form the system reads
    as one (``127.1``). A host name is not: it may resolve anywhere."""
    name = host.strip().removeprefix("[").removesuffix("]").lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return _short_ipv4_loopback(name)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def _short_ipv4_loopback(name: str) -> bool:
    """Whether ``name`` is an IPv4 address in a form ``ipaddress`` refuses but the system's
    resolver reads (``127.1``, ``0x7f.0.0.1``, ``2130706433``) on the loopback network."""
    if not _NUMERIC.fullmatch(name):
        return False
    try:
        packed = socket.inet_aton(name)
    except OSError:
        return False
    return ipaddress.IPv4Address(packed).is_loopback


#: The keys every sandbox has unless given others, and how its ``sandbox_exposed`` line
#: names them.
DEFAULT_SANDBOX_KEY = "sandbox"
DEFAULT_KEYS_SAID = "sandbox / sandbox (the defaults, known to anyone)"


def sandbox_exposed(host: str, default_keys: bool, fix: str) -> dict[str, str] | None:
    """The ``sandbox_exposed`` warning's fields (``fix``: what to set) when a sandbox with the
    keys everyone knows (``default_keys``) listens beyond this machine (``host`` not
    loopback: every interface in the container image), else None: anyone reaching its port
    reads every lead sent to it (names, emails, phones) at ``/_sandbox/leads`` and writes
    leads. ``serve``'s embedded sandbox and ``leadhub sandbox`` both warn so."""
    if is_loopback(host) or not default_keys:
        return None
    return {"host": host, "keys": DEFAULT_KEYS_SAID, "fix": fix}
