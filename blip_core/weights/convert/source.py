"""Reading a conversion source into canonical names: hub directory, weights file, original .pth.

A :class:`Source` is the numpy state in canonical keys, its config, its task and where it came
from.  The task of a hub checkpoint is its ``config.json``'s ``architectures``, else the modules
it holds; an original Salesforce checkpoint is mapped by :mod:`blip_core.weights.original_map`.
Nothing here imports a framework (a ``.bin``/``.pth`` pickle needs torch installed to be read).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from blip_core.config import CONFIG_NAME, BlipConfig
from blip_core.weights.io import (
    find_weights_file,
    read_checkpoint,
    read_safetensors,
    read_torch_pickle,
)
from blip_core.weights.original_map import convert_original_state, is_original_checkpoint
from blip_core.weights.task_inference import TASK_CLASSES, infer_task, task_of_architectures

PICKLE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")


class ConversionError(ValueError):
    """A conversion that cannot be done; the message says why and what would work."""


@dataclass
class Source:
    """A checkpoint read into canonical names, with its config, task and provenance."""

    path: Path
    kind: str  # "original" or "hub"
    backend: str  # "pt" or "tf": the framework the source file belongs to
    state: dict[str, np.ndarray]
    config: BlipConfig
    task: str
    directory: Path | None = None  # the hub directory (extra files are copied from it)
    notes: list[str] = field(default_factory=list)

    @property
    def class_name(self) -> str:
        return TASK_CLASSES[self.task]


def read_config(path: str | os.PathLike) -> BlipConfig:
    """An explicit ``--config`` file (or a directory holding ``config.json``)."""
    path = Path(path)
    if not path.exists():
        raise ConversionError(f"--config {path}: no such file")
    return BlipConfig.from_pretrained(path)


def read_weights_file(path: Path) -> tuple[dict[str, np.ndarray], str]:
    """``(canonical-or-original state, "pt" | "tf")`` of one weights file, by its suffix."""
    name = path.name.lower()
    if name.endswith(PICKLE_SUFFIXES):
        return read_torch_pickle(path), "pt"
    if name.endswith(".safetensors"):
        return read_safetensors(path), "pt"
    if name.endswith(".h5"):
        from blip_core.weights.h5 import read_tf_h5

        return read_tf_h5(path), "tf"
    raise ConversionError(
        f"{path}: unknown checkpoint format (expected an original BLIP .pth file, a "
        ".safetensors/.bin/.h5 weights file, or a hub-layout directory)"
    )


def hub_task(config: BlipConfig, state: Mapping[str, np.ndarray], task: str, where: Path) -> str:
    """The task of a hub checkpoint: its config's ``architectures``, else its modules.

    ``task`` (``auto`` or a task name) must agree: a hub checkpoint converts to its own task.
    """
    found = task_of_architectures(config.extra.get("architectures")) or infer_task(state)
    if task not in ("auto", found):
        raise ConversionError(
            f"{where} holds a {TASK_CLASSES[found]} ({found}); --task {task} cannot be made from "
            "it (a hub checkpoint converts to the same task; drop --task)"
        )
    return found


def load_source(
    src: str | os.PathLike, task: str = "auto", config: BlipConfig | None = None
) -> Source:
    """Read ``src`` (hub directory, hub weights file, or original ``.pth``) into a :class:`Source`.

    ``config`` replaces the source's ``config.json`` (or, for an original checkpoint, the size
    inference).
    """
    src = Path(src)
    if not src.exists():
        raise ConversionError(f"{src}: no such file or directory")
    if src.is_dir():
        backend = "tf" if find_weights_file(src).name.endswith(".h5") else "pt"
        state = read_checkpoint(src)
        directory: Path | None = src
    else:
        state, backend = read_weights_file(src)
        directory = None
    if is_original_checkpoint(state):
        converted = convert_original_state(state, task=task, config=config)
        return Source(
            path=src,
            kind="original",
            backend=backend,
            state=converted.state,
            config=converted.config,
            task=converted.task,
            directory=directory,
            notes=converted.notes,
        )
    if config is None:
        config_dir = src if src.is_dir() else src.parent
        if not (config_dir / CONFIG_NAME).is_file():
            raise ConversionError(
                f"{src}: no {CONFIG_NAME} beside the weights (and not an original BLIP checkpoint, "
                "whose sizes could be inferred); pass --config CONFIG_JSON"
            )
        config = BlipConfig.from_pretrained(config_dir)
    found = hub_task(config, state, task, src)
    config = config.copy()
    config.extra["architectures"] = [TASK_CLASSES[found]]
    return Source(
        path=src,
        kind="hub",
        backend=backend,
        state=state,
        config=config,
        task=found,
        directory=directory if directory is not None else src.parent,
    )


def check_runnable(source: Source) -> None:
    """Refuse a model the transformers BLIP layout cannot run (a VQA model whose vision and
    text widths differ)."""
    vision, text = source.config.vision_config, source.config.text_config
    if source.task == "vqa" and vision.hidden_size != text.hidden_size:
        # The answer decoder cross-attends to the question states (text width), but in the
        # transformers layout its cross-attention width follows the vision config.  No such
        # checkpoint was released (the BLIP VQA models are ViT-B with a BERT-base text side).
        raise ConversionError(
            f"{source.path}: a VQA model whose vision width ({vision.hidden_size}) differs from "
            f"its text width ({text.hidden_size}) cannot run in the transformers BLIP layout (its "
            "answer decoder's cross-attention width follows the vision config)"
        )


__all__ = [
    "PICKLE_SUFFIXES",
    "ConversionError",
    "Source",
    "check_runnable",
    "hub_task",
    "load_source",
    "read_config",
    "read_weights_file",
]
