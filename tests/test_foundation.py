"""The shared pieces: units, secrets, the CLI's environment defaults, log redaction."""

from __future__ import annotations

import asyncio
import datetime
import io
import json
import logging
import time

import orjson
import pytest
import structlog
import structlog.testing

from hub import cli, logs, units
from hub.clock import ManualClock
from hub.secrets import Secret


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("10s", 10.0), ("5m", 300.0), ("1h", 3600.0), ("250ms", 0.25), ("3d", 259200.0), (7, 7.0)],
)
def test_parse_duration(text: str | int, seconds: float) -> None:
    """Durations are written with a unit suffix, or as plain seconds."""
    assert units.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "ten seconds", "5x", "-1", True])
def test_parse_duration_rejects(text: object) -> None:
    """A bad duration names itself and shows the expected form."""
    with pytest.raises(units.UnitError, match="10s"):
        units.parse_duration(text)  # type: ignore[arg-type]


def test_parse_size_and_rate() -> None:
    """Sizes take binary and decimal units; rate limits take N/Ws or off."""
    assert units.parse_size("1MiB") == 1_048_576
    assert units.parse_size("100kB") == 100_000
    assert units.parse_size(512) == 512
    assert units.parse_rate_limit("25/5s") == units.RateLimit(25, 5.0)
    assert units.parse_rate_limit("500/5s") == units.RateLimit(500, 5.0)
    assert units.parse_rate_limit("2/1m") == units.RateLimit(2, 60.0)
    assert units.parse_rate_limit("OFF") is None
    assert str(units.RateLimit(25, 5.0)) == "25/5s"
    # shown as written, without binary floating-point noise (700 * 0.001 != 0.7)
    assert str(units.parse_rate_limit("25/700ms")) == "25/0.7s"
    assert str(units.RateLimit(3, 2.5)) == "3/2.5s"
    with pytest.raises(units.UnitError):
        units.parse_rate_limit("0/5s")
    with pytest.raises(units.UnitError):
        units.parse_size("0")


def test_secret_is_masked_and_compares_in_constant_time() -> None:
    """A Secret never prints itself, and matches only its own value."""
    secret = Secret("hunter2")
    assert "hunter2" not in repr(secret) and "hunter2" not in str(secret)
    assert "hunter2" not in f"{secret}"
    assert secret.matches("hunter2") and secret.matches(b"hunter2")
    assert not secret.matches("hunter3")
    assert secret.reveal() == "hunter2"


def test_manual_clock_moves_only_forward() -> None:
    """The manual clock advances on demand and refuses to go back."""
    clock = ManualClock(start=100.0)
    clock.advance(5)
    assert clock.time() == 105.0 and clock.monotonic() == 5.0
    with pytest.raises(ValueError):
        clock.advance(-1)


def test_env_defaults_fill_flags() -> None:
    """LEADHUB_<FLAG> sets a flag's default; the flag itself wins."""
    parser = cli.build_parser({"LEADHUB_PORT": "8123", "LEADHUB_DB": "sqlite:///x.db"})
    args = parser.parse_args(["serve"])
    assert args.port == 8123 and args.db == "sqlite:///x.db"
    args = parser.parse_args(["serve", "--port", "9001"])
    assert args.port == 9001


def test_logs_are_json_off_a_terminal_and_redact_secrets() -> None:
    """Off a TTY each event is one JSON line, and secret-named keys are masked."""
    out = io.StringIO()
    logs.configure(stream=out)
    structlog.get_logger().info("delivery_received", delivery_id="d1", app_secret="s3cr3t")
    line = orjson.loads(out.getvalue().splitlines()[0])
    assert line["event"] == "delivery_received"
    assert line["delivery_id"] == "d1"
    assert line["app_secret"] == "**********"
    assert "s3cr3t" not in out.getvalue()


def test_module_level_logger_follows_later_configuration() -> None:
    """A logger made before capture_logs still reports into it, with its component name."""
    log = logs.get_logger("hub.example")
    with structlog.testing.capture_logs() as captured:
        log.info("something_happened", n=1)
    assert captured == [
        {"component": "hub.example", "n": 1, "event": "something_happened", "log_level": "info"}
    ]


class _CountingStream(io.StringIO):
    """A text stream that counts its write calls."""

    writes = 0

    def write(self, s: str) -> int:
        self.writes += 1
        return super().write(s)


async def test_log_lines_in_a_loop_are_written_together_in_order() -> None:
    """Lines logged in one loop iteration reach the stream in order, in one write."""
    out = _CountingStream()
    logs.configure(stream=out, json=True)
    log = structlog.get_logger()
    for i in range(5):
        log.info("delivery_received", n=i)
    await asyncio.sleep(0)
    assert [orjson.loads(line)["n"] for line in out.getvalue().splitlines()] == list(range(5))
    assert out.writes == 1
    log.info("delivery_received", n=5)
    logs.flush()  # what exit and re-configuration do
    assert orjson.loads(out.getvalue().splitlines()[-1])["n"] == 5


def test_log_lines_of_a_loop_that_ended_early_do_not_hold_back_later_ones() -> None:
    """A line left waiting by a loop that stopped is written with the next loop's lines."""
    out = io.StringIO()
    logs.configure(stream=out, json=True)
    log = structlog.get_logger()

    async def log_and_stop(n: int) -> None:
        log.info("step", n=n)
        asyncio.get_running_loop().stop()  # the flush callback never gets its turn

    first = asyncio.new_event_loop()
    task = first.create_task(log_and_stop(0))
    first.run_forever()
    assert task.done()
    first.close()

    async def log_once() -> None:
        log.info("step", n=1)
        await asyncio.sleep(0)

    asyncio.run(log_once())
    assert [orjson.loads(line)["n"] for line in out.getvalue().splitlines()] == [0, 1]


def test_log_lines_go_to_a_binary_buffer_after_earlier_text_in_order() -> None:
    """On a real (buffered) stream, JSON lines go to its byte buffer, after text already written.

    Every line has the level, a UTC ISO timestamp with microseconds, and no secret values.
    """
    raw = io.BytesIO()
    out = io.TextIOWrapper(raw, encoding="utf-8")
    logs.configure(stream=out, json=True)
    out.write("printed first\n")  # still in the text layer's buffer
    before = time.time()
    structlog.get_logger().warning("store_slow", name="é", api_token="abc", exc_info=False)
    after = time.time()
    logs.flush()
    first, line = raw.getvalue().decode().splitlines()
    assert first == "printed first"
    entry = orjson.loads(line)
    assert entry["level"] == "warning" and entry["name"] == "é"
    assert entry["api_token"] == "**********" and "abc" not in line
    assert entry["timestamp"].endswith("Z") and len(entry["timestamp"]) == 27
    stamp = datetime.datetime.fromisoformat(entry["timestamp"][:-1]).replace(tzinfo=datetime.UTC)
    # the line's time is now, in UTC: read between two readings of the same clock (the
    # 1 ms only for the stamp's truncation to microseconds and float rounding)
    assert before - 0.001 <= stamp.timestamp() <= after + 0.001, (before, entry, after)


def test_exceptions_are_logged_with_their_traceback() -> None:
    """``log.exception`` inside an except block writes level error and the traceback."""
    out = io.StringIO()
    logs.configure(stream=out, json=True)
    try:
        raise ValueError("boom")
    except ValueError:
        structlog.get_logger().exception("ingest_failed")
    logs.flush()
    entry = orjson.loads(out.getvalue())
    assert entry["level"] == "error"
    assert "ValueError: boom" in entry["exception"]


def test_a_value_orjson_cannot_write_still_makes_a_json_line() -> None:
    """A sender's text with a lone surrogate (from a JSON escape) in a log field is written
    escaped, as valid JSON, instead of failing the line (and the request that logs it)."""
    out = io.StringIO()
    logs.configure(stream=out, json=True)
    structlog.get_logger().info("store_enqueue_failed", delivery_id="\ud800x")
    logs.flush()
    line = out.getvalue().splitlines()[-1]
    assert json.loads(line)["delivery_id"] == "\ud800x"


def test_standard_logging_records_become_structlog_lines() -> None:
    """A library's record (python-multipart's parse warning here) is a JSON line with its
    logger's name; records below WARNING (httpx's per-request INFO) are not written."""
    out = io.StringIO()
    logs.configure(stream=out, json=True, level="debug")
    logging.getLogger("python_multipart.multipart").warning("Expected boundary character %d", 45)
    logging.getLogger("httpx").info("HTTP Request: POST http://x")
    logs.flush()
    (line,) = [orjson.loads(text) for text in out.getvalue().splitlines()]
    assert line["event"] == "Expected boundary character 45"
    assert (line["logger"], line["level"]) == ("python_multipart.multipart", "warning")


def test_asyncpg_records_are_one_line_without_traceback_or_password() -> None:
    """asyncpg's pool warns with a traceback at each retry while PostgreSQL is down: the line
    keeps the exception's type and message, not the traceback, nor a password, nor the
    context bound where the pool's task began; another library's traceback stays."""
    import asyncpg

    out = io.StringIO()
    logs.configure(stream=out, json=True)
    structlog.contextvars.bind_contextvars(delivery_id="evt-1")
    try:
        try:
            raise asyncpg.CannotConnectNowError("the database system is shutting down")
        except asyncpg.CannotConnectNowError:
            logging.getLogger("asyncpg.pool").warning(
                "Failed to restore the pool connection floor; retrying", exc_info=True
            )
        try:
            raise OSError("no route to postgresql://hub:hunter2@db:5432/leads password=hunter2")
        except OSError:
            logging.getLogger("asyncpg").warning(
                "lost postgresql://hub:hunter2@db/x", exc_info=True
            )
        try:
            raise ValueError("boom")
        except ValueError:
            # (a logger nothing else configures: uvicorn's own get handlers of their own, and
            # stop reaching the bridge, once a test has started uvicorn in this process)
            logging.getLogger("tests.another_library").error("it failed", exc_info=True)
    finally:
        structlog.contextvars.clear_contextvars()
    logs.flush()
    text = out.getvalue()
    pool, lost, other = [orjson.loads(line) for line in text.splitlines()]
    assert pool["event"] == "Failed to restore the pool connection floor; retrying"
    assert (pool["logger"], pool["level"]) == ("asyncpg.pool", "warning")
    assert pool["error"] == "CannotConnectNowError"
    assert pool["detail"] == "the database system is shutting down"
    assert "exception" not in pool and "delivery_id" not in pool
    assert lost["event"] == "lost postgresql://hub:***@db/x"
    assert lost["detail"] == "no route to postgresql://hub:***@db:5432/leads password=***"
    assert "hunter2" not in text
    assert text.count("Traceback") == 1
    assert "ValueError: boom" in other["exception"] and other["delivery_id"] == "evt-1"


def test_configure_refuses_an_unknown_level() -> None:
    """A level that is not a log level name is a ValueError naming it, not a KeyError."""
    with pytest.raises(ValueError, match="unknown log level 'bogus'; use debug, info"):
        logs.configure(level="bogus", stream=io.StringIO())


def test_a_throttle_writes_a_key_s_line_once_per_interval_counting_what_it_left_out() -> None:
    throttle = logs.Throttle(1.0)
    assert throttle.admit("disk full", 10.0) == 0  # the first is written
    assert [throttle.admit("disk full", t) for t in (10.1, 10.5, 10.99)] == [None] * 3
    assert throttle.admit("locked", 10.5) == 0  # another key has its own interval
    assert throttle.admit("disk full", 11.0) == 3  # the next, saying 3 were left out
    assert throttle.admit("disk full", 11.2) is None
    assert throttle.admit("disk full", 9.0) == 1  # a clock set back never silences a key


def test_a_throttle_forgets_keys_it_has_not_written_for_an_interval_beyond_its_bound() -> None:
    throttle = logs.Throttle(1.0)
    for n in range(logs.Throttle.KEYS):
        assert throttle.admit(n, 0.0) == 0
    assert throttle.admit("one more", 0.5) == 0  # all still within the interval: kept
    assert throttle.admit(0, 0.6) is None
    assert throttle.admit("and another", 2.0) == 0  # the old ones go
    assert throttle.admit(0, 2.1) == 0  # written again (its one left out forgotten with it)
