"""Decode dataset items into model inputs on a background thread, a few batches ahead.

:func:`iter_decoded` is the one decode loop of the Python API (:mod:`blip_apps.api`), the local
engine and each Ray actor: it groups items into batches, loads every image
(:meth:`~blip_apps.datasets.inputs.Item.load`), and calls ``prepare`` (the pipeline's
preprocessing) on the images that loaded.  An image that fails is a :class:`Failure` of its batch;
a batch never raises for one bad image.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

import PIL.Image

from blip_apps.datasets.inputs import Failure, Item
from blip_core.image_processing import ImageLoadError

# What one unreadable image can raise while it is loaded and preprocessed (the pipeline's list).
DECODE_ERRORS = (ImageLoadError, PIL.Image.DecompressionBombError, OSError, ValueError)


def describe(item_id: str, exc: BaseException) -> str:
    """One line naming ``item_id`` and why it could not be used."""
    if isinstance(exc, ImageLoadError):
        return str(exc)
    if isinstance(exc, PIL.Image.DecompressionBombError):
        return f"cannot load image {item_id!r}: too many pixels (decompression bomb?): {exc}"
    return f"cannot load image {item_id!r}: {type(exc).__name__}: {exc}"


@dataclass
class Decoded:
    """One batch: the ``items`` that decoded, their prepared ``inputs`` (``None`` when none
    did), and the ``failures`` (in input order)."""

    items: list[Item]
    inputs: Any
    failures: list[Failure] = field(default_factory=list)


def decode_items(items: list[Item], prepare: Callable[[list], Any]) -> Decoded:
    """Load ``items`` and ``prepare`` the images; a failing image becomes a :class:`Failure`
    (if ``prepare`` refuses the batch, each image is tried alone to find the culprit)."""
    images, ok, failures = [], [], []
    for item in items:
        try:
            images.append(item.load())
            ok.append(item)
        except DECODE_ERRORS as exc:
            failures.append(Failure(item.id, describe(item.id, exc)))
    if not images:
        return Decoded([], None, failures)
    try:
        return Decoded(ok, prepare(images), failures)
    except DECODE_ERRORS:
        kept, good = [], []
        for item, image in zip(ok, images):
            try:
                prepare([image])
                kept.append(item)
                good.append(image)
            except DECODE_ERRORS as exc:
                failures.append(Failure(item.id, describe(item.id, exc)))
        return Decoded(kept, prepare(good) if good else None, failures)


def _batches(stream: Iterable[Item | Failure], batch_size: int) -> Iterator[list]:
    iterator = iter(stream)
    while True:
        chunk = list(islice(iterator, batch_size))
        if not chunk:
            return
        yield chunk


def iter_decoded(
    stream: Iterable[Item | Failure],
    prepare: Callable[[list], Any],
    batch_size: int,
    prefetch: int = 2,
) -> Iterator[Decoded]:
    """:class:`Decoded` batches of ``batch_size`` stream entries, decoded on one background
    thread ``prefetch`` batches ahead so decoding overlaps the model; failures already in the
    stream (unreadable inputs) are passed through in their batch."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r}: must be a whole number >= 1")

    def work(chunk: list) -> Decoded:
        items = [x for x in chunk if not isinstance(x, Failure)]
        decoded = decode_items(items, prepare)
        given = [x for x in chunk if isinstance(x, Failure)]
        decoded.failures = given + decoded.failures
        return decoded

    with ThreadPoolExecutor(max_workers=1) as pool:
        pending: deque = deque()
        for chunk in _batches(stream, batch_size):
            pending.append(pool.submit(work, chunk))
            if len(pending) > prefetch:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


__all__ = ["DECODE_ERRORS", "Decoded", "decode_items", "describe", "iter_decoded"]
