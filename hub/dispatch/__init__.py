"""The dispatcher: stored events out to LeadSquared, within rate limits, with retries.

Modules: ``ratelimit`` (per-target sliding window behind the ``RateLimiter``
protocol), ``retry`` (exponential backoff with full jitter), ``leadsquared`` (the
``Lead.Capture`` client and outcome classification), ``graph`` (Facebook lead
retrieval), ``enrich`` (the dispatcher's use of it), ``lane`` (one target's queue and
senders), ``lease`` (how long a claim's lease must last), ``proxies`` (the proxy and CA
settings), ``transport`` (httpx over aiohttp: ``make_http_client``), ``worker`` (the
:class:`Dispatcher` and its lifespan hook), ``metrics``.

The package imports none of its modules: importing one (``proxies`` or ``lease``, as
``leadhub check`` does) loads only what that one needs.
"""
