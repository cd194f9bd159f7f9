"""The load/save sequence of every backend, written once over a :class:`~blip_core.adapter.Backend`.

``from_pretrained``: resolve the directory -> read ``config.json`` -> build the model with
unfilled storage -> read the checkpoint into canonical numpy names -> take the sub-tree a sub-model
needs -> bring tied keys to canonical form -> strict key/shape check -> assign -> read
``generation_config.json``.  ``save_pretrained``: ``config.json`` (with ``architectures``) and
``model.safetensors`` in canonical names, each written atomically.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from blip_core.config import CONFIG_NAME, BlipConfig, load_config
from blip_core.generation import GENERATION_CONFIG_NAME, GenerationConfig
from blip_core.hub import resolve_model_dir
from blip_core.weights import WeightLoadError, check_keys, normalize_tied, read_checkpoint
from blip_core.weights.io import (
    SAFE_WEIGHTS_NAME,
    atomic_write,
    find_weights_file,
    write_safetensors,
)
from blip_core.weights.names import select_submodel


def class_names(cls: type) -> list[str]:
    """The names of ``cls`` and its bases (how the key schema knows a sub-model class)."""
    return [c.__name__ for c in cls.__mro__]


def prepare_state(
    backend: Any, model: Any, state: Mapping[str, np.ndarray], source: str
) -> dict[str, np.ndarray]:
    """``state`` reduced to exactly the model's canonical keys, or one :class:`WeightLoadError`.

    A whole-task checkpoint loaded into a sub-model (``BlipVisionModel`` from a caption
    directory) gives the sub-tree under that sub-model's prefix.
    """
    expected = backend.expected_shapes(model)
    state = select_submodel(class_names(type(model)), expected, dict(state))
    try:
        state = normalize_tied(state)
    except ValueError as exc:
        raise WeightLoadError(f"{source}: {exc}") from None
    check_keys(expected, {k: tuple(np.shape(v)) for k, v in state.items()}, source=source)
    return state


def load_state(backend: Any, model: Any, state: Mapping[str, np.ndarray], source: str) -> Any:
    """Strictly load a canonical numpy dict into an existing ``model``; returns ``model``."""
    backend.assign(model, prepare_state(backend, model, state, source))
    return model


def from_state(
    backend: Any,
    cls: type,
    config: Any,
    state: Mapping[str, np.ndarray],
    source: str = "state dict",
    **kwargs: Any,
) -> Any:
    """A ``cls`` model built from ``config`` whose every weight comes from ``state``."""
    model = backend.build_empty(cls, config, **kwargs)
    return load_state(backend, model, state, source)


def from_pretrained(
    backend: Any, cls: type, name_or_path: str | os.PathLike, config: Any = None, **kwargs: Any
) -> Any:
    """Build ``cls`` from a hub-layout directory: ``config.json`` + one weights format
    (``model.safetensors``, sharded safetensors, ``pytorch_model.bin``, ``tf_model.h5``); strict."""
    directory = resolve_model_dir(name_or_path)
    if config is None:
        config = load_config(cls.config_class, directory)
    weights_file = find_weights_file(directory)
    model = from_state(
        backend, cls, config, read_checkpoint(directory), str(weights_file), **kwargs
    )
    if (directory / GENERATION_CONFIG_NAME).is_file():
        model.generation_config = GenerationConfig.from_pretrained(directory)
    return model


def config_json(config: Any, class_name: str) -> str:
    """The ``config.json`` text of a model: its config with ``architectures`` set."""
    data = config.to_dict()
    data["architectures"] = [class_name]
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def write_config(config: Any, class_name: str, directory: str | os.PathLike) -> Path:
    """Write ``config.json`` (atomically) for a model of ``class_name``."""
    path = Path(directory) / CONFIG_NAME
    text = config_json(config, class_name)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return path


def save_pretrained(backend: Any, model: Any, directory: str | os.PathLike) -> Path:
    """Write ``config.json``, ``model.safetensors`` (canonical names, loadable by transformers and
    every backend) and ``generation_config.json`` when the model has one."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    write_config(model.config, type(model).__name__, directory)
    write_safetensors(backend.canonical_state(model), directory / SAFE_WEIGHTS_NAME)
    generation = getattr(model, "generation_config", None)
    if isinstance(generation, GenerationConfig):
        generation.save_pretrained(directory)
    return directory


__all__ = [
    "BlipConfig",
    "class_names",
    "config_json",
    "from_pretrained",
    "from_state",
    "load_state",
    "prepare_state",
    "save_pretrained",
    "write_config",
]
