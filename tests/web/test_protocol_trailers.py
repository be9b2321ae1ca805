"""``leadhub serve``'s protocol bounds a chunked body's trailer fields as it bounds a head.

Found by a hostile sender: after the last chunk of a chunked body come trailer fields, which
uvicorn's protocol appended to the request's headers without limit (the 64 KiB head limit
ended with the head). 50 MB of short trailer fields, sent to any path without a credential,
grew the hub by 820 MB, kept after the connection closed; one trailer line that never ended
grew it by the size sent. Trailer fields over :data:`MAX_HEAD` are now answered 431 and the
connection closed, however they are split across reads; a few are read and dropped.

Real sockets to a hub on serve's protocol (a chunked body takes uvicorn's path to ingest).
"""

from __future__ import annotations

import orjson
import pytest

from hub.commands.protocol import MAX_HEAD
from tests.web.conftest import Hub
from tests.web.test_protocol import _request, _signed, _Wire

TOO_LARGE = {"error": f"request trailers over the {MAX_HEAD}-byte limit"}


def _chunked_head(event_id: str, path: str = "/hooks/typeform") -> bytes:
    """A signed Typeform delivery sent chunked, up to its last chunk's size line (trailer
    fields, or the blank line that ends it, next)."""
    body, headers = _signed(event_id)
    chunked = b"%x\r\n%s\r\n0\r\n" % (len(body), body)
    return _request(chunked, {**headers, "transfer-encoding": "chunked"}, path=path)


MANY = b"x-t: a\r\n" * (4 * MAX_HEAD // 8)  # many short fields
ENDLESS = b"x-t: " + b"a" * (4 * MAX_HEAD)  # one that never ends


@pytest.mark.parametrize(
    ("path", "trailers", "each"),
    [
        ("/hooks/typeform", MANY, 8192),
        ("/hooks/typeform", MANY[: 2 * MAX_HEAD], 2 * MAX_HEAD),  # one write (most often a read)
        ("/hooks/typeform", ENDLESS, 8192),
        ("/not-a-hook", MANY, 8192),  # any path (answered 404 first, perhaps)
    ],
    ids=["many", "many-at-once", "endless", "any-path"],
)
def test_trailer_fields_over_the_limit_are_a_431(
    fast_hub: tuple[Hub, list[int]], path: str, trailers: bytes, each: int
) -> None:
    """Four (or two) times the limit of trailer fields, in writes of ``each`` bytes: a 431 and
    the connection closed (before: no answer, the hub reading and keeping them for good);
    the delivery is not stored; the next connection is served."""
    hub, _ = fast_hub
    wire = _Wire(hub.url)
    answers: list[tuple[int, bytes]] = []
    try:
        wire.send(_chunked_head("trailers-over", path))
        for start in range(0, len(trailers), each):
            wire.send(trailers[start : start + each])
        while not answers or answers[-1][0] == 404:
            status, headers, body = wire.response()
            answers.append((status, body))
        assert orjson.loads(answers[-1][1]) == TOO_LARGE
        assert [status for status, _ in answers] in ([431], [404, 431])
        assert headers["connection"] == "close"
        assert wire.closed()
    finally:
        wire.close()
    assert hub.events() == []
    assert hub.client.get("/healthz").status_code == 200


def test_a_few_trailer_fields_are_read_and_the_delivery_stored(
    fast_hub: tuple[Hub, list[int]],
) -> None:
    """Trailer fields within the limit (half of it, over several reads) end the request as
    before: its delivery is stored and answered 200, and the connection serves the next."""
    hub, _ = fast_hub
    trailers = b"x-t: a\r\n" * (MAX_HEAD // 2 // 8) + b"\r\n"
    wire = _Wire(hub.url)
    try:
        wire.send(_chunked_head("trailers-within"))
        for start in range(0, len(trailers), 8192):
            wire.send(trailers[start : start + 8192])
        assert wire.response()[0] == 200
        body, headers = _signed("after-trailers")
        wire.send(_request(body, headers))
        assert wire.response()[0] == 200
    finally:
        wire.close()
    assert sorted(e.delivery_id for e in hub.events()) == ["after-trailers", "trailers-within"]


LINE_TOO_LARGE = {
    "error": f"a chunk size line (with its extensions) over the {MAX_HEAD}-byte limit"
}


@pytest.mark.parametrize("path", ["/hooks/typeform", "/not-a-hook"])
def test_a_chunk_size_line_over_the_limit_is_a_400(
    fast_hub: tuple[Hub, list[int]], path: str
) -> None:
    """A chunk's size line whose extension never ends (``5;aaaa...``), four times the limit
    in writes of 8 KiB: a 400 that says why and the connection closed. The parser skips
    extensions without limit: only the 900 s whole-request deadline ended it (the hub read
    4 GB of it in 5 s on the loopback). Nothing is stored; the next connection is served."""
    hub, _ = fast_hub
    body, headers = _signed("endless-extension")
    head = _request(b"", {**headers, "transfer-encoding": "chunked"}, path=path)
    endless = b"%x;" % len(body) + b"a" * (4 * MAX_HEAD)
    wire = _Wire(hub.url)
    answers: list[tuple[int, bytes]] = []
    try:
        wire.send(head)
        for start in range(0, len(endless), 8192):
            wire.send(endless[start : start + 8192])
        while not answers or answers[-1][0] == 404:
            status, response_headers, answer = wire.response()
            answers.append((status, answer))
        assert orjson.loads(answers[-1][1]) == LINE_TOO_LARGE
        assert [status for status, _ in answers] in ([400], [404, 400])
        assert response_headers["connection"] == "close"
        assert wire.closed()
    finally:
        wire.close()
    assert hub.events() == []
    assert hub.client.get("/healthz").status_code == 200


def test_chunk_extensions_within_the_limit_are_read_and_the_delivery_stored(
    fast_hub: tuple[Hub, list[int]],
) -> None:
    """Chunk extensions within the limit (a chunk's, the last one's, half the limit in one,
    sent over several reads) and a chunk of 8 times the limit of data (more than a read
    holds: some of it is read apart from its size line) end the request as before: stored
    and answered 200, and the connection serves the next."""
    hub, _ = fast_hub
    body, headers = _signed("extensions-within", '"pad": "' + "a" * (8 * MAX_HEAD) + '"')
    long = b";x=" + b"a" * (MAX_HEAD // 2)
    chunked = b"a;name=value\r\n%s\r\n" % body[:10]
    chunked += b"%x%s\r\n%s\r\n0;last=1\r\n\r\n" % (len(body) - 10, long, body[10:])
    wire = _Wire(hub.url)
    try:
        wire.send(_request(b"", {**headers, "transfer-encoding": "chunked"}))
        for start in range(0, len(chunked), 4096):
            wire.send(chunked[start : start + 4096])
        assert wire.response()[0] == 200
        after, after_headers = _signed("after-extensions")
        wire.send(_request(after, after_headers))
        assert wire.response()[0] == 200
    finally:
        wire.close()
    assert sorted(e.delivery_id for e in hub.events()) == ["after-extensions", "extensions-within"]
