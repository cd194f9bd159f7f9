"""Checkpoint file I/O: hub-layout directories <-> ``dict[str, np.ndarray]`` in canonical names.

Formats: ``model.safetensors`` (through the ``safetensors`` library, memory-mapped), sharded
``model.safetensors.index.json``, ``pytorch_model.bin`` (needs torch; loaded with
``weights_only=True`` only).  ``tf_model.h5`` is read by :mod:`blip_core.weights.h5`.  Nothing
here imports torch or tensorflow at module level.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

SAFE_WEIGHTS_NAME = "model.safetensors"
SAFE_WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
PT_WEIGHTS_NAME = "pytorch_model.bin"
PT_WEIGHTS_INDEX_NAME = "pytorch_model.bin.index.json"
TF_WEIGHTS_NAME = "tf_model.h5"

# Order of preference when a directory holds several formats.
WEIGHT_FILES = (
    SAFE_WEIGHTS_NAME,
    SAFE_WEIGHTS_INDEX_NAME,
    PT_WEIGHTS_NAME,
    PT_WEIGHTS_INDEX_NAME,
    TF_WEIGHTS_NAME,
)


class WeightLoadError(ValueError):
    """A checkpoint that cannot be loaded: unreadable file, missing or unexpected keys, wrong shapes."""


def find_weights_file(directory: str | os.PathLike, formats: Iterable[str] = WEIGHT_FILES) -> Path:
    """The weights file of a hub-layout directory, in order of preference."""
    directory = Path(directory)
    if not directory.exists():
        raise FileNotFoundError(f"{directory}: no such directory")
    if directory.is_file():
        return directory
    formats = tuple(formats)
    for name in formats:
        if (directory / name).is_file():
            return directory / name
    raise FileNotFoundError(f"{directory}: no weights file found (looked for {', '.join(formats)})")


# safetensors dtype names -> numpy.  ``BF16`` (which numpy lacks) is widened to float32.
_SAFETENSORS_DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "I64": np.int64,
    "U64": np.uint64,
    "I32": np.int32,
    "U32": np.uint32,
    "I16": np.int16,
    "U16": np.uint16,
    "I8": np.int8,
    "U8": np.uint8,
    "BOOL": np.bool_,
}
_ITEMSIZE = {**{k: np.dtype(v).itemsize for k, v in _SAFETENSORS_DTYPES.items()}, "BF16": 2}


def read_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """All tensors of one safetensors file as numpy arrays, memory-mapped (copy-on-write).

    The ``safetensors`` library parses and validates the header (dtypes, shapes, offsets that
    cover the data exactly); the data section is then mapped with ``np.memmap`` and each tensor
    is a view of it.  Nothing is read until a tensor is used and no second copy is made, whereas
    the library's own numpy readers (``safe_open(framework="numpy")``, ``load_file``) copy every
    tensor into process memory (see the README for the measured peaks).  ``BF16`` tensors are
    widened to float32.  Raises :class:`WeightLoadError` naming the file when it is not a valid
    safetensors file.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="numpy") as file:
            # offset_keys(): the tensors in data order; the library has checked that they tile
            # the data section with no gap or overlap, so the offsets follow from the sizes.
            specs = []
            for key in file.offset_keys():
                view = file.get_slice(key)
                specs.append((key, view.get_dtype(), tuple(view.get_shape())))
        size = path.stat().st_size
    except (OSError, SafetensorError, ValueError) as exc:
        raise WeightLoadError(f"{path}: not a readable safetensors file ({exc})") from exc
    for key, dtype_name, _ in specs:
        if dtype_name not in _ITEMSIZE:
            raise WeightLoadError(f"{path}: tensor {key!r} has unsupported dtype {dtype_name}")
    nbytes = [int(np.prod(shape, dtype=np.int64)) * _ITEMSIZE[d] for _, d, shape in specs]
    data_size = sum(nbytes)
    buffer = (
        np.memmap(path, dtype=np.uint8, mode="c", offset=size - data_size) if data_size else None
    )
    out: dict[str, np.ndarray] = {}
    start = 0
    for (key, dtype_name, shape), length in zip(specs, nbytes):
        raw = buffer[start : start + length] if buffer is not None else np.zeros(0, np.uint8)
        start += length
        if dtype_name == "BF16":
            widened = raw.view(np.uint16).astype(np.uint32) << 16
            out[key] = widened.view(np.float32).reshape(shape)
        else:
            out[key] = raw.view(_SAFETENSORS_DTYPES[dtype_name]).reshape(shape)
    return out


_NUMPY_DTYPES = frozenset(np.dtype(v) for v in _SAFETENSORS_DTYPES.values())


def _read_index(path: Path) -> dict[str, str]:
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
        weight_map = index["weight_map"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise WeightLoadError(f"{path}: not a valid shard index ({exc})") from exc
    return weight_map


def read_sharded(index_path: str | os.PathLike, reader) -> dict[str, np.ndarray]:
    index_path = Path(index_path)
    weight_map = _read_index(index_path)
    out: dict[str, np.ndarray] = {}
    for shard in sorted(set(weight_map.values())):
        shard_path = index_path.parent / shard
        if not shard_path.is_file():
            raise WeightLoadError(f"{index_path}: shard {shard} is missing")
        out.update(reader(shard_path))
    missing = sorted(set(weight_map) - set(out))
    if missing:
        raise WeightLoadError(
            f"{index_path}: keys listed in the index but absent from shards: {missing[:5]}"
        )
    return out


def read_torch_pickle(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """A ``.bin``/``.pth`` state dict, loaded with ``torch.load(weights_only=True)`` only.

    A file that would execute code when unpickled is refused.  An original Salesforce checkpoint
    (``{"model": state_dict}``) is unwrapped.
    """
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise WeightLoadError(f"{path}: reading a PyTorch pickle needs torch installed") from exc
    path = Path(path)
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True, mmap=False)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError, ...
        raise WeightLoadError(
            f"{path}: refused or unreadable PyTorch checkpoint (loaded with weights_only=True, "
            f"which never runs code from a file): {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        ) from exc
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]
    elif isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise WeightLoadError(f"{path}: expected a state dict, found {type(obj).__name__}")
    out = {}
    for key, value in obj.items():
        if not isinstance(value, torch.Tensor):
            continue
        value = value.detach().cpu()
        if value.dtype == torch.bfloat16:
            value = value.float()
        out[key] = value.numpy()
    return out


def read_checkpoint(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read the weights of a hub-layout directory (or one weights file) into canonical names."""
    file = find_weights_file(path)
    name = file.name
    if name.endswith(".index.json"):
        reader = read_safetensors if "safetensors" in name else read_torch_pickle
        state = read_sharded(file, reader)
    elif name.endswith(".safetensors"):
        state = read_safetensors(file)
    elif name.endswith((".bin", ".pth", ".pt")):
        state = read_torch_pickle(file)
    elif name.endswith(".h5"):
        from blip_core.weights.h5 import read_tf_h5

        state = read_tf_h5(file)
    else:
        raise WeightLoadError(
            f"{file}: unknown weights format (expected .safetensors, .bin, .pth or .h5)"
        )
    return state


def default_mode(directory: bool = False) -> int:
    """The permission bits ``open()`` / ``mkdir()`` would give a new file or directory:
    ``0o666`` (``0o777`` for a directory) less the process umask.  (``tempfile.mkstemp`` and
    ``mkdtemp`` use ``0o600`` / ``0o700`` instead, which is wrong for files meant to stay.)"""
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask


def atomic_write(path: Path, write) -> None:
    """Call ``write(tmp_path)`` then rename into ``path``: never a partial file at ``path``.

    The file gets the usual permissions (:func:`default_mode`), not ``mkstemp``'s ``0o600``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, default_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_safetensors_file(
    state: Mapping[str, np.ndarray],
    path: str | os.PathLike,
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write ``state`` as one safetensors file at ``path`` (directly; see
    :func:`write_safetensors` for the atomic version) with ``safetensors.numpy.save_file``.

    The library writes each tensor from its own memory (no in-memory copy of the whole file;
    see the README), so only tensors that are not C-contiguous are copied first.  Big-endian
    arrays are stored little-endian.  The file gets the usual permissions (:func:`default_mode`).
    Raises ``ValueError`` naming the key for a dtype safetensors cannot store.
    """
    from safetensors.numpy import save_file

    tensors: dict[str, np.ndarray] = {}
    for key, value in state.items():
        array = np.asarray(value)
        if array.dtype.newbyteorder("=") not in _NUMPY_DTYPES:
            raise ValueError(
                f"{key}: dtype {array.dtype} cannot be written to safetensors "
                f"(allowed: {', '.join(sorted(str(d) for d in _NUMPY_DTYPES))})"
            )
        # The library reads each array's buffer directly: it must be one contiguous block.
        # (np.ascontiguousarray would turn a 0-d array into a 1-d one.)
        tensors[key] = array if array.flags.c_contiguous else np.array(array, order="C")
    path = Path(path)
    save_file(tensors, str(path), metadata=dict(metadata or {"format": "pt"}))
    os.chmod(path, default_mode())  # the library creates the file 0o600
    return path


def write_safetensors(state: Mapping[str, np.ndarray], path: str | os.PathLike) -> Path:
    """Write ``state`` as one safetensors file (``{"format": "pt"}`` metadata, as the hub uses)
    into a temporary file renamed into place: never a partial file at ``path``."""
    path = Path(path)
    atomic_write(path, lambda tmp: write_safetensors_file(state, tmp))
    return path


def _listing(title: str, items: list[str], limit: int = 8) -> str:
    shown = ", ".join(items[:limit])
    more = f", ... ({len(items) - limit} more)" if len(items) > limit else ""
    return f"  {title} ({len(items)}): {shown}{more}"


def check_keys(
    expected: Mapping[str, tuple[int, ...]],
    found: Mapping[str, tuple[int, ...]],
    *,
    source: str = "checkpoint",
    hint: str = "",
) -> None:
    """Raise one :class:`WeightLoadError` listing missing, unexpected and mis-shaped keys."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    mismatched = [
        f"{k}: checkpoint has {tuple(found[k])}, model expects {tuple(expected[k])}"
        for k in sorted(set(expected) & set(found))
        if tuple(found[k]) != tuple(expected[k])
    ]
    if not (missing or unexpected or mismatched):
        return
    lines = [f"{source} does not match the model:"]
    if missing:
        lines.append(_listing("missing keys", missing))
    if unexpected:
        lines.append(_listing("unexpected keys", unexpected))
    if mismatched:
        lines.append(_listing("shape mismatches", mismatched, limit=4))
    if hint:
        lines.append(hint)
    elif missing and unexpected:
        lines.append("  (is this a checkpoint for another BLIP task or another model size?)")
    raise WeightLoadError("\n".join(lines))
