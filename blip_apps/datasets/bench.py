"""Dataset throughput: the local engine against Ray Data with 1 and 2 actors, per dtype.

:func:`run_benchmark` captions the same folder with each configuration and returns images per
second (wall time of the whole run, model loading included for Ray's actors, excluded for the
local engine whose pipeline is built first).  It measures only when called (by the benchmark
script, not by tests); no figures live in this file.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any


def _scenes(folder: Path, n: int) -> Path:
    from blip_apps.demo import data

    folder.mkdir(parents=True, exist_ok=True)
    for i, example in enumerate(data.make_examples(123, n)):
        example.image.save(folder / f"scene_{i:05d}.png")
    return folder


def run_benchmark(
    images: str | Path | None = None,
    num_images: int = 64,
    model: str | None = None,
    backend: str = "torch",
    dtypes: tuple = ("float32", "bfloat16"),
    batch_size: int = 8,
    ray_actors: tuple[int, ...] = (1, 2),
    num_cpus_per_actor: float = 0.5,
    threads_per_actor: int | None = 1,
) -> dict[str, Any]:
    """Images/s of each engine and dtype: ``{"images": N, "results": [{"engine", "actors",
    "dtype", "seconds", "images_per_s"}, ...]}``.

    ``images``: a folder (default: ``num_images`` generated scenes in a temporary folder);
    ``ray_actors``: the pool sizes to try (``()`` skips Ray); a local Ray cluster is started
    per configuration with ``max(2, actors)`` CPUs and shut down after it.
    """
    from blip_apps.api import pipeline
    from blip_apps.datasets.run import run_dataset

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder = Path(images) if images is not None else _scenes(tmp / "scenes", num_images)
        count = sum(1 for p in folder.rglob("*") if p.is_file())
        for dtype in dtypes:
            pipe = pipeline("caption", model, backend, dtype)
            start = time.perf_counter()
            summary = run_dataset(pipe, [folder], output=tmp / f"local-{dtype}.jsonl",
                                  batch_size=batch_size, progress=False)  # fmt: skip
            seconds = time.perf_counter() - start
            results.append({"engine": "local", "actors": 0, "dtype": dtype, "seconds": seconds,
                            "images_per_s": summary.done / seconds})  # fmt: skip
            for actors in ray_actors:
                import ray

                from blip_apps.datasets.ray_engine import run_ray

                ray.init(num_cpus=max(2, actors), include_dashboard=False, log_to_driver=False)
                try:
                    start = time.perf_counter()
                    summary = run_ray("caption", [folder], model, backend, dtype,
                                      output=tmp / f"ray{actors}-{dtype}.jsonl",
                                      batch_size=batch_size, actors=actors,
                                      num_cpus=num_cpus_per_actor, threads=threads_per_actor,
                                      progress=False)  # fmt: skip
                    seconds = time.perf_counter() - start
                finally:
                    ray.shutdown()
                results.append({"engine": "ray", "actors": actors, "dtype": dtype,
                                "seconds": seconds, "images_per_s": summary.done / seconds})  # fmt: skip
    return {"images": count, "batch_size": batch_size, "backend": backend, "results": results}


__all__ = ["run_benchmark"]
