"""Checkpoint file I/O: hub-layout directories <-> ``dict[str, np.ndarray]`` in canonical names.

Formats: ``model.safetensors``, sharded ``model.safetensors.index.json``, ``pytorch_model.bin``
(needs torch; loaded with ``weights_only=True`` only).  ``tf_model.h5`` is read by
:mod:`blip_core.weights.h5`.  Nothing here imports torch or tensorflow at module level.
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


def read_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """All tensors of one safetensors file as numpy arrays."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    path = Path(path)
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightLoadError(f"{path}: not a readable safetensors file ({exc})") from exc


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


def atomic_write(path: Path, write) -> None:
    """Call ``write(tmp_path)`` then rename into ``path``: never a partial file at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_safetensors(state: Mapping[str, np.ndarray], path: str | os.PathLike) -> Path:
    """Write ``state`` as one safetensors file with the ``{"format": "pt"}`` metadata the hub uses."""
    from safetensors.numpy import save_file

    path = Path(path)
    arrays = {k: np.ascontiguousarray(v) for k, v in state.items()}
    atomic_write(path, lambda tmp: save_file(arrays, tmp, metadata={"format": "pt"}))
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
