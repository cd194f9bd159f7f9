"""What each ``blip`` sub-command does, over :mod:`blip_apps.pipeline`.

Every command writes JSON lines to an :class:`Output`.  An input image that cannot be read or
preprocessed becomes a record ``{"path": ..., "error": ...}`` (and a ``blip: skipped:`` line on
stderr) and the run goes on; the command then returns :data:`~blip_apps.errors.EXIT_SOME_FAILED`.
Anything that stops the whole run is raised (see :mod:`blip_apps.errors` for how it is shown).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from blip_apps.errors import (
    EXIT_OK,
    EXIT_SOME_FAILED,
    MODEL_ERRORS,
    ModelError,
    UsageError,
    message,
)


class Output:
    """The JSON-lines stream of one run (stdout or ``--output``) and its failure count."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.failed = 0

    def emit(self, record: dict) -> None:
        self.stream.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.stream.flush()

    def fail(self, path: str | Path, reason: str) -> None:
        """Report one input that could not be used; the run goes on."""
        self.failed += 1
        print(f"blip: skipped: {reason}", file=sys.stderr)
        self.emit({"path": str(path), "error": reason})

    @property
    def status(self) -> int:
        return EXIT_SOME_FAILED if self.failed else EXIT_OK


def _progress(total: int, enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return None
    return tqdm(total=total, unit="img", file=sys.stderr, dynamic_ncols=True)


def load_task(task_class: type, args: Any, task: str) -> Any:
    """``task_class(model directory, backend)`` for ``--model`` / ``--backend``.

    Raises:
        UsageError: the backend's framework is not installed.
        ModelError: the directory cannot be found or its files cannot be loaded.
    """
    from blip_apps.backends import load_backend
    from blip_apps.pipeline import resolve_model

    try:
        backend = load_backend(args.backend)
    except ImportError as exc:
        raise UsageError(f"--backend {args.backend}: {message(exc)}") from exc
    where = args.model if args.model is not None else f"the bundled demo model {task!r}"
    try:
        return task_class(resolve_model(args.model, task), backend)
    except (*MODEL_ERRORS, OSError, ValueError, KeyError) as exc:
        raise ModelError(f"cannot load {where}: {message(exc)}") from exc


def _images(inputs: list[str]) -> list[Path]:
    from blip_apps.pipeline import expand_images

    paths = expand_images(inputs)
    if not paths:
        raise UsageError("no images found in " + ", ".join(inputs))
    return paths


def _batches(paths: list[Path], processor, args: Any, out: Output):
    """Decoded batches; each failed file reported on ``out``; a progress bar on stderr."""
    from blip_apps.pipeline import iter_image_batches

    bar = _progress(len(paths), len(paths) > 1 and not getattr(args, "quiet", False))
    try:
        for batch in iter_image_batches(paths, processor, args.batch_size):
            for path, reason in batch.failures:
                out.fail(path, reason)
            if batch.pixel_values is not None:
                yield batch
            if bar is not None:
                bar.update(len(batch.paths) + len(batch.failures))
    finally:
        if bar is not None:
            bar.close()


def _one_image(path: str, processor, out: Output) -> np.ndarray | None:
    """``(1, 3, H, W)`` pixels of one image, or ``None`` (reported on ``out``)."""
    from blip_apps.pipeline import decode_batch

    batch = decode_batch([Path(path)], processor)
    for failed, reason in batch.failures:
        out.fail(failed, reason)
    return batch.pixel_values


def cmd_match(args: Any, out: Output) -> int:
    from blip_apps.pipeline import Matcher

    matcher = load_task(Matcher, args, "retrieval")
    pixels = _one_image(args.image, matcher.processor, out)
    if pixels is None:
        return out.status
    for row in matcher.match(pixels, args.texts):
        out.emit({"image": args.image, **row})
    return out.status


def cmd_search(args: Any, out: Output) -> int:
    from blip_apps.pipeline import Matcher

    paths = _images([args.images])
    matcher = load_task(Matcher, args, "retrieval")
    kept, embeds, states = [], [], []
    for batch in _batches(paths, matcher.processor, args, out):
        e, s = matcher.encode_images(batch.pixel_values)
        kept += batch.paths
        embeds.append(e)
        states.append(s)
    if not kept:
        return EXIT_SOME_FAILED
    result = matcher.search(np.concatenate(embeds), np.concatenate(states), args.query, args.top_k)
    for rank, row in enumerate(result.as_list(), 1):
        out.emit({"rank": rank, "image": str(kept[row["index"]]), "itm": row["itm"],
                  "itc": row["itc"]})  # fmt: skip
    return out.status


def convert_main(argv: list[str]) -> int:
    """``blip convert ...``: the converter's command line, :func:`blip_apps.convert.main`
    (the same as ``blip-convert ...``; its exit codes are the ones of :mod:`blip_apps.errors`)."""
    from blip_apps.convert import main

    return main(argv)


__all__ = [
    "Output",
    "cmd_match",
    "cmd_search",
    "convert_main",
    "load_task",
]
