"""A proxy refusing the hub's lead reads (407: credentials wrong, or none given) is the
operator's configuration, not the lead's failure: it holds the endpoint's reads as an API's
throttling does, and the time held does not count toward the events' give_up_after (a send's
407 pauses its target alike). Real forward proxy, real SQLite store, real dispatcher."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import structlog

from hub.dispatch.proxies import Proxies
from hub.dispatch.transport import make_http_client
from hub.store.models import State
from tests.dispatch.support import (
    FB_ENV,
    all_in,
    enqueue,
    facebook_yaml,
    flat_endpoint_yaml,
    opened_store,
    running,
    sandbox_get,
    sandbox_server,
    slow_graph,
    states,
    target_yaml,
    wait_for,
    write_config,
)
from tests.support.proxy import forward_proxy

GIVE_UP = 1.0  # seconds: the target's give_up_after, outlived several times over


def _proxied_config(tmp_path: Path, sandbox_url: str, graph_url: str, retry: str) -> Any:
    """A Facebook endpoint whose Graph API is reached through the proxy (loopback is reached
    directly: the API by a name only the proxy resolves), sending to the sandbox with
    ``retry``."""
    return write_config(
        tmp_path / "cfg",
        target_yaml("default", sandbox_url, retry=retry),
        facebook_yaml(graph_url.replace("127.0.0.1", "graph.proxied.test")),
        flat_endpoint_yaml("forms", "default"),
        environ=FB_ENV,
    )


@contextlib.contextmanager
def _refused_by_a_proxy(tmp_path: Path, retry: str) -> Iterator[tuple[Any, str, Any, Any, Proxies]]:
    """A sandbox, a Graph stand-in, and a forward proxy refusing the hub's credentials (until
    its ``fixed``): (the configuration of :func:`_proxied_config` with ``retry``, the
    sandbox's url, the Graph stand-in, the proxy's record, the proxy settings to give)."""
    with (
        sandbox_server() as (sandbox_url, _),
        slow_graph(0.0) as (graph_url, graph),
        forward_proxy(login="ops", password="right") as (proxy_url, seen),
    ):
        given = proxy_url.replace("http://", "http://ops:wrong@")
        proxies = Proxies({"HTTP_PROXY": given, "HTTPS_PROXY": given})
        yield (
            _proxied_config(tmp_path, sandbox_url, graph_url, retry),
            sandbox_url,
            graph,
            seen,
            proxies,
        )


async def test_leads_outlive_give_up_after_while_a_proxy_refuses_their_reads(
    tmp_path: Path,
) -> None:
    """Three Facebook leads whose reads a proxy refuses (wrong credentials) for three times
    the target's give_up_after: none is dead (each read retried on its own backoff, they
    were dead as 'gave up after N attempt(s)' at give_up_after, the proxy's fault); each
    says why, and ``lead_reads_held`` says the reads are held, naming the proxy. Once the
    proxy takes the credentials, all three are read and sent."""
    retry = f"{{initial: 50ms, max_interval: 200ms, give_up_after: {GIVE_UP:g}s}}"
    with _refused_by_a_proxy(tmp_path, retry) as (cfg, sandbox_url, graph, seen, proxies):
        notices = [{"leadgen_id": f"7000{n}", "page_id": "1"} for n in range(3)]
        async with (
            make_http_client(proxies=proxies) as http,
            opened_store(tmp_path / "hub.db") as store,
        ):
            ids = await enqueue(store, "fb", notices, prefix="fb")
            started = time.monotonic()
            with structlog.testing.capture_logs() as logs:
                async with running(cfg, store, http=http):
                    await wait_for(
                        lambda: time.monotonic() - started > 3 * GIVE_UP and len(seen.lines) > 3,
                        what="reads refused for three times give_up_after",
                    )
                    events = list((await states(store, ids)).values())
                    assert [e.last_error for e in events if e.state == State.DEAD] == []
                    assert graph.reads == []
                    seen.fixed = True  # the proxy's account fixed: the held reads go through
                    await wait_for(all_in(State.DELIVERED, store, ids), what="delivered")
        sent = sorted(lead["EmailAddress"] for lead in sandbox_get(sandbox_url, "/_sandbox/leads"))
    errors = [e.last_error or "" for e in events]
    assert all("the proxy refused the hub's credentials" in e for e in errors), errors
    assert not any("wrong" in e for e in errors)
    held = [line for line in logs if line["event"] == "lead_reads_held"]
    assert held and all(line["endpoint"] == "fb" for line in held)
    assert all("407" in line["reason"] and "wrong" not in line["reason"] for line in held)
    assert sent == [f"7000{n}@fb.example" for n in range(3)]


async def test_a_restart_reads_at_once_the_leads_a_proxy_held(tmp_path: Path) -> None:
    """Leads held untried by a proxy's refusal (the hold: the target's initial retry, 30 s)
    are read at once by a start (the proxy's variable fixed by a restart), as the lead whose
    read was refused is: those put back untried waited out the hold after the restart."""
    retry = "{initial: 30s, max_interval: 1h, give_up_after: 1h}"
    with _refused_by_a_proxy(tmp_path, retry) as (cfg, _, graph, seen, proxies):
        notices = [{"leadgen_id": f"7100{n}", "page_id": "1"} for n in range(3)]
        async with (
            make_http_client(proxies=proxies) as http,
            opened_store(tmp_path / "hub.db") as store,
        ):
            ids = await enqueue(store, "fb", notices, prefix="fb")
            async with running(cfg, store, http=http, reads_per_endpoint=1):

                async def all_held() -> bool:
                    events = (await states(store, ids)).values()
                    return all("proxy refused" in (e.last_error or "") for e in events)

                await wait_for(all_held, what="every lead held by the proxy")
            untried = [e for e in (await states(store, ids)).values() if e.attempts == 0]
            assert untried and graph.reads == []
            seen.fixed = True  # (as a restart with the variable fixed would)
            async with running(cfg, store, http=http):
                await wait_for(all_in(State.DELIVERED, store, ids), timeout=15, what="sent")
    assert sorted(graph.reads) == [f"7100{n}" for n in range(3)]
