"""Benchmark rows for the README: onnxruntime fp32/int8 beside blip_torch, in one run.

Called by the project's benchmark script (never by the tests: nothing here is a unit test).
Each row is ``{"backend", "dtype", "task", "batch", "seconds_per_batch", "ms_per_image",
"tokens"}`` for greedy captioning of the same pixels with the same settings.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np


def _time(fn, repeats: int) -> tuple[float, np.ndarray]:
    out = fn()  # warm-up (session allocation, first-call costs)
    start = time.perf_counter()
    for _ in range(repeats):
        out = fn()
    return (time.perf_counter() - start) / repeats, np.asarray(out)


def caption_rows(
    model_dir: str | Path,
    batch_sizes=(1, 8),
    max_new_tokens: int = 20,
    repeats: int = 3,
    threads: int | None = None,
    dtypes=("fp32", "int8"),
    seed: int = 0,
) -> list[dict]:
    """Greedy-caption timings of blip_torch (fp32 eager) and blip_onnx (each of ``dtypes``)
    for a captioning model directory; exports into a temporary directory first.  Rows also
    carry ``same_ids_as_torch`` (token-identical to the torch row of the same batch)."""
    import torch

    import blip_onnx
    import blip_torch
    from blip_apps.export import export_onnx

    if threads is not None:
        torch.set_num_threads(threads)
    reference = blip_torch.BlipForConditionalGeneration.from_pretrained(model_dir)
    size = reference.config.vision_config.image_size
    rng = np.random.default_rng(seed)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        runtimes = {}
        for dtype in dtypes:
            out = export_onnx(model_dir, Path(tmp) / dtype, dtype=dtype)
            runtimes[dtype] = blip_onnx.BlipForConditionalGeneration.from_pretrained(
                out, threads=threads
            )
        for batch in batch_sizes:
            pixels = rng.standard_normal((batch, 3, size, size)).astype(np.float32)
            with torch.no_grad():
                seconds, ref_ids = _time(
                    lambda p=pixels: reference.generate(
                        torch.from_numpy(p), max_new_tokens=max_new_tokens
                    ).numpy(),
                    repeats,
                )
            runs = [("torch", "fp32", seconds, ref_ids)]
            for dtype, model in runtimes.items():
                seconds, ids = _time(
                    lambda m=model, p=pixels: m.generate(p, max_new_tokens=max_new_tokens),
                    repeats,
                )
                runs.append(("onnxruntime", dtype, seconds, ids))
            for backend, dtype, seconds, ids in runs:
                rows.append(
                    {
                        "backend": backend,
                        "dtype": dtype,
                        "task": "caption-greedy",
                        "batch": batch,
                        "seconds_per_batch": seconds,
                        "ms_per_image": 1000.0 * seconds / batch,
                        "tokens": int(ids.shape[1]),
                        "same_ids_as_torch": bool(
                            ids.shape == ref_ids.shape and (ids == ref_ids).all()
                        ),
                    }
                )
    return rows


__all__ = ["caption_rows"]
