"""Child process for the multi-process claim test: claims and acks until the queue is empty.

Prints ``claimed <id>`` for each event it took. Usage: ``python child_claim.py URL``.
"""

from __future__ import annotations

import asyncio
import sys

from hub.store import open_store


async def main(url: str) -> None:
    """Claim three at a time, ack each, stop when a claim comes back empty."""
    store = open_store(url)
    await store.open()
    try:
        while batch := await store.claim(limit=3, lease=300):
            for event in batch:
                sys.stdout.write(f"claimed {event.id}\n")
                await store.ack(event.id, lead_id="L", created=False)
        sys.stdout.flush()
    finally:
        await store.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
