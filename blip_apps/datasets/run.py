"""The local engine: run a pipeline over a whole dataset, resumably, with progress.

:func:`run_dataset` reads the sources (:func:`~blip_apps.datasets.inputs.iter_items`), skips
what a resumed output already holds, decodes batches on a background thread
(:func:`~blip_apps.datasets.decode.iter_decoded`), runs the pipeline
(:class:`blip_apps.api.Pipeline`) and writes records in complete-or-absent chunks
(:class:`~blip_apps.datasets.outputs.Writer`) and, with ``sidecar=".txt"``, a caption file beside
each image file.  A progress bar on stderr shows images/s and, when the number of inputs is
cheap to know (folders, lists, parquet), the ETA; the run ends with one summary line
(:meth:`Summary.line`).  An input that cannot be used is reported (``on_failure``; by default a
``blip: skipped: ...`` line on stderr) and the run goes on; failures are not written to the
output, so a resumed run tries them again.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from blip_apps.datasets.decode import iter_decoded
from blip_apps.datasets.inputs import LIST_SUFFIXES, Failure, Item, iter_items
from blip_apps.datasets.outputs import Writer, sidecar_path, write_sidecar


@dataclass
class Summary:
    """What a run did: records written (``done``), inputs ``skipped`` (already in a resumed
    output, or a kept sidecar), inputs that ``failed``, sidecars written, wall ``seconds``."""

    done: int = 0
    skipped: int = 0
    failed: int = 0
    sidecars: int = 0
    seconds: float = 0.0

    def line(self) -> str:
        """``blip: done 120, skipped 30, failed 2 in 41.3 s`` (+ sidecars when written)."""
        extra = f", {self.sidecars} sidecars written" if self.sidecars else ""
        return (
            f"blip: done {self.done}, skipped {self.skipped}, failed {self.failed}{extra} "
            f"in {self.seconds:.1f} s"
        )


def report_failure(failure: Failure) -> None:
    """The default ``on_failure``: one ``blip: skipped: REASON`` line on stderr."""
    print(f"blip: skipped: {failure.reason}", file=sys.stderr)


def count_inputs(sources: Iterable[str | os.PathLike]) -> int | None:
    """How many inputs ``sources`` hold when that is cheap to know (no ``.tar`` shards)."""
    total = 0
    for source in sources:
        path = Path(source)
        if path.is_dir():
            total += sum(1 for _ in iter_items([path]))
        elif path.suffix.lower() in LIST_SUFFIXES or path.suffix.lower() == ".parquet":
            if path.suffix.lower() == ".parquet":
                import pyarrow.parquet as pq

                try:
                    total += pq.ParquetFile(path).metadata.num_rows
                except (OSError, ValueError):
                    total += 1
            else:
                total += sum(1 for _ in iter_items([path]))
        elif path.is_file() and path.name.lower().endswith((".tar", ".tar.gz", ".tgz")):
            return None
        else:
            total += 1
    return total


class Progress:
    """A tqdm bar on stderr (images/s, ETA when the total is known), or nothing."""

    def __init__(self, total: int | None, enabled: bool) -> None:
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="img", file=sys.stderr, dynamic_ncols=True)

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def pending_items(
    sources: Iterable[str | os.PathLike],
    done: set[str],
    summary: Summary,
    column: str | None = None,
    sidecar: str | None = None,
    skip_with_sidecar: bool = False,
) -> Iterator[Item | Failure]:
    """The inputs still to do: ids in ``done`` are skipped (counted in ``summary``), and with
    ``skip_with_sidecar`` so is an image file whose sidecar already exists."""
    for entry in iter_items(sources, column):
        if isinstance(entry, Item):
            if entry.id in done:
                summary.skipped += 1
                continue
            if skip_with_sidecar and entry.path is not None:
                if sidecar_path(entry.path, sidecar).exists():
                    summary.skipped += 1
                    continue
        yield entry


def sidecar_text(record: dict) -> str | None:
    """The text a sidecar holds: the caption (or the answer)."""
    return record.get("caption", record.get("answer"))


class Sink:
    """Where records go: a :class:`Writer` (``output``), a JSON-lines ``stream``, sidecars."""

    def __init__(self, output=None, format=None, chunk_size=64, resume=False,  # noqa: A002
                 overwrite=False, sidecar=None, stream: TextIO | None = None) -> None:  # fmt: skip
        if sidecar is not None:
            sidecar_path(Path("x.png"), sidecar)  # checks the suffix
        if resume and output is None and sidecar is None:
            raise ValueError("resume=True needs an output file (or sidecar=) to resume from")
        self.writer = None
        if output is not None:
            self.writer = Writer(output, format, chunk_size, resume=resume, overwrite=overwrite)
        self.stream, self.sidecar, self.overwrite = stream, sidecar, overwrite

    @property
    def done(self) -> set[str]:
        return self.writer.done if self.writer is not None else set()

    def write(self, records: list[dict], summary: Summary) -> None:
        for record in records:
            path, text = record.get("path"), sidecar_text(record)
            if self.sidecar is not None and path is not None and text is not None:
                if write_sidecar(Path(path), text, self.sidecar, self.overwrite):
                    summary.sidecars += 1
            if self.stream is not None:
                self.stream.write(json.dumps(jsonable(record), ensure_ascii=False) + "\n")
        if self.stream is not None:
            self.stream.flush()
        if self.writer is not None:
            self.writer.write(records)
        summary.done += len(records)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def jsonable(record: dict) -> dict:
    """numpy arrays / scalars as lists / numbers."""
    return {k: v.tolist() if hasattr(v, "tolist") else v for k, v in record.items()}


def run_dataset(
    pipe: Any,
    sources: Iterable[str | os.PathLike],
    output: str | os.PathLike | None = None,
    format: str | None = None,  # noqa: A002
    column: str | None = None,
    batch_size: int = 8,
    chunk_size: int = 64,
    sidecar: str | None = None,
    overwrite: bool = False,
    resume: bool = False,
    progress: bool = True,
    stream: TextIO | None = None,
    on_failure: Callable[[Failure], None] = report_failure,
    settings: dict | None = None,
) -> Summary:
    """Run ``pipe`` (a :class:`blip_apps.api.Pipeline`) over ``sources`` and write its records
    to ``output`` (format from ``format`` or the extension), to ``stream`` as JSON lines, and /
    or as ``sidecar`` files; returns the :class:`Summary` (also printed when ``progress``).

    ``resume``: keep the records ``output`` holds and skip their ids (without ``output``, skip
    images whose sidecar exists).  ``chunk_size``: records per complete-or-absent chunk.

    Raises:
        FileExistsError: ``output`` exists and neither ``resume`` nor ``overwrite`` is set.
        ValueError: a bad format, suffix, column, ``batch_size`` or ``chunk_size``.
    """
    start = time.monotonic()
    sources = list(sources)
    summary = Summary()
    sink = Sink(output, format, chunk_size, resume, overwrite, sidecar, stream)
    skip_with_sidecar = output is None and sidecar is not None and not overwrite
    bar = Progress(count_inputs(sources) if progress else None, progress)
    todo = pending_items(sources, sink.done, summary, column, sidecar, skip_with_sidecar)
    shown = 0
    try:
        for decoded in iter_decoded(todo, pipe.prepare, batch_size):
            for failure in decoded.failures:
                summary.failed += 1
                on_failure(failure)
            sink.write(pipe.records(decoded, settings), summary)
            bar.update(len(decoded.items) + len(decoded.failures) + summary.skipped - shown)
            shown = summary.skipped
    finally:
        bar.close()
    sink.close()
    summary.seconds = time.monotonic() - start
    if progress:
        print(summary.line(), file=sys.stderr)
    return summary


__all__ = ["Progress", "Sink", "Summary", "count_inputs", "report_failure", "run_dataset"]
