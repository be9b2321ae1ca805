"""A body sent with a ``Transfer-Encoding`` that compresses it (``gzip, chunked``): a 415
naming it, as for ``Content-Encoding``. The server undoes ``chunked`` only, so the body was
read as the compressed bytes: a JSON body was a 400 "not valid UTF-8", which told the sender
nothing it could act on."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import pytest

from tests.web.conftest import running_hub
from tests.web.test_protocol_upgrade import _exchange


def _chunked(body: bytes, transfer: bytes) -> bytes:
    return (
        b"POST /hooks/open HTTP/1.1\r\nhost: hub\r\ncontent-type: application/json\r\n"
        b"transfer-encoding: " + transfer + b"\r\nconnection: close\r\n\r\n"
        b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    )


@pytest.mark.parametrize("writer", ["thread", "process"])
def test_a_body_compressed_in_transit_is_a_415_that_names_it(tmp_path: Path, writer: str) -> None:
    plain = b'{"email":"te@example.com"}'
    with running_hub(tmp_path, writer=writer) as hub:
        answer = _exchange(hub.url, [_chunked(gzip.compress(plain), b"gzip, chunked")])
        assert re.findall(rb"HTTP/1.1 (\d+)", answer) == [b"415"], answer
        assert b"Transfer-Encoding gzip, chunked is not supported" in answer, answer
        assert hub.events() == []
        answer = _exchange(hub.url, [_chunked(plain, b"chunked")])
        assert re.findall(rb'"status":"(\w+)"', answer) == [b"accepted"], answer
        assert [event.document for event in hub.events()] == [{"email": "te@example.com"}]
