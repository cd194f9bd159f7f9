"""An embedding index on disk: build it once, add to it, search it without re-encoding.

An index holds one L2-normalised ITC embedding per image (or text) with its id and, for image
files, its path, plus the model that made it:

* ``NAME.parquet``: columns ``id``, ``path`` (``""`` when not a file), ``text`` (text indexes),
  ``embedding`` (float32 list); the model, backend, dtype and kind in the schema metadata;
* ``NAME.npy``: the ``(N, D)`` float32 matrix, with ``NAME.ids.json`` (``{"kind", "model",
  "ids", "paths", "texts"}``) beside it.

:func:`build_index` encodes only inputs whose id the index does not hold yet and rewrites the
index atomically (temporary file + rename; for ``.npy`` the id list is written last, so a
killed run leaves the old index or the new one).  :func:`search` ranks by ITC cosine against a
text query, then re-ranks the top ``k`` by ITM against the images on disk.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from blip_apps.datasets.decode import decode_items, iter_decoded
from blip_apps.datasets.inputs import Failure, Item
from blip_apps.datasets.run import Progress, Summary, pending_items, report_failure

KINDS = ("image", "text")


@dataclass
class Index:
    """An index in memory: ``embeddings`` ``(N, D)`` float32, ``ids`` / ``paths`` / ``texts``."""

    embeddings: np.ndarray
    ids: list[str]
    paths: list[str]
    texts: list[str] = field(default_factory=list)
    kind: str = "image"
    meta: dict = field(default_factory=dict)


def _format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".npy"):
        raise ValueError(
            f"index {str(path)!r}: expected a .parquet or .npy file (got {suffix or 'no suffix'})"
        )
    return suffix[1:]


def _ids_file(path: Path) -> Path:
    return path.with_suffix(".ids.json")


def load_index(path: str | os.PathLike) -> Index:
    """Read an index written by :func:`save_index`.

    Raises:
        FileNotFoundError: the index (or its id list) does not exist.
        ValueError: the file is not an index (names what is missing).
    """
    path = Path(path)
    fmt = _format(path)
    if fmt == "npy":
        ids_file = _ids_file(path)
        if not ids_file.is_file():
            raise FileNotFoundError(
                f"index {str(path)!r}: its id list {str(ids_file)!r} is missing"
            )
        meta = json.loads(ids_file.read_text(encoding="utf-8"))
        matrix = np.load(path)
        ids = meta.pop("ids")
        paths, texts, kind = meta.pop("paths"), meta.pop("texts", []), meta.pop("kind", "image")
        if len(ids) != len(matrix):
            raise ValueError(f"index {str(path)!r}: {len(matrix)} rows but {len(ids)} ids")
        return Index(matrix.astype(np.float32), ids, paths, texts, kind, meta)
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    if "embedding" not in table.column_names or "id" not in table.column_names:
        raise ValueError(f"index {str(path)!r} has no 'id' / 'embedding' columns")
    raw = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    meta = json.loads(raw.get("blip_index", "{}"))
    kind = meta.pop("kind", "image")
    data = table.to_pydict()
    dim = int(meta.get("dim", 0))
    rows = data["embedding"]
    matrix = np.asarray(rows, dtype=np.float32).reshape(len(rows), dim if rows else dim)
    return Index(matrix, data["id"], data.get("path", []), data.get("text", []), kind, meta)


def save_index(index: Index, path: str | os.PathLike) -> Path:
    """Write ``index`` to ``path`` (``.parquet`` or ``.npy``) atomically."""
    path = Path(path)
    fmt = _format(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {**index.meta, "kind": index.kind, "dim": int(index.embeddings.shape[1])}
    tmp = path.with_name(f".{path.name}.tmp")
    if fmt == "npy":
        with open(tmp, "wb") as handle:
            np.save(handle, index.embeddings.astype(np.float32))
        os.replace(tmp, path)
        ids_tmp = _ids_file(path).with_name(f".{_ids_file(path).name}.tmp")
        body = {**meta, "ids": index.ids, "paths": index.paths, "texts": index.texts}
        ids_tmp.write_text(json.dumps(body, ensure_ascii=False), encoding="utf-8")
        os.replace(ids_tmp, _ids_file(path))
        return path
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = {"id": index.ids, "path": index.paths}
    if index.kind == "text":
        columns["text"] = index.texts
    columns["embedding"] = pa.array(list(index.embeddings.astype(np.float32)),
                                    type=pa.list_(pa.float32()))  # fmt: skip
    table = pa.table(columns).replace_schema_metadata({"blip_index": json.dumps(meta)})
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return path


def _empty(dim: int, kind: str, meta: dict) -> Index:
    return Index(np.zeros((0, dim), np.float32), [], [], [], kind, meta)


def _check_model(index: Index, meta: dict, where: Path) -> None:
    for key in ("model", "kind"):
        held = index.kind if key == "kind" else index.meta.get(key)
        if held is not None and held != meta[key]:
            raise ValueError(
                f"index {str(where)!r} was built with {key}={held!r}, not {meta[key]!r}; "
                "use the same model (or a new index file)"
            )


def _text_items(sources) -> list[tuple[str, str]]:
    out = []
    for source in sources:
        lines = Path(source).read_text(encoding="utf-8").splitlines()
        out += [(f"{source}#{n}", line.strip()) for n, line in enumerate(lines) if line.strip()]
    return out


def build_index(
    embedder: Any,
    sources,
    index_file: str | os.PathLike,
    kind: str = "image",
    column: str | None = None,
    batch_size: int = 16,
    progress: bool = True,
    on_failure=report_failure,
) -> Summary:
    """Add the embeddings of ``sources`` to ``index_file`` (created when missing) with
    ``embedder`` (a :class:`blip_apps.api.EmbedPipeline`); inputs already indexed are skipped
    and not encoded.  ``kind="text"``: sources are text files, one text per line (id
    ``FILE#LINE``).

    Raises:
        ValueError: an unknown ``kind``, an index built with another model or kind.
    """
    import time

    if kind not in KINDS:
        raise ValueError(f"kind={kind!r}: expected one of {', '.join(KINDS)}")
    start, summary, path = time.monotonic(), Summary(), Path(index_file)
    meta = {"model": embedder.model_name, "backend": embedder.backend.name,
            "dtype": embedder.dtype, "kind": kind}  # fmt: skip
    index = load_index(path) if path.exists() else None
    if index is not None:
        _check_model(index, meta, path)
    held = set(index.ids) if index is not None else set()
    meta.pop("kind")
    new_ids, new_paths, new_texts, blocks = [], [], [], []
    if kind == "text":
        todo = [(i, t) for i, t in _text_items(sources) if i not in held]
        summary.skipped = len(_text_items(sources)) - len(todo)
        for s in range(0, len(todo), batch_size):
            chunk = todo[s : s + batch_size]
            blocks.append(embedder.encode_texts([t for _, t in chunk]))
            new_ids += [i for i, _ in chunk]
            new_texts += [t for _, t in chunk]
            new_paths += [""] * len(chunk)
    else:
        bar = Progress(None, progress)
        stream = pending_items(list(sources), held, summary, column)
        for decoded in iter_decoded(stream, embedder.prepare, batch_size):
            for failure in decoded.failures:
                summary.failed += 1
                on_failure(failure)
            if decoded.inputs is not None:
                blocks.append(np.stack([r["embedding"] for r in embedder.records(decoded)]))
                new_ids += [item.id for item in decoded.items]
                new_paths += ["" if i.path is None else str(i.path) for i in decoded.items]
            bar.update(len(decoded.items) + len(decoded.failures))
        bar.close()
    summary.done = len(new_ids)
    if blocks:
        added = np.concatenate(blocks).astype(np.float32)
        if index is None:
            index = _empty(added.shape[1], kind, meta)
        index.embeddings = np.concatenate([index.embeddings, added])
        index.ids += new_ids
        index.paths += new_paths
        if kind == "text":
            index.texts += new_texts
        save_index(index, path)
    summary.seconds = time.monotonic() - start
    if progress:
        print(summary.line(), file=sys.stderr)
    return summary


def search(
    index_file: str | os.PathLike,
    query: str,
    top_k: int = 5,
    rerank_with_images: bool = True,
    matcher: Any = None,
    on_failure=report_failure,
) -> list[dict]:
    """The ``top_k`` images of an image index for text ``query``: ITC cosine against the
    index, then (``rerank_with_images``) the ITM probability of each of those ``top_k``
    images, read from disk, with the query, best first.  ``matcher``: a
    :class:`blip_apps.api.EmbedPipeline` of the index's model (built from the index's metadata
    when ``None``).  Returns ``[{"rank", "id", "path", "itc", "itm"}, ...]`` (``itm`` ``None``
    without re-ranking, or when a shortlisted image is not a file on disk).

    Raises:
        ValueError: ``top_k`` < 1, or the index holds texts, not images.
    """
    from blip_core.retrieval import itc_top_k, rerank

    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"top_k={top_k!r}: must be a whole number >= 1")
    index = load_index(index_file)
    if index.kind != "image":
        raise ValueError(f"index {str(index_file)!r} holds {index.kind} embeddings, not images")
    if matcher is None:
        from blip_apps.api import pipeline

        model = index.meta.get("model")
        model = None if model in (None, "demo:retrieval") else model
        matcher = pipeline("embed", model, index.meta.get("backend", "torch"),
                           index.meta.get("dtype"))  # fmt: skip
    if not index.ids:
        return []
    query_embed = matcher.encode_texts([query])[0]
    idx, itc = itc_top_k(query_embed, index.embeddings, top_k)
    itm = None
    paths = [index.paths[i] for i in idx]
    if rerank_with_images and all(paths):
        items = [Item(index.ids[i], path=Path(index.paths[i])) for i in idx]
        decoded = decode_items(items, matcher.prepare)
        for failure in decoded.failures:
            on_failure(failure)
        if not decoded.failures:
            itm = _itm(matcher, decoded.inputs["pixel_values"], query)
            result = rerank(np.asarray(idx), np.asarray(itc), itm)
            idx, itc, itm = result.indices, result.itc_scores, result.itm_scores
    elif rerank_with_images:
        on_failure(Failure(str(index_file), "cannot re-rank: a shortlisted image is not a "
                                            "file on disk; ranked by ITC only"))  # fmt: skip
    return [
        {"rank": r + 1, "id": index.ids[i], "path": index.paths[i] or None,
         "itc": float(itc[r]), "itm": None if itm is None else float(itm[r])}
        for r, i in enumerate(idx)
    ]  # fmt: skip


def _itm(matcher: Any, pixel_values: np.ndarray, query: str) -> np.ndarray:
    tok = matcher.processor.tokenizer([query], return_tensors="np")
    ids = np.repeat(tok["input_ids"], len(pixel_values), axis=0)
    mask = np.repeat(tok["attention_mask"], len(pixel_values), axis=0)
    with matcher.backend.inference():
        _, states = matcher.model.encode_images(matcher.tensor(pixel_values, pixels=True))
        probs = matcher.model.itm_probability(states, matcher.tensor(ids), matcher.tensor(mask))
    return matcher.numpy(probs)


__all__ = ["KINDS", "Index", "build_index", "load_index", "save_index", "search"]
