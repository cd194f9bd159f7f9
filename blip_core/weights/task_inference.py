"""Which task model a set of canonical keys makes (``caption``, ``vqa``, ``itm``, ``model``).

The task names, their classes and their top-level modules come from
:mod:`blip_core.weights.schema`; this module decides from the modules present, and takes the
part of a state dict one task model owns.  Used for original checkpoints (which carry no config)
and for hub checkpoints whose ``config.json`` lacks ``architectures``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from blip_core.weights.io import WeightLoadError
from blip_core.weights.schema import CLASS_TASKS, TASK_CLASSES, TASK_MODULES

# The tasks an original Salesforce checkpoint can be converted to (it has no ``BlipModel``).
ORIGINAL_TASKS = ("caption", "vqa", "itm")


class OriginalCheckpointError(WeightLoadError):
    """An original checkpoint that cannot be mapped (unknown keys, ambiguous task, odd sizes)."""


def top_level_modules(keys: Iterable[str]) -> set[str]:
    """The first dotted component of every key."""
    return {k.split(".", 1)[0] for k in keys}


def infer_task(keys: Iterable[str]) -> str:
    """``caption``, ``vqa``, ``itm`` (or ``model`` for a hub ``BlipModel``) from canonical keys.

    text_decoder only -> caption; text_encoder + text_decoder -> vqa; text_encoder + itm_head
    -> itm.  A pre-training checkpoint has all three and needs an explicit task.
    """
    modules = top_level_modules(keys)
    if "vision_model" not in modules:
        raise OriginalCheckpointError(
            "the checkpoint has no vision encoder (vision_model/visual_encoder)"
        )
    enc, dec, itm = "text_encoder" in modules, "text_decoder" in modules, "itm_head" in modules
    if dec and itm:
        raise OriginalCheckpointError(
            "the checkpoint holds a text encoder, a text decoder and an ITM head (a pre-training "
            "checkpoint); choose the heads to keep with --task caption, --task vqa or --task itm"
        )
    if dec and enc:
        return "vqa"
    if dec:
        return "caption"
    if enc and itm:
        return "itm"
    if "text_model" in modules and "visual_projection" in modules:
        return "model"
    raise OriginalCheckpointError(
        f"cannot tell the task from the modules {sorted(modules)}: expected text_decoder "
        "(caption), text_encoder + text_decoder (vqa) or text_encoder + itm_head (itm)"
    )


def select_task_modules(
    state: Mapping[str, np.ndarray], task: str
) -> tuple[dict[str, np.ndarray], list[str]]:
    """The part of ``state`` the ``task`` model owns, and the top-level modules left out.

    Raises when a module the task needs is absent (``logit_scale`` may be: it has a default).
    """
    if task not in TASK_MODULES:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASK_MODULES)}")
    wanted = set(TASK_MODULES[task])
    present = top_level_modules(state)
    missing = sorted(m for m in wanted - present if m != "logit_scale")
    if missing:
        raise OriginalCheckpointError(
            f"--task {task} needs {', '.join(missing)}, which the checkpoint does not have "
            f"(it has {', '.join(sorted(present))})"
        )
    kept = {k: v for k, v in state.items() if k.split(".", 1)[0] in wanted}
    return kept, sorted(present - wanted)


def task_of_architectures(architectures: Iterable[str] | None) -> str | None:
    """The task of the first known class in a ``config.json`` ``architectures`` list
    (``TF``-prefixed names included), or ``None``."""
    for name in architectures or ():
        task = CLASS_TASKS.get(str(name).removeprefix("TF"))
        if task is not None:
            return task
    return None


__all__ = [
    "CLASS_TASKS",
    "ORIGINAL_TASKS",
    "TASK_CLASSES",
    "TASK_MODULES",
    "OriginalCheckpointError",
    "infer_task",
    "select_task_modules",
    "task_of_architectures",
    "top_level_modules",
]
