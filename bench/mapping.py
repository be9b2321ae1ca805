"""Mapping throughput: documents mapped per second on one thread, per shipped example.

For each golden case in ``tests/mappings/*/`` (an ``endpoint`` and the ``input.json`` its
mappings see), the shipped configuration ``mappings/`` maps the document with
``hub.mapping.map_document`` exactly as the dispatcher does (match every mapping of the
endpoint, then ``skip_if``, fields and transforms of the one that takes it). The result is
first checked against the case's ``expected.json``. The baseline is a plain loop that calls
jsonpath-ng's ``find`` on the same paths (every mapping's ``match`` paths, and the taking
mapping's ``skip_if`` and field paths), each parsed once with the extended parser, and
collects the values: no transforms, no output. Hub and baseline alternate, ``--rounds``
times each, for ``--seconds`` per measurement; medians are reported. Headline: the Typeform
example's docs/s, then ``mapping_ratio`` (its docs/s over the baseline's).

Descent (``$..``) is measured apart, on a document of about 1 MB (``tests.mapping.test_descent``'s
``realistic``: a form's leads with nested objects and lists): each path's native evaluation
against jsonpath-ng's ``find`` of it, alternating, the best of ``--rounds`` tries each
(``descent_ratio``: jsonpath-ng's time over the hub's for ``$..email``).

Mapping the same document again and again finds its phone number in the ``phone``
transform's memo (parsing one costs 15-17 µs per document here), where real traffic
brings a new number with almost every lead. So the hub is also measured with that memo
emptied before every document ("cold" column, and ``typeform_docs_per_s_cold``): what a
stream of distinct leads gets.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import time
from collections.abc import Callable
from typing import Any

from jsonpath_ng.ext.parser import parse as jsonpath_parse

from bench.common import REPO, machine, median, table
from bench.ingest import DEMO_ENV
from hub.commands.try_ import as_json
from hub.config import load
from hub.mapping import CaptureRequest, CompiledMapping, Skip, map_document
from hub.mapping.paths import compile_path
from hub.mapping.transforms import clear_memos
from tests.mapping.test_descent import realistic

CASES = REPO / "tests" / "mappings"
HEADLINE = "typeform-full"


def paths_used(mappings: list[CompiledMapping], document: Any) -> list[str]:
    """The JSONPath texts ``map_document`` evaluates for ``document``, in order."""
    texts = [c.path.text for m in mappings for rule in m.match for c in rule]
    taking = [m for m in mappings if m.matches(document)]
    if len(taking) == 1:
        m = taking[0]
        texts += [c.path.text for rule in m.skip_if for c in rule]
        if not isinstance(map_document(mappings, document), Skip):
            texts += [f.path.text for f in m.fields if f.path is not None]
    return texts


def rate(work: Callable[[], object], seconds: float) -> float:
    """Calls of ``work`` per second, measured over about ``seconds``."""
    batch = 1
    gc.collect()
    while True:  # size a batch to ~1/20 of the measurement
        start = time.perf_counter()
        for _ in range(batch):
            work()
        if time.perf_counter() - start > seconds / 20:
            break
        batch *= 2
    calls = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(batch):
            work()
        calls += batch
    return calls / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=1.5, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds")
    args = parser.parse_args()
    print(f"machine: {machine()}", flush=True)
    config = load(REPO / "mappings", {**os.environ, **DEMO_ENV})
    rows: list[list[object]] = []
    headline: tuple[float, float, float] | None = None  # warm docs/s, ratio, cold docs/s
    for case in sorted(p.parent for p in CASES.glob("*/endpoint")):
        endpoint = (case / "endpoint").read_text().strip()
        document = json.loads((case / "input.json").read_bytes())
        expected = json.loads((case / "expected.json").read_bytes())
        mappings = config.mappings_for(endpoint)
        result = map_document(mappings, document)
        if as_json(result) != expected:
            msg = f"{case.name}: the mapping result differs from expected.json; fix that first"
            raise SystemExit(msg)
        exprs = [jsonpath_parse(text) for text in paths_used(mappings, document)]

        def hub(mappings: list[CompiledMapping] = mappings, document: Any = document) -> object:
            return map_document(mappings, document)

        def cold(mappings: list[CompiledMapping] = mappings, document: Any = document) -> object:
            clear_memos()
            return map_document(mappings, document)

        def baseline(exprs: list[Any] = exprs, document: Any = document) -> object:
            return [[m.value for m in e.find(document)] for e in exprs]

        hub_rates: list[float] = []
        cold_rates: list[float] = []
        base_rates: list[float] = []
        for rnd in range(args.rounds):
            runs = [(hub, hub_rates), (cold, cold_rates), (baseline, base_rates)]
            for work, into in runs if rnd % 2 == 0 else runs[::-1]:
                into.append(rate(work, args.seconds))
        hub_rate, cold_rate = median(hub_rates), median(cold_rates)
        base_rate = median(base_rates)
        outcome = result.status if not isinstance(result, CaptureRequest) else "send"
        rows.append(
            [case.name, outcome, len(exprs), hub_rate, cold_rate, base_rate, hub_rate / base_rate]
        )
        print(table(HEADERS, rows[-1:]).splitlines()[-1], flush=True)
        if case.name == HEADLINE:
            headline = (hub_rate, hub_rate / base_rate, cold_rate)
    print()
    print(table(HEADERS, rows))
    print()
    if headline is None:
        msg = f"no case {HEADLINE!r} in {CASES}"
        raise SystemExit(msg)
    descent = descents(args.rounds)
    print(table(DESCENT_HEADERS, descent))
    print()
    print(f"descent_ratio: {descent[0][-1]:.1f}")
    print(f"typeform_docs_per_s_cold: {headline[2]:.0f}")
    print(f"typeform_docs_per_s: {headline[0]:.0f}")
    print(f"mapping_ratio: {headline[1]:.2f}")


HEADERS = ["case", "outcome", "paths", "hub docs/s", "cold", "jsonpath-ng docs/s", "ratio"]

#: Descent paths timed on the 1 MB document (the first gives ``descent_ratio``).
DESCENT_PATHS = ["$..email", "$..answers[*].email", "$..[?(@.type=='email')].email", "$..*"]
DESCENT_HEADERS = ["1 MB document", "values", "hub ms", "jsonpath-ng ms", "ratio"]


def best_time(work: Callable[[], object], tries: int) -> float:
    """The quickest of ``tries`` calls of ``work``, in seconds."""
    best = float("inf")
    for _ in range(tries):
        gc.collect()
        start = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - start)
    return best


def descents(rounds: int) -> list[list[object]]:
    """One row per :data:`DESCENT_PATHS` path: values found, the hub's and jsonpath-ng's
    best time on the 1 MB document, alternating, and their ratio."""
    document = realistic()
    rows: list[list[object]] = []
    for text in DESCENT_PATHS:
        hub_path = compile_path(text)
        ng_path = jsonpath_parse(text)
        found = hub_path.values(document)
        if found != [m.value for m in ng_path.find(document)]:
            raise SystemExit(f"{text}: the hub and jsonpath-ng disagree; fix that first")
        hub_s: list[float] = []
        ng_s: list[float] = []
        for rnd in range(max(rounds, 2)):
            runs = [
                (functools.partial(hub_path.values, document), hub_s),
                (functools.partial(ng_path.find, document), ng_s),
            ]
            for work, into in runs if rnd % 2 == 0 else runs[::-1]:
                into.append(best_time(work, 3))
        hub_ms, ng_ms = min(hub_s) * 1000, min(ng_s) * 1000
        rows.append([text, len(found), round(hub_ms, 1), round(ng_ms, 1), ng_ms / hub_ms])
    return rows


if __name__ == "__main__":
    main()
