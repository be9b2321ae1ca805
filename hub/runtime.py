"""Interpreter settings for a long-running server process (applied once it has started).

* **Garbage collector.** Every webhook body parses into a few hundred containers, so
  with the default threshold (700 allocations) the cyclic collector ran every few
  requests, and each full collection walked every object the process holds (config,
  compiled paths, libraries). :func:`tune_for_serving` moves what exists at start-up
  into the permanent generation (``gc.freeze``), which is never scanned, and raises the
  young-generation threshold. Reference counting still frees almost everything at once;
  the collector only finds cycles, and still does, just less often.
* **Thread switch interval.** The store's writer thread releases the GIL in every
  SQLite call and must get it back from the busy event loop; Python hands it over only
  when the switch interval (5 ms by default) runs out, so every hand-over could hold a
  group commit back by milliseconds. A shorter interval keeps commits flowing.
"""

from __future__ import annotations

import gc
import sys

#: Allocations (net of frees) between young-generation collections; the default is 700.
GEN0_THRESHOLD = 20_000
#: Young collections per middle one, and middle ones per full one (defaults 10 and 10).
OLDER_THRESHOLDS = (20, 20)
#: Seconds a thread may hold the GIL while another waits for it (default 0.005).
SWITCH_INTERVAL = 0.0005


def tune_for_serving() -> None:
    """Freeze the start-up heap, collect less often, and shorten the GIL switch interval."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GEN0_THRESHOLD, *OLDER_THRESHOLDS)
    sys.setswitchinterval(SWITCH_INTERVAL)
