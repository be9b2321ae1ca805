"""``leadhub serve``'s webhook fast path, byte for byte against uvicorn's own path.

Two real ``leadhub serve`` processes on the same configuration, each with its own SQLite
file: one as shipped, one with the fast path switched off (``HubHttpProtocol._webhook``
declines every request, so every request takes uvicorn's path to the same app; a test-only
launcher, no switch of the command). The same byte streams go to both over raw sockets,
and the answers (status line, headers but ``date``, body), whether the hub closed the
connection, and how many events each stored must be the same. A seeded fuzz of mutated
requests checks what must hold whatever the bytes: never a 500, never a traceback in the
log, the hub still answers, and every 200 ``accepted`` is a stored event.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import os
import random
import re
import select
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from hub.commands.protocol import LINGER_QUIET, MAX_HEAD
from tests.support.server import REPO, free_port

TYPEFORM_SECRET = "tf-secret"
CONFIG = {
    "tok.yaml": "kind: endpoint\nname: tok\nsource: token\ntoken: ${HOOK_TOKEN}\n",
    "small.yaml": (
        "kind: endpoint\nname: small\nsource: token\ntoken: ${HOOK_TOKEN}\nmax_body: 64\n"
    ),
    "tf.yaml": "kind: endpoint\nname: tf\nsource: typeform\nsecret: ${TF_SECRET}\n",
}
ENV = {"HOOK_TOKEN": "t", "TF_SECRET": TYPEFORM_SECRET}
#: ``leadhub serve`` with the fast path switched off: uvicorn's own path for every request.
FAST_PATH_OFF = (
    "import sys, hub.commands.protocol as p; p.HubHttpProtocol._webhook = lambda self: None; "
    "from hub.cli import main; sys.exit(main())"
)
HEALTH = b"GET /healthz HTTP/1.1\r\nhost: hub\r\n\r\n"
#: A health check the hub answers, then closes the connection (no wait for more).
HEALTH_CLOSE = b"GET /healthz HTTP/1.1\r\nhost: hub\r\nconnection: close\r\n\r\n"


@dataclass
class Serve:
    """One running ``leadhub serve``."""

    name: str
    port: int
    db: Path
    log: Path
    proc: subprocess.Popen[bytes]

    def stored(self) -> int:
        with sqlite3.connect(self.db) as db:
            count: int = db.execute("SELECT count(*) FROM events").fetchone()[0]
        return count

    def event_ids(self) -> set[int]:
        with sqlite3.connect(self.db) as db:
            return {row[0] for row in db.execute("SELECT id FROM events")}

    def troubles(self) -> list[str]:
        """Log lines with a traceback or at level error."""
        text = self.log.read_text(errors="replace")
        return [
            line[:300]
            for line in text.splitlines()
            if "Traceback" in line or '"level":"error"' in line or "exc_info" in line
        ]


def _start(directory: Path, name: str, *, fast: bool) -> Serve:
    home = directory / name
    home.mkdir()
    config = home / "cfg"
    config.mkdir()
    for file, text in CONFIG.items():
        (config / file).write_text(text)
    port = free_port()
    args = ["serve", "--config-dir", str(config), "--port", str(port), "--role", "web"]
    args += ["--db", f"sqlite:///{home / 'hub.db'}", "--log-json"]
    argv = [sys.executable, "-m", "hub", *args] if fast else [sys.executable, "-c", FAST_PATH_OFF]
    if not fast:
        argv += args
    log = home / "log.txt"
    with log.open("wb") as sink:
        env = {**os.environ, **ENV}
        proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=sink, stderr=subprocess.STDOUT)
    serve = Serve(name, port, home / "hub.db", log, proc)
    # A hang guard, not a measure of start-up time (as wait_http's): on a loaded machine a
    # hub took more than 20 s to answer, and every test of the module errored with it.
    deadline = time.monotonic() + 60
    while True:
        try:
            data, _ = exchange(serve, [HEALTH_CLOSE], idle=1.0)
            if data.startswith(b"HTTP/1.1 200"):
                return serve
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            _stop(serve)
            raise RuntimeError(f"{name} did not start:\n{log.read_text()}")
        time.sleep(0.05)


def _stop(serve: Serve) -> None:
    if serve.proc.poll() is None:
        serve.proc.send_signal(signal.SIGTERM)
        try:
            serve.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            serve.proc.kill()
            serve.proc.wait()


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Serve, Serve]]:
    """The shipped serve (fast path) and the one with the fast path off; neither may log a
    traceback or an error by the end."""
    directory = tmp_path_factory.mktemp("bytes")
    fast = _start(directory, "fast", fast=True)
    try:
        reference = _start(directory, "reference", fast=False)
    except BaseException:
        _stop(fast)
        raise
    try:
        yield fast, reference
    finally:
        _stop(fast)
        _stop(reference)
    assert fast.troubles() == [] and reference.troubles() == []


# -- raw bytes ---------------------------------------------------------------------------------


#: A request's first line (the bytes sent hold no such text but there).
_REQUEST_LINE = re.compile(rb"(?:POST|GET|PUT|HEAD) \S+ HTTP/1\.[01]\r\n")
#: An answer's status line, but a ``100 Continue`` (an answer still follows it).
_FINAL_ANSWER = re.compile(rb"HTTP/1\.[01] (?!100 )\d{3} ")
#: How long an exchange may take at most: a hang guard, never a measure.
HANG_GUARD = 30.0


def exchange(
    serve: Serve,
    parts: list[bytes],
    *,
    gap: float = 0.0,
    end: str = "keep",
    idle: float = 0.3,
    owed: int = 0,
) -> tuple[bytes, bool]:
    """Write ``parts`` (``gap`` seconds apart) on a new connection, then ``end`` it: ``keep``
    it open, ``shut`` (half-close), ``close``, or ``reset``; what the hub answered until it
    closed the connection or, once it has given ``owed`` answers, said nothing for ``idle``
    seconds, and whether it closed it. (A silence before an owed answer is a hub running
    late on a loaded machine, not one done answering: waited out.)"""
    sock = socket.create_connection(("127.0.0.1", serve.port), timeout=5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    got = b""
    try:
        for i, part in enumerate(parts):
            if i and gap:
                time.sleep(gap)
            try:
                sock.sendall(part)
            except OSError:
                break  # the hub closed it (a 400, a 413): read what it said
        if end in ("close", "reset"):
            if end == "reset":  # RST, not FIN
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
            return b"", False
        if end == "shut":
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        sock.settimeout(idle)
        deadline = time.monotonic() + HANG_GUARD
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                if len(_FINAL_ANSWER.findall(got)) < owed:
                    continue
                return got, False
            except OSError:
                return got, True
            if not chunk:
                return got, True
            got += chunk
        return got, False
    finally:
        sock.close()


Response = tuple[str, tuple[tuple[str, str], ...], str]


def responses(data: bytes) -> list[Response]:
    """The responses in ``data``: status line, headers but ``date``, body (ids as ``N``)."""
    out: list[Response] = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        assert sep, f"a response cut short: {data[:200]!r}"
        status, *lines = head.decode("latin-1").split("\r\n")
        fields = [tuple(line.split(": ", 1)) for line in lines]
        headers = tuple((k.lower(), v) for k, v in fields if k.lower() != "date")
        size = int(dict(headers).get("content-length", "0"))
        body = re.sub(r'"id":\d+', '"id":N', rest[:size].decode("latin-1"))
        headers = tuple(
            (k, "N" if k == "content-length" and "N" in body else v) for k, v in headers
        )
        out.append((status, headers, body))
        data = rest[size:]
    return out


_COUNTER = [0]


def lead(pad: int = 0) -> bytes:
    """A JSON lead body, new every call (the token endpoint's delivery id is its hash)."""
    _COUNTER[0] += 1
    return orjson.dumps({"id": f"b{_COUNTER[0]}", "email": "a@example.com", "pad": "x" * pad})


def post(
    body: bytes,
    path: str = "/hooks/tok",
    *headers: str,
    version: str = "HTTP/1.1",
    token: bool = True,
    length: bool = True,
) -> bytes:
    head = [f"POST {path} {version}", "host: hub", "content-type: application/json"]
    head += ["authorization: Bearer t"] if token else []
    head += list(headers)
    head += [f"content-length: {len(body)}"] if length else []
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def typeform() -> bytes:
    """A signed Typeform delivery (the store skims its id)."""
    _COUNTER[0] += 1
    body = orjson.dumps({"event_id": f"tf{_COUNTER[0]}", "event_type": "form_response"})
    mac = hmac.new(TYPEFORM_SECRET.encode(), body, hashlib.sha256).digest()
    signature = "typeform-signature: sha256=" + base64.b64encode(mac).decode()
    return post(body, "/hooks/tf", signature, token=False)


def chunked(body: bytes) -> bytes:
    return b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)


def settled(serve: Serve) -> int:
    """How many events ``serve`` stored once everything sent before is settled: a delivery
    sent on a new connection is answered once stored, and the store writes in order. (The
    count includes that delivery: a difference of two such counts is one too many.)"""
    data, _ = exchange(serve, [post(lead(), "/hooks/tok", "connection: close")], owed=1)
    assert b'"status":"accepted"' in data, data
    return serve.stored()


def differential(
    pair: tuple[Serve, Serve], parts: list[bytes], **how: object
) -> tuple[list[Response], bool, int]:
    """``parts`` sent to both: what the fast path's serve answered, whether it closed the
    connection, and how many events it stored; the reference must come to the same. Each
    request sent is owed an answer, unless the hub closes the connection first: a hub that
    paused longer than the exchange's ``idle`` between two answers (one of the two serves
    running late on a loaded machine) read as one that had stopped answering."""
    owed = len(_REQUEST_LINE.findall(b"".join(parts)))
    seen = []
    for serve in pair:
        before = settled(serve)
        data, closed = exchange(serve, parts, owed=owed, **how)  # type: ignore[arg-type]
        seen.append((responses(data), closed, settled(serve) - before - 1))
    fast, reference = seen
    assert fast == reference, f"fast path: {fast}\nuvicorn's path: {reference}"
    return fast


# -- the same answers --------------------------------------------------------------------------

ACCEPTED = ("HTTP/1.1 200 OK", '{"status":"accepted","id":N}')
HTTP_1_0_KEEP_ALIVE = ("connection: keep-alive",)


def _cases() -> list[tuple[str, list[bytes], dict[str, object]]]:
    small_over = lead(pad=80)
    big = lead(pad=200)
    return [
        ("two posts in one write", [post(lead()) + typeform()], {}),
        ("post, get, post in one write", [post(lead()) + HEALTH + post(lead())], {}),
        ("a forged post then a good one", [post(lead(), token=False) + post(lead())], {}),
        ("a post behind a 413", [post(small_over, "/hooks/small") + post(lead())], {}),
        ("twenty on one connection", [post(lead()) for _ in range(20)], {"gap": 0.01}),
        ("three posts 1 ms apart", [post(lead()) for _ in range(3)], {"gap": 0.001}),
        ("one byte per write", [bytes([b]) for b in post(lead())], {"gap": 0.001}),
        ("slow writes", [post(big)[i : i + 100] for i in range(0, 350, 100)], {"gap": 0.2}),
        ("content-length 0", [post(b"")], {}),
        ("content-length 0, typeform", [post(b"", "/hooks/tf", token=False)], {}),
        ("content-length twice", [post(lead(), "/hooks/tok", "content-length: 3")], {}),
        (
            "content-length and chunked",
            [post(chunked(lead()), "/hooks/tok", "transfer-encoding: chunked")],
            {},
        ),
        (
            "chunked",
            [post(chunked(lead()), "/hooks/tok", "transfer-encoding: chunked", length=False)],
            {},
        ),
        ("expect 100-continue", [post(lead(), "/hooks/tok", "expect: 100-continue")], {}),
        ("HTTP/1.0", [post(lead(), version="HTTP/1.0") + post(lead())], {}),
        (
            "HTTP/1.0 keep-alive",
            [post(lead(), "/hooks/tok", *HTTP_1_0_KEEP_ALIVE, version="HTTP/1.0")],
            {},
        ),
        (
            "connection: close, then a post",
            [post(lead(), "/hooks/tok", "connection: close") + post(lead())],
            {},
        ),
        ("a 48 KiB header line", [post(lead(), "/hooks/tok", "x-long: " + "a" * 49152)], {}),
        ("1000 headers", [post(lead(), "/hooks/tok", *(f"x-h{i}: v" for i in range(1000)))], {}),
        ("the token in the query", [post(lead(), "/hooks/tok?token=t", token=False)], {}),
        ("a percent-encoded name", [post(lead(), "/hooks/to%6B")], {}),
        ("a non-ASCII name, encoded", [post(lead(), "/hooks/t%C3%B6k")], {}),
        ("a non-ASCII name, raw", [post(lead()).replace(b"/hooks/tok", "/hooks/tök".encode())], {}),
        ("an absolute URI", [post(lead(), "http://hub/hooks/tok")], {}),
        ("PUT", [post(lead()).replace(b"POST", b"PUT", 1)], {}),
        ("HEAD", [post(lead()).replace(b"POST", b"HEAD", 1)], {}),
        ("not HTTP", [b"HELLO\r\n\r\n"], {}),
    ]


CASES = _cases()


@pytest.mark.parametrize(("parts", "how"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_the_fast_path_answers_as_uvicorns_path_does(
    pair: tuple[Serve, Serve], parts: list[bytes], how: dict[str, object]
) -> None:
    """Each byte stream: the same answers, the same closing, the same stored events."""
    differential(pair, parts, **how)


# -- found by this audit -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "first",
    [
        post(
            b'{"id":"forged"}', "/hooks/tok", *HTTP_1_0_KEEP_ALIVE, version="HTTP/1.0", token=False
        ),
        post(
            b'{"id":"zipped"}',
            "/hooks/tok",
            "content-encoding: br",
            *HTTP_1_0_KEEP_ALIVE,
            version="HTTP/1.0",
        ),
    ],
    ids=["401", "415"],
)
def test_a_post_behind_one_that_ended_the_connection_is_not_stored(
    pair: tuple[Serve, Serve], first: bytes
) -> None:
    """An HTTP/1.0 request with ``Connection: keep-alive`` is answered ``connection: close``
    (uvicorn keeps no HTTP/1.0 connection), but the parser reads on. When the fast path
    answered it while the write was parsed (a 401, a 415) and closed the connection, the
    POST behind it in that write was taken and stored, with no answer ever sent; uvicorn's
    path never starts it. Now neither does the fast path: nothing stored, one answer."""
    status = first.split(b"\r\n")[0]
    assert status.endswith(b"HTTP/1.0")
    answers, closed, stored = differential(pair, [first + post(lead()) + post(lead())])
    assert len(answers) == 1 and answers[0][0].split()[1] in ("401", "415")
    assert ("connection", "close") in answers[0][1]
    assert (closed, stored) == (True, 0)


@pytest.mark.parametrize(
    "head",
    [
        b"POST /hooks/tok HTTP/1.1\r\nhost: hub\r\nx-long: ",
        b"POST /hooks/tok?a=",
        b"GET /healthz?a=",
    ],
    ids=["a header line", "a URL", "a GET's URL"],
)
def test_a_request_head_without_end_is_a_431_not_memory(
    pair: tuple[Serve, Serve], head: bytes
) -> None:
    """A header line (or URL) that does not end: 431 with a short JSON reason once past
    :data:`MAX_HEAD`, and the connection closed, on both paths; the hub serves on. (uvicorn's
    httptools protocol has no limit: the parser held all of it, and the process grew by the
    size sent, 170 MB for 100 MB, with no answer ever.)"""
    for serve in pair:
        with socket.create_connection(("127.0.0.1", serve.port), timeout=5) as sock:
            sock.sendall(head)
            got = b""
            for _ in range((MAX_HEAD + (1 << 20)) // 16384):  # up to 1 MiB past the limit
                try:
                    sock.sendall(b"a" * 16384)
                except OSError:
                    break  # closed by the hub: its answer is read below
                if select.select([sock], [], [], 0.002)[0]:
                    break
            while chunk := sock.recv(65536):
                got += chunk
        [(status, headers, body)] = responses(got)
        assert status == "HTTP/1.1 431 Request Header Fields Too Large"
        assert ("connection", "close") in headers
        assert orjson.loads(body) == {"error": f"request headers over the {MAX_HEAD}-byte limit"}
        alive, _ = exchange(serve, [HEALTH_CLOSE], owed=1)
        assert alive.startswith(b"HTTP/1.1 200")


#: What a sender still writing when it is refused sends: more than the kernel's buffers on
#: both sides hold (tcp_wmem's and tcp_rmem's defaults: a few MiB), so the send cannot end
#: unless the hub reads it, and more than ingest drains before a 413 (``DRAIN_LIMIT``).
_STILL_SENDING = 24 << 20


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        ("/hooks/small", {}, 413),
        ("/hooks/tok", {"x-long": "a" * (MAX_HEAD + 1024)}, 431),
        ("/healthz", {"x-long": "a" * (MAX_HEAD + 1024)}, 431),
    ],
    ids=["a body over the limit", "a head over the limit", "a GET's head over the limit"],
)
def test_a_sender_still_sending_when_refused_gets_the_answer(
    pair: tuple[Serve, Serve], path: str, headers: dict[str, str], status: int
) -> None:
    """A sender that writes its whole request before it reads (Python's http.client, as
    urllib3 and requests use it) and is refused while it writes (a body declared over the
    endpoint's limit: 413 at once; a head over :data:`MAX_HEAD`: 431) gets the refusal, on
    both paths. The hub closed the connection with the sender's bytes unread: the kernel
    reset it, and the send failed with a reset (or a broken pipe), so the sender never read
    the answer that tells it not to send that again. Now the connection lingers: the answer,
    the hub's end of file, and the rest read and dropped until the sender closes."""
    for serve in pair:
        conn = http.client.HTTPConnection("127.0.0.1", serve.port, timeout=10)
        try:
            conn.request(
                "POST",
                path,
                body=b"x" * _STILL_SENDING,
                headers={"authorization": "Bearer t", **headers},
            )
            answer = conn.getresponse()
            body = answer.read()
        finally:
            conn.close()
        assert answer.status == status, (serve.name, body)
        assert answer.getheader("connection") == "close"
        assert set(orjson.loads(body)) == {"error"}
        alive, _ = exchange(serve, [HEALTH_CLOSE], owed=1)
        assert alive.startswith(b"HTTP/1.1 200")


def test_a_lingering_connection_is_closed_once_its_sender_sends_nothing(
    pair: tuple[Serve, Serve],
) -> None:
    """A connection that lingers after a refusal is let go when its sender neither closes
    nor sends (:data:`LINGER_QUIET`): the hub does not hold it, and its file descriptor, for
    good. While it lingers the sender's bytes are read; once the hub has closed it, they are
    refused (the kernel resets the connection)."""
    for serve in pair:
        with socket.create_connection(("127.0.0.1", serve.port), timeout=5) as sock:
            sock.sendall(b"POST /hooks/tok HTTP/1.1\r\nhost: hub\r\nx-long: ")
            while not select.select([sock], [], [], 0.002)[0]:  # a line that never ends
                sock.sendall(b"a" * 16384)
            got = b""
            while chunk := sock.recv(65536):  # the answer, then the hub's end of file
                got += chunk
            [(status, _, _)] = responses(got)
            assert status == "HTTP/1.1 431 Request Header Fields Too Large"
            sock.sendall(b"a" * 1024)  # read and dropped: the hub lingers

            deadline = time.monotonic() + 10 * LINGER_QUIET + 30
            while not _closed_by_hub(sock):
                assert time.monotonic() < deadline, f"{serve.name} still holds the connection"


def _closed_by_hub(sock: socket.socket) -> bool:
    """Whether the hub has closed ``sock``'s connection, looked at after a quiet
    :data:`LINGER_QUIET` and a half (each byte sent starts the hub's wait over): a byte sent
    to a closed socket is taken by its kernel, which resets the connection, so the next
    send fails."""
    time.sleep(1.5 * LINGER_QUIET)
    try:
        sock.sendall(b"a")
        time.sleep(0.05)
        sock.sendall(b"a")
    except OSError:
        return True
    return False


# -- a sender that goes away -----------------------------------------------------------------------


@pytest.mark.parametrize("end", ["close", "shut", "reset"])
@pytest.mark.parametrize("cut", ["mid-body", "after the body", "length over the body"])
def test_a_sender_that_goes_away_is_never_answered_200_and_lost(
    pair: tuple[Serve, Serve], end: str, cut: str
) -> None:
    """Closed, half-closed or reset mid-body, right after the body, or after a body shorter
    than its Content-Length: on both paths the delivery is stored or not, any 200 it got is
    a stored event, and the hub serves on (its log free of tracebacks, checked at the end)."""
    body = lead()
    request = post(body)
    if cut == "mid-body":
        request = request[:-5]
    elif cut == "length over the body":
        request = request.replace(b"content-length: %d" % len(body), b"content-length: 999")
    for serve in pair:
        before = settled(serve)
        data, _ = exchange(serve, [request], end=end)
        stored = settled(serve) - before - 1
        if cut == "after the body":
            assert stored in (0, 1)
        else:
            assert stored == 0
        for status, _, answer in responses(data):
            if status.startswith("HTTP/1.1 200"):
                assert stored == 1, answer


# -- fuzz --------------------------------------------------------------------------------------

INTERESTING = [
    b"transfer-encoding: chunked",
    b"content-length: 0",
    b"content-length: 5",
    b"expect: 100-continue",
    b"connection: close",
    b"connection: keep-alive",
    b"connection: upgrade",
    b"upgrade: websocket",
    b"content-encoding: gzip",
    b"authorization: Bearer x",
    b"content-type: text/plain",
    b"content-length: 99999999",
]
PATHS = ["/hooks/tok", "/hooks/small", "/hooks/tf", "/hooks/to%6b", "/hooks/", "/healthz"]


def _fuzzed(rng: random.Random) -> tuple[list[bytes], float, str]:
    if rng.random() < 0.2:
        request = typeform()
    else:
        path = rng.choice(PATHS)
        version = rng.choice(["HTTP/1.1", "HTTP/1.1", "HTTP/1.0"])
        body = lead(pad=rng.choice([0, 10, 60, 500]))
        if rng.random() < 0.15:
            request = post(chunked(body), path, "transfer-encoding: chunked", length=False)
        else:
            request = post(body, path, version=version)
    for _ in range(rng.choice([0, 1, 1, 2, 3])):
        at = rng.randrange(len(request) + 1)
        op = rng.randrange(7)
        if op == 0 and request:
            at = min(at, len(request) - 1)
            request = request[:at] + bytes([rng.randrange(256)]) + request[at + 1 :]
        elif op == 1:
            request = request[:at] + rng.randbytes(rng.randint(1, 4)) + request[at:]
        elif op == 2:
            request = request[:at] + request[at + rng.randint(1, 20) :]
        elif op == 3:
            line = request.find(b"\r\n") + 2
            request = request[:line] + rng.choice(INTERESTING) + b"\r\n" + request[line:]
        elif op == 4:
            request += rng.choice([HEALTH, post(lead()), typeform()])
        elif op == 5:
            request = request[:at]
        else:
            request = re.sub(
                rb"content-length: \d+",
                lambda m: b"content-length: %d" % max(0, int(m[0][16:]) + rng.randint(-3, 3)),
                request,
                count=1,
            )
    parts = [request]
    if rng.random() < 0.4 and len(request) > 2:
        cuts = sorted(rng.sample(range(1, len(request)), min(len(request) - 1, rng.randint(1, 5))))
        parts = [request[a:b] for a, b in zip([0, *cuts], [*cuts, len(request)], strict=True)]
    end = rng.choice(["keep", "keep", "keep", "shut", "close", "reset"])
    return parts, rng.choice([0.0, 0.0, 0.002]), end


@pytest.mark.parametrize("seed", [1, 2])
def test_fuzzed_byte_streams_never_break_the_fast_path(
    pair: tuple[Serve, Serve], seed: int
) -> None:
    """150 mutated requests a seed (bit flips, inserted and cut bytes, odd headers, a second
    request behind, bad lengths, split writes, half-closes and resets) on the fast path:
    never a 500, the hub answers after each, and every 200 ``accepted`` it was seen to send
    is a stored event (no traceback in the log: checked at the end)."""
    fast, _ = pair
    rng = random.Random(20261129 + seed)
    accepted: list[int] = []
    for _ in range(150):
        parts, gap, end = _fuzzed(rng)
        data, _ = exchange(fast, parts, gap=gap, end=end, idle=0.04)
        while data:
            head, sep, rest = data.partition(b"\r\n\r\n")
            length = re.search(rb"content-length: (\d+)", head)
            size = int(length[1]) if length else 0
            if not sep or len(rest) < size:
                break  # the rest came after the wait
            assert not head.startswith(b"HTTP/1.1 5"), (parts, head)
            if head.startswith(b"HTTP/1.1 200") and b'"accepted"' in rest[:size]:
                answer = orjson.loads(rest[:size])
                accepted += [answer["id"], *answer.get("ids", [])]
            data = rest[size:]
        alive, _ = exchange(fast, [HEALTH_CLOSE], owed=1)
        assert alive.startswith(b"HTTP/1.1 200"), f"no answer after {parts!r}"
    assert accepted, "the fuzz should get some deliveries through"
    assert set(accepted) <= fast.event_ids()
