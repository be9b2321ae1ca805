"""Outbound HTTP against unusual or misbehaving servers: huge or endless answers, compressed
answers (and ones that lie about it), byte order marks, chunked and close-delimited bodies,
redirects; for Lead.Capture and the three lead readers, over real sockets on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import os
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog

from hub.config.models import Target
from hub.dispatch.fetch import Fetched, FetchOutcome, FetchRetry
from hub.dispatch.graph import GraphClient
from hub.dispatch.leadsquared import (
    CAPTURE_PATH,
    PRIVATE_CA,
    Delivered,
    LeadSquaredClient,
    Outcome,
    Pause,
    Retry,
)
from hub.dispatch.transport import make_http_client
from hub.secrets import Secret
from hub.store.models import Event, State
from tests.dispatch.support import (
    KEYS,
    Read,
    enqueue,
    forms_config,
    graph_options,
    lead_readers,
    leads,
    opened_store,
    running,
    states,
    wait_for,
)

ACCESS, SECRET, TOKEN = "u$r-access-edge", "s3cret-edge", "EAAB-token-edge-42"
SUCCESS = b'{"Status":"Success","Message":{"Id":"a","RelatedId":"lead-1","IsCreated":true}}'
LEAD = b'{"id":"1","field_data":[{"name":"email","values":["a@example.com"]}]}'
Factory = Callable[[], httpx.AsyncClient]
Writer = Callable[[asyncio.StreamWriter], Awaitable[None]]


def _answer(status: str, body: bytes, *headers: str) -> bytes:
    head = "".join(f"{h}\r\n" for h in (f"HTTP/1.1 {status}", *headers))
    return f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body


async def _read_request(reader: asyncio.StreamReader) -> bool:
    """Read one request (head and Content-Length body); False when the client closed."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return False
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            await reader.readexactly(int(value))
    return True


class Canned:
    """A server answering every request with ``answer`` (bytes written as they are, or a
    coroutine writing to the socket); ``close`` ends each connection after its answer."""

    def __init__(self, answer: bytes | Writer, *, close: bool = False) -> None:
        self.answer = answer
        self.close = close
        self.requests = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while await _read_request(reader):
                self.requests += 1
                if isinstance(self.answer, bytes):
                    writer.write(self.answer)
                    await writer.drain()
                else:
                    await self.answer(writer)
                if self.close:
                    break
        writer.close()


@contextlib.asynccontextmanager
async def canned(
    answer: bytes | Writer,
    *,
    close: bool = False,
    host: str = "127.0.0.1",
    tls: ssl.SSLContext | None = None,
) -> AsyncIterator[tuple[str, Canned]]:
    """A :class:`Canned` server on ``host`` (over ``tls`` if given): (its base URL, the
    server)."""
    fake = Canned(answer, close=close)
    server = await asyncio.start_server(fake.handle, host, 0, ssl=tls)
    port = server.sockets[0].getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    try:
        yield f"{'https' if tls else 'http'}://{shown}:{port}", fake
    finally:
        server.close()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(server.wait_closed(), 2)


async def _endless(writer: asyncio.StreamWriter) -> None:
    """A chunked 200 that never ends: 1 MB chunks until the client goes away."""
    writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    piece = b"%x\r\n%s\r\n" % (1 << 20, b"y" * (1 << 20))
    for _ in range(10_000):  # 10 GB: far past any bound, and still an end
        writer.write(piece)
        await writer.drain()


async def _huge(writer: asyncio.StreamWriter) -> None:
    """A 200 announcing 300 MB, sent until the client goes away."""
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 300000000\r\n\r\n")
    for _ in range(300):
        writer.write(b"x" * 1_000_000)
        await writer.drain()


@pytest.fixture(params=["hub", "httpx-default"])
def http_factory(request: pytest.FixtureRequest) -> Factory:
    """The dispatcher's client, and httpx's default transport (the same outcomes)."""
    return make_http_client if request.param == "hub" else httpx.AsyncClient


async def _capture(url: str, factory: Factory = make_http_client) -> Outcome:
    target = Target(
        name="t", url=url, access_key=Secret(ACCESS), secret_key=Secret(SECRET), timeout=5.0
    )
    async with factory() as http:
        attempt = await LeadSquaredClient(http).capture(
            target, query={}, body=[{"Attribute": "EmailAddress", "Value": "a@example.com"}]
        )
    return attempt.outcome


READS = lead_readers(TOKEN, read_timeout=5.0)
READERS = pytest.mark.parametrize("read", list(READS.values()), ids=list(READS))


async def _fetch(read: Read, url: str, factory: Factory = make_http_client) -> FetchOutcome:
    async with factory() as http:
        return await read(http, url)


# --- answers too large to be a lead's -------------------------------------------------------


@pytest.mark.parametrize("writer", [_huge, _endless], ids=["300MB", "endless"])
async def test_a_huge_capture_answer_is_refused_unread_and_retried(writer: Writer) -> None:
    """A url serving 300 MB, or a chunked stream without end, was read whole into memory
    (the endless one until the process died): it is refused past 4 MiB and retried (what
    it said is unknown; Lead.Capture is an upsert), the reason saying why."""
    async with canned(writer) as (url, _):
        outcome = await _capture(url)
    assert outcome == Retry(
        "the answer (HTTP 200) is larger than 4 MiB: not read (does the url name the right API?)"
    )


@READERS
@pytest.mark.parametrize("writer", [_huge, _endless], ids=["300MB", "endless"])
async def test_a_huge_lead_read_is_refused_unread_and_retried(read: Read, writer: Writer) -> None:
    """The same for a lead read: a ``bad_answer`` retry."""
    async with canned(writer) as (url, _):
        outcome = await _fetch(read, url)
    assert isinstance(outcome, FetchRetry)
    assert outcome.kind == "bad_answer"
    assert "larger than 4 MiB" in outcome.reason


async def test_a_gzip_bomb_is_refused_past_the_bound_once_decoded() -> None:
    """8 KB of gzip that decodes to 8 MiB: the bound holds on the decoded body too."""
    bomb = gzip.compress(b"\0" * (8 << 20))
    async with canned(_answer("200 OK", bomb, "Content-Encoding: gzip")) as (url, _):
        outcome = await _capture(url)
    assert isinstance(outcome, Retry)
    assert "larger than 4 MiB" in outcome.reason


async def test_the_connection_of_a_refused_answer_is_not_reused() -> None:
    """After an answer refused mid-body, the next call on the same client gets a whole
    answer of its own (the rest of the refused body is never read as the next answer)."""
    calls = 0

    async def first_huge(writer: asyncio.StreamWriter) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            await _huge(writer)
        else:
            writer.write(_answer("200 OK", SUCCESS))

    async with canned(first_huge) as (url, _), make_http_client() as http:
        target = Target(name="t", url=url, access_key=Secret(ACCESS), secret_key=Secret(SECRET))
        client = LeadSquaredClient(http)
        first = await client.capture(target, query={}, body=[])
        second = await client.capture(target, query={}, body=[])
    assert isinstance(first.outcome, Retry)
    assert second.outcome == Delivered(lead_id="lead-1", created=True)


# --- encodings, framing, byte order marks ---------------------------------------------------


def _chunked(body: bytes) -> bytes:
    """A 200 sending ``body`` in chunks of 9 bytes."""
    pieces = [body[i : i + 9] for i in range(0, len(body), 9)]
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces)
    return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"


def _raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


@pytest.mark.parametrize(
    "answer",
    [
        _answer("200 OK", gzip.compress(SUCCESS), "Content-Encoding: gzip"),
        _answer("200 OK", zlib.compress(SUCCESS), "Content-Encoding: deflate"),
        _answer("200 OK", _raw_deflate(SUCCESS), "Content-Encoding: deflate"),
        _answer("200 OK", SUCCESS, "Content-Encoding: identity"),
        _chunked(SUCCESS),
        _answer("200 OK", b"\xef\xbb\xbf" + SUCCESS),
    ],
    ids=["gzip", "deflate", "raw-deflate", "identity", "chunked", "bom"],
)
async def test_encoded_chunked_and_bom_successes_are_delivered(
    answer: bytes, http_factory: Factory
) -> None:
    """Compressed, chunked and BOM-prefixed successes are read as successes. A UTF-8 byte
    order mark (which .NET services may write) made a Success an unexpected body, retried
    until the event gave up, each retry creating or updating the lead again."""
    async with canned(answer) as (url, _):
        outcome = await _capture(url, http_factory)
    assert outcome == Delivered(lead_id="lead-1", created=True)


async def test_a_close_delimited_http10_answer_is_delivered(http_factory: Factory) -> None:
    """HTTP/1.0 without a Content-Length: the body ends when the server closes."""
    answer = b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" + SUCCESS
    async with canned(answer, close=True) as (url, _):
        outcome = await _capture(url, http_factory)
    assert outcome == Delivered(lead_id="lead-1", created=True)


async def test_a_body_that_claims_gzip_but_is_not_is_retried(http_factory: Factory) -> None:
    """``Content-Encoding: gzip`` over plain text: httpx's DecodingError escaped the client
    (which promises never to raise on I/O) to the worker; now a retry naming the cause."""
    answer = _answer("200 OK", SUCCESS, "Content-Encoding: gzip")
    async with canned(answer) as (url, _):
        outcome = await _capture(url, http_factory)
    assert isinstance(outcome, Retry)
    assert outcome.reason.startswith(
        "an answer that does not decode as its Content-Encoding says ("
    ), outcome.reason


async def test_an_encoding_the_hub_did_not_ask_for_is_retried() -> None:
    """The dispatcher asks for gzip or deflate only (both decoded under the bound); a body
    in another encoding is not read as if it were plain."""
    answer = _answer("200 OK", b"\x1b\x00\x00garbage", "Content-Encoding: br")
    async with canned(answer) as (url, _):
        outcome = await _capture(url)
    assert isinstance(outcome, Retry)
    assert "'br', which the hub did not ask for" in outcome.reason


@READERS
@pytest.mark.parametrize(
    ("answer", "fetched"),
    [
        (_answer("200 OK", b"\xef\xbb\xbf" + LEAD), True),
        (_answer("200 OK", gzip.compress(LEAD), "Content-Encoding: gzip"), True),
        (_answer("200 OK", LEAD, "Content-Encoding: gzip"), False),
        (_answer("200 OK", b"<html><body>Service Unavailable</body></html>"), False),
        (_answer("200 OK", b'{"id": "1", "field'), False),
    ],
    ids=["bom", "gzip", "false-gzip", "html", "truncated-json"],
)
async def test_lead_reads_of_odd_answers(
    read: Read, answer: bytes, fetched: bool, http_factory: Factory
) -> None:
    """A lead with a BOM or gzipped is read; a false gzip (which raised out of the reader),
    an HTML page or broken JSON in a 200 is a ``bad_answer`` retry, never a crash."""
    async with canned(answer) as (url, _):
        outcome = await _fetch(read, url, http_factory)
    if fetched:
        assert isinstance(outcome, Fetched), outcome
        assert outcome.lead["id"] == "1"
    else:
        assert isinstance(outcome, FetchRetry), outcome
        assert outcome.kind == "bad_answer"


# --- redirects ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "status",
    ["301 Moved Permanently", "302 Found", "307 Temporary Redirect", "308 Permanent Redirect"],
)
async def test_a_redirected_capture_pauses_the_target_naming_where(
    status: str, http_factory: Factory
) -> None:
    """A redirect was retried as an unexpected body until the lead gave up, saying neither
    that nor where. It pauses the target (its url is wrong for every lead), naming where it
    points without its query; it is not followed (the keys would go along)."""
    location = f"Location: https://api-in21.leadsquared.com{CAPTURE_PATH}?accessKey={ACCESS}"
    async with canned(_answer(status, b"", location)) as (url, fake):
        outcome = await _capture(url, http_factory)
    assert isinstance(outcome, Pause)
    code = status.split()[0]
    assert outcome.reason.startswith(
        f"HTTP {code}: the target's url redirects to "
        f"https://api-in21.leadsquared.com{CAPTURE_PATH} (query not shown)"
    ), outcome.reason
    assert ACCESS not in outcome.reason and SECRET not in outcome.reason
    assert fake.requests == 1


async def test_a_relative_redirect_is_shown_whole(http_factory: Factory) -> None:
    """A relative Location is named as the absolute URL it means."""
    async with canned(_answer("308 Permanent Redirect", b"", "Location: /moved")) as (url, _):
        outcome = await _capture(url, http_factory)
    assert isinstance(outcome, Pause)
    assert f"redirects to {url}/moved;" in outcome.reason


@pytest.mark.parametrize(
    ("status", "location", "shown"),
    [
        (
            "300 Multiple Choices",
            f"Location: https://api-in21.leadsquared.com{CAPTURE_PATH}?accessKey={ACCESS}",
            "HTTP 300 Multiple Choices (Location: "
            f"https://api-in21.leadsquared.com{CAPTURE_PATH} (query not shown)): ",
        ),
        ("300 Multiple Choices", None, "HTTP 300 Multiple Choices: "),
        ("304 Not Modified", None, "HTTP 304 Not Modified: "),
        ("399 Whatever", "Location: /elsewhere", "HTTP 399 (Location: {url}/elsewhere): "),
    ],
    ids=["300-location", "300", "304", "399-relative"],
)
async def test_any_other_3xx_to_a_capture_pauses_the_target(
    status: str, location: str | None, shown: str, http_factory: Factory
) -> None:
    """A 300 or 304 (any 3xx that is no redirect) was retried as an unexpected body until the
    lead gave up; Lead.Capture never answers a POST with one, so the url names something
    else, for every lead: it pauses the target as a redirect does, saying what to fix and
    showing the Location (without its query) when there is one."""
    headers = [location] if location else []
    async with canned(_answer(status, b"", *headers)) as (url, fake):
        outcome = await _capture(url, http_factory)
    assert isinstance(outcome, Pause), outcome
    assert outcome.reason.startswith(
        shown.format(url=url) + "not an answer Lead.Capture gives to a POST, so the target's "
        "url does not name it; set the target's url to the account's LeadSquared API host "
        "(https://), then reload the hub"
    ), outcome.reason
    assert ACCESS not in outcome.reason and SECRET not in outcome.reason
    assert fake.requests == 1


@READERS
async def test_a_redirected_lead_read_is_retried_naming_where(
    read: Read, http_factory: Factory
) -> None:
    """A redirected read killed the lead (``HTTP 301: (empty body)``, dead) for what is a
    setting; it is retried for a human to fix it, naming where (the token the read sent,
    copied into the Location's query, is not shown)."""
    location = f"Location: https://api.example.com/v2/1?access_token={TOKEN}&x=1"
    async with canned(_answer("301 Moved Permanently", b"", location)) as (url, fake):
        outcome = await _fetch(read, url, http_factory)
    assert isinstance(outcome, FetchRetry), outcome
    assert outcome.kind == "config"
    assert "redirects the read to https://api.example.com/v2/1 (query not shown)" in outcome.reason
    assert TOKEN not in outcome.reason
    assert fake.requests == 1


async def _paused_by(
    tmp_path: Path, answer: bytes
) -> tuple[list[Event], list[MutableMapping[str, Any]]]:
    """Three leads sent through the dispatcher to a target answering ``answer``, until its
    lane has refused two probes: the events as they are then, and the log lines."""
    async with canned(answer) as (url, _):
        config = forms_config(tmp_path, url)
        async with opened_store(tmp_path / "hub.db") as store:
            ids = await enqueue(store, "forms", leads("r", 3))
            merge = structlog.contextvars.merge_contextvars
            with structlog.testing.capture_logs(processors=[merge]) as logs:
                async with running(config, store) as dispatcher:
                    lane = dispatcher.lanes["default"]
                    await wait_for(lambda: lane.pause_level >= 2, what="refused probes")
                    events = await states(store, ids)
    # none dead, none delivered, no attempt counted: the leads wait
    assert not [e for e in events.values() if e.state in (State.DEAD, State.DELIVERED)]
    assert all(e.attempts == 0 for e in events.values() if e.state != State.SENDING)
    return list(events.values()), logs


async def test_a_redirecting_target_is_paused_and_its_leads_wait(tmp_path: Path) -> None:
    """Through the dispatcher: a target moved to https pauses (logged as target_paused with
    where it points), its leads wait with that as their last error, none dead, no attempt
    counted, and neither key in any log line."""
    location = f"Location: https://api-in21.leadsquared.com{CAPTURE_PATH}"
    events, logs = await _paused_by(tmp_path, _answer("301 Moved Permanently", b"", location))
    errors = [e.last_error or "" for e in events]
    assert any("redirects to https://api-in21.leadsquared.com" in error for error in errors)
    paused = [entry for entry in logs if entry["event"] == "target_paused"]
    assert paused and "HTTP 301" in paused[0]["reason"]
    assert not any(key in repr(logs) for key in KEYS.values())


async def test_a_target_answering_304_is_paused_and_its_leads_wait(tmp_path: Path) -> None:
    """Through the dispatcher: a target whose url answers 304 Not Modified pauses (its leads
    were each retried, an attempt counted every time, until they gave up and died); they now
    wait, none dead, no attempt counted, the pause's reason their last error."""
    events, logs = await _paused_by(tmp_path, _answer("304 Not Modified", b""))
    errors = [e.last_error or "" for e in events]
    assert any("HTTP 304 Not Modified: " in error for error in errors), errors
    paused = [entry for entry in logs if entry["event"] == "target_paused"]
    assert paused and paused[0]["reason"].startswith("HTTP 304 Not Modified: ")


@READERS
async def test_a_408_to_a_lead_read_is_retried(read: Read) -> None:
    """A 408 (a gateway that timed out reading the request, on a slow network) made the
    event dead as any other refusal: nothing is wrong with the lead. It is retried."""
    answer = _answer("408 Request Timeout", b"Request Timeout", "Connection: close")
    async with canned(answer, close=True) as (url, _):
        outcome = await _fetch(read, url)
    assert isinstance(outcome, FetchRetry), outcome
    assert outcome.reason.startswith("HTTP 408: "), outcome.reason


# --- connecting: names, certificates, IPv6; what a reason may show --------------------------


async def test_a_name_that_does_not_resolve_is_named(http_factory: Factory) -> None:
    """An unresolvable host was ``cannot connect (Cannot connect to host ... [Name or service
    not known])``: the reason now says the name does not resolve."""
    outcome = await _capture("http://no-such-host.invalid", http_factory)
    assert isinstance(outcome, Retry)
    assert outcome.reason.startswith("the host name no-such-host.invalid does not resolve ("), (
        outcome.reason
    )


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    """A server TLS context with a self-signed certificate for 127.0.0.1 (made by openssl)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    directory = tmp_path_factory.mktemp("tls")
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", "key.pem", "-out", "cert.pem", "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        cwd=directory,
        check=True,
        capture_output=True,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(directory / "cert.pem", directory / "key.pem")
    return context


async def test_a_self_signed_certificate_is_named(
    self_signed: ssl.SSLContext, http_factory: Factory
) -> None:
    """A target whose certificate does not verify was a generic ``cannot connect (...)``; the
    reason now says the certificate verification failed, and why. Retried: a certificate is
    renewed without the hub's help."""
    async with canned(_answer("200 OK", SUCCESS), tls=self_signed) as (url, _):
        outcome = await _capture(url, http_factory)
    assert outcome == Retry(
        f"TLS certificate verification failed for 127.0.0.1 (self-signed certificate){PRIVATE_CA}"
    )


@pytest.fixture(scope="module")
def private_ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ssl.SSLContext]:
    """A private CA's certificate file, and a server TLS context with a certificate for
    127.0.0.1 that CA signed (made by openssl)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    directory = tmp_path_factory.mktemp("ca")
    for command in (
        "req -x509 -newkey rsa:2048 -nodes -days 1 -keyout ca.key -out ca.pem -subj /CN=CA",
        "req -newkey rsa:2048 -nodes -keyout key.pem -out host.csr -subj /CN=127.0.0.1",
        "x509 -req -in host.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 "
        "-out cert.pem -extfile san.ext",
    ):
        (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
        subprocess.run(
            ["openssl", *command.split()], cwd=directory, check=True, capture_output=True
        )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(directory / "cert.pem", directory / "key.pem")
    return directory / "ca.pem", context


#: Sends one capture to the url in argv[1] with the dispatcher's client, prints its outcome.
_CAPTURE_SCRIPT = """
import asyncio, sys
from hub.config.models import Target
from hub.dispatch.leadsquared import LeadSquaredClient
from hub.dispatch.transport import make_http_client
from hub.secrets import Secret

async def main():
    target = Target(name="t", url=sys.argv[1], access_key=Secret("a"), secret_key=Secret("s"))
    async with make_http_client() as http:
        attempt = await LeadSquaredClient(http).capture(target, query={}, body=[])
    print(repr(attempt.outcome))

asyncio.run(main())
"""


async def test_a_private_ca_is_named_and_trusted_through_ssl_cert_file(
    private_ca: tuple[Path, ssl.SSLContext],
) -> None:
    """A target (a gateway, a proxy re-signing TLS) whose certificate a private CA signed
    failed as ``TLS certificate verification failed for ... (unable to get local issuer
    certificate)``, nothing saying how to trust it: the reason names SSL_CERT_FILE, and a
    hub started with it pointing at the CA delivers."""
    ca_file, context = private_ca
    async with canned(_answer("200 OK", SUCCESS), tls=context) as (url, _):
        outcome = await _capture(url)
        assert outcome == Retry(
            "TLS certificate verification failed for 127.0.0.1 (unable to get local issuer "
            f"certificate){PRIVATE_CA}"
        )
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _CAPTURE_SCRIPT,
            url,
            env={**os.environ, "SSL_CERT_FILE": str(ca_file)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    assert out.decode().strip() == repr(Delivered(lead_id="lead-1", created=True))


def _ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6(), reason="no IPv6 loopback here")
async def test_an_ipv6_loopback_target_is_delivered(http_factory: Factory) -> None:
    """``http://[::1]:PORT`` works as a target url (and is loopback: never proxied)."""
    async with canned(_answer("200 OK", SUCCESS), host="::1") as (url, _):
        outcome = await _capture(url, http_factory)
    assert outcome == Delivered(lead_id="lead-1", created=True)


async def test_a_broken_answer_keeps_the_url_out_of_the_reason() -> None:
    """aiohttp's text for a broken answer names the request's URL, and with it the Graph
    token in its query, percent-encoded (``|`` as ``%7C``) where the reason's scrubbing of
    the token missed it: the last error showed the token. The URL is left out."""
    token = "123456|app-secret-edge"
    async with canned(b"HTTP/1.1 abc Broken\r\n\r\n", close=True) as (url, _):
        async with make_http_client() as http:
            outcome = await GraphClient(http).fetch_lead(graph_options(url, token, 5.0), "1")
    assert isinstance(outcome, FetchRetry)
    assert "access_token" not in outcome.reason and "app-secret-edge" not in outcome.reason


@contextlib.asynccontextmanager
async def served(
    handle: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[int]:
    """A server on loopback running ``handle`` for each connection: its port. Each
    connection is closed and its handler ended before the test goes on (a handler left
    pending when the loop closes is an unraisable warning in a later test)."""
    handlers: list[tuple[asyncio.Task[None], asyncio.StreamWriter]] = []

    async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.append((task, writer))
        with contextlib.suppress(ConnectionError):
            await handle(reader, writer)

    server = await asyncio.start_server(run, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for task, writer in handlers:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 5)
            with contextlib.suppress(Exception):
                await writer.wait_closed()


async def test_a_connect_timeout_keeps_the_url_out_of_the_reason() -> None:
    """A server that takes the connection and never answers TLS's handshake (or a host that
    never answers the connection) was ``connect timeout (Connection timeout to host <URL>)``,
    aiohttp's text naming the request's whole URL: a Graph read's access_token with it,
    percent-encoded (an app token's ``|`` as ``%7C``) where the reason's scrubbing missed it,
    in the event's last error and its log line. The URL is left out."""
    token = "123456|app-secret-edge"

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up and closes

    async with served(silent) as port:
        async with make_http_client() as http:
            options = graph_options(f"https://127.0.0.1:{port}", token, 0.5)
            outcome = await GraphClient(http).fetch_lead(options, "1")
    assert isinstance(outcome, FetchRetry)
    assert outcome.reason.startswith("connect timeout ("), outcome.reason
    assert "app-secret-edge" not in outcome.reason and "access_token" not in outcome.reason


async def _reset_mid_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Half an answer to the request, then a reset (RST, not a clean close)."""
    await _read_request(reader)
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n" + SUCCESS[:20])
    await writer.drain()
    await asyncio.sleep(0.1)  # the half answer read first, as a server failing mid-way
    writer.get_extra_info("socket").setsockopt(
        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
    )
    writer.transport.abort()


async def test_a_connection_reset_mid_answer_is_named_a_reset() -> None:
    """A server that reset the connection halfway through its answer was ``connection
    closed without an answer (...)``, as a clean close is: the reason says reset."""
    async with served(_reset_mid_answer) as port:
        outcome = await _capture(f"http://127.0.0.1:{port}")
    assert isinstance(outcome, Retry)
    assert outcome.reason.startswith("connection reset while the answer was read ("), outcome.reason


@pytest.mark.parametrize(
    "answer",
    [
        SUCCESS,  # no status line at all (HTTP/0.9, or not HTTP)
        b"SSH-2.0-OpenSSH_9.6\r\n",  # the url's port is another service's
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 80\r\nContent-Length: 5\r\n\r\n" + SUCCESS,
    ],
    ids=["no-status-line", "ssh-banner", "bad-chunk", "two-lengths"],
)
async def test_an_answer_that_is_not_http_is_named_so(answer: bytes) -> None:
    """An answer aiohttp cannot parse was ``connection closed without an answer (400, Bad
    status line:\\n ...)``: the server did answer, the 400 was aiohttp's own code (read as
    the server's status) and the reason ran over several lines. It says what it was now,
    on one line."""

    async def answered(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(answer)
        await writer.drain()

    async with served(answered) as port:
        outcome = await _capture(f"http://127.0.0.1:{port}")
    assert isinstance(outcome, Retry)
    assert outcome.reason.startswith("an answer that is not well-formed HTTP ("), outcome.reason
    assert "400" not in outcome.reason and "\n" not in outcome.reason, outcome.reason


async def test_https_to_a_plain_http_port_says_so() -> None:
    """A url written https:// for a port that answers in plain http (a gateway's) failed as
    ``TLS handshake with 127.0.0.1 failed (WRONG_VERSION_NUMBER)``, OpenSSL's word for it:
    the reason says what it means and what to write."""

    async def plain(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)  # the ClientHello, answered as an HTTP server answers it
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()

    async with served(plain) as port:
        outcome = await _capture(f"https://127.0.0.1:{port}")
    assert outcome == Retry(
        "TLS handshake with 127.0.0.1 failed (WRONG_VERSION_NUMBER): the server does not "
        "speak TLS at that port; if it is a plain-http one, the url is http://, not https://"
    )


async def test_a_server_echoing_the_read_request_keeps_the_token_out_of_the_reason() -> None:
    """A graph_url naming a server that echoes the request back (a debugging echo service,
    a port that is not Graph's): its first line, quoted whole as a bad status line, showed
    the app token percent-encoded (``|`` as ``%7C``), which the reason's scrubbing of the
    token as sent missed. It is masked in both forms."""
    token = "123456|app-secret-edge"

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.readuntil(b"\r\n\r\n"))
        await writer.drain()

    async with served(echo) as port:
        options = replace(graph_options(f"http://127.0.0.1:{port}", token, 5.0), fields=("id",))
        async with make_http_client() as http:
            outcome = await GraphClient(http).fetch_lead(options, "1")
    assert isinstance(outcome, FetchRetry)
    assert "access_token=**********" in outcome.reason, outcome.reason
    assert "app-secret-edge" not in outcome.reason
