"""Timing in interleaved rounds: every system alike under load from elsewhere."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

MAX_RUNS = 30
# A run shorter than this is preceded by an untimed run of the same system. Thread pools spin
# for a while after a call (ONNX Runtime's intra-op pool, OpenMP's threads): timed right
# after another engine, a one-pair call shared the cores with that engine's spinning threads
# and read 56 ms instead of 25 (docs/performance.md). The untimed run absorbs it.
SETTLE_BELOW_S = 1.0

Scorer = Callable[[list[tuple[str, str]]], list[float]]


def timed_rounds(
    scorers: dict[str, Scorer],
    pairs: list[tuple[str, str]],
    repeats: int,
    cell_seconds: float,
    min_seconds: float,
) -> dict[str, dict]:
    """Time each scorer in rounds (sample, peer, ours, sample, ...) so that load from elsewhere
    hits all alike. A scorer runs ``repeats`` times, stopping early once its runs took
    ``cell_seconds``, and more times (up to ``MAX_RUNS``) until they took ``min_seconds``: a
    single pair takes milliseconds, and three such runs give a median at the mercy of noise.

    A short scorer (its last run under ``SETTLE_BELOW_S``) runs once untimed before each
    timed run, so that no engine is timed among another's spinning threads.

    Returns each scorer's wall times, process CPU times (less sensitive to other processes
    sharing the cores than wall time) and last scores."""
    results = {name: {"times_s": [], "cpu_s": [], "scores": []} for name in scorers}
    for _ in range(MAX_RUNS):
        for name, scorer in scorers.items():
            cell = results[name]
            runs, spent = len(cell["times_s"]), sum(cell["times_s"])
            if (runs and spent >= cell_seconds) or (runs >= repeats and spent >= min_seconds):
                continue
            if runs and cell["times_s"][-1] < SETTLE_BELOW_S:
                scorer(pairs)
            wall, cpu = time.perf_counter(), time.process_time()
            cell["scores"] = scorer(pairs)
            cell["times_s"].append(time.perf_counter() - wall)
            cell["cpu_s"].append(time.process_time() - cpu)
    return results


def cell_summary(cell: dict, pairs: int, reference: list[float], against: str) -> dict:
    """One system's figures on one workload: its runs, medians, pairs/s and the largest score
    difference to ``reference`` (stored under ``max_abs_diff_vs_<against>``)."""
    median = statistics.median(cell["times_s"])
    return {
        "times_s": cell["times_s"],
        "cpu_s": cell["cpu_s"],
        "median_s": median,
        "median_cpu_s": statistics.median(cell["cpu_s"]),
        "pairs_per_s": pairs / median,
        f"max_abs_diff_vs_{against}": max(
            abs(a - b) for a, b in zip(cell["scores"], reference, strict=True)
        ),
    }
