"""``leadhub serve``'s protocol queues at most :data:`MAX_PIPELINED` requests behind the one
being answered on a connection.

Found by a hostile sender: uvicorn queues every request it reads while one is answered, and
reads on after each answer, so a sender that wrote requests without reading their answers
(the kernel's buffers take the answers for a while) grew the hub by about 600 bytes a
request: 230 MB in 10 s of pipelined ``GET /healthz``, to any path and without a
credential, kept after the connection closed. The request past the limit is now answered
429, after the answers of those before it, and the connection closed.

Real sockets to a hub on serve's protocol.
"""

from __future__ import annotations

import orjson

from hub.commands.protocol import MAX_PIPELINED
from tests.web.conftest import Hub
from tests.web.test_protocol import _request, _signed, _Wire

HEALTH = b"GET /healthz HTTP/1.1\r\nhost: hub\r\n\r\n"
TOO_FAR = {
    "error": f"more than {MAX_PIPELINED} requests sent ahead of their answers; "
    "read the answers before sending more"
}


def _answers(wire: _Wire) -> list[tuple[int, bytes]]:
    """Every answer on ``wire`` until the hub closes the connection."""
    answers: list[tuple[int, bytes]] = []
    while not answers or answers[-1][0] == 200:
        status, _, body = wire.response()
        answers.append((status, body))
    assert wire.closed()
    return answers


def test_requests_pipelined_past_the_limit_are_refused_after_the_answers_before(
    fast_hub: tuple[Hub, list[int]],
) -> None:
    """Three times the limit of requests in one write: the answers of those read before the
    limit was passed (at most the limit and the one being answered), each 200, then one 429
    and the connection closed (before: 300 answers, every request queued as it was read);
    the hub serves the next connection, a webhook included."""
    hub, _ = fast_hub
    wire = _Wire(hub.url)
    try:
        wire.send(HEALTH * (3 * MAX_PIPELINED))
        answers = _answers(wire)
    finally:
        wire.close()
    statuses = [status for status, _ in answers]
    assert statuses[-1] == 429
    assert orjson.loads(answers[-1][1]) == TOO_FAR
    assert 1 <= len(statuses) - 1 <= MAX_PIPELINED + 1
    assert set(statuses[:-1]) == {200}
    body, headers = _signed("after-pipelining")
    assert hub.client.post("/hooks/typeform", content=body, headers=headers).status_code == 200
    assert [e.delivery_id for e in hub.events()] == ["after-pipelining"]


def test_requests_pipelined_within_the_limit_are_each_answered(
    fast_hub: tuple[Hub, list[int]],
) -> None:
    """Half the limit of requests in one write, webhooks among them: each answered, in
    order, and the connection kept."""
    hub, _ = fast_hub
    body, headers = _signed("within-pipelining")
    requests = [HEALTH] * (MAX_PIPELINED // 2 - 1) + [_request(body, headers)]
    wire = _Wire(hub.url)
    try:
        wire.send(b"".join(requests))
        statuses = [wire.response()[0] for _ in requests]
        wire.send(HEALTH)
        statuses.append(wire.response()[0])
    finally:
        wire.close()
    assert statuses == [200] * (len(requests) + 1)
    assert [e.delivery_id for e in hub.events()] == ["within-pipelining"]
