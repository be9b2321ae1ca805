"""What the three enrichment clients share (``hub.dispatch.fetch``): an unreachable API."""

from __future__ import annotations

import httpx
import pytest

from hub.dispatch.fetch import FetchRetry
from tests.dispatch.support import Read, lead_readers
from tests.support.server import free_port

TOKEN = "tok-never-shown-42"
READS = lead_readers(TOKEN)


@pytest.mark.parametrize("read", list(READS.values()), ids=list(READS))
async def test_an_unreachable_api_is_a_retry_that_never_shows_the_token(read: Read) -> None:
    """A refused connection is a ``network`` retry (the lead waits), its reason without the
    token, whether the token travels in the query (Graph) or a header."""
    async with httpx.AsyncClient() as http:
        outcome = await read(http, f"http://127.0.0.1:{free_port()}/api")
    assert isinstance(outcome, FetchRetry)
    assert outcome.kind == "network"
    assert "connection refused" in outcome.reason
    assert TOKEN not in outcome.reason
