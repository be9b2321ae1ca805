"""The embedded imitation of LeadSquared's ``Lead.Capture`` API (design/sandbox.md).

Use::

    app = create_app(access_key="K", secret_key="S", db_path=None)
    ...                           # serve it, or Mount("/sandbox", app=app)
    app.state.sandbox.close()     # when done: closes SQLite and its worker thread

The app needs no lifespan events (a mounted app gets none): its SQLite
connection is opened in :func:`create_app` and used from one worker thread.
Whoever creates it closes it with ``app.state.sandbox.close()`` (idempotent).
``app.state.sandbox`` is the :class:`Sandbox`; tests may reach its ``db``,
``faults`` and ``limiter``.

Modules: ``app`` (checks and dispatch), ``api`` (endpoints), ``capture`` (the
matching and update rules), ``attributes`` (body validation), ``db`` (SQLite),
``ratelimit``, ``faults`` (injected failures, dropping connections), ``wire``
(requests and replies), ``errors`` (the MX envelope).
"""

from __future__ import annotations

from hub.sandbox.app import DEFAULT_RATE_LIMIT, Sandbox, create_app, sandbox_of

__all__ = ["DEFAULT_RATE_LIMIT", "Sandbox", "create_app", "sandbox_of"]
