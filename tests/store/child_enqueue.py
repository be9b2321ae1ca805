"""Child process for the durability test: enqueues forever from several concurrent producers.

Prints ``ok <event id> <delivery id>`` (flushed) only after each enqueue returned, then
waits to be killed. Usage: ``python child_enqueue.py sqlite:////path/events.db``.
"""

from __future__ import annotations

import asyncio
import sys

from hub.store import EventStore, open_store
from tests.store.helpers import delivery


async def producer(store: EventStore, name: int) -> None:
    """Enqueue deliveries one after another, reporting each once it is durable."""
    i = 0
    while True:
        did = f"p{name}-{i}"
        (res,) = await store.enqueue(delivery(did))
        sys.stdout.write(f"ok {res.id} {did}\n")
        sys.stdout.flush()
        i += 1


async def main(url: str) -> None:
    """Open the store and run eight producers until killed."""
    store = open_store(url)
    await store.open()
    await asyncio.gather(*(producer(store, n) for n in range(8)))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
