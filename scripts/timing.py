"""Timing helpers shared by the benchmark scripts: medians after a warm-up, and callables timed
in alternation (call by call, so their ratio is taken in one machine state; the host's speed
drifts by up to 1.5x within a run).  On a GPU every timed call is bracketed by
:func:`sync`, so a figure counts the kernels a call queued, not only their launch."""

from __future__ import annotations

import statistics
import sys
import time


def sync() -> None:
    """Wait for the GPU's queued work when torch has initialised CUDA (a no-op on CPU)."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def _timed(fn) -> tuple[float, object]:
    sync()
    start = time.perf_counter()
    result = fn()
    sync()
    return time.perf_counter() - start, result


def median_time(fn, repeats: int, warmup: int = 1) -> tuple[float, object]:
    """Median seconds of ``fn`` over ``repeats`` calls after ``warmup`` calls, and its last result."""
    result = None
    for _ in range(warmup):
        result = fn()
    times = []
    for _ in range(repeats):
        seconds, result = _timed(fn)
        times.append(seconds)
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
            seconds, results[name] = _timed(fn)
            times[name].append(seconds)
    return {name: (statistics.median(times[name]), results[name]) for name in fns}


def alternate(ref_fn, our_fn, repeats: int, warmup: int = 1):
    """``(ref seconds, our seconds, ref result, our result)``: medians of two callables timed
    in alternation (:func:`alternate_all`)."""
    out = alternate_all({"ref": ref_fn, "ours": our_fn}, repeats, warmup)
    return out["ref"][0], out["ours"][0], out["ref"][1], out["ours"][1]
