"""The dispatcher behind an HTTP proxy: the standard variables (HTTPS_PROXY, HTTP_PROXY,
ALL_PROXY, NO_PROXY) are read as curl reads them, loopback is always direct, credentials go
in Proxy-Authorization and never into logs; real sends through a real forward proxy."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from pathlib import Path
from typing import Any

import pytest
import structlog

from hub.config.models import Target
from hub.dispatch.fetch import FetchRetry
from hub.dispatch.leadsquared import LeadSquaredClient, Pause, Retry
from hub.dispatch.proxies import Proxies, ProxySettingError
from hub.dispatch.transport import make_http_client
from hub.secrets import Secret
from hub.store.models import Event, State
from tests.dispatch.support import (
    all_in,
    enqueue,
    forms_config,
    lead_readers,
    leads,
    opened_store,
    running,
    sandbox_get,
    sandbox_server,
    states,
    wait_for,
)
from tests.support.proxy import basic, forward_proxy

CORP = "http://proxy.corp.example:3128"


def test_no_variables_means_no_proxy() -> None:
    proxies = Proxies({})
    assert not proxies
    assert proxies.choose("https", "api-in21.leadsquared.com", 443) is None


def test_https_proxy_with_credentials_splits_them_into_a_header() -> None:
    """The proxy's URL keeps no credentials (what logs and errors may show); they travel
    in Proxy-Authorization, percent-escapes decoded."""
    proxies = Proxies({"HTTPS_PROXY": "http://ops:p%40ss@proxy.corp.example:3128"})
    proxy = proxies.choose("https", "api-in21.leadsquared.com", 443)
    assert proxy is not None
    assert proxy.url == str(proxy) == CORP
    assert proxy.headers == {"Proxy-Authorization": basic("ops", "p@ss")}
    assert "p@ss" not in repr(proxies.describe()) and proxies.describe() == {"https": CORP}
    assert proxies.choose("http", "api-in21.leadsquared.com", 80) is None  # only https set


@pytest.mark.parametrize(
    ("environ", "http", "https"),
    [
        ({"HTTP_PROXY": CORP}, CORP, None),
        ({"ALL_PROXY": CORP}, CORP, CORP),
        (
            {"ALL_PROXY": CORP, "https_proxy": "http://tls.example:8080"},
            CORP,
            "http://tls.example:8080",
        ),
        # lower case first, even empty (which unsets), as curl and Python read them
        ({"HTTP_PROXY": CORP, "http_proxy": ""}, None, None),
        ({"HTTPS_PROXY": "http://upper.example", "https_proxy": CORP}, None, CORP),
        ({"HTTPS_PROXY": "proxy.corp.example:3128"}, None, CORP),  # no scheme: http
    ],
)
def test_which_variable_names_the_proxy(
    environ: dict[str, str], http: str | None, https: str | None
) -> None:
    proxies = Proxies(environ)
    chosen = [proxies.choose(scheme, "api.leadsquared.com") for scheme in ("http", "https")]
    assert [p.url if p else None for p in chosen] == [http, https]


@pytest.mark.parametrize(
    ("no_proxy", "host", "port", "direct"),
    [
        ("leadsquared.com", "api-in21.leadsquared.com", 443, True),  # subdomains too
        ("leadsquared.com", "leadsquared.com", 443, True),
        ("leadsquared.com", "notleadsquared.com", 443, False),
        (".leadsquared.com", "api.leadsquared.com", 443, True),
        ("*.leadsquared.com", "api.leadsquared.com", 443, True),
        ("graph.facebook.com, leadsquared.com", "api.leadsquared.com", 443, True),
        ("graph.facebook.com leadsquared.com", "api.leadsquared.com", 443, True),
        ("*", "anything.example", 443, True),
        ("api.leadsquared.com:8443", "api.leadsquared.com", 443, False),
        ("api.leadsquared.com:8443", "api.leadsquared.com", 8443, True),
        ("api.leadsquared.com:443", "api.leadsquared.com", None, True),  # https's own port
        ("10.0.0.0/8", "10.1.2.3", 443, True),
        ("10.0.0.0/8", "11.1.2.3", 443, False),
        ("10.0.0.0/8", "ten.example", 443, False),
        ("LeadSquared.COM", "API.leadsquared.com.", 443, True),
        ("", "api.leadsquared.com", 443, False),
    ],
)
def test_no_proxy_lists_hosts_reached_directly(
    no_proxy: str, host: str, port: int | None, direct: bool
) -> None:
    proxies = Proxies({"HTTPS_PROXY": CORP, "NO_PROXY": no_proxy})
    assert (proxies.choose("https", host, port) is None) is direct


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "127.8.9.1",
        "localhost",
        "::1",
        "[::1]",
        "a.localhost",
        # forms the system reads as loopback, as hub.addresses.is_loopback does
        "127.1",
        "0x7f.0.0.1",
        "2130706433",
        "[::ffff:127.0.0.1]",
    ],
)
def test_loopback_is_always_direct(host: str) -> None:
    """The embedded sandbox (on loopback) stays reachable with a proxy set for the world."""
    proxies = Proxies({"ALL_PROXY": CORP})
    assert proxies.choose("http", host, 8000) is None
    assert proxies.choose("http", "192.0.2.1", 8000) is not None
    assert proxies.choose("http", "127.1.example", 8000) is not None  # a name: anywhere


async def test_a_mapped_loopback_address_is_reached_directly(tmp_path: Path) -> None:
    """A target on this machine written ``[::ffff:127.0.0.1]`` (which the urls' check takes
    as loopback, and the system connects to as 127.0.0.1) went through the proxy set for the
    outside world: a proxy that reaches its own machine, not the hub's, or refuses. It is
    sent directly, as 127.0.0.1 is; the proxy sees nothing."""
    with sandbox_server() as (sandbox_url, _), forward_proxy() as (proxy_url, seen):
        port = sandbox_url.rsplit(":", 1)[1]
        config = forms_config(tmp_path, f"http://[::ffff:127.0.0.1]:{port}")
        async with (
            make_http_client(proxies=Proxies({"ALL_PROXY": proxy_url})) as http,
            opened_store(tmp_path / "hub.db") as store,
        ):
            ids = await enqueue(store, "forms", leads("s", 2))
            async with running(config, store, http=http):
                await wait_for(all_in(State.DELIVERED, store, ids), what="delivered")
        stored = [lead["EmailAddress"] for lead in sandbox_get(sandbox_url, "/_sandbox/leads")]
    assert sorted(stored) == ["s0@example.com", "s1@example.com"]
    assert seen.lines == []


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (
            "socks5://ops:hunter2@proxy.corp.example:1080",
            "'socks5://proxy.corp.example:1080', which the hub cannot send through (it sends "
            "through http:// and https:// proxies only, not socks5://)",
        ),
        ("http://ops:hunter2@:3128", "'http://:3128', which names no host"),
        # the '/' ended the host part early: "ops" was named as the proxy's host
        ("http://ops:hunt/er2@proxy.corp.example:3128", "write it percent-encoded (%2F"),
        ("http://ops:hunt#er2@proxy.corp.example:3128", "write it percent-encoded (%2F"),
        ("http://ops:hunter2@proxy.corp.example:port", "a port that is not a number"),
        ("http://ops:hunter2@[::1", "is not a proxy URL (Invalid IPv6 URL)"),
        # aiohttp refuses such a host ("is not a canonical IPv4 address"): every call failed
        ("http://ops:hunter2@10.0.0.010:3128", "names the host '10.0.0.010', which the hub"),
        ("ops:hunter2@127.1:3128", "without leading zeros, here 127.0.0.1"),
    ],
)
def test_a_proxy_the_hub_cannot_use_is_an_error_without_its_password(
    value: str, fragment: str
) -> None:
    with pytest.raises(ProxySettingError) as info:
        Proxies({"https_proxy": value})
    message = str(info.value)
    assert message.startswith("https_proxy ") and fragment in message
    assert "set it to an http:// or https:// proxy" in message
    assert "hunter2" not in message and "ops" not in message and "hunt" not in message


async def test_leads_go_through_the_proxy_with_its_credentials(tmp_path: Path) -> None:
    """HTTP_PROXY set (with credentials, NO_PROXY for another host): the target's host name,
    which resolves nowhere, is reached through a real forward proxy; every send carries the
    credentials in Proxy-Authorization, and no log line holds the password."""
    with (
        sandbox_server() as (sandbox_url, _),
        forward_proxy(login="ops", password="hunter2") as (proxy_url, seen),
    ):
        port = sandbox_url.rsplit(":", 1)[1]
        config = forms_config(tmp_path, f"http://lsq.proxied.test:{port}")
        environ = {
            "HTTP_PROXY": proxy_url.replace("http://", "http://ops:hunter2@"),
            "NO_PROXY": "graph.facebook.com",
        }
        async with (
            make_http_client(proxies=Proxies(environ)) as http,
            opened_store(tmp_path / "hub.db") as store,
        ):
            ids = await enqueue(store, "forms", leads("p", 3))
            with structlog.testing.capture_logs() as logs:
                async with running(config, store, http=http):
                    await wait_for(all_in(State.DELIVERED, store, ids), what="delivered")
        stored = sorted(
            lead["EmailAddress"] for lead in sandbox_get(sandbox_url, "/_sandbox/leads")
        )
    assert stored == ["p0@example.com", "p1@example.com", "p2@example.com"]
    capture = f"POST http://lsq.proxied.test:{port}/v2/LeadManagement.svc/Lead.Capture HTTP/1.1"
    assert seen.lines == [capture] * 3
    assert seen.authorizations == [basic("ops", "hunter2")] * 3
    assert "hunter2" not in repr(logs)
    assert base64.b64encode(b"ops:hunter2").decode() not in repr(logs)


async def test_without_the_proxy_the_name_resolves_nowhere(tmp_path: Path) -> None:
    """The control: the same target with the proxy's host in NO_PROXY is tried directly and
    fails (the name does not resolve), retried with the reason; the proxy sees nothing."""
    with sandbox_server() as (sandbox_url, _), forward_proxy() as (proxy_url, seen):
        port = sandbox_url.rsplit(":", 1)[1]
        config = forms_config(tmp_path, f"http://lsq.proxied.test:{port}")
        proxies = Proxies({"HTTP_PROXY": proxy_url, "NO_PROXY": "proxied.test"})
        async with (
            make_http_client(proxies=proxies) as http,
            opened_store(tmp_path / "hub.db") as store,
        ):
            (event_id,) = await enqueue(store, "forms", leads("d", 1))
            async with running(config, store, http=http):

                async def tried() -> bool:
                    return (await states(store, [event_id]))[event_id].attempts >= 1 and (
                        (await states(store, [event_id]))[event_id].state == State.RETRYING
                    )

                await wait_for(tried, what="a failed attempt")
            event = (await states(store, [event_id]))[event_id]
    assert seen.lines == []
    assert "lsq.proxied.test" in (event.last_error or "")


async def _held_by_a_proxy(
    tmp_path: Path, scheme: str, login: str, documents: list[dict[str, Any]]
) -> tuple[list[Event], Any]:
    """Send ``documents`` to a sandbox through a forward proxy that wants ops / right, the
    hub's proxy URL carrying ``login`` (``user:password@``, or nothing), until the target is
    paused by the proxy's refusals: the events then (none sent, none dead) and what the
    proxy saw."""
    with (
        sandbox_server() as (sandbox_url, _),
        forward_proxy(login="ops", password="right") as (proxy_url, seen),
    ):
        port = sandbox_url.rsplit(":", 1)[1]
        config = forms_config(tmp_path, f"{scheme}://lsq.proxied.test:{port}")
        url = proxy_url.replace("http://", f"http://{login}")
        proxies = Proxies({"HTTP_PROXY": url, "HTTPS_PROXY": url})
        async with (
            make_http_client(proxies=proxies) as http,
            opened_store(tmp_path / "hub.db") as store,
        ):
            ids = await enqueue(store, "forms", documents)
            async with running(config, store, http=http) as dispatcher:
                lane = dispatcher.lanes["default"]
                await wait_for(lambda: lane.pause_level >= 2, what="refused probes")
            events = list((await states(store, ids)).values())
        assert sandbox_get(sandbox_url, "/_sandbox/leads") == []
    assert not [e for e in events if e.state == State.DEAD]
    return events, seen


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_a_proxy_refusing_the_credentials_pauses_the_target(
    tmp_path: Path, scheme: str
) -> None:
    """A proxy answering 407 (wrong credentials), to a forwarded request (http) or to the
    tunnel request (https: CONNECT), pauses the target as wrong keys do: no lead is dead
    for it, the reason names the proxy's variables, and never the password sent."""
    events, seen = await _held_by_a_proxy(tmp_path, scheme, "ops:wrong@", leads("r", 3))
    assert all(e.attempts == 0 for e in events)  # a pause is not a failure
    errors = [e.last_error or "" for e in events]
    refused = [error for error in errors if "the proxy refused the hub's credentials" in error]
    assert refused and all("407" in e and "HTTPS_PROXY / HTTP_PROXY" in e for e in refused)
    assert all(e in refused or e == "" for e in errors)  # each held event says why
    assert not any("wrong" in error for error in errors)
    first = "CONNECT lsq.proxied.test:" if scheme == "https" else "POST http://lsq.proxied.test:"
    assert seen.lines and all(line.startswith(first) for line in seen.lines)
    assert set(seen.authorizations) == {basic("ops", "wrong")}


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_a_proxy_asking_for_credentials_the_hub_lacks_says_to_give_them(
    tmp_path: Path, scheme: str
) -> None:
    """A proxy answering 407 to a hub whose proxy URL holds no user was worded as credentials
    refused ("check the user and password") where none had been given. It says the proxy
    asks for credentials and where to put them; the target pauses as for refused ones."""
    events, seen = await _held_by_a_proxy(tmp_path, scheme, "", leads("n", 2))
    errors = [e.last_error or "" for e in events]
    missing = [e for e in errors if "the proxy asks for credentials and the hub has none" in e]
    assert missing and all(e in missing or e == "" for e in errors)
    assert all("407" in e and "http://user:password@host:port" in e for e in missing)
    assert not any("refused the hub's credentials" in e for e in errors)
    assert seen.lines and set(seen.authorizations) == {None}


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        (b"", "connection closed without an answer"),
        (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", "an answer that is not well-formed HTTP"),
    ],
    ids=["closed", "not-http"],
)
async def test_a_proxy_that_breaks_the_tunnel_request_is_named(answer: bytes, said: str) -> None:
    """A proxy that closes the request to open an https tunnel (CONNECT) unanswered, or
    answers it in no HTTP, was reported as the target's doing (``connection closed without
    an answer (Server disconnected)``), sending the user to look at LeadSquared's end: the
    reason says it was the proxy. Retried, as a proxy's 502 is."""
    requests: list[bytes] = []

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            requests.append(await reader.readuntil(b"\r\n\r\n"))
            writer.write(answer)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(proxy, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    target = Target(
        name="t",
        url="https://lsq.proxied.test",
        access_key=Secret("u$r-a"),
        secret_key=Secret("s"),
        timeout=5.0,
    )
    proxies = Proxies({"HTTPS_PROXY": f"http://ops:hunter2@127.0.0.1:{port}"})
    try:
        async with make_http_client(proxies=proxies) as http:
            attempt = await LeadSquaredClient(http).capture(target, query={}, body=[])
    finally:
        server.close()
    assert requests and requests[0].startswith(b"CONNECT lsq.proxied.test:443 ")
    assert isinstance(attempt.outcome, Retry)
    reason = attempt.outcome.reason
    assert reason.startswith(f"proxy error (the proxy, asked for a tunnel: {said} ("), reason
    assert "hunter2" not in reason


@pytest.mark.parametrize("reader", ["graph", "linkedin", "hubspot"])
@pytest.mark.parametrize("scheme", ["http", "https"])
@pytest.mark.parametrize("login", [True, False], ids=["wrong-login", "no-login"])
async def test_a_proxy_refusing_a_lead_read_is_worded_as_a_send(
    reader: str, scheme: str, login: bool
) -> None:
    """A proxy's 407 to a lead read (Graph, LinkedIn, HubSpot) was worded generically
    ("proxy error (...407...)", to an https read's tunnel request), or, to a forwarded
    (http) read, killed each lead as rejected. It is retried, worded as a send's 407 is:
    credentials refused, or none given and where to put them; never the password or token."""
    with forward_proxy(login="ops", password="right") as (proxy_url, seen):
        given = proxy_url.replace("http://", "http://ops:wrong@") if login else proxy_url
        proxies = Proxies({"HTTP_PROXY": given, "HTTPS_PROXY": given})
        async with make_http_client(proxies=proxies) as http:
            read = lead_readers("tok-secret")[reader]
            outcome = await read(http, f"{scheme}://api.proxied.test:9")
    first = "CONNECT api.proxied.test:9 " if scheme == "https" else "GET http://api.proxied.test:9/"
    assert seen.lines and seen.lines[0].startswith(first)
    assert isinstance(outcome, FetchRetry), outcome
    assert outcome.kind == "proxy"
    assert "407" in outcome.reason
    if login:
        assert "the proxy refused the hub's credentials" in outcome.reason
        assert "check the user and password in HTTPS_PROXY / HTTP_PROXY" in outcome.reason
    else:
        assert "the proxy asks for credentials and the hub has none to give" in outcome.reason
        assert "http://user:password@host:port" in outcome.reason
    assert "wrong" not in outcome.reason and "tok-secret" not in outcome.reason


async def test_a_407_with_no_proxy_in_the_way_says_none_was_given_credentials() -> None:
    """A 407 that came through no proxy the hub knows of (no HTTPS_PROXY / HTTP_PROXY: an
    intercepting proxy, a gateway) was worded as credentials refused ("check the user and
    password in HTTPS_PROXY / HTTP_PROXY"), for a lead read and a send alike: the hub sent
    none. It says the proxy asks for credentials and where to give them; still a retry for a
    read and a pause for a send."""

    async def answer_407(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                (
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ),
                0,
            )
            await reader.readexactly(length)
            writer.write(
                b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                b'Proxy-Authenticate: Basic realm="corp"\r\nContent-Length: 0\r\n'
                b"Connection: close\r\n\r\n"
            )
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer_407, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    target = Target(
        name="t", url=url, access_key=Secret("ak-407"), secret_key=Secret("sk-407"), timeout=5.0
    )
    try:
        async with make_http_client(proxies=Proxies({})) as http:
            reads = {name: await read(http, url) for name, read in lead_readers("tok").items()}
            attempt = await LeadSquaredClient(http).capture(target, query={}, body=[])
    finally:
        server.close()
    reasons = []
    for outcome in reads.values():
        assert isinstance(outcome, FetchRetry), outcome
        assert outcome.kind == "proxy"
        reasons.append(outcome.reason)
    assert isinstance(attempt.outcome, Pause), attempt.outcome
    reasons.append(attempt.outcome.reason)
    for reason in reasons:
        assert "407" in reason
        assert "the proxy asks for credentials and the hub has none to give" in reason, reason
        assert "refused the hub's credentials" not in reason
