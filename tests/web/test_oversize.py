"""A body over ``max_body`` is answered 413, and the sender gets to read that answer.

Found by the chaos soak: the hub answered 413 as soon as it saw the limit passed and closed
the connection with the rest of the body unread, which makes the kernel reset it. A sender
still writing its body then saw the reset instead of the 413 (117 of 200 posts of 1 MiB
and a bit, 20 at a time, got ``ReadError``), and a sender retries a reset, where a 413 tells
it to stop. The hub now reads the rest of such a body (up to ``DRAIN_LIMIT``) and drops it
before answering.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from hub.web.ingest import DRAIN_LIMIT
from tests.support.server import leadhub_process, serve_args

pytestmark = pytest.mark.slow

CONFIG = """kind: endpoint
name: forms
source: token
token: oversize-test-token
max_body: 64KiB
"""
HEADERS = {"Content-Type": "application/json", "Authorization": "Bearer oversize-test-token"}
BIG = b'{"email":"big@example.com","pad":"' + b"x" * (1 << 20) + b'"}'  # 16 x the limit


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp: Path = tmp_path_factory.mktemp("oversize")
    args, url, _ = serve_args(tmp, {"forms.yaml": CONFIG})
    with leadhub_process(args, ready_url=f"{url}/healthz"):
        yield url


def _posts(base: str, body: bytes | None, *, rounds: int = 5, at_once: int = 20) -> Counter[str]:
    """What ``rounds`` x ``at_once`` posts of ``body`` (None: ``BIG`` sent chunked, without a
    Content-Length) came to: a status, or the transport error the sender saw."""

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(BIG), 65536):
            yield BIG[start : start + 65536]

    async def run() -> Counter[str]:
        seen: Counter[str] = Counter()
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:

            async def one() -> None:
                content = chunks() if body is None else body
                try:
                    answer = await client.post("/hooks/forms", content=content, headers=HEADERS)
                    seen[str(answer.status_code)] += 1
                except httpx.TransportError as exc:
                    seen[type(exc).__name__] += 1

            for _ in range(rounds):
                await asyncio.gather(*(one() for _ in range(at_once)))
        return seen

    return asyncio.run(run())


def test_every_sender_of_a_body_over_the_limit_reads_the_413(base: str) -> None:
    """Posts of a body 16 times the limit, 20 at a time: every one is answered 413."""
    assert _posts(base, BIG) == Counter({"413": 100})


def test_a_chunked_body_over_the_limit_is_answered_413_too(base: str) -> None:
    """Without a Content-Length the limit is found while reading; the rest is read too."""
    assert _posts(base, None, rounds=2) == Counter({"413": 40})


def test_the_413_says_why_and_the_hub_serves_on(base: str) -> None:
    """The answer is the usual 413 (connection closed after it); a good post is accepted."""
    answer = httpx.post(f"{base}/hooks/forms", content=BIG, headers=HEADERS, timeout=30)
    assert answer.status_code == 413
    assert answer.json() == {"error": "body over the 65536-byte limit"}
    assert answer.headers["connection"] == "close"
    good = httpx.post(
        f"{base}/hooks/forms", json={"email": "a@example.com"}, headers=HEADERS, timeout=30
    )
    assert good.json() == {"status": "accepted", "id": 1}


def test_a_body_declared_beyond_the_drain_limit_is_not_read(base: str) -> None:
    """One declared larger than DRAIN_LIMIT is answered at once, its body never waited for:
    a sender that sends nothing after its headers still gets the 413."""

    async def run() -> bytes:
        reader, writer = await asyncio.open_connection(*base.removeprefix("http://").split(":"))
        writer.write(
            b"POST /hooks/forms HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer oversize-test-token"
            + f"\r\nContent-Length: {DRAIN_LIMIT + 1}\r\n\r\n".encode()
        )
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
        writer.close()
        return head

    assert asyncio.run(run()).startswith(b"HTTP/1.1 413 ")
