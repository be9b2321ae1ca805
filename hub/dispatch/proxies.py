"""The proxy a dispatcher's request goes through (the standard ``*_proxy`` variables), and
the CA bundle ``SSL_CERT_FILE`` names: read from the environment, as ``serve`` sends with
them and ``check`` judges them (apart from the transport, so that ``check`` loads neither
aiohttp nor httpx).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import ssl
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass

from hub.addresses import is_loopback, uncallable_ipv4


@dataclass(frozen=True, slots=True)
class Proxy:
    """A proxy to send through: its URL without credentials, and the header carrying them."""

    url: str
    headers: Mapping[str, str]

    def __str__(self) -> str:  # what logs and errors may show: never the credentials
        return self.url


#: Proxy URL schemes aiohttp can send through.
PROXY_SCHEMES = ("http", "https")
_DEFAULT_PORTS = {"http": 80, "https": 443}


class ProxySettingError(ValueError):
    """A proxy variable names a proxy the hub cannot use."""


class Proxies:
    """Which proxy, if any, a request goes through, from the standard environment variables.

    ``https_proxy`` / ``http_proxy`` for URLs of that scheme, else ``all_proxy`` (each in
    lower or upper case, lower case first, even when empty); ``no_proxy`` lists hosts
    reached directly: ``example.com`` also covers its subdomains, ``host:port`` only that
    port, ``10.0.0.0/8`` the addresses in it, ``*`` every host. Loopback hosts
    (``localhost``, ``127.0.0.0/8``, ``::1``) are always reached directly, as Go's HTTP
    client does: the embedded sandbox stays reachable when a proxy is set for the outside
    world. Loopback as :func:`hub.addresses.is_loopback` reads it, as the urls' check does:
    ``127.1`` and ``[::ffff:127.0.0.1]`` too (Go's rule, and this one before, sent those
    through the proxy, which reached its own machine, or refused them).

    Raises:
        ProxySettingError: a variable holds a proxy URL without a host, or of a scheme other
            than http or https (SOCKS is not supported).
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        found: dict[str, tuple[str, str]] = {}
        for name in ("http", "https", "all", "no"):
            for variable in (f"{name}_proxy", f"{name.upper()}_PROXY"):
                if variable in env:  # lower case first, even empty (which unsets)
                    if env[variable].strip():
                        found[name] = (variable, env[variable].strip())
                    break
        self._no_proxy = _no_proxy(found.pop("no")[1]) if "no" in found else []
        self._proxies = {scheme: _proxy(*found[scheme]) for scheme in found}
        self._chosen: dict[tuple[str, str, int | None], Proxy | None] = {}

    def __bool__(self) -> bool:
        return bool(self._proxies)

    def describe(self) -> dict[str, str]:
        """Scheme to proxy URL (no credentials): what the hub logs when it starts."""
        return {scheme: proxy.url for scheme, proxy in self._proxies.items()}

    def choose(self, scheme: str, host: str, port: int | None = None) -> Proxy | None:
        """The proxy for a request to ``host`` (``port``) over ``scheme``, or None: directly."""
        port = port or _DEFAULT_PORTS.get(scheme)  # httpx gives None for the scheme's own
        key = (scheme, host, port)
        if key in self._chosen:
            return self._chosen[key]
        proxy = self._proxies.get(scheme) or self._proxies.get("all")
        if proxy is not None and (is_loopback(host) or self._bypassed(host, port)):
            proxy = None
        if len(self._chosen) < 1000:
            self._chosen[key] = proxy
        return proxy

    def _bypassed(self, host: str, port: int | None) -> bool:
        name = host.strip("[]").lower().rstrip(".")
        address = _address(name)
        for entry, entry_port in self._no_proxy:
            if entry_port is not None and entry_port != port:
                continue
            if entry == "*" or name == entry or name.endswith(f".{entry}"):
                return True
            if address is not None:
                with contextlib.suppress(ValueError):
                    if address in ipaddress.ip_network(entry, strict=False):
                        return True
        return False


def _no_proxy(value: str) -> list[tuple[str, int | None]]:
    """``no_proxy``'s entries: (host, domain, IP or network in lower case, port or None).

    Entries are separated by commas or spaces; a leading ``.`` or ``*.`` is the same as none
    (``example.com`` covers its subdomains too), as curl reads them.
    """
    entries: list[tuple[str, int | None]] = []
    for raw in value.replace(" ", ",").split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        port: int | None = None
        if entry.startswith("[") and "]" in entry:  # [::1]:8080
            entry, _, rest = entry[1:].partition("]")
            if rest.startswith(":") and rest[1:].isdigit():
                port = int(rest[1:])
        elif entry.count(":") == 1:  # host:port (an IPv6 address has more colons)
            entry, _, text = entry.partition(":")
            port = int(text) if text.isdigit() else None
        entry = entry.removeprefix("*.").lstrip(".").rstrip(".")
        if entry:
            entries.append((entry, port))
    return entries


def _proxy(variable: str, value: str) -> Proxy:
    """A :class:`Proxy` from a variable's value (``http://user:pass@host:port``)."""
    text = value
    if "://" not in text:
        text = f"http://{text}"  # as curl reads a bare host:port
    fix = "set it to an http:// or https:// proxy (http://host:port) or unset it"
    try:
        parts = urllib.parse.urlsplit(text)
    except ValueError as exc:  # "Invalid IPv6 URL" (an unclosed [): serve ended in a traceback
        msg = f"{variable} is not a proxy URL ({exc}); {fix}"  # (not its text: a password)
        raise ProxySettingError(msg) from None
    if "@" in text.partition("://")[2] and "@" not in parts.netloc:
        # user:pa/ss@host: the '/' ends the host part, so "user" was taken for the host and
        # named in the message, and "pa" for a port that is not a number
        msg = (
            f"{variable} is not a proxy URL: a '/', '?' or '#' in its user or password ends "
            "the host part before the '@'; write it percent-encoded (%2F, %3F, %23), and "
            "set it to an http:// or https:// proxy (http://user:password@host:port) or "
            "unset it"
        )
        raise ProxySettingError(msg)
    scheme = parts.scheme.lower()
    shown = _shown_proxy(scheme, parts)  # host and port, never the credentials
    if scheme not in PROXY_SCHEMES:
        msg = (
            f"{variable} names the proxy {shown!r}, which the hub cannot send through "
            f"(it sends through http:// and https:// proxies only, not {scheme}://); {fix}"
        )
        raise ProxySettingError(msg)
    if not parts.hostname:
        msg = f"{variable} names the proxy {shown!r}, which names no host; {fix}"
        raise ProxySettingError(msg)
    if (problem := uncallable_ipv4(parts.hostname)) is not None:
        # (check said ok, and every call through it failed: aiohttp refuses such a host)
        msg = f"{variable} {problem}; {fix}"
        raise ProxySettingError(msg)
    try:
        port = parts.port
    except ValueError:
        msg = f"{variable} names the proxy {shown!r} with a port that is not a number; {fix}"
        raise ProxySettingError(msg) from None
    host = parts.hostname
    if ":" in host:
        host = f"[{host}]"
    url = f"{scheme}://{host}" + (f":{port}" if port else "")
    headers: dict[str, str] = {}
    if parts.username is not None:
        login = urllib.parse.unquote(parts.username)
        password = urllib.parse.unquote(parts.password or "")
        import aiohttp  # (only for a proxy given a login: check and serve load it otherwise not)

        headers["Proxy-Authorization"] = aiohttp.encode_basic_auth(login, password)
    return Proxy(url, headers)


def _shown_proxy(scheme: str, parts: urllib.parse.SplitResult) -> str:
    """A proxy's URL as a message shows it: its scheme, host and port (a port that is no
    number left out), never the user or password before them. Not the URL's text after its
    ``@``: a password holding ``/`` (unescaped) ends the host part early, and its start would
    be taken for the host and port."""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{scheme}://{host}" + (f":{port}" if port is not None else "")


def _address(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        return None


def ca_file_problem(environ: Mapping[str, str] | None = None) -> str | None:
    """What is wrong with the CA bundle ``SSL_CERT_FILE`` names, or None (unset, or fine).

    OpenSSL reads the variable for the certificates to trust (a private CA's: a gateway's, a
    proxy re-signing TLS), and silently ignores a file it cannot read: a mistyped path, or a
    file holding no certificate, left the CA untrusted with nothing said, every call to such a
    host failing its certificate check as if the variable were not set at all.
    """
    env = os.environ if environ is None else environ
    path = env.get("SSL_CERT_FILE", "")
    if not path:
        return None
    fix = "point it at a PEM file of the CA certificates to trust, or unset it"
    try:
        ssl.create_default_context(cafile=path)
    except FileNotFoundError:
        return f"SSL_CERT_FILE names {path!r}, which does not exist; {fix}"
    except (OSError, ssl.SSLError) as exc:
        why = getattr(exc, "reason", None) or exc.strerror or type(exc).__name__
        unread = f"which holds no certificate it can read ({why})"
        return f"SSL_CERT_FILE names {path!r}, {unread}; {fix}"
    return None
