"""Dataset inputs: folders, lists of paths, parquet tables and webdataset-style ``.tar`` shards.

:func:`iter_items` turns what the user names into a stream of :class:`Item` (one image with a
stable id) and :class:`Failure` (one input that cannot be used, with a one-line reason that
names it).  A broken input never stops the stream: it becomes a :class:`Failure` and the next
input follows.  Images are not decoded here — :meth:`Item.load` does that, on the decode thread.

Sources, by what the path is:

* a folder: every image file below it (recursive), sorted by path; id = the file's path;
* ``*.txt`` / ``*.lst``: one image path per non-empty line (``#`` starts a comment); a relative
  path is relative to the list file's folder; id = that path;
* ``*.parquet``: one row per image; ``column`` names a string column of paths (relative to the
  table's folder) or a binary column of encoded image bytes (also a struct column with a
  ``bytes`` field, as Hugging Face ``datasets`` stores images); without ``column`` the first of
  :data:`DEFAULT_COLUMNS` present is used; id = the path, or ``TABLE#ROW`` for bytes;
* ``*.tar``: webdataset shards — members grouped by key (the member name up to the first ``.``
  of its base name), the image member chosen by suffix; id = ``SHARD/KEY``;
* any other file: one image; id = its path.
"""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import PIL.Image
import PIL.ImageOps

from blip_core.image_processing import ImageLoadError, load_image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")
LIST_SUFFIXES = (".txt", ".lst")
DEFAULT_COLUMNS = ("image", "path", "image_path", "file", "filename", "bytes", "jpg", "png")


@dataclass(frozen=True)
class Item:
    """One image of a dataset: its stable ``id`` and either a file ``path`` or encoded ``data``."""

    id: str
    path: Path | None = None
    data: bytes | None = None

    def load(self) -> PIL.Image.Image:
        """The image as RGB (EXIF orientation applied).

        Raises:
            ImageLoadError: the file or bytes are not an image Pillow can read (names the id).
        """
        if self.path is not None:
            return load_image(self.path)
        if self.data is None:
            raise ImageLoadError(self.id, "no image data")
        try:
            with PIL.Image.open(io.BytesIO(self.data)) as image:
                return PIL.ImageOps.exif_transpose(image).convert("RGB")
        except (PIL.UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
            raise ImageLoadError(
                self.id, f"not a readable image ({type(exc).__name__}: {exc})"
            ) from exc


@dataclass(frozen=True)
class Failure:
    """An input that cannot be used: its id and a one-line reason naming it."""

    id: str
    reason: str


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


def iter_folder(folder: Path) -> Iterator[Item]:
    """Every image file below ``folder`` (recursive, sorted by relative path)."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        found.extend(Path(root) / name for name in files if _is_image(name))
    for path in sorted(found, key=lambda p: p.relative_to(folder).as_posix()):
        yield Item(str(path), path=path)


def _relative(base: Path, text: str) -> Path:
    path = Path(text).expanduser()
    return path if path.is_absolute() else base / path


def iter_list(list_file: Path) -> Iterator[Item | Failure]:
    """One item per non-empty, non-comment line of ``list_file``."""
    try:
        lines = list_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        yield Failure(str(list_file), f"cannot read list of paths {str(list_file)!r}: {exc}")
        return
    for line in lines:
        text = line.strip()
        if text and not text.startswith("#"):
            path = _relative(list_file.parent, text)
            yield Item(str(path), path=path)


def _table_column(table_file: Path, names: list[str], column: str | None) -> str:
    if column is not None:
        if column not in names:
            raise ValueError(
                f"column={column!r} is not in {str(table_file)!r}; its columns are "
                f"{', '.join(names)}"
            )
        return column
    for name in DEFAULT_COLUMNS:
        if name in names:
            return name
    raise ValueError(
        f"{str(table_file)!r} has none of the columns {', '.join(DEFAULT_COLUMNS)}; "
        f"name the image column (--column), one of {', '.join(names)}"
    )


def iter_parquet(table_file: Path, column: str | None = None) -> Iterator[Item | Failure]:
    """One item per row of a parquet table (see the module docstring for the column)."""
    import pyarrow.parquet as pq

    try:
        reader = pq.ParquetFile(table_file)
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        yield Failure(str(table_file), f"cannot read parquet table {str(table_file)!r}: {exc}")
        return
    name = _table_column(table_file, reader.schema_arrow.names, column)
    row = 0
    for batch in reader.iter_batches(columns=[name], batch_size=256):
        for value in batch.column(0).to_pylist():
            item_id = f"{table_file}#{row}"
            if isinstance(value, dict):  # datasets' Image feature: {"bytes": ..., "path": ...}
                value = value.get("bytes") or value.get("path")
            if isinstance(value, (bytes, bytearray)):
                yield Item(item_id, data=bytes(value))
            elif isinstance(value, str) and value:
                path = _relative(table_file.parent, value)
                yield Item(str(path), path=path)
            else:
                yield Failure(item_id, f"{item_id}: column {name!r} holds no image ({value!r})")
            row += 1


def _key(member_name: str) -> tuple[str, str]:
    """webdataset's split: ``dir/abc.seg.jpg`` -> key ``dir/abc``, suffix ``seg.jpg``."""
    folder, _, base = member_name.rpartition("/")
    stem, _, suffix = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), suffix


def iter_tar(shard: Path) -> Iterator[Item | Failure]:
    """One item per key of a webdataset-style shard; a key without an image member is a
    :class:`Failure`, and so is the rest of a shard that cannot be read further."""
    current: str | None = None
    image: bytes | None = None

    def flush() -> Item | Failure:
        item_id = f"{shard}/{current}"
        if image is None:
            return Failure(item_id, f"{item_id}: no image member ({', '.join(IMAGE_SUFFIXES)})")
        return Item(item_id, data=image)

    try:
        with tarfile.open(shard, mode="r|*") as archive:
            for member in archive:
                if not member.isfile():
                    continue
                key, suffix = _key(member.name)
                if key != current:
                    if current is not None:
                        yield flush()
                    current, image = key, None
                if image is None and _is_image("." + suffix.rsplit(".", 1)[-1]):
                    handle = archive.extractfile(member)
                    image = handle.read() if handle is not None else None
            if current is not None:
                yield flush()
    except (OSError, tarfile.TarError, EOFError) as exc:
        where = f"{shard}/{current}" if current is not None else str(shard)
        yield Failure(where, f"cannot read tar shard {str(shard)!r} ({where}): {exc}")


def iter_items(sources: Iterable[str | os.PathLike], column: str | None = None):
    """Items and failures of every source in order (see the module docstring).

    Raises:
        ValueError: ``column`` is not in a parquet table (a mistake in the command, not in one
            item), or a table has no image column and none was named.
    """
    for source in sources:
        path = Path(source)
        suffix = path.suffix.lower()
        if path.is_dir():
            yield from iter_folder(path)
        elif not path.exists():
            yield Failure(str(path), f"{str(path)!r}: no such file or folder")
        elif suffix in LIST_SUFFIXES:
            yield from iter_list(path)
        elif suffix == ".parquet":
            yield from iter_parquet(path, column)
        elif suffix == ".tar" or path.name.lower().endswith((".tar.gz", ".tgz")):
            yield from iter_tar(path)
        else:
            yield Item(str(path), path=path)


__all__ = ["DEFAULT_COLUMNS", "IMAGE_SUFFIXES", "Failure", "Item", "iter_items"]
