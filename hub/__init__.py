"""Lead Hub: a self-hosted webhook router that turns lead webhooks into LeadSquared leads."""

from __future__ import annotations

import sys
from collections.abc import Sequence

__version__ = "0.1.0"
__all__ = ["COMMANDS", "EXIT_INTERRUPTED", "__version__", "main", "stopped"]

#: Every command, as its first word is written.
COMMANDS = ("serve", "sandbox", "check", "try", "events", "replay", "purge", "backup", "vacuum")
#: The exit code of a command stopped by Ctrl-C (SIGINT), as a shell reports it.
EXIT_INTERRUPTED = 130


def stopped(argv: Sequence[str]) -> int:
    """Say on standard error (if open) that the command ``argv`` names was stopped by Ctrl-C
    (``leadhub COMMAND: stopped.``); its exit code."""
    command = next((a for a in argv if a in COMMANDS), None)
    if sys.stderr is not None:
        print(f"leadhub{f' {command}' if command else ''}: stopped.", file=sys.stderr)
    return EXIT_INTERRUPTED


def main() -> int:
    """The ``leadhub`` command: :func:`hub.cli.main`, loaded here, so that a Ctrl-C while
    Python loads it (tens of milliseconds, more on a busy machine) ends as one does once it
    runs, with one line and exit 130, not a KeyboardInterrupt traceback."""
    try:
        from hub.cli import main as run
    except KeyboardInterrupt:
        return stopped(sys.argv[1:])
    return run()
