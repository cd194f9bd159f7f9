"""Dataset outputs: JSON lines, CSV and parquet written in complete-or-absent chunks; sidecars.

:func:`open_writer` picks the format from ``format=`` or the file's extension (``.jsonl``,
``.csv``, ``.parquet``).  Records are dicts with an ``id``; values that are dicts or lists
(``settings``, ``answers``) are JSON text in CSV and parquet and decoded again by
:func:`read_records`.

Nothing is ever half-written:

* **JSON lines / CSV**: a chunk is serialised in memory and appended with one ``write`` on a
  file opened ``O_APPEND``, then ``fsync``.  A killed process leaves either the whole chunk or a
  prefix of it; a prefix ends in a torn tail (the bytes after the last record terminator),
  which :class:`Writer` truncates when the file is opened again.  Every record before the
  last terminator is complete, so the file only ever holds whole records.
* **parquet**: each chunk is one part file ``NAME.parquet.parts/part-NNNNNN.parquet``, written
  under a temporary name, fsynced and renamed into place (a rename is atomic: the part is
  there whole or not at all).  :meth:`Writer.close` merges the finished file (if any) and the
  parts into ``NAME.parquet`` (temporary name + rename), then removes the parts; a part row
  whose id the finished file already holds is dropped, so a kill between the rename and the
  removal never duplicates a record.

``resume=True`` keeps what the output holds and :attr:`Writer.done` lists its ids, so the run
skips them; the records of a killed-and-resumed run are then exactly those of an uninterrupted
one, none twice.  Without ``resume`` an existing output is refused unless ``overwrite=True``.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv", ".parquet": "parquet"}
NESTED = ("settings", "answers")  # fields stored as JSON text in CSV and parquet


def output_format(path: str | os.PathLike, format: str | None = None) -> str:  # noqa: A002
    """``format`` if given, else the format of ``path``'s extension.

    Raises:
        ValueError: an unknown format or extension (the message lists the allowed ones).
    """
    allowed = sorted(set(FORMATS.values()))
    if format is not None:
        if format not in allowed:
            raise ValueError(f"format={format!r}: expected one of {', '.join(allowed)}")
        return format
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(
            f"output {str(path)!r}: cannot tell the format from the extension {suffix!r}; use "
            f"one of {', '.join(FORMATS)} or give format= ({', '.join(allowed)})"
        )
    return FORMATS[suffix]


def _flat(record: dict) -> dict:
    return {
        k: json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list)) else v
        for k, v in record.items()
    }


def _unflat(record: dict) -> dict:
    out = dict(record)
    for key in NESTED:
        if isinstance(out.get(key), str):
            out[key] = json.loads(out[key])
    return out


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _append(path: Path, data: bytes) -> None:
    """Append ``data`` with one ``write`` call (looping only on a short write), then fsync."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def _csv_complete_length(data: bytes) -> int:
    """Bytes up to and including the last newline that ends a CSV row (outside quotes)."""
    end, quoted = 0, False
    for i, byte in enumerate(data):
        if byte == 0x22:  # '"'; an escaped quote '""' toggles twice
            quoted = not quoted
        elif byte == 0x0A and not quoted:
            end = i + 1
    return end


def _complete_length(data: bytes, fmt: str) -> int:
    if fmt == "csv":
        return _csv_complete_length(data)
    return data.rfind(b"\n") + 1


def _read_text_records(path: Path, fmt: str) -> list[dict]:
    text = path.read_bytes()
    text = text[: _complete_length(text, fmt)].decode("utf-8")
    if fmt == "jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    return [_unflat(_typed(row)) for row in rows]


def _typed(row: dict) -> dict:
    """CSV cells back to numbers where they are numbers (scores); empty cells to ``None``."""
    out = {}
    for key, value in row.items():
        if value == "":
            out[key] = None
            continue
        try:
            out[key] = float(value) if key not in ("id", "path", "caption", "answer") else value
        except ValueError:
            out[key] = value
    return out


def _parts_dir(path: Path) -> Path:
    return path.with_name(path.name + ".parts")


def _read_parquet(path: Path) -> list[dict]:
    import pyarrow.parquet as pq

    records: list[dict] = []
    seen: set[str] = set()
    files = [path] if path.is_file() else []
    parts = _parts_dir(path)
    if parts.is_dir():
        files += sorted(parts.glob("part-*.parquet"))
    for file in files:
        for row in pq.read_table(file).to_pylist():
            if row["id"] not in seen:
                seen.add(row["id"])
                records.append(_unflat({k: v for k, v in row.items() if v is not None}))
    return records


def read_records(path: str | os.PathLike, format: str | None = None) -> list[dict]:  # noqa: A002
    """Every complete record of an output (its unfinished parquet parts included), in order."""
    path = Path(path)
    fmt = output_format(path, format)
    if fmt == "parquet":
        return _read_parquet(path)
    return _read_text_records(path, fmt) if path.is_file() else []


class Writer:
    """Append records to ``path`` in chunks of ``chunk_size``; see the module docstring.

    Raises:
        FileExistsError: ``path`` exists and neither ``resume`` nor ``overwrite`` is set.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        format: str | None = None,  # noqa: A002
        chunk_size: int = 64,
        resume: bool = False,
        overwrite: bool = False,
    ) -> None:
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"chunk_size={chunk_size!r}: must be a whole number >= 1")
        self.path = Path(path)
        self.format = output_format(self.path, format)
        self.chunk_size = chunk_size
        self.pending: list[dict] = []
        self.fields: list[str] | None = None
        parts = _parts_dir(self.path)
        exists = self.path.exists() or parts.exists()
        if exists and not resume:
            if not overwrite:
                raise FileExistsError(
                    f"output {str(self.path)!r} exists; resume=True (--resume) continues it, "
                    "overwrite=True (--overwrite) replaces it"
                )
            self.path.unlink(missing_ok=True)
            shutil.rmtree(parts, ignore_errors=True)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        held = self._open_existing() if resume else []
        self.done: set[str] = {r["id"] for r in held}
        self.written = 0
        self._next_part = len(list(parts.glob("part-*.parquet"))) if parts.is_dir() else 0

    def _open_existing(self) -> list[dict]:
        """Truncate a torn tail (text formats) and return the records already held."""
        if self.format != "parquet" and self.path.is_file():
            data = self.path.read_bytes()
            keep = _complete_length(data, self.format)
            if keep < len(data):
                with open(self.path, "r+b") as handle:
                    handle.truncate(keep)
                    handle.flush()
                    os.fsync(handle.fileno())
            if self.format == "csv" and keep:
                header = data[: data.find(b"\n")].decode("utf-8")
                self.fields = next(csv.reader([header]))
        return read_records(self.path, self.format)

    def write(self, records: Iterable[dict]) -> None:
        """Queue records; every full chunk is written at once."""
        for record in records:
            self.pending.append(record)
            if len(self.pending) >= self.chunk_size:
                self.flush()

    def flush(self) -> None:
        """Write the queued records as one chunk (nothing when none are queued)."""
        if not self.pending:
            return
        chunk, self.pending = self.pending, []
        if self.format == "jsonl":
            data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in chunk)
            _append(self.path, data.encode("utf-8"))
        elif self.format == "csv":
            _append(self.path, self._csv_chunk(chunk))
        else:
            self._parquet_part(chunk)
        self.done.update(r["id"] for r in chunk)
        self.written += len(chunk)

    def _csv_chunk(self, chunk: list[dict]) -> bytes:
        buffer = io.StringIO(newline="")
        header = self.fields is None
        if header:
            self.fields = list(dict.fromkeys(k for r in chunk for k in r))
        extra = {k for r in chunk for k in r} - set(self.fields)
        if extra:
            raise ValueError(
                f"output {str(self.path)!r}: records have fields {sorted(extra)} that its CSV "
                f"header ({', '.join(self.fields)}) lacks; write to a new file"
            )
        writer = csv.DictWriter(buffer, self.fields, lineterminator="\n")
        if header:
            writer.writeheader()
        writer.writerows(_flat(r) for r in chunk)
        return buffer.getvalue().encode("utf-8")

    def _parquet_part(self, chunk: list[dict]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        parts = _parts_dir(self.path)
        parts.mkdir(parents=True, exist_ok=True)
        final = parts / f"part-{self._next_part:06d}.parquet"
        tmp = parts / f".{final.name}.tmp"
        pq.write_table(pa.Table.from_pylist([_flat(r) for r in chunk]), tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, final)
        _fsync_dir(parts)
        self._next_part += 1

    def close(self) -> None:
        """Flush the last chunk; for parquet, merge the parts into ``NAME.parquet``."""
        self.flush()
        if self.format != "parquet":
            return
        parts = _parts_dir(self.path)
        if not parts.is_dir():
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        records = [_flat(r) for r in _read_parquet(self.path)]
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        pq.write_table(pa.Table.from_pylist(records), tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)
        _fsync_dir(self.path.parent)
        shutil.rmtree(parts)

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.close()
        else:  # keep complete chunks only; the queued partial chunk is redone on resume
            self.pending = []


def open_writer(path, format=None, **kwargs) -> Writer:  # noqa: A002
    """A :class:`Writer` for ``path`` (see its arguments)."""
    return Writer(path, format, **kwargs)


def sidecar_path(image: Path, suffix: str = ".txt") -> Path:
    """``photo.jpg`` -> ``photo.txt`` (the caption file training tools read)."""
    if not suffix.startswith("."):
        raise ValueError(f"sidecar={suffix!r}: must start with '.', e.g. '.txt'")
    return image.with_suffix(suffix)


def write_sidecar(image: Path, text: str, suffix: str = ".txt", overwrite: bool = False) -> bool:
    """Write ``text`` beside ``image`` atomically; an existing sidecar is kept unless
    ``overwrite``.  Returns whether the file was written."""
    path = sidecar_path(image, suffix)
    if path.exists() and not overwrite:
        return False
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return True


__all__ = [
    "FORMATS",
    "Writer",
    "open_writer",
    "output_format",
    "read_records",
    "sidecar_path",
    "write_sidecar",
]
