"""SIGHUPs that come while ``leadhub serve`` cannot reload yet (or while ``leadhub sandbox``
starts), remembered rather than fatal.

Kept apart from :mod:`hub.web.reload` (which loads the web stack): ``leadhub`` installs
:class:`Hangups` for ``serve`` before it imports the command's modules
(:func:`remember_early`), and ``serve`` takes that one over (:func:`take_early`).
"""

from __future__ import annotations

import signal
from collections.abc import Callable

#: What :func:`signal.signal` gives back: the handler that was in place.
Previous = signal.Handlers | Callable[..., object] | int | None


class Hangups:
    """SIGHUPs that come while no reload can run: before the app has started (``serve``
    waiting for its store, up to ``--store-wait``) and once it is stopping. Without a handler
    the signal's default action ends the process at once, without a log line (exit 129): a
    reload asked for at the wrong moment (a config-map watcher, ``docker kill -s HUP``) killed
    the hub. Here a SIGHUP is only remembered; :func:`hub.web.reload.reload_on_hangup`
    reloads once for one that came before it started (the files may have changed since they
    were read), and one that comes while stopping is left at that (nothing is left to
    reload)."""

    def __init__(self) -> None:
        self.pending = False
        #: The handler the first :meth:`install` replaced (to put back at the end).
        self.previous: Previous = None

    def install(self) -> Previous:
        """Remember SIGHUPs from now on (main thread only); the handler it replaces."""
        return signal.signal(signal.SIGHUP, self._remember)

    def _remember(self, signum: int, frame: object) -> None:
        self.pending = True  # a plain flag: safe in a signal handler


_early: Hangups | None = None


def remember_early() -> None:
    """Remember SIGHUPs from now on, before ``serve`` or ``sandbox`` loads its modules (half
    a second or more): meanwhile a SIGHUP's default action ended the process (exit 129, no
    log line), though a SIGHUP while serve starts is to be applied once it has started, and
    one to the sandbox (which has nothing to reload) logged and ignored."""
    global _early
    _early = Hangups()
    _early.previous = _early.install()


def take_early() -> Hangups | None:
    """The :class:`Hangups` :func:`remember_early` installed (once), or None."""
    global _early
    early, _early = _early, None
    return early
