"""Timing helpers shared by the benchmark scripts: medians after a warm-up, and callables timed
in alternation (call by call, so their ratio is taken in one machine state; the host's speed
drifts by up to 1.5x within a run)."""

from __future__ import annotations

import statistics
import time


def median_time(fn, repeats: int, warmup: int = 1) -> tuple[float, object]:
    """Median seconds of ``fn`` over ``repeats`` calls after ``warmup`` calls, and its last result."""
    result = None
    for _ in range(warmup):
        result = fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def alternate_all(fns: dict, repeats: int, warmup: int = 1) -> dict[str, tuple[float, object]]:
    """``name -> (median seconds, last result)`` of each callable in ``fns``, called in turn
    ``repeats`` times after ``warmup`` rounds."""
    results = dict.fromkeys(fns)
    for _ in range(warmup):
        results = {name: fn() for name, fn in fns.items()}
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            results[name] = fn()
            times[name].append(time.perf_counter() - start)
    return {name: (statistics.median(times[name]), results[name]) for name in fns}


def alternate(ref_fn, our_fn, repeats: int, warmup: int = 1):
    """``(ref seconds, our seconds, ref result, our result)``: medians of two callables timed
    in alternation (:func:`alternate_all`)."""
    out = alternate_all({"ref": ref_fn, "ours": our_fn}, repeats, warmup)
    return out["ref"][0], out["ours"][0], out["ref"][1], out["ours"][1]
