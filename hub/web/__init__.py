"""The hub's web side: webhook ingest, health, metrics (``hub.web.app.create_app``).

The package imports none of its modules: a command that needs only the metrics registry
(``purge``, through the store's retention) does not load the whole app with it.
"""
