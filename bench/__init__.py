"""Benchmarks: one script per figure, run with ``python -m bench.<name>``; see BENCHMARKS.md."""
