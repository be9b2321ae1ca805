"""The ``leadhub`` command: parses arguments and hands each subcommand to its module.

Every flag can also be set through ``LEADHUB_<FLAG>`` (``LEADHUB_DB``,
``LEADHUB_CONFIG_DIR``, ``LEADHUB_PORT``, ...); the flag wins over the variable.
Each subcommand lives in ``hub.commands.<name>`` as ``run(args) -> int`` and is
imported only when used, so ``leadhub check`` never loads the web stack.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from hub import __version__

ENV_PREFIX = "LEADHUB_"


class _EnvDefaults:
    """Adds arguments whose default comes from ``LEADHUB_<FLAG>`` and says so in ``--help``."""

    def __init__(self, parser: argparse.ArgumentParser, environ: Mapping[str, str]) -> None:
        self.parser = parser
        self.environ = environ

    def add(self, flag: str, *names: str, **kwargs: Any) -> None:
        dest = kwargs.get("dest") or flag.lstrip("-").replace("-", "_")
        var = ENV_PREFIX + dest.upper()
        if var in self.environ:
            value: Any = self.environ[var]
            if kwargs.get("type") is int:
                value = int(value)
            if kwargs.get("action") in ("store_true",):
                value = value.lower() in ("1", "true", "yes", "on")
            kwargs["default"] = value
            kwargs.pop("required", None)
        help_text = kwargs.get("help", "")
        kwargs["help"] = f"{help_text} [env {var}]".strip()
        self.parser.add_argument(flag, *names, **kwargs)


def build_parser(environ: Mapping[str, str]) -> argparse.ArgumentParser:
    """The argument parser; ``environ`` supplies ``LEADHUB_*`` defaults."""
    parser = argparse.ArgumentParser(
        prog="leadhub",
        description="Lead Hub: lead webhooks in, LeadSquared leads out.",
    )
    parser.add_argument("--version", action="version", version=f"leadhub {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the hub: webhook endpoints and dispatcher")
    env = _EnvDefaults(serve, environ)
    env.add("--config-dir", default="mappings", help="configuration directory")
    env.add("--host", default="127.0.0.1", help="address to listen on")
    env.add("--port", type=int, default=8000, help="port to listen on")
    env.add("--db", default="sqlite:///leadhub.db", help="event store URL")
    env.add(
        "--role",
        choices=["all", "web", "worker"],
        default="all",
        help="web: endpoints only; worker: dispatcher only; all: both",
    )
    env.add("--log-level", default="info", help="lowest log level written")
    env.add("--log-json", action="store_true", default=False, help="JSON logs even on a terminal")
    env.add("--lease", default="60s", help="how long a claimed event stays this worker's")
    env.add(
        "--purge-after",
        default="off",
        help="delete delivered and skipped events this long after their last change, "
        "checked hourly by each worker (e.g. 30d; at least 3d), or 'off'",
    )

    sandbox = sub.add_parser("sandbox", help="run the Lead.Capture sandbox on its own")
    env = _EnvDefaults(sandbox, environ)
    env.add("--host", default="127.0.0.1", help="address to listen on")
    env.add("--port", type=int, default=9000, help="port to listen on")
    env.add("--access-key", default="sandbox", help="access key the sandbox accepts")
    env.add("--secret-key", default="sandbox", help="secret key the sandbox accepts")
    env.add("--db", default=None, help="SQLite file (in memory when absent)")
    env.add("--rate-limit", default="25/5s", help="calls per window per access key, or 'off'")
    env.add("--log-level", default="info", help="lowest log level written")

    check = sub.add_parser("check", help="validate a configuration directory")
    check.add_argument(
        "dir",
        nargs="?",
        default=environ.get(ENV_PREFIX + "CONFIG_DIR", "mappings"),
        help="configuration directory [env LEADHUB_CONFIG_DIR]",
    )

    try_ = sub.add_parser("try", help="map one document as an endpoint would, without sending")
    try_.add_argument("endpoint", help="endpoint name")
    try_.add_argument("payload", help="JSON document (as the endpoint's mappings see it)")
    env = _EnvDefaults(try_, environ)
    env.add("--config-dir", default="mappings", help="configuration directory")
    try_.add_argument("--json", action="store_true", help="print one JSON object")

    events = sub.add_parser("events", help="list stored deliveries")
    env = _EnvDefaults(events, environ)
    env.add("--db", default="sqlite:///leadhub.db", help="event store URL")
    events.add_argument("--status", help="only events in this state")
    events.add_argument("--endpoint", help="only events of this endpoint")
    events.add_argument("--limit", type=int, default=50, help="at most this many (newest first)")
    events.add_argument(
        "--id", action="append", dest="ids", type=int, help="only this event (repeatable)"
    )
    events.add_argument("--json", action="store_true", help="one JSON object per line")

    replay = sub.add_parser("replay", help="queue dead, unmatched or skipped events again")
    env = _EnvDefaults(replay, environ)
    env.add("--db", default="sqlite:///leadhub.db", help="event store URL")
    replay.add_argument(
        "--status", choices=["dead", "unmatched", "skipped"], help="events in state"
    )
    replay.add_argument("--id", action="append", dest="ids", type=int, help="event id (repeatable)")
    replay.add_argument("--endpoint", help="only events of this endpoint")

    purge = sub.add_parser("purge", help="delete finished events older than an age")
    env = _EnvDefaults(purge, environ)
    env.add("--db", default="sqlite:///leadhub.db", help="event store URL")
    purge.add_argument(
        "--older-than",
        required=True,
        metavar="AGE",
        help="events last changed at least this long ago (e.g. 30d, 12h)",
    )
    purge.add_argument(
        "--status",
        action="append",
        dest="statuses",
        choices=["delivered", "skipped", "dead", "unmatched"],
        help="events in this state (repeatable; default: delivered and skipped)",
    )
    purge.add_argument("--endpoint", help="only events of this endpoint")
    purge.add_argument(
        "--dry-run", action="store_true", help="count the events instead of deleting them"
    )

    return parser


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run ``leadhub`` with ``argv``; returns the exit code."""
    env = os.environ if environ is None else environ
    args = build_parser(env).parse_args(argv)
    module_name = "try_" if args.command == "try" else args.command
    module = importlib.import_module(f"hub.commands.{module_name}")
    try:
        code: int = module.run(args)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`leadhub events | head`): stop quietly, as Unix tools do.
        # Point stdout at /dev/null so the interpreter's own flush at exit cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a tool killed by it
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
