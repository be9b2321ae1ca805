"""The benches' set-up, checked in `make test` (the benches themselves run in `make bench`).

A bench that cannot start, or whose deliveries the hub would refuse, fails only when
someone runs it; these checks catch that at once, without loading anything.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hub.config import load
from hub.sources import Incoming
from hub.sources.build import build_source
from tests.mappings.cases import SHIPPED


def test_the_benches_load_the_shipped_config_with_their_environment(tmp_path: Path) -> None:
    """bench.ingest's environment opens the shipped directory; the drain target file loads."""
    from bench.drain import KEYS, TARGET_YAML
    from bench.ingest import DEMO_ENV

    config = load(SHIPPED, DEMO_ENV)
    assert "typeform" in config.endpoints
    shutil.copytree(SHIPPED, tmp_path / "config")
    (tmp_path / "config" / "targets.yaml").write_text(
        TARGET_YAML.format(url="http://127.0.0.1:1", limit="500/5s")
    )
    env = {**DEMO_ENV, "LSQ_ACCESS_KEY": KEYS[0], "LSQ_SECRET_KEY": KEYS[1]}
    target = load(tmp_path / "config", env).targets["default"]
    assert target.rate_limit is not None and target.rate_limit.calls == 500


def test_the_ingest_pool_is_signed_as_the_hub_verifies(tmp_path: Path) -> None:
    """Every pooled delivery passes the shipped Typeform endpoint's check, with its own id."""
    from bench.ingest import DEMO_ENV, write_pool

    pool = tmp_path / "pool.txt"
    write_pool(pool, 5)
    source = build_source(load(SHIPPED, DEMO_ENV).endpoints["typeform"])
    ids = set()
    for line in pool.read_text().splitlines():
        signature, body = line.split("\t", 1)
        request = Incoming("POST", {"typeform-signature": signature}, body.encode())
        source.verify(request, now=0.0)  # raises VerificationError when the signature is wrong
        ids.add(body)
    assert len(ids) == 5


@pytest.mark.slow
def test_wrk_sends_the_pool_and_every_200_is_stored(tmp_path: Path) -> None:
    """bench.ingest's wrk script (bench/pool.lua) against a real ``leadhub serve``.

    No errors and no other outcome than accepted (a wrong signature would be 401, a cut
    body 400), no delivery sent twice, and the events stored equal the hub's 200s.
    """
    from bench.common import ensure_wrk
    from bench.ingest import HEADERS, one_run, write_pool

    try:
        wrk = ensure_wrk()
    except (OSError, RuntimeError) as exc:  # no wrk and no package mirror: nothing to run
        pytest.skip(f"wrk unavailable: {exc}")
    pool = tmp_path / "pool.txt"
    write_pool(pool, 60_000)
    shutil.copytree(SHIPPED, tmp_path / "config")
    values = one_run("hub", 4, 1, wrk=wrk, pool=pool, tmp=tmp_path, duration=1)
    row = dict(zip(HEADERS, values, strict=True))
    assert row["errors"] == 0, row
    assert row["check"] == "ok", row  # stored == the hub's 200s, nothing wrapped
    assert isinstance(row["stored"], int), row
    assert 0 < row["stored"] == row["200s (server)"], row
    # the server's CPU from /proc: its event loop's process and the store's writer child
    writer, total, cores = row["writer µs/req"], row["CPU µs/req"], row["cores"]
    assert isinstance(writer, float) and isinstance(total, float), row
    assert isinstance(cores, float) and cores > 0, row
    assert 0 < writer < total, row


def test_the_commit_bench_stores_every_delivery_and_counts_its_page_writes() -> None:
    """bench.commit inserts through the writer's own code: every delivery is stored once
    (the ids are distinct), and random ids make each commit write more pages than ordered
    ones (each lands on a dedupe-index leaf of its own), for the same bytes on disk."""
    from bench.commit import HEADERS, deliveries, one_run, ordered_ids, random_ids

    n = 4000
    in_order, at_random = ordered_ids(n), random_ids(n)
    assert in_order == sorted(in_order, key=lambda i: i[:12])

    def measured(kind: str, ids: list[str]) -> dict[str, float]:
        row = one_run(kind, 1, deliveries(ids), 16)
        return {h: float(v) for h, v in zip(HEADERS, row, strict=True) if h != "ids"}

    ordered, randomly = measured("ordered", in_order), measured("random", at_random)
    assert ordered["stored"] == randomly["stored"] == n
    assert 0 < ordered["writes/dl"] < randomly["writes/dl"]
    assert 0 < ordered["written B/dl"] < randomly["written B/dl"]
    assert abs(ordered["on disk B/dl"] - randomly["on disk B/dl"]) < 0.05 * ordered["on disk B/dl"]
