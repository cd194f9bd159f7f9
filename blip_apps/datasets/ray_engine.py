"""The Ray engine: the same dataset job on Ray Data, for more cores, GPUs or machines.

:func:`run_ray` lists the inputs on the driver (skipping what a resumed output holds), makes a
dataset of ``{"id", "path", "data"}`` rows (``ray.data.from_items``), and maps batches through
:class:`RecordActor` — a callable class that builds the pipeline (:func:`blip_apps.api.pipeline`)
once per actor — with ``compute=ray.data.ActorPoolStrategy(size=actors)``, a fraction of a CPU
per actor (``num_cpus``) so the read stage always has a CPU (an actor pool that takes every CPU
deadlocks on a small cluster), and ``num_gpus`` per actor where GPUs exist.  Ray does the
distribution; the driver writes the records in input order (``preserve_order``) with the same
writers as the local engine, so the records are the local engine's.

A multi-machine run: start a cluster (``ray start --head`` on one machine, ``ray start
--address=HEAD:6379`` on the others, each with the package and the model directory at the same
path), then ``blip caption DATA --engine ray --ray-address HEAD:6379 --actors N --num-gpus 1
--output captions.parquet`` on the head.  Throughput model: ``images/s ≈ (images/s of one
actor) × actors`` while the driver (listing, writing) and the read stage keep up; one actor's
rate is the local engine's rate with that actor's threads / GPU.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from blip_apps.datasets.inputs import Failure, Item
from blip_apps.datasets.run import Sink, Summary, jsonable, pending_items, report_failure


class RecordActor:
    """A Ray Data callable class: loads the pipeline once, turns a batch of rows into records.

    A batch is a dict of columns ``id``, ``path`` (``""`` for in-memory data), ``data`` (encoded
    bytes, ``b""`` for files); the result has the columns ``id``, ``records`` (the item's records
    as JSON text, ``""`` when it failed) and ``error`` (the reason, ``""`` when it worked).
    """

    def __init__(self, task: str, model: Any, backend: str, dtype: Any, threads: Any,
                 settings: dict) -> None:  # fmt: skip
        from blip_apps.api import pipeline

        self.pipe = pipeline(task, model, backend, dtype, threads=threads, **settings)

    def __call__(self, batch: dict) -> dict:
        from blip_apps.datasets.decode import decode_items

        items = []
        for item_id, path, data in zip(batch["id"], batch["path"], batch["data"]):
            path = str(path)
            items.append(Item(str(item_id), path=Path(path) if path else None,
                              data=bytes(data) if not path else None))  # fmt: skip
        decoded = decode_items(items, self.pipe.prepare)
        records = self.pipe.records(decoded)
        per_item = len(records) // max(len(decoded.items), 1)
        by_id = {
            item.id: records[i * per_item : (i + 1) * per_item]
            for i, item in enumerate(decoded.items)
        }
        errors = {f.id: f.reason for f in decoded.failures}
        ids = [item.id for item in items]
        return {
            "id": ids,
            "records": [
                json.dumps([jsonable(r) for r in by_id[i]], ensure_ascii=False)
                if i in by_id
                else ""
                for i in ids
            ],  # fmt: skip
            "error": [errors.get(i, "") for i in ids],
        }


def _rows(entries: Iterable[Item]) -> list[dict]:
    return [
        {"id": e.id, "path": "" if e.path is None else str(e.path), "data": e.data or b""}
        for e in entries
    ]


def actor_settings(settings: dict | None, backend: str, num_gpus: float) -> dict:
    """The pipeline settings of each actor: ``settings`` plus ``device="cuda"`` for the torch
    backend when actors reserve GPUs (Ray shows each actor only its own, as ``cuda``)."""
    settings = dict(settings or {})
    if num_gpus > 0 and backend == "torch" and settings.get("device") is None:
        settings["device"] = "cuda"
    return settings


def run_ray(
    task: str,
    sources: Iterable[str | os.PathLike],
    model: Any = None,
    backend: str = "torch",
    dtype: Any = None,
    settings: dict | None = None,
    output: str | os.PathLike | None = None,
    format: str | None = None,  # noqa: A002
    column: str | None = None,
    batch_size: int = 8,
    chunk_size: int = 64,
    sidecar: str | None = None,
    overwrite: bool = False,
    resume: bool = False,
    actors: int = 1,
    num_cpus: float = 0.5,
    num_gpus: float = 0.0,
    threads: int | None = None,
    ray_address: str | None = None,
    progress: bool = True,
    stream: Any = None,
    on_failure: Callable[[Failure], None] = report_failure,
) -> Summary:
    """Run ``task`` (``caption`` / ``vqa`` / ``embed`` / ``match``) over ``sources`` on Ray Data;
    arguments as :func:`blip_apps.datasets.run.run_dataset` plus:

    ``actors``: actor pool size (each loads the model once); ``num_cpus`` / ``num_gpus``: what
    each actor reserves (keep ``actors * num_cpus`` below the cluster's CPUs so the read stage
    can run); ``threads``: torch/TF threads per actor; ``ray_address``: an existing cluster
    (``"auto"``, ``"HOST:6379"``); ``None`` starts a local one, shut down at the end.  With
    ``num_gpus`` > 0 the torch backend runs each actor's model on the GPU Ray gives it
    (``device="cuda"`` unless ``settings`` names a device).

    Raises:
        ImportError: Ray is not installed (names the extra).
        ValueError: ``actors`` < 1, negative ``num_cpus`` / ``num_gpus``, or a bad output.
    """
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise ImportError(
            f"the ray engine needs Ray Data ({exc}); install it with pip install 'blip-twin[data]'"
        ) from exc
    if isinstance(actors, bool) or not isinstance(actors, int) or actors < 1:
        raise ValueError(f"actors={actors!r}: must be a whole number >= 1")
    if num_cpus < 0 or num_gpus < 0:
        raise ValueError(f"num_cpus={num_cpus!r}, num_gpus={num_gpus!r}: must be >= 0")
    settings = actor_settings(settings, backend, num_gpus)
    start = time.monotonic()
    summary = Summary()
    sink = Sink(output, format, chunk_size, resume, overwrite, sidecar, stream)
    skip_with_sidecar = output is None and sidecar is not None and not overwrite
    items = []
    for entry in pending_items(list(sources), sink.done, summary, column, sidecar,
                               skip_with_sidecar):  # fmt: skip
        if isinstance(entry, Failure):
            summary.failed += 1
            on_failure(entry)
        else:
            items.append(entry)
    started = False
    if items:
        if ray_address is None and not ray.is_initialized():
            ray.init(num_cpus=max(2, os.cpu_count() or 1), include_dashboard=False,
                     log_to_driver=False)  # fmt: skip
            started = True
        elif ray_address is not None and not ray.is_initialized():
            ray.init(address=ray_address, log_to_driver=False)
            started = True
        try:
            _map(ray, items, task, model, backend, dtype, settings or {}, batch_size, actors,
                 num_cpus, num_gpus, threads, progress, sink, summary, on_failure)  # fmt: skip
        finally:
            if started:
                ray.shutdown()
    sink.close()
    summary.seconds = time.monotonic() - start
    if progress:
        print(summary.line(), file=sys.stderr)
    return summary


def _map(ray, items, task, model, backend, dtype, settings, batch_size, actors, num_cpus,
         num_gpus, threads, progress, sink, summary, on_failure) -> None:  # fmt: skip
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    context.enable_progress_bars = bool(progress)
    model = None if model is None else str(model)
    dataset = ray.data.from_items(_rows(items)).map_batches(
        RecordActor,
        fn_constructor_args=(task, model, backend, dtype, threads, settings),
        batch_size=batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=num_cpus,
        num_gpus=num_gpus,
    )
    for batch in dataset.iter_batches(batch_size=batch_size, batch_format="numpy"):
        records = []
        for item_id, text, error in zip(batch["id"], batch["records"], batch["error"]):
            if error:
                summary.failed += 1
                on_failure(Failure(str(item_id), str(error)))
            elif text:
                records.extend(json.loads(str(text)))
        sink.write(records, summary)


__all__ = ["RecordActor", "run_ray"]
