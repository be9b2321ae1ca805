"""The PostgreSQL store behind a connection pooler that shares server sessions.

PgBouncer in transaction mode (the default of many managed poolers) runs each transaction
of a client on whichever server connection is free: nothing of a session carries from one
transaction to the next. The store needs three things of its sessions, and here they are
given to each transaction instead:

- its settings (``search_path`` for ``?schema=``, ``jit``,
  ``idle_in_transaction_session_timeout``, ``application_name``)
  are not sent at connect, where PgBouncer refuses every parameter it does not track
  ("unsupported startup parameter"), or drops those its ``ignore_startup_parameters``
  lists, but set for the transaction only (``set_config(..., true)``, as ``SET LOCAL``) in
  the same round trip as each ``BEGIN``;
- no named prepared statement: one prepared in a transaction on one server connection is
  missing on the next (asyncpg: ``statement_cache_size=0``, which prepares unnamed
  statements in the same message group as their execution), and a replay reads its ids
  through an SQL cursor (``DECLARE``/``FETCH``) rather than asyncpg's, which names one;
- every statement in a transaction, one statement alone included: only a transaction has
  its settings.

Advisory locks are transaction locks already (``postgres.sql``). The store finds out at
open: a pooler refused its settings, or a connection made with them does not have them
(:data:`SETTINGS_ARRIVED`). A direct connection keeps them as startup settings: no round
trip more per transaction.
"""

from __future__ import annotations

import contextlib
import urllib.parse
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hub.store.postgres_ingest import Conn

#: What PgBouncer answers (SQLSTATE 08P01) to a startup parameter it does not track.
REFUSAL = "unsupported startup parameter"
#: How PgBouncer in statement pooling mode ends a connection at its first ``BEGIN``.
STATEMENT_MODE = "transaction blocks not allowed"
#: How PgBouncer ends a client's connection that waited longer than its query_wait_timeout
#: for a server connection: its pool for the database and user was taken all that while.
QUERY_WAIT = "query_wait_timeout"
#: How PgBouncer ends a client's connection whose statement ran longer than its query_timeout.
QUERY_TIMEOUT = "query timeout"
#: Whether the settings of the connection's startup packet reached the server: ``jit`` is
#: always one (``PostgresStore.open``). A pooler that drops it, or sets it on the server
#: connection itself (PgBouncer's ``track_extra_parameters``), shares server sessions.
SETTINGS_ARRIVED = "SELECT source = 'client' FROM pg_settings WHERE name = 'jit'"
#: Only this setting goes in the startup packet through a pooler (PgBouncer tracks it, but
#: PgBouncer 1.18 left a server session's as the last client set it: it is set in each
#: transaction too, so that pg_stat_activity names the hub's while they run).
STARTUP = ("application_name",)


def statement_mode(exc: BaseException) -> bool:
    """Whether ``exc`` is PgBouncer in statement mode ending a connection that began a
    transaction: the store cannot work there (each of its writes is a transaction)."""
    return STATEMENT_MODE in str(exc)


def refused(exc: BaseException) -> bool:
    """Whether ``exc`` is a pooler's refusal of a startup parameter."""
    return REFUSAL in str(exc)


def split_setting(dsn: str, name: str) -> tuple[str, str | None]:
    """``dsn`` without its query option ``name`` (asyncpg sends an unknown option as a
    startup setting, which a pooler refuses), and that option's value (None: absent)."""
    parsed = urllib.parse.urlsplit(dsn)
    pairs = urllib.parse.parse_qsl(parsed.query, keep_blank_values=True)
    found = [v for k, v in pairs if k == name]
    if not found:
        return dsn, None
    rest = urllib.parse.urlencode([(k, v) for k, v in pairs if k != name])
    return urllib.parse.urlunsplit(parsed._replace(query=rest)), found[-1]


def begin(settings: Mapping[str, str], *, isolation: str, readonly: bool) -> str:
    """One simple-protocol query (one round trip): ``BEGIN``, then each of ``settings`` for
    the transaction, its value as the startup packet gives it (``set_config``, not ``SET``:
    ``SET search_path = '"a"'`` would name a schema with the quotes in its name)."""
    head = f"BEGIN ISOLATION LEVEL {isolation.replace('_', ' ').upper()}"
    if readonly:
        head += " READ ONLY"
    if not settings:
        return head + ";"
    sets = ", ".join(
        f"set_config({_literal(name)}, {_literal(value)}, true)" for name, value in settings.items()
    )
    return f"{head};\nSELECT {sets};"


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


@contextlib.asynccontextmanager
async def transaction(conn: Conn, begin_sql: str) -> AsyncIterator[None]:
    """A transaction begun by ``begin_sql`` (:func:`begin`): committed at the end of the
    block, rolled back if it raises, or if the settings of its ``BEGIN`` fail (a value from
    the URL that the server refuses: the ``BEGIN`` ran). Left open, asyncpg's pool rolls it
    back as it takes the connection back, and reports an error through the event loop
    ("Resetting connection with an active transaction"). (asyncpg's own transaction sends
    ``BEGIN`` alone, and the settings would cost another round trip.)"""
    try:
        await conn.execute(begin_sql)
        yield
    except BaseException:
        # a broken connection: the pool's release ends it, and the server the transaction (a
        # connection lost is taken from the block at once: even is_closed() raises then)
        with contextlib.suppress(Exception):
            if not conn.is_closed():
                await conn.execute("ROLLBACK")
        raise
    await conn.execute("COMMIT")
