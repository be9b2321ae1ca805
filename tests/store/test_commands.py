"""``leadhub events``, ``replay`` and ``purge`` through hub.cli.main against a real database."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from hub.cli import main
from hub.commands import events
from hub.store import open_store
from hub.store.models import Event, Listed, State
from tests.pg_server import sql
from tests.support.server import free_port, leadhub_run
from tests.web.test_serve import ENV as SERVE_ENV
from tests.web.test_serve import serve_args

from .conftest import sqlite_url
from .helpers import delivery

Seeded = tuple[str, dict[str, int]]
Cap = pytest.CaptureFixture[str]


def seed(url: str) -> dict[str, int]:
    """A database with one queued, one delivered, two dead and one unmatched event."""

    async def go() -> dict[str, int]:
        store = open_store(url)
        await store.open()
        try:
            ids = {}
            for name, endpoint in [
                ("queued", "typeform"),
                ("delivered", "typeform"),
                ("dead", "typeform"),
                ("dead_google", "google"),
                ("unmatched", "google"),
            ]:
                (res,) = await store.enqueue(delivery(f"id-{name}", endpoint=endpoint))
                ids[name] = res.id
            await store.set_route(ids["delivered"], target="default", mapping="m", lead_keys=[])
            await store.ack(ids["delivered"], lead_id="lead-0001", created=True)
            await store.dead(ids["dead"], error="MXInvalidEmailException: 'x' is not\nan email")
            await store.dead(ids["dead_google"], error="required field EmailAddress missing")
            await store.unmatched(ids["unmatched"], reason="no mapping matched")
            return ids
        finally:
            await store.close()

    return asyncio.run(go())


def states(url: str) -> dict[int, State]:
    """Each event's state, by id."""

    async def go() -> dict[int, State]:
        store = open_store(url)
        await store.open()
        try:
            return {e.id: e.state for e in await store.list(limit=100)}
        finally:
            await store.close()

    return asyncio.run(go())


def add_recent(url: str) -> dict[str, int]:
    """A dead, a delivered and a skipped event received now (typeform), by state."""

    async def go() -> dict[str, int]:
        store = open_store(url)
        await store.open()
        try:
            ids = {}
            for name in ("dead", "delivered", "skipped"):
                (res,) = await store.enqueue(delivery(f"recent-{name}", received_at=time.time()))
                ids[name] = res.id
            await store.dead(ids["dead"], error="MXInvalidEmailException")
            await store.set_route(ids["delivered"], target="default", mapping="m", lead_keys=[])
            await store.ack(ids["delivered"], lead_id="lead-0002", created=True)
            await store.skipped(ids["skipped"], reason="test lead")
            return ids
        finally:
            await store.close()

    return asyncio.run(go())


def event_of(url: str, event_id: int) -> Event:
    """One event as stored."""

    async def go() -> Event | None:
        store = open_store(url)
        await store.open()
        try:
            return await store.get(event_id)
        finally:
            await store.close()

    found = asyncio.run(go())
    assert found is not None
    return found


async def every_event(url: str) -> list[Event]:
    """Every stored event, newest first, in one read (store.list)."""
    store = open_store(url)
    await store.open()
    try:
        return await store.list(limit=1000)
    finally:
        await store.close()


def plural(count: int) -> str:
    return "event" if count == 1 else "events"


@pytest.fixture
def db(hub_db_url: str) -> Seeded:
    """A seeded database URL (a SQLite file, or a PostgreSQL schema) and its event ids."""
    return hub_db_url, seed(hub_db_url)


class TestEvents:
    def test_table(self, db: Seeded, capsys: Cap) -> None:
        """The table lists every event newest first with state, target, lead id and error."""
        url, ids = db
        assert main(["events", "--db", url], environ={}) == 0
        out = capsys.readouterr().out.splitlines()
        assert out[0].split()[:3] == ["ID", "RECEIVED", "(UTC)"]
        assert [int(line.split()[0]) for line in out[1:]] == sorted(ids.values(), reverse=True)
        delivered = next(line for line in out if line.startswith(f"{ids['delivered']} "))
        assert "delivered" in delivered and "default" in delivered and "lead-0001" in delivered
        dead = next(line for line in out if line.startswith(f"{ids['dead']} "))
        assert "MXInvalidEmailException: 'x' is not an email" in dead  # one line per event
        assert "2023-11-14 22:13:20" in dead

    def test_since_an_age(self, db: Seeded, capsys: Cap) -> None:
        """--since AGE lists only events received in the last AGE (the seeded ones are from
        2023; one more is received now), with --id too; a bad AGE is a usage error."""
        url, ids = db

        async def add_recent() -> int:
            store = open_store(url)
            await store.open()
            try:
                (res,) = await store.enqueue(delivery("id-recent", received_at=time.time()))
                return res.id
            finally:
                await store.close()

        recent = asyncio.run(add_recent())
        capsys.readouterr()
        assert main(["events", "--db", url, "--since", "1h", "--json"], environ={}) == 0
        listed = [orjson.loads(line)["id"] for line in capsys.readouterr().out.splitlines()]
        assert listed == [recent]
        argv = ["events", "--db", url, "--since", "1h", "--id", str(ids["dead"]), "--json"]
        argv += ["--id", str(recent)]
        assert main(argv, environ={}) == 0
        assert [orjson.loads(x)["id"] for x in capsys.readouterr().out.splitlines()] == [recent]
        assert main(["events", "--db", url, "--since", "10000d", "--json"], environ={}) == 0
        assert len(capsys.readouterr().out.splitlines()) == len(ids) + 1
        with pytest.raises(SystemExit) as info:
            main(["events", "--db", url, "--since", "soon"], environ={})
        assert info.value.code == 2
        assert "--since" in capsys.readouterr().err
        with pytest.raises(SystemExit) as info:  # the variable is checked like the flag
            main(["events", "--db", url], environ={"LEADHUB_SINCE": "soon"})
        assert info.value.code == 2
        assert "LEADHUB_SINCE='soon'" in capsys.readouterr().err

    def test_filters_and_json(self, db: Seeded, capsys: Cap) -> None:
        """--status, --endpoint and --limit filter; --json prints one object per line."""
        url, ids = db
        argv = ["events", "--db", url, "--status", "dead", "--endpoint", "google", "--json"]
        assert main(argv, environ={}) == 0
        lines = capsys.readouterr().out.splitlines()
        assert len(lines) == 1
        obj = orjson.loads(lines[0])
        assert obj["id"] == ids["dead_google"]
        assert (obj["state"], obj["endpoint"], obj["delivery_id"]) == (
            "dead",
            "google",
            "id-dead_google",
        )
        assert obj["last_error"] == "required field EmailAddress missing"
        assert obj["document"] == {"id": "id-dead_google"}
        assert obj["received_at"] == "2023-11-14T22:13:20Z"
        assert main(["events", "--db", url, "--limit", "2", "--json"], environ={}) == 0
        assert len(capsys.readouterr().out.splitlines()) == 2

    def test_a_listing_cut_by_the_limit_says_so(self, db: Seeded, capsys: Cap) -> None:
        """When more events match than --limit shows (50 by default), stderr says so: a
        script reading `events --status dead --json` otherwise took the newest 50 for all."""
        url, ids = db
        capsys.readouterr()
        for fmt in ([], ["--json"]):
            assert main(["events", "--db", url, "--limit", "2", *fmt], environ={}) == 0
            out, err = capsys.readouterr()
            assert str(max(ids.values())) in out
            assert err == (
                "leadhub events: note: the newest 2 matching events are shown and more "
                "match; pass --limit N to see more.\n"
            )
        assert main(["events", "--db", url, "--limit", "5", "--json"], environ={}) == 0
        out, err = capsys.readouterr()
        assert len(out.splitlines()) == 5 and err == ""
        argv = ["events", "--db", url, "--limit", "1", "--id", str(ids["dead"])]
        assert main([*argv, "--id", str(ids["queued"])], environ={}) == 0
        assert "more match" in capsys.readouterr().err

    def test_pages_list_what_one_query_lists(
        self, db: Seeded, capsys: Cap, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A listing read in pages (1, 2, 3 events a page) prints what one read prints: the
        same events in the same order with the same fields (--json: byte for byte, and as
        store.list's events have them), the same table cells, the same note when --limit
        cuts it; with filters and --id too."""
        url, ids = db
        recent = add_recent(url)
        everything = {**ids, **{f"recent_{k}": v for k, v in recent.items()}}
        listed = asyncio.run(every_event(url))
        assert [e.id for e in listed] == sorted(everything.values(), reverse=True)
        expected = "".join(
            orjson.dumps(events.as_json(Listed.of(e), time.time())).decode() + "\n" for e in listed
        )
        selections = [
            [],
            ["--limit", "5"],
            ["--limit", "3"],
            ["--status", "dead"],
            ["--endpoint", "typeform", "--limit", "4"],
            ["--since", "1h"],
            [arg for i in everything.values() for arg in ("--id", str(i))] + ["--limit", "6"],
        ]

        def run(argv: list[str], page: int) -> tuple[str, str]:
            monkeypatch.setattr(events, "PAGE", page)
            capsys.readouterr()
            assert main(["events", "--db", url, *argv], environ={}) == 0
            return capsys.readouterr()

        assert run(["--json"], 500) == (expected, "")
        for chosen in selections:
            for fmt in (["--json"], []):
                one_read = run([*chosen, *fmt], 500)
                assert one_read[0].strip(), chosen
                for page in (1, 2, 3):
                    out, err = run([*chosen, *fmt], page)
                    assert err == one_read[1], (chosen, page)
                    if fmt:
                        assert out == one_read[0], (chosen, page)
                    else:  # a later page may widen a column: the same cells, line by line
                        cells = [" ".join(line.split()) for line in out.splitlines()]
                        assert cells == [" ".join(x.split()) for x in one_read[0].splitlines()]

    def test_by_id(self, db: Seeded, capsys: Cap) -> None:
        """--id (repeatable) picks events, newest first; the other filters still apply, and
        an id the store does not have is left out."""
        url, ids = db
        argv = ["events", "--db", url, "--json", "--id", str(ids["dead"])]
        argv += ["--id", str(ids["queued"]), "--id", "9999"]
        assert main(argv, environ={}) == 0
        lines = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert [obj["id"] for obj in lines] == [ids["dead"], ids["queued"]]
        assert lines[0]["last_error"] == "MXInvalidEmailException: 'x' is not\nan email"
        assert main([*argv, "--status", "dead"], environ={}) == 0
        assert [orjson.loads(x)["id"] for x in capsys.readouterr().out.splitlines()] == [
            ids["dead"]
        ]
        assert main(["events", "--db", url, "--id", "9999"], environ={}) == 0
        assert capsys.readouterr().out.strip() == "No events match."

    def test_numbers_beyond_the_stores_integers(self, db: Seeded, capsys: Cap) -> None:
        """An --id beyond a 64-bit integer is a usage error naming it (it was an OverflowError
        traceback); a --limit that large means them all."""
        url, ids = db
        huge = str(2**63)
        for command in (["events"], ["replay"]):
            for argv, environ, named in (
                ([*command, "--db", url, "--id", huge], {}, "argument --id"),
                ([*command, "--db", url], {"LEADHUB_ID": f"3,{huge}"}, f"LEADHUB_ID='3,{huge}'"),
            ):
                with pytest.raises(SystemExit) as info:
                    main(argv, environ=environ)
                assert info.value.code == 2
                err = capsys.readouterr().err
                assert f"{named}: {huge}: no event id is that large" in err, err
                assert "Traceback" not in err
        assert main(["events", "--db", url, "--limit", "1" + "0" * 20, "--json"], environ={}) == 0
        out, err = capsys.readouterr()
        assert len(out.splitlines()) == len(ids) and err == ""

    def test_ids_below_1(self, db: Seeded, capsys: Cap) -> None:
        """An --id below 1 (ids count up from 1) is a usage error naming it: one below a
        64-bit integer was an OverflowError traceback on SQLite, a failed query on PostgreSQL,
        and nothing is changed."""
        url, _ = db
        before = asyncio.run(every_event(url))
        for command in (["events"], ["replay"], ["replay", "--dry-run"]):
            for number in (str(-(2**63) - 1), "-1", "0"):
                with pytest.raises(SystemExit) as info:
                    main([*command, "--db", url, "--id", number], environ={})
                assert info.value.code == 2
                err = capsys.readouterr().err
                assert f"argument --id: {number}: no event id is below 1" in err, err
                assert "Traceback" not in err
        assert asyncio.run(every_event(url)) == before

    def test_a_senders_control_characters_reach_no_terminal(
        self, hub_db_url: str, capsys: Cap
    ) -> None:
        """A delivery id (the sender's) and a last error (which may quote a sender's value)
        holding escape sequences are shown escaped in the table: printed raw, they drove the
        operator's terminal (cleared it, retitled it, hid lines; right-to-left overrides
        reordered the text). --json escapes them already."""
        evil_id = "ok\x1b]0;owned\x07\u202e"
        evil_error = "MXInvalidEmailException: 'a\x1b[2J\x1b[1A' is not an email"

        async def go() -> None:
            store = open_store(hub_db_url)
            await store.open()
            try:
                (res,) = await store.enqueue(delivery(evil_id))
                await store.dead(res.id, error=evil_error)
            finally:
                await store.close()

        asyncio.run(go())
        capsys.readouterr()
        assert main(["events", "--db", hub_db_url], environ={}) == 0
        out = capsys.readouterr().out
        assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out
        assert "ok\\x1b]0;owned\\x07\\u202e" in out
        assert "'a\\x1b[2J\\x1b[1A' is not an email" in out

    def test_no_match(self, db: Seeded, capsys: Cap) -> None:
        """A filter matching nothing says so and succeeds."""
        url, _ = db
        assert main(["events", "--db", url, "--status", "skipped"], environ={}) == 0
        assert capsys.readouterr().out.strip() == "No events match."

    def test_bad_status(self, db: Seeded, capsys: Cap) -> None:
        """An unknown --status exits 2 naming the value and the valid states."""
        url, _ = db
        assert main(["events", "--db", url, "--status", "daed"], environ={}) == 2
        err = capsys.readouterr().err
        assert "'daed'" in err and "dead" in err and "unmatched" in err

    def test_duplicate_status_says_where_duplicates_are_seen(self, db: Seeded, capsys: Cap) -> None:
        """`duplicate` is a delivery's answer, not an event's state: --status duplicate exits 2
        saying where repeats show (the answer, the log line, the metric) instead of 'unknown'."""
        url, _ = db
        assert main(["events", "--db", url, "--status", "Duplicate"], environ={}) == 2
        err = capsys.readouterr().err
        assert "unknown" not in err
        assert "outcome=duplicate" in err and 'leadhub_deliveries_total{outcome="duplicate"}' in err

    def test_db_from_environment(self, db: Seeded, capsys: Cap) -> None:
        """LEADHUB_DB names the store when --db is absent."""
        url, ids = db
        assert main(["events", "--json"], environ={"LEADHUB_DB": url}) == 0
        assert len(capsys.readouterr().out.splitlines()) == len(ids)

    def test_missing_database(self, tmp_path: Path, capsys: Cap) -> None:
        """A --db naming no existing file is an error, and no empty database is created."""
        url = sqlite_url(tmp_path, "typo.db")
        assert main(["events", "--db", url], environ={}) == 1
        assert "no event store" in capsys.readouterr().err
        assert not (tmp_path / "typo.db").exists()

    @pytest.mark.parametrize("command", [["events"], ["replay", "--status", "dead"]])
    def test_a_sqlite_file_without_a_store_is_not_made_one(
        self, tmp_path: Path, command: list[str], capsys: Cap
    ) -> None:
        """A --db naming another SQLite database (the sandbox's leads, say) or an empty file
        is an error (exit 1) and is left as it was: the commands made the hub's tables in
        it and answered "No events match.", as PostgreSQL's commands never did."""
        other = tmp_path / "leadhub.db.sandbox.sqlite"
        with contextlib.closing(sqlite3.connect(other)) as conn:
            conn.execute("CREATE TABLE leads (id INTEGER PRIMARY KEY)")
            conn.commit()
        (tmp_path / "empty.db").touch()
        for path in (other, tmp_path / "empty.db"):
            assert main([*command, "--db", f"sqlite:///{path}"], environ={}) == 1
            err = capsys.readouterr().err
            assert f"no event store in {str(path)!r}" in err
        with contextlib.closing(sqlite3.connect(other)) as conn:
            tables = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        assert tables == [("leads",)]
        assert (tmp_path / "empty.db").stat().st_size == 0

    def test_a_file_that_is_no_store_or_a_damaged_one(self, tmp_path: Path, capsys: Cap) -> None:
        """A --db naming a file that is no SQLite database, or a store cut short (damaged),
        exits 1 saying which, and what to do: both said "check that its directory exists and
        is writable", which it was."""
        other = tmp_path / "leads.csv"
        other.write_bytes(b"FirstName,EmailAddress\n" + os.urandom(8192))
        damaged = tmp_path / "damaged.db"
        url = sqlite_url(tmp_path, damaged.name)
        asyncio.run(self._fill(url, 300))
        with damaged.open("r+b") as file:
            file.truncate(damaged.stat().st_size // 4)
        for path, says in (
            (other, "the file is no SQLite database; check that the URL names the event store"),
            (damaged, "the database file is damaged; restore the store from a backup"),
        ):
            for command in (["events"], ["replay", "--status", "dead"]):
                assert main([*command, "--db", f"sqlite:///{path}"], environ={}) == 1
                err = capsys.readouterr().err
                assert says in err and "directory" not in err, err

    @staticmethod
    async def _fill(url: str, count: int) -> None:
        """``count`` events in the store at ``url``, closed (its WAL checkpointed)."""
        store = open_store(url)
        await store.open()
        try:
            for i in range(count):
                await store.enqueue(delivery(f"fill-{i}", received_at=time.time()))
        finally:
            await store.close()

    @pytest.mark.parametrize("url", ["mysql://db/leadhub", "postgresql+asyncpg://hub@db/leadhub"])
    def test_unsupported_url(self, url: str, capsys: Cap) -> None:
        """A database kind we do not have is refused with a clear message and exit 2, naming
        every kind there is: PostgreSQL too (it named only SQLite's two forms, so a user who
        wrote SQLAlchemy's postgresql+asyncpg:// was told to use SQLite)."""
        assert main(["events", "--db", url], environ={}) == 2
        assert capsys.readouterr().err == (
            f"leadhub events: Unknown event store URL {url!r}; use sqlite:///relative.db, "
            "sqlite:////absolute/path.db or postgresql://user@host:5432/dbname (the scheme "
            "postgresql:// or postgres://, without a driver's +asyncpg or +psycopg).\n"
        )

    @pytest.mark.parametrize(
        "url",
        [
            "postgresql+asyncpg://hub:hunter2@db.internal:5432/leads",  # SQLAlchemy's form
            "hub:hunter2@db.internal:5432/leads",  # the scheme left out
        ],
    )
    def test_a_postgresql_url_written_wrong_is_told_the_scheme_without_its_password(
        self, url: str, capsys: Cap
    ) -> None:
        """A PostgreSQL URL with a driver's scheme, or none, is refused (exit 2) naming the
        postgresql:// form: the message offered only sqlite:/// URLs, and quoted a URL without
        a scheme with its password."""
        assert main(["events", "--db", url], environ={}) == 2
        err = capsys.readouterr().err
        assert "Unknown event store URL" in err and "postgresql://user@host" in err, err
        assert "hunter2" not in err, err

    @pytest.mark.parametrize(
        ("url", "says"),
        [
            ("postgresql://hub:hunter2@[::1/leadhub", "Malformed store URL"),
            ("postgresql://hub:hunter2/@x@[::1/leadhub", "A port that is no number"),
            ("sqlite://[x/leadhub.db", "Malformed store URL"),
            ("postgresql://hub:hunter2@127.0.0.1:99999/leadhub", "Port 99999 "),
            ("postgresql://hub:hunter2@127.0.0.1:70000/leadhub", "Port 70000 "),
            ("postgresql://hub:hunter2@127.0.0.1:5432,127.0.0.1:0/leadhub", "Port 0 "),
            ("postgresql://hub:hunter2@[::1]:5432x/leadhub", "A port that is no number"),
            ("postgresql://hub:hunter2@127.0.0.1/leadhub?port=65536", "Port 65536 "),
            (f"postgresql://hub:hunter2@127.0.0.1:{'9' * 5000}/leadhub", "Port 999"),
        ],
    )
    def test_a_url_that_does_not_parse_or_names_no_port(
        self, url: str, says: str, capsys: Cap
    ) -> None:
        """A --db whose host does not parse (an IPv6 one without its closing bracket) or whose
        port is no TCP port is a usage error (exit 2) saying so, for every command and before
        any connection: the first was a ValueError traceback, a port of 99999 an OverflowError
        one, and 70000 went to port 4464 (the system wraps it)."""
        commands = (["events"], ["replay", "--status", "dead"], ["purge", "--older-than", "3d"])
        for command in commands:
            assert main([*command, "--db", url], environ={}) == 2
            err = capsys.readouterr().err
            assert says in err and "Traceback" not in err, err
            assert "hunter2" not in err
        if says.startswith("Malformed"):  # (backup refuses any PostgreSQL URL, exit 2)
            assert main(["backup", "--db", url, "copy.db"], environ={}) == 2
            err = capsys.readouterr().err
            assert says in err and "hunter2" not in err

    @pytest.mark.parametrize(
        ("query", "says"),
        [
            ("schema=", "?schema= is empty"),  # ?schema=${SCHEMA}, the variable unset
            ("schema=hub_a&schema=hub_b", "?schema= is given twice"),
            ("pool=5&pool=50", "?pool= is given twice"),
        ],
    )
    def test_a_postgresql_url_s_own_option_empty_or_twice_is_refused(
        self, query: str, says: str, postgres_dsn: str, capsys: Cap
    ) -> None:
        """An empty ?schema= was taken as none (the database's default schema: another hub's
        queue, its leads sent by this instance's targets), and a second ?schema= or ?pool=
        silently won; each is now a usage error (exit 2) before any connection."""
        url = f"{postgres_dsn}?{query}"
        commands = (["events"], ["replay", "--status", "dead"], ["purge", "--older-than", "3d"])
        for command in commands:
            assert main([*command, "--db", url], environ={}) == 2
            err = capsys.readouterr().err
            assert says in err, err

    def test_a_postgresql_schema_without_a_store_is_not_made_one(
        self, postgres_schema: tuple[str, str], capsys: Cap
    ) -> None:
        """A mistyped schema is reported (exit 1), not created as a new, empty store."""
        dsn, schema = postgres_schema
        url = f"{dsn}?schema={schema}_typo"
        assert main(["events", "--db", url], environ={}) == 1
        assert "no event store in schema" in capsys.readouterr().err
        assert main(["events", "--db", f"{dsn}?schema={schema}"], environ={}) == 1  # empty

        schemas = asyncio.run(sql(dsn, "SELECT nspname FROM pg_namespace"))
        assert (f"{schema}_typo",) not in schemas

    def test_a_postgresql_role_that_may_not_use_the_schema_is_told_so(
        self, postgres_schema: tuple[str, str], capsys: Cap
    ) -> None:
        """An operator's own role without USAGE on the store's schema sees none of its
        tables: that is said, with the GRANT, rather than "no event store in schema" (which
        sent them looking for another URL while serve used this one)."""
        if os.environ.get("HUB_TEST_POSTGRES_DSN"):
            pytest.skip("needs the throwaway local server: a new role connecting without password")
        dsn, schema = postgres_schema
        asyncio.run(self._fill(f"{dsn}?schema={schema}", 1))
        role = f"ops_{schema}"
        asyncio.run(sql(dsn, f'CREATE ROLE "{role}" LOGIN'))
        try:
            url = f"{dsn.replace('://postgres@', f'://{role}@', 1)}?schema={schema}"
            assert main(["events", "--db", url], environ={}) == 1
            err = capsys.readouterr().err
            assert f"the role {role!r} may not use schema {schema!r}" in err, err
            assert f'GRANT USAGE ON SCHEMA "{schema}" TO "{role}"' in err, err
            assert "no event store" not in err, err
            asyncio.run(sql(dsn, f'GRANT USAGE ON SCHEMA "{schema}" TO "{role}"'))
            asyncio.run(sql(dsn, f'GRANT SELECT ON ALL TABLES IN SCHEMA "{schema}" TO "{role}"'))
            assert main(["events", "--db", url], environ={}) == 0  # the grant was all it took
            assert "fill-0" in capsys.readouterr().out
        finally:
            asyncio.run(sql(dsn, f'DROP OWNED BY "{role}"'))
            asyncio.run(sql(dsn, f'DROP ROLE "{role}"'))

    def test_a_postgresql_role_that_may_not_migrate_an_older_store_is_told_so(
        self, postgres_schema: tuple[str, str], capsys: Cap
    ) -> None:
        """An operator's read-only role (USAGE and SELECT, the rights `events` needs) on a
        store of an older schema, upgraded leadhub run before the new `serve` migrated it:
        the migration it cannot make is said, with what to do, where it read "failed: must
        be owner of table events (SQLSTATE 42501)". Once the owner's command migrated it, the
        same role lists it."""
        if os.environ.get("HUB_TEST_POSTGRES_DSN"):
            pytest.skip("needs the throwaway local server: a new role connecting without password")
        dsn, schema = postgres_schema
        asyncio.run(self._fill(f"{dsn}?schema={schema}", 1))
        downgrade = (  # schema 1's tables (as TestMigration in test_postgres.py makes them)
            "ALTER TABLE events DROP COLUMN requeued_at, DROP COLUMN awaits_read",
            "UPDATE meta SET value = '1' WHERE key = 'schema_version'",
        )
        for statement in downgrade:
            asyncio.run(sql(dsn, statement, schema=schema))
        role = f"reader_{schema}"
        asyncio.run(sql(dsn, f'CREATE ROLE "{role}" LOGIN'))
        try:
            asyncio.run(sql(dsn, f'GRANT USAGE ON SCHEMA "{schema}" TO "{role}"'))
            asyncio.run(sql(dsn, f'GRANT SELECT ON ALL TABLES IN SCHEMA "{schema}" TO "{role}"'))
            url = f"{dsn.replace('://postgres@', f'://{role}@', 1)}?schema={schema}"
            for command in (["events"], ["replay", "--status", "dead"]):
                assert main([*command, "--db", url], environ={}) == 1
                err = capsys.readouterr().err
                assert (
                    f"the event store in schema {schema!r} of "
                    f"{url.partition('?')[0]!r} has schema version 1, older than this "
                    f"leadhub's (2), and the role {role!r} may not migrate it (must be owner "
                    "of table events); start this leadhub's `leadhub serve` on it first, or "
                    "run a leadhub command on it once as the role that owns its tables"
                ) in err, err
                assert "SQLSTATE" not in err, err
            version = "SELECT value FROM meta WHERE key = 'schema_version'"
            assert asyncio.run(sql(dsn, version, schema=schema)) == [("1",)]  # left as it was
            assert main(["events", "--db", f"{dsn}?schema={schema}"], environ={}) == 0  # owner
            capsys.readouterr()
            assert main(["events", "--db", url], environ={}) == 0
            assert "fill-0" in capsys.readouterr().out
        finally:
            asyncio.run(sql(dsn, f'DROP OWNED BY "{role}"'))
            asyncio.run(sql(dsn, f'DROP ROLE "{role}"'))

    def test_a_postgresql_server_that_is_not_there(self, capsys: Cap) -> None:
        """Exit 1, saying what to check, without the password."""
        url = f"postgresql://hub:hunter2@127.0.0.1:{free_port()}/leadhub"
        assert main(["events", "--db", url], environ={}) == 1
        err = capsys.readouterr().err
        assert "check that PostgreSQL is running" in err
        assert "hunter2" not in err


def set_schema_version(url: str, version: str) -> str:
    """Set the store's ``meta.schema_version`` to ``version``; returns what it was."""
    if url.startswith("sqlite:"):
        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as conn:
            (old,) = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (version,))
            conn.commit()
            return str(old)
    dsn, _, schema = url.partition("?schema=")
    ((old,),) = asyncio.run(
        sql(dsn, "SELECT value FROM meta WHERE key = 'schema_version'", schema=schema)
    )
    update = "UPDATE meta SET value = $1 WHERE key = 'schema_version'"
    asyncio.run(sql(dsn, update, version, schema=schema))
    return str(old)


@pytest.mark.parametrize("command", [["events"], ["replay", "--status", "dead"]])
def test_a_store_of_a_newer_leadhub_is_refused(db: Seeded, command: list[str], capsys: Cap) -> None:
    """A store whose schema is newer than this leadhub knows (made by a later release, then
    this older one run on it) is refused with exit 1 naming both versions: its replay would
    reset only the columns it knows and leave the newer ones stale; nothing is written."""
    url, ids = db
    known = set_schema_version(url, "99")
    capsys.readouterr()
    assert main([*command, "--db", url], environ={}) == 1
    err = capsys.readouterr().err
    assert f"schema version 99, newer than this leadhub's ({known})" in err
    assert "upgrade leadhub" in err
    assert set_schema_version(url, known) == "99"
    assert states(url)[ids["dead"]] is State.DEAD


def test_serve_refuses_a_store_of_a_newer_leadhub(sqlite_db: Seeded, tmp_path: Path) -> None:
    """`leadhub serve` on a store of a newer schema stops (exit 1) saying so, as the commands do."""
    url, _ = sqlite_db
    set_schema_version(url, "99")
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "forms.yaml").write_text("kind: endpoint\nname: forms\nsource: none\n")
    argv = ["serve", "--db", url, "--port", "0", "--config-dir", str(tmp_path / "cfg")]
    done = leadhub_run(argv, env={"LEADHUB_LOG_JSON": "1"}, timeout=30)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "schema version 99, newer than this leadhub's" in done.stdout + done.stderr


@pytest.mark.parametrize("version", ["3a", "", "two"])
def test_a_schema_version_edited_into_no_number_is_refused_clearly(
    db: Seeded, version: str, capsys: Cap
) -> None:
    """A ``meta.schema_version`` edited by hand into no number was a ValueError traceback
    from every command (and serve). Now it is exit 1 naming the store, the value and what
    to do, as a newer schema is; nothing is written."""
    url, ids = db
    known = set_schema_version(url, version)
    capsys.readouterr()
    assert main(["replay", "--status", "dead", "--db", url], environ={}) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"has schema_version {version!r} in its meta table, not a whole number" in err
    assert f"set it back to the version the store was made at (this leadhub makes {known})" in err
    where = (
        url.removeprefix("sqlite:///")
        if url.startswith("sqlite:")
        else url.partition("?schema=")[2]
    )
    assert repr(where) in err
    assert set_schema_version(url, known) == version
    assert states(url)[ids["dead"]] is State.DEAD


def test_serve_refuses_a_store_without_a_schema_version(db: Seeded, tmp_path: Path) -> None:
    """`leadhub serve` on a store whose ``schema_version`` row was deleted, or edited into
    no number, stops (exit 1) with the store_open_failed line naming the store, at once
    however long ``--store-wait`` is, and no traceback. On PostgreSQL it started on a store
    without the row: its schema script's insert of the current version filled it (the store
    then taken as current, whatever tables it had), where the commands refused it."""
    url, _ = db
    if url.startswith("sqlite:"):
        where = repr(url.removeprefix("sqlite:///"))
    else:
        dsn, _, schema = url.partition("?schema=")
        where = f"in schema {schema!r} of {dsn!r}"
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "forms.yaml").write_text("kind: endpoint\nname: forms\nsource: none\n")
    argv = ["serve", "--db", url, "--port", "0", "--config-dir", str(tmp_path / "cfg")]
    set_schema_version(url, "x")
    for edit, says in [
        (None, "schema_version 'x' in its meta table"),
        ("DELETE", "no schema_version"),
    ]:
        if edit:
            delete_schema_version(url)
        done = leadhub_run(
            [*argv, "--store-wait", "10m"], env={"LEADHUB_LOG_JSON": "1"}, timeout=60
        )
        output = done.stdout + done.stderr
        assert done.returncode == 1, output
        assert "Traceback" not in output and "store_waiting" not in output
        (line,) = (orjson.loads(x) for x in output.splitlines() if "store_open_failed" in x)
        assert f"the event store {where} has {says}" in line["error"]
    assert on_meta(url, "SELECT value FROM meta WHERE key = 'schema_version'") == []  # as it was


def delete_schema_version(url: str) -> None:
    """Delete the store's ``meta.schema_version`` row, as a hand edit would."""
    on_meta(url, "DELETE FROM meta WHERE key = 'schema_version'")


def on_meta(url: str, statement: str) -> list[tuple[Any, ...]]:
    """Run ``statement`` on the store at ``url`` (SQLite or PostgreSQL); its rows."""
    if url.startswith("sqlite:"):
        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as conn:
            found = conn.execute(statement).fetchall()
            conn.commit()
            return found
    dsn, _, schema = url.partition("?schema=")
    return asyncio.run(sql(dsn, statement, schema=schema))


def read_only(where: Path, how: str) -> None:
    """Make the directory ``where`` and its files unwritable for ``leadhub_run(...,
    unprivileged=True)``: read-only modes, or (``another_user``) owned by another user who
    lets others read them (a store the hub makes is its owner's alone, 0600)."""
    for path in [*where.iterdir(), where]:
        if how == "another_user":
            os.chown(path, 65534, 65534)  # nobody
            path.chmod(0o755 if path.is_dir() else 0o644)
        else:
            path.chmod(0o555 if path.is_dir() else 0o444)


def files_of(where: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in where.iterdir()}


@pytest.mark.parametrize("how", ["read_only_modes", "another_user"])
def test_a_read_only_copy_is_listed(tmp_path: Path, how: str) -> None:
    """A store in a directory this process cannot write, without its WAL index (a backup on
    a read-only mount, another user's file): events lists it and replay --dry-run counts
    in it, opened read-only with a note on stderr (they failed: WAL mode needs the -shm
    file); replay and purge, which write, still fail saying what to make writable, and
    nothing is written or made there."""
    backup = tmp_path / "backup"
    backup.mkdir()
    url = sqlite_url(backup, "hub.db")
    ids = seed(url)  # closed: checkpointed, no -wal or -shm left
    expected = [e.id for e in asyncio.run(every_event(url))]
    assert sorted(p.name for p in backup.iterdir()) == ["hub.db"]
    read_only(backup, how)
    before = files_of(backup)
    note = (
        f"leadhub events: note: the event store {str(backup / 'hub.db')!r} cannot be written "
        "here (it or its directory is read-only); opened read-only as immutable"
    )

    done = leadhub_run(["events", "--db", url, "--json"], unprivileged=True)
    assert done.returncode == 0, done.stderr
    assert [orjson.loads(line)["id"] for line in done.stdout.splitlines()] == expected
    assert done.stderr.startswith(note) and "with writes to miss" in done.stderr
    assert "Traceback" not in done.stderr
    table = leadhub_run(["events", "--db", url, "--status", "dead"], unprivileged=True)
    assert table.returncode == 0 and "MXInvalidEmailException" in table.stdout
    dry = leadhub_run(["replay", "--db", url, "--status", "dead", "--dry-run"], unprivileged=True)
    assert (dry.returncode, dry.stdout) == (0, "Would requeue 2 events.\n"), dry.stderr
    assert "leadhub replay: note: the event store" in dry.stderr
    time.sleep(1.1)  # the seeded events last changed over a second ago
    argv = ["purge", "--db", url, "--older-than", "1s", "--status", "dead", "--dry-run"]
    counted = leadhub_run(argv, unprivileged=True)
    assert counted.returncode == 0, counted.stderr
    assert counted.stdout.startswith("Would purge 2 events: dead events last changed before")
    assert "leadhub purge: note: the event store" in counted.stderr

    refused = "it or its directory is read-only; make both writable"
    for argv in (["replay", "--status", "dead"], ["purge", "--older-than", "1d"]):
        written = leadhub_run([*argv, "--db", url], unprivileged=True)
        assert written.returncode == 1, written.stdout + written.stderr
        assert refused in written.stderr and "opened read-only" not in written.stderr
    assert files_of(backup) == before
    assert states(url)[ids["dead"]] is State.DEAD


def test_a_read_only_file_in_a_writable_directory_is_left_as_it_was(tmp_path: Path) -> None:
    """A store file this process cannot write, in a directory it can: SQLite opened it
    (for writing too, read-only without a word) making its ``-wal`` and ``-shm`` beside it,
    read-only as the file is, and left them, also when the command failed (vacuum, purge,
    replay). Once the file was made writable, as the refusal says, the ``-shm`` left
    read-only failed every write ("attempt to write a readonly database"). Now nothing is
    made there: events reads it as immutable, the writing commands are refused, and once
    the file is writable they run."""
    url = sqlite_url(tmp_path, "hub.db")
    ids = seed(url)  # closed: checkpointed, no -wal or -shm left
    path = tmp_path / "hub.db"
    path.chmod(0o444)
    listed = leadhub_run(["events", "--db", url, "--json"], unprivileged=True)
    assert listed.returncode == 0, listed.stderr
    assert len(listed.stdout.splitlines()) == len(ids)
    assert "opened read-only as immutable" in listed.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hub.db"]
    refused = "it or its directory is read-only; make both writable"
    writes = (["vacuum"], ["replay", "--status", "dead"], ["purge", "--older-than", "0s"])
    for argv in writes:
        written = leadhub_run([*argv, "--db", url], unprivileged=True)
        assert written.returncode == 1, written.stdout + written.stderr
        assert refused in written.stderr, written.stderr
        assert sorted(p.name for p in tmp_path.iterdir()) == ["hub.db"], argv
    path.chmod(0o644)  # what the refusal says to do
    for argv in writes:
        written = leadhub_run([*argv, "--db", url], unprivileged=True)
        assert written.returncode == 0, written.stdout + written.stderr
    assert states(url)[ids["dead"]] is State.QUEUED


def test_a_copy_with_writes_in_its_wal_says_they_may_be_missed(tmp_path: Path) -> None:
    """A copy taken while the hub ran (the database file and its WAL, not the WAL index)
    in a read-only directory is read as immutable: the writes still in the WAL are not
    read, and the note on stderr says so, naming the WAL file and its size."""
    url, ids = sqlite_url(tmp_path, "live.db"), seed(sqlite_url(tmp_path, "live.db"))
    backup = tmp_path / "backup"
    backup.mkdir()
    with contextlib.closing(sqlite3.connect(tmp_path / "live.db")) as conn:
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        conn.execute("UPDATE events SET state = 'delivered' WHERE id = ?", (ids["queued"],))
        conn.commit()
        for name in ("live.db", "live.db-wal"):
            (backup / name).write_bytes((tmp_path / name).read_bytes())
    assert states(url)[ids["queued"]] is State.DELIVERED
    read_only(backup, "read_only_modes")
    wal = backup / "live.db-wal"
    argv = ["events", "--db", sqlite_url(backup, "live.db"), "--id", str(ids["queued"])]
    done = leadhub_run([*argv, "--json"], unprivileged=True)
    assert done.returncode == 0, done.stderr
    assert orjson.loads(done.stdout)["state"] == "queued"  # as the database file has it
    assert (
        f"what is shown may miss the latest writes, the ones still in {str(wal)!r} "
        f"({wal.stat().st_size} bytes, not yet checkpointed into the database)."
    ) in done.stderr


def test_a_read_only_schema_3_backup_is_listed(tmp_path: Path) -> None:
    """A store of schema 3 (the file 966a566 wrote, as a backup taken before the upgrade to
    schema 4 is) on read-only media is read as it is: schema 4 changed how ids are handed
    out, nothing a read sees. ``leadhub events`` refused it ("has schema version 3, older
    than this leadhub's (4), and cannot be written here to migrate it")."""
    backup = tmp_path / "backup"
    backup.mkdir()
    old = Path(__file__).parents[1] / "fixtures" / "stores" / "sqlite-schema3-966a566.store"
    (backup / "hub.db").write_bytes(old.read_bytes())
    read_only(backup, "read_only_modes")
    before = files_of(backup)
    argv = ["events", "--db", sqlite_url(backup, "hub.db"), "--json"]
    done = leadhub_run(argv, unprivileged=True)
    assert done.returncode == 0, done.stderr
    assert [orjson.loads(line)["id"] for line in done.stdout.splitlines()] == list(range(17, 0, -1))
    assert files_of(backup) == before
    assert (backup / "hub.db").read_bytes() == old.read_bytes()


def test_a_read_only_store_refuses_writes_and_an_old_schema(tmp_path: Path) -> None:
    """A SQLite store opened read-only reads, refuses every write saying why, and refuses
    to open on a schema older than this leadhub's, which it cannot migrate."""
    from hub.store import StoreError, StoreUnavailable
    from hub.store.sqlite import SQLiteStore

    url = sqlite_url(tmp_path)
    ids = seed(url)

    async def go(mode: str) -> None:
        store = SQLiteStore(tmp_path / "events.db", read_only=mode)
        await store.open()
        try:
            assert [e.id for e in await store.list()] == sorted(ids.values(), reverse=True)
            with pytest.raises(StoreError, match="was opened read-only: it cannot be written"):
                await store.dead(ids["queued"], error="x")
        finally:
            await store.close()

    for mode in ("ro", "immutable"):
        asyncio.run(go(mode))
    set_schema_version(url, "2")
    with pytest.raises(StoreUnavailable, match="schema version 2, older than this leadhub's"):
        asyncio.run(go("immutable"))


class TestReplay:
    def test_requires_a_selector(self, db: Seeded, capsys: Cap) -> None:
        """replay with no --status/--id/--endpoint refuses (exit 2) and changes nothing."""
        url, _ = db
        before = states(url)
        assert main(["replay", "--db", url], environ={}) == 2
        assert "--status" in capsys.readouterr().err
        assert states(url) == before

    def test_by_status(self, db: Seeded, capsys: Cap) -> None:
        """--status dead requeues both dead events and nothing else."""
        url, ids = db
        assert main(["replay", "--db", url, "--status", "dead"], environ={}) == 0
        assert capsys.readouterr().out.strip() == "Requeued 2 events."
        after = states(url)
        assert after[ids["dead"]] is State.QUEUED and after[ids["dead_google"]] is State.QUEUED
        assert after[ids["unmatched"]] is State.UNMATCHED
        assert after[ids["delivered"]] is State.DELIVERED

    def test_retrying_events_are_tried_now_when_named(self, db: Seeded, capsys: Cap) -> None:
        """A retrying event (here due in an hour) is left to its schedule by --id alone, with a
        note saying how to try it now; --status retrying requeues it due now, and nothing else
        (the queued event stays as it is)."""
        url, ids = db

        async def make_retrying() -> int:
            store = open_store(url)
            await store.open()
            try:
                (res,) = await store.enqueue(delivery("id-retrying"))
                await store.retry(res.id, at=time.time() + 3600, error="HTTP 503: busy")
                return res.id
            finally:
                await store.close()

        waiting = asyncio.run(make_retrying())
        capsys.readouterr()
        assert main(["replay", "--db", url, "--id", str(waiting)], environ={}) == 0
        out, err = capsys.readouterr()
        assert out.strip() == "Requeued 0 events."
        assert err.startswith(f"leadhub replay: note: event {waiting} is retrying: still in the ")
        assert err.strip().endswith(
            f"follow it with leadhub events --id {waiting}; to try it now: leadhub replay "
            f"--status retrying --id {waiting}."
        ), err
        argv = ["replay", "--db", url, "--status", "retrying"]
        assert main([*argv, "--dry-run"], environ={}) == 0
        assert capsys.readouterr().out.strip() == "Would requeue 1 event."
        assert main(argv, environ={}) == 0
        assert capsys.readouterr().out.strip() == "Requeued 1 event."
        event = event_of(url, waiting)
        assert event.state is State.QUEUED and event.attempts == 0
        assert event.next_attempt_at <= time.time()
        assert states(url)[ids["queued"]] is State.QUEUED

    def test_dry_run_counts_and_changes_nothing(self, db: Seeded, capsys: Cap) -> None:
        """--dry-run says how many the same selection would requeue (here --status dead, and
        an --id that is delivered with one that is unmatched) and changes nothing."""
        url, ids = db
        before = states(url)
        capsys.readouterr()
        assert main(["replay", "--db", url, "--status", "dead", "--dry-run"], environ={}) == 0
        assert capsys.readouterr().out.strip() == "Would requeue 2 events."
        argv = ["replay", "--db", url, "--id", str(ids["unmatched"]), "--id", str(ids["delivered"])]
        assert main([*argv, "--dry-run"], environ={}) == 0
        assert capsys.readouterr().out.strip() == "Would requeue 1 event."
        assert states(url) == before
        assert main(["replay", "--db", url, "--status", "dead"], environ={}) == 0
        assert capsys.readouterr().out.strip() == "Requeued 2 events."

    def test_by_id_and_endpoint(self, db: Seeded, capsys: Cap) -> None:
        """--id (repeatable) and --endpoint select events; non-replayable ids are left alone."""
        url, ids = db
        argv = ["replay", "--db", url, "--id", str(ids["unmatched"]), "--id", str(ids["delivered"])]
        assert main(argv, environ={}) == 0
        assert capsys.readouterr().out.strip() == "Requeued 1 event."
        assert main(["replay", "--db", url, "--endpoint", "typeform"], environ={}) == 0
        assert capsys.readouterr().out.strip() == "Requeued 1 event."
        after = states(url)
        assert after[ids["unmatched"]] is State.QUEUED and after[ids["dead"]] is State.QUEUED
        assert after[ids["dead_google"]] is State.DEAD
        assert after[ids["delivered"]] is State.DELIVERED

    def test_ids_left_alone_are_explained(self, db: Seeded, capsys: Cap) -> None:
        """Each --id not requeued is named on stderr with why (no such event, a state replay
        never touches, or filtered out by --status/--endpoint): a silent "Requeued 0 events."
        left the operator guessing whether the id was mistyped or the event was delivered."""
        url, ids = db
        argv = ["replay", "--db", url, "--id", str(ids["dead"]), "--id", str(ids["delivered"])]
        argv += ["--id", str(ids["queued"]), "--id", "9999", "--id", str(ids["dead_google"])]
        capsys.readouterr()
        assert main([*argv, "--endpoint", "typeform"], environ={}) == 0
        out, err = capsys.readouterr()
        assert out.strip() == "Requeued 1 event."
        notes = err.splitlines()
        queued = notes.pop(1)  # it says when its next try is, and how to follow it
        assert queued.startswith(
            f"leadhub replay: note: event {ids['queued']} is queued: still in the queue, its "
            "next try due since "  # (it was received in 2023: due since then)
        ), queued
        assert queued.endswith(
            " UTC, so there is nothing to replay (replay takes dead, unmatched and skipped "
            "events, and delivered or retrying ones named by --status); follow it with leadhub "
            f"events --id {ids['queued']}."
        ), queued
        assert notes == [
            f"leadhub replay: note: event {ids['delivered']} is delivered; only dead, "
            "unmatched and skipped events are replayed unless --status delivered is given "
            "(it sends the lead again).",
            "leadhub replay: note: there is no event 9999.",
            f"leadhub replay: note: event {ids['dead_google']} is of endpoint 'google', "
            "not 'typeform'.",
        ]
        after = states(url)
        assert after[ids["dead"]] is State.QUEUED and after[ids["dead_google"]] is State.DEAD
        argv = ["replay", "--db", url, "--id", str(ids["unmatched"]), "--status", "dead"]
        assert main(argv, environ={}) == 0
        out, err = capsys.readouterr()
        assert out.strip() == "Requeued 0 events."
        assert err.strip() == (
            f"leadhub replay: note: event {ids['unmatched']} is unmatched, not dead."
        )

    def test_an_endpoint_without_events_is_named(self, db: Seeded, capsys: Cap) -> None:
        """--endpoint naming no stored event (a typo) says so on stderr, for replay, purge and
        events: "Requeued 0 events." alone read as "nothing is dead there"."""
        url, _ = db
        capsys.readouterr()
        assert main(["replay", "--db", url, "--endpoint", "typefrom"], environ={}) == 0
        out, err = capsys.readouterr()
        assert out.strip() == "Requeued 0 events."
        assert err.strip() == "leadhub replay: note: no event of endpoint 'typefrom' is stored."
        argv = ["purge", "--db", url, "--older-than", "30d", "--endpoint", "typefrom"]
        assert main(argv, environ={}) == 0
        assert capsys.readouterr().err.strip() == (
            "leadhub purge: note: no event of endpoint 'typefrom' is stored."
        )
        argv = ["replay", "--db", url, "--endpoint", "google", "--status", "skipped"]
        assert main(argv, environ={}) == 0
        assert capsys.readouterr().err == ""
        # events too: "No events match." alone read as "none of them there"
        for json in ([], ["--json"]):
            assert main(["events", "--db", url, "--endpoint", "typefrom", *json], environ={}) == 0
            out, err = capsys.readouterr()
            assert out == ("" if json else "No events match.\n")
            assert err.strip() == "leadhub events: note: no event of endpoint 'typefrom' is stored."
        argv = ["events", "--db", url, "--endpoint", "google", "--status", "skipped"]
        assert main(argv, environ={}) == 0
        assert capsys.readouterr() == ("No events match.\n", "")

    def test_status_in_any_case(self, db: Seeded, capsys: Cap) -> None:
        """--status DEAD is --status dead, as in events (replay and purge refused it)."""
        url, _ = db
        assert main(["replay", "--db", url, "--status", "DEAD"], environ={}) == 0
        assert capsys.readouterr().out.strip() == "Requeued 2 events."
        argv = ["purge", "--db", url, "--older-than", "0s", "--status", "Unmatched", "--dry-run"]
        assert main(argv, environ={}) == 0
        assert capsys.readouterr().out.startswith("Would purge 1 event: unmatched events")

    def test_bad_status_choice(self, db: Seeded) -> None:
        """--status queued (or sending) is not a replay choice: argparse exits 2."""
        url, _ = db
        for status in ("queued", "sending"):
            with pytest.raises(SystemExit) as info:
                main(["replay", "--db", url, "--status", status], environ={})
            assert info.value.code == 2

    def test_a_second_status_is_refused_not_the_last_one_taken(
        self, db: Seeded, capsys: Cap
    ) -> None:
        """replay (and events) take one --status where purge takes several: `--status dead
        --status unmatched` is a usage error naming both, and nothing is requeued (the unmatched
        events were, silently, and not the dead ones). The same state twice is that state."""
        url, ids = db
        before = states(url)
        for command in (["replay"], ["replay", "--dry-run"], ["events"]):
            with pytest.raises(SystemExit) as info:
                argv = [*command, "--db", url, "--status", "dead", "--status", "Unmatched"]
                main(argv, environ={})
            assert info.value.code == 2
            err = capsys.readouterr().err
            assert "--status takes one value, given 'dead' and then 'unmatched'" in err.lower()
        assert states(url) == before
        capsys.readouterr()
        argv = ["events", "--db", url, "--status", "dead", "--status", "DEAD", "--json"]
        assert main(argv, environ={}) == 0
        assert len(capsys.readouterr().out.splitlines()) == 2
        argv = ["replay", "--db", url, "--status", "dead", "--status", "DEAD"]
        assert main(argv, environ={}) == 0
        assert capsys.readouterr().out.strip() == "Requeued 2 events."
        assert states(url)[ids["unmatched"]] is State.UNMATCHED

    def test_delivered_only_with_status_delivered(self, db: Seeded, capsys: Cap) -> None:
        """A delivered event is requeued only by --status delivered: not by --id alone (its
        note says how), --endpoint or another --status; with it, --id and --endpoint narrow
        as usual, and the dry run counts what the replay then requeues."""
        url, ids = db
        delivered = str(ids["delivered"])
        before = states(url)
        capsys.readouterr()
        assert main(["replay", "--db", url, "--id", delivered], environ={}) == 0
        out, err = capsys.readouterr()
        assert out.strip() == "Requeued 0 events."
        assert "--status delivered" in err and f"event {delivered} is delivered" in err
        argv = ["replay", "--db", url, "--status", "delivered", "--id", delivered]
        assert main([*argv, "--endpoint", "google", "--dry-run"], environ={}) == 0
        out, err = capsys.readouterr()
        assert out.strip() == "Would requeue 0 events."
        assert err.strip() == (
            f"leadhub replay: note: event {delivered} is of endpoint 'typeform', not 'google'."
        )
        assert states(url) == before
        assert main(["replay", "--db", url, "--status", "dead", "--id", delivered], environ={}) == 0
        assert "is delivered, not dead" in capsys.readouterr().err
        assert main(["replay", "--db", url, "--endpoint", "typeform"], environ={}) == 0
        assert capsys.readouterr().out.strip() == "Requeued 1 event."  # the dead one only
        assert states(url)[ids["delivered"]] is State.DELIVERED
        assert main([*argv, "--dry-run"], environ={}) == 0
        assert capsys.readouterr() == ("Would requeue 1 event.\n", "")
        assert main(argv, environ={}) == 0
        assert capsys.readouterr() == ("Requeued 1 event.\n", "")
        event = event_of(url, ids["delivered"])
        assert (event.state, event.attempts, event.lead_id, event.target) == (
            State.QUEUED,
            0,
            None,
            None,
        )
        assert event.requeued_at is not None and event.requeued_at > time.time() - 3600
        assert main(["replay", "--db", url, "--status", "delivered"], environ={}) == 0
        assert capsys.readouterr().out.strip() == "Requeued 0 events."

    def test_since_an_age(self, db: Seeded, capsys: Cap) -> None:
        """--since AGE takes only events received in the last AGE (the seeded ones are from
        2023; a dead, a delivered and a skipped one are received now), with every --status
        and --id, dry run included; an --id received before is named; a bad AGE is a usage
        error that changes nothing."""
        url, ids = db
        recent = add_recent(url)
        before = states(url)
        capsys.readouterr()
        for status, count in [("dead", 1), ("delivered", 1), ("skipped", 1), ("unmatched", 0)]:
            argv = ["replay", "--db", url, "--status", status, "--since", "1h", "--dry-run"]
            assert main(argv, environ={}) == 0
            assert capsys.readouterr().out.strip() == f"Would requeue {count} {plural(count)}."
        argv = ["replay", "--db", url, "--since", "1h"]
        assert main([*argv, "--dry-run"], environ={}) == 0
        assert capsys.readouterr().out.strip() == "Would requeue 2 events."
        assert states(url) == before
        with pytest.raises(SystemExit) as info:
            main(["replay", "--db", url, "--since", "soon"], environ={})
        assert info.value.code == 2
        assert "--since" in capsys.readouterr().err
        assert states(url) == before
        picked = ["--id", str(ids["dead"]), "--id", str(recent["dead"])]
        assert main([*argv, *picked], environ={}) == 0
        out, err = capsys.readouterr()
        assert out.strip() == "Requeued 1 event."
        assert err.startswith(f"leadhub replay: note: event {ids['dead']} was received 2023-11-14")
        assert "(--since)" in err
        assert main(argv, environ={}) == 0
        assert capsys.readouterr().out.strip() == "Requeued 1 event."  # the skipped one
        assert main([*argv, "--status", "delivered"], environ={}) == 0
        assert capsys.readouterr().out.strip() == "Requeued 1 event."
        after = states(url)
        assert {after[i] for i in recent.values()} == {State.QUEUED}
        assert {i: after[i] for i in ids.values()} == {i: before[i] for i in ids.values()}
        argv = ["replay", "--db", url, "--since", "10000d", "--status", "dead"]
        assert main([*argv, "--dry-run"], environ={}) == 0
        assert capsys.readouterr().out.strip() == "Would requeue 2 events."
        assert main(argv, environ={}) == 0
        assert capsys.readouterr().out.strip() == "Requeued 2 events."


class TestPurge:
    def test_finished_events_older_than_the_age(self, db: Seeded, capsys: Cap) -> None:
        """By default delivered and skipped events older than --older-than go; the seeded
        events are seconds old, so 30 days spare them and no time at all does not."""
        url, ids = db
        before = states(url)
        capsys.readouterr()  # (the store's own log lines)
        assert main(["purge", "--db", url, "--older-than", "30d"], environ={}) == 0
        out, err = capsys.readouterr()
        assert out.startswith("Purged 0 events and 0 deliveries: delivered and skipped events")
        assert err == ""
        assert states(url) == before
        assert main(["purge", "--db", url, "--older-than", "0s"], environ={}) == 0
        out, err = capsys.readouterr()
        assert out.startswith("Purged 1 event and 1 delivery: ")
        assert "taken as new if its sender sends it again" in err  # shorter than 3 days
        del before[ids["delivered"]]
        assert states(url) == before

    def test_named_state_endpoint_and_dry_run(self, db: Seeded, capsys: Cap) -> None:
        """--status and --endpoint select; --dry-run counts without deleting."""
        url, ids = db
        argv = ["purge", "--db", url, "--older-than", "0s", "--status", "dead"]
        argv += ["--endpoint", "google"]
        assert main([*argv, "--dry-run"], environ={}) == 0
        out = capsys.readouterr().out.strip()
        assert out.startswith("Would purge 1 event: dead events last changed before ")
        assert out.endswith(" UTC on endpoint 'google'.")
        assert len(states(url)) == 5
        capsys.readouterr()
        assert main(argv, environ={}) == 0
        assert capsys.readouterr().out.startswith("Purged 1 event and 1 delivery: dead events")
        after = states(url)
        assert ids["dead_google"] not in after
        assert after[ids["dead"]] is State.DEAD and after[ids["unmatched"]] is State.UNMATCHED

    def test_several_states(self, db: Seeded, capsys: Cap) -> None:
        """--status is repeatable."""
        url, ids = db
        argv = ["purge", "--db", url, "--older-than", "0s", "--status", "dead"]
        assert main([*argv, "--status", "unmatched"], environ={}) == 0
        assert capsys.readouterr().out.startswith("Purged 3 events and 3 deliveries: ")
        assert set(states(url)) == {ids["queued"], ids["delivered"]}

    def test_states_named_once_in_a_sentence(self, db: Seeded, capsys: Cap) -> None:
        """A state given twice counts once, and three read "a, b and c" (it printed
        "dead and dead and unmatched and skipped")."""
        url, _ = db
        argv = ["purge", "--db", url, "--older-than", "30d", "--dry-run", "--status", "dead"]
        argv += ["--status", "dead", "--status", "unmatched", "--status", "skipped"]
        assert main(argv, environ={}) == 0
        out = capsys.readouterr().out
        assert out.startswith("Would purge 0 events: dead, unmatched and skipped events last ")

    @pytest.mark.parametrize("age", ["1000000000d", "99999999999999999999d"])
    def test_an_age_before_1970_purges_nothing(self, db: Seeded, age: str, capsys: Cap) -> None:
        """An age reaching before the epoch selects nothing (it was a ValueError or
        OverflowError traceback formatting the date)."""
        url, _ = db
        argv = ["purge", "--db", url, "--older-than", age, "--status", "dead"]
        assert main(argv, environ={}) == 0
        out, err = capsys.readouterr()
        assert out.strip() == (
            "Purged 0 events and 0 deliveries: dead events last changed before "
            "1970-01-01 00:00:00 UTC."
        )
        assert "Traceback" not in err
        assert len(states(url)) == 5

    def test_bad_age(self, db: Seeded, capsys: Cap) -> None:
        """An age that is not a duration is refused (exit 2), naming the flag."""
        url, _ = db
        assert main(["purge", "--db", url, "--older-than", "a while"], environ={}) == 2
        assert "--older-than: 'a while' is not a duration" in capsys.readouterr().err
        assert len(states(url)) == 5

    @pytest.mark.parametrize("argv", [["--status", "queued"], ["--status", "sending"], []])
    def test_pending_states_and_a_missing_age_are_usage_errors(
        self, db: Seeded, argv: list[str]
    ) -> None:
        """A pending state is not a choice, and --older-than is required: argparse exits 2."""
        url, _ = db
        age = ["--older-than", "0s"] if argv else []
        with pytest.raises(SystemExit) as info:
            main(["purge", "--db", url, *age, *argv], environ={})
        assert info.value.code == 2
        assert len(states(url)) == 5

    def test_missing_database(self, tmp_path: Path, capsys: Cap) -> None:
        """Like the other store commands, purge never creates a database."""
        url = sqlite_url(tmp_path, "absent.db")
        assert main(["purge", "--db", url, "--older-than", "30d"], environ={}) == 1
        assert "no event store at" in capsys.readouterr().err
        assert not (tmp_path / "absent.db").exists()


def test_events_into_a_closed_pipe_stops_quietly(tmp_path: Path) -> None:
    """``leadhub events | head -1``: the listing stops with 141 (SIGPIPE), no traceback."""
    url = sqlite_url(tmp_path)

    async def fill() -> None:
        store = open_store(url)
        await store.open()
        try:
            for i in range(2000):
                await store.enqueue(delivery(f"pipe-{i}"))
        finally:
            await store.close()

    asyncio.run(fill())
    cmd = [sys.executable, "-m", "hub", "events", "--db", url, "--limit", "2000", "--json"]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        first = proc.stdout.readline()
        proc.stdout.close()  # the reader goes away after one line
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=30) == 141, err
    assert orjson.loads(first)["delivery_id"].startswith("pipe-")
    assert "Traceback" not in err and "BrokenPipeError" not in err


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_output_that_cannot_be_written_is_told_in_one_line(sqlite_db: Seeded) -> None:
    """``leadhub events --json > export.jsonl`` on a full disk (/dev/full), or with standard
    output closed: exit 1 with one line saying why, no traceback (it was an OSError traceback
    from wherever the listing was, an AttributeError one with stdout closed). replay's line
    comes after its work, which is done all the same."""
    url, ids = sqlite_db
    listing = ["events", "--db", url, "--json"]
    for argv, redirect, why in (
        (listing, "> /dev/full", "No space left on device"),
        (listing, ">&-", "standard output is closed"),
        (["replay", "--db", url, "--id", str(ids["dead"])], ">&-", "standard output is closed"),
    ):
        command = f"{shlex.join([sys.executable, '-m', 'hub', *argv])} {redirect}"
        done = subprocess.run(
            ["sh", "-c", command], capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 1, done.stderr
        assert done.stderr == f"leadhub {argv[0]}: cannot write its output: {why}.\n"
    assert event_of(url, ids["dead"]).state is State.QUEUED


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Seeded:
    """A seeded SQLite database URL and its event ids."""
    url = sqlite_url(tmp_path)
    return url, seed(url)


class TestVariables:
    def test_events_flags_from_the_environment(self, sqlite_db: Seeded, capsys: Cap) -> None:
        """LEADHUB_LIMIT, _JSON, _STATUS, _ENDPOINT and _ID do what events' flags do."""
        url, ids = sqlite_db
        environ = {"LEADHUB_DB": url, "LEADHUB_LIMIT": "1", "LEADHUB_JSON": "yes"}
        assert main(["events"], environ=environ) == 0
        (line,) = capsys.readouterr().out.splitlines()
        assert orjson.loads(line)["id"] == max(ids.values())
        environ = {"LEADHUB_DB": url, "LEADHUB_JSON": "on", "LEADHUB_STATUS": "dead"}
        assert main(["events"], environ={**environ, "LEADHUB_ENDPOINT": "google"}) == 0
        shown = [orjson.loads(line)["id"] for line in capsys.readouterr().out.splitlines()]
        assert shown == [ids["dead_google"]]
        picked = f"{ids['queued']}, {ids['dead']} {ids['delivered']}"
        assert main(["events"], environ={**environ, "LEADHUB_ID": picked}) == 0
        shown = [orjson.loads(line)["id"] for line in capsys.readouterr().out.splitlines()]
        assert shown == [ids["dead"]]

    def test_replay_selects_from_the_environment(self, sqlite_db: Seeded, capsys: Cap) -> None:
        """LEADHUB_ID (a list) and LEADHUB_ENDPOINT select the events replay requeues."""
        url, ids = sqlite_db
        environ = {"LEADHUB_DB": url, "LEADHUB_ID": f"{ids['unmatched']},{ids['dead']}"}
        assert main(["replay"], environ={**environ, "LEADHUB_ENDPOINT": "google"}) == 0
        assert capsys.readouterr().out.strip() == "Requeued 1 event."
        after = states(url)
        assert after[ids["unmatched"]] is State.QUEUED and after[ids["dead"]] is State.DEAD

    def test_replay_status_since_and_dry_run_from_the_environment(
        self, sqlite_db: Seeded, capsys: Cap
    ) -> None:
        """LEADHUB_STATUS=delivered, LEADHUB_SINCE and LEADHUB_DRY_RUN do what replay's flags
        do (a bad LEADHUB_SINCE is a usage error naming it), and a flag wins."""
        url, ids = sqlite_db
        recent = add_recent(url)
        before = states(url)
        capsys.readouterr()
        environ = {"LEADHUB_DB": url, "LEADHUB_STATUS": "delivered", "LEADHUB_DRY_RUN": "yes"}
        assert main(["replay"], environ=environ) == 0
        assert capsys.readouterr().out.strip() == "Would requeue 2 events."
        assert main(["replay"], environ={**environ, "LEADHUB_SINCE": "1h"}) == 0
        assert capsys.readouterr().out.strip() == "Would requeue 1 event."
        with pytest.raises(SystemExit) as info:
            main(["replay"], environ={**environ, "LEADHUB_SINCE": "whenever"})
        assert info.value.code == 2
        assert "LEADHUB_SINCE='whenever'" in capsys.readouterr().err
        assert states(url) == before
        environ = {"LEADHUB_DB": url, "LEADHUB_STATUS": "delivered", "LEADHUB_SINCE": "1h"}
        assert main(["replay"], environ=environ) == 0
        assert capsys.readouterr().out.strip() == "Requeued 1 event."
        after = states(url)
        assert after[recent["delivered"]] is State.QUEUED
        assert after[ids["delivered"]] is State.DELIVERED
        assert main(["replay", "--status", "dead"], environ=environ) == 0
        assert capsys.readouterr().out.strip() == "Requeued 1 event."
        assert states(url)[recent["dead"]] is State.QUEUED

    def test_purge_from_the_environment(self, sqlite_db: Seeded, capsys: Cap) -> None:
        """LEADHUB_OLDER_THAN stands for the required --older-than, LEADHUB_STATUS is a list of
        states and LEADHUB_DRY_RUN=true only counts."""
        url, _ = sqlite_db
        before = states(url)
        capsys.readouterr()
        environ = {"LEADHUB_DB": url, "LEADHUB_OLDER_THAN": "0s", "LEADHUB_DRY_RUN": "true"}
        assert main(["purge"], environ={**environ, "LEADHUB_STATUS": "dead unmatched"}) == 0
        out = capsys.readouterr().out
        assert out.startswith("Would purge 3 events: dead and unmatched events last changed")
        assert states(url) == before


@pytest.mark.parametrize(
    ("url", "written"),
    [
        ("sqlite:///file:x.db", "sqlite:///x.db"),
        ("sqlite:///file:data/x.db?mode=ro", "sqlite:///data/x.db"),
        ("file:x.db", "sqlite:///x.db"),
    ],
)
@pytest.mark.parametrize("command", ["serve", "events"])
def test_a_store_in_sqlite_s_uri_form_is_refused_making_nothing(
    tmp_path: Path, url: str, written: str, command: str
) -> None:
    """A store URL naming its file in SQLite's own URI form (``file:x.db``, after
    ``sqlite:///`` or alone): serve made a file (or, for ``file:data/x.db``, a directory)
    named ``file:...`` in the working directory and ran on it; it is refused (exit 2) saying
    what to write, and nothing is made."""
    work = tmp_path / "work"
    work.mkdir()
    argv = [sys.executable, "-m", "hub", command, "--db", url]
    if command == "serve":
        argv += [*serve_args(tmp_path, free_port(), role="all")[1:3], "--port", "0"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADHUB_")} | SERVE_ENV
    result = subprocess.run(
        argv, cwd=work, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "in SQLite's URI form (file:...), which the hub does not read" in result.stderr
    assert f"write {written!r}." in result.stderr, result.stderr
    assert list(work.iterdir()) == []


def test_serve_refuses_another_application_s_database(tmp_path: Path) -> None:
    """A --db (or LEADHUB_DB) naming another application's SQLite database, not empty and
    holding none of the hub's tables (a typo): serve added its tables beside that
    application's and took webhooks into them. It refuses the file (exit 1, at once even
    with --store-wait), naming the tables it holds and what to do, and leaves it as it was."""
    db = tmp_path / "crm.db"
    with contextlib.closing(sqlite3.connect(db)) as conn:
        for table in ("customers", "invoices", "notes", "orders", "products", "users"):
            conn.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO customers (name) VALUES ('Ada')")
        conn.commit()
    before = db.read_bytes()
    argv = [*serve_args(tmp_path, free_port(), role="all", db=f"sqlite:///{db}")]
    result = leadhub_run([*argv, "--store-wait", "1m"], env=SERVE_ENV)
    assert result.returncode == 1, result.stdout + result.stderr
    assert (
        f"{str(db)!r} is no event store: it holds another database's tables (customers, "
        "invoices, notes, orders, products and 1 more) and none of the hub's (events, meta), "
        "so the hub writes nothing there; check that the URL names the event store (a typo "
        "may name another application's database), or give the hub a file of its own, like "
        "sqlite:///leadhub.db"
    ) in result.stdout, result.stdout
    assert "store_waiting" not in result.stdout
    assert db.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cfg", "crm.db"]


@pytest.mark.parametrize(
    "command",
    [
        ["events"],
        ["replay", "--status", "dead"],
        ["purge", "--older-than", "9d"],
        ["vacuum"],
        ["serve"],
        ["serve", "--store-wait", "1m"],  # (no wait makes a directory a file: none is made)
        ["sandbox"],
    ],
)
def test_a_db_naming_a_directory_says_to_name_a_file_in_it(
    tmp_path: Path, command: list[str]
) -> None:
    """``--db sqlite:////var/lib/leadhub``, the data directory rather than the store's file
    in it: every command said SQLite's "unable to open database file" and to check that
    "its directory exists and is writable", which it does and is. It says the path is a
    directory and names a file in it to give; the directory is left as it was. Real
    processes."""
    data = tmp_path / "data"
    data.mkdir()
    if command[0] == "sandbox":
        argv = ["sandbox", "--db", str(data), "--port", str(free_port())]
        example, code = str(data / "sandbox.db"), 2
    else:
        argv = [*command, "--db", f"sqlite:///{data}"]
        example, code = f"sqlite:///{data / 'leadhub.db'}", 1
    if command[0] == "serve":
        argv = [
            *serve_args(tmp_path, free_port(), role="all", db=f"sqlite:///{data}"),
            *command[1:],
        ]
    result = leadhub_run(argv, env=SERVE_ENV, timeout=60)
    assert result.returncode == code, result.stdout + result.stderr
    said = f"it is a directory, not a database file: name a file in it ({example})"
    assert said in result.stdout + result.stderr, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "store_waiting" not in result.stdout
    assert list(data.iterdir()) == []


@pytest.mark.parametrize(
    ("command", "form"),
    [
        ("events", "url"),
        ("purge", "url"),
        ("serve", "url"),
        ("sandbox", "url"),
        ("sandbox", "path"),
    ],
)
def test_a_db_ending_in_a_slash_is_refused_before_anything_is_made(
    tmp_path: Path, command: str, form: str
) -> None:
    """``--db sqlite:////srv/data/`` (or the sandbox's ``--db data/``) names a directory.
    serve made it (for its embedded sandbox's file) and then failed on it, leaving it behind;
    the sandbox made a database file named ``data``. Each command says to name a file in it
    and exits 2, and nothing is made. Real processes."""
    named = f"{tmp_path / 'data'}/"
    db = named if form == "path" else f"sqlite:///{named}"
    argv = {
        "events": ["events", "--db", db],
        "purge": ["purge", "--older-than", "9d", "--db", db],
        "serve": serve_args(tmp_path, free_port(), role="all", db=db),
        "sandbox": ["sandbox", "--port", str(free_port()), "--db", db],
    }[command]
    before = sorted(p.name for p in tmp_path.iterdir())
    result = leadhub_run(argv, env=SERVE_ENV, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    if command == "sandbox":
        said = f"names a directory, not a SQLite file; name a file in it: {named}sandbox.db"
    else:
        said = f"names a directory, not a database file; name a file in it: sqlite:///{named}leadhub.db"
    assert f"ends in '/', so it {said}" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.mark.parametrize("command", ["serve", "sandbox"])
def test_a_server_started_with_standard_output_closed_says_so(tmp_path: Path, command: str) -> None:
    """``leadhub serve >&-`` (a service script closing what it thought it did not need):
    serve and the sandbox write their log to standard output, and started without one each
    died with an AttributeError traceback ('NoneType' object has no attribute 'isatty').
    They say in one line where the log could go instead, exit 1, and make no store."""
    db = tmp_path / "hub.db"
    argv = (
        serve_args(tmp_path, free_port(), role="all", db=f"sqlite:///{db}")
        if command == "serve"
        else ["sandbox", "--port", str(free_port()), "--db", str(db)]
    )
    line = f"{shlex.join([sys.executable, '-m', 'hub', *argv])} >&-"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADHUB_")} | SERVE_ENV
    done = subprocess.run(
        ["sh", "-c", line], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr == (
        f"leadhub {command}: cannot write its log: standard output is closed; send it to a "
        "file (> hub.log), or to /dev/null to keep none.\n"
    )
    assert not db.exists()


def test_notes_with_standard_error_closed_stay_out_of_the_output(sqlite_db: Seeded) -> None:
    """``leadhub events --json 2>&- > export.jsonl``: with standard error closed, Python's
    ``print(..., file=sys.stderr)`` writes to standard output, and the note that more events
    match ended up as a line of the export that is no JSON (an error, for a missing store,
    on standard output). Each line is JSON now, and the missing store's exit code still
    tells (1). Real processes."""
    url, _ = sqlite_db
    base = [sys.executable, "-m", "hub", "events"]
    listing = f"{shlex.join([*base, '--db', url, '--json', '--limit', '1'])} 2>&-"
    done = subprocess.run(["sh", "-c", listing], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    lines = done.stdout.splitlines()
    assert len(lines) == 1, done.stdout  # (more match: the note went nowhere)
    assert orjson.loads(lines[0])["id"]
    missing = url.replace(".db", "-missing.db")
    nothing = f"{shlex.join([*base, '--db', missing])} 2>&-"
    done = subprocess.run(["sh", "-c", nothing], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (1, "")


@pytest.mark.parametrize(
    ("command", "argv", "environ", "said"),
    [
        ("events", ["--since", "30"], {}, "argument --since: '30' has no unit: write '30d' for"),
        ("events", [], {"LEADHUB_SINCE": "2.5"}, "LEADHUB_SINCE='2.5': '2.5' has no unit: "),
        ("replay", ["--since", " 7 "], {}, "argument --since: '7' has no unit: write '7d' for"),
    ],
)
def test_since_refuses_an_age_without_its_unit(
    sqlite_db: Seeded, command: str, argv: list[str], environ: dict[str, str], said: str
) -> None:
    """``--since 30``, meant as 30 days (or minutes), was read as 30 seconds: ``events``
    listed nearly nothing and ``replay`` requeued the last half minute's events only, both
    as if all was well. A bare number other than 0 is a usage error (exit 2) saying to
    write its unit, and nothing is replayed; ``--since 0`` and ``--since 30d`` are taken.
    A real process."""
    url, _ = sqlite_db
    before = states(url)
    done = leadhub_run([command, "--db", url, *argv], env=environ, leadhub_env=False)
    assert done.returncode == 2, done.stdout + done.stderr
    assert said in done.stderr, done.stderr
    assert "d' for days, or '" in done.stderr
    assert states(url) == before
    for taken in ("0", "30d"):
        given = [command, "--db", url, "--since", taken]
        done = leadhub_run([*given, *(["--dry-run"] if command == "replay" else [])])
        assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("argv", "environ", "said"),
    [
        (["--older-than", "30"], {}, "--older-than: '30' has no unit, and a purge deletes: "),
        ([], {"LEADHUB_OLDER_THAN": "7"}, "LEADHUB_OLDER_THAN: '7' has no unit, and a purge "),
    ],
)
def test_purge_refuses_an_age_without_its_unit(
    sqlite_db: Seeded, argv: list[str], environ: dict[str, str], said: str
) -> None:
    """``leadhub purge --older-than 30``, meant as 30 days, was read as 30 seconds: it
    deleted every finished event older than half a minute. A bare number other than 0 is a
    usage error (exit 2) saying to write its unit, and nothing is purged. A real process."""
    url, _ = sqlite_db
    before = states(url)
    done = leadhub_run(["purge", "--db", url, *argv], env=environ, leadhub_env=False)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith(f"leadhub purge: {said}"), done.stderr
    assert "write '" in done.stderr and "d' for days" in done.stderr
    assert states(url) == before
    zero = leadhub_run(["purge", "--db", url, "--older-than", "0", "--dry-run"], leadhub_env=False)
    assert zero.returncode == 0, zero.stderr  # (0 needs no unit: every finished event)
