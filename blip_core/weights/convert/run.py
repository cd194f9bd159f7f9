"""One conversion, numpy only: read -> canonical dict -> write, assembled beside ``DST``.

Frameworks enter only through two optional hooks that the caller passes (the ``blip-convert``
command line in :mod:`blip_apps.convert` passes backend-based ones): ``expected_shapes`` (the
keys and shapes the target class needs, checked before anything is written) and ``verify``
(load the written folder, compare outputs with the source, raise when they differ).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from blip_core.config import BlipConfig
from blip_core.weights.convert.output import (
    TARGETS,
    ProgressFactory,
    check_tokenizer_dir,
    copy_extra_files,
    write_output,
)
from blip_core.weights.convert.source import (
    ConversionError,
    Source,
    check_runnable,
    load_source,
    read_config,
)
from blip_core.weights.convert.staging import (
    check_destination,
    install,
    make_partial_dir,
    remove_stale_partials,
)
from blip_core.weights.io import check_keys
from blip_core.weights.names import normalize_tied
from blip_core.weights.task_inference import ORIGINAL_TASKS

# ``expected_shapes(class_name, config)`` -> ``{key: shape}``, or None when it cannot be known.
ShapesHook = Callable[[str, BlipConfig], Mapping[str, tuple[int, ...]] | None]
# ``verify(source, written_dir, to, notes)`` -> ``{output name: max |diff|}``; raises on failure.
VerifyHook = Callable[[Source, Path, str, list[str]], dict[str, float]]


@dataclass
class ConversionResult:
    destination: Path
    task: str
    class_name: str
    source_kind: str
    notes: list[str]
    max_abs_diff: dict[str, float] | None  # None when not verified


def convert_checkpoint(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    to: str,
    *,
    task: str = "auto",
    config: str | os.PathLike | BlipConfig | None = None,
    tokenizer: str | os.PathLike | None = None,
    force: bool = False,
    expected_shapes: ShapesHook | None = None,
    verify: VerifyHook | None = None,
    progress: ProgressFactory | None = None,
    log: Callable[[str], None] = print,
) -> ConversionResult:
    """Convert the checkpoint at ``src`` to a new hub-layout directory ``dst`` (``to``: ``pt`` or
    ``tf``).

    Stale partial folders that killed conversions left beside ``dst`` are removed first.  Raises
    :class:`ConversionError` (or :class:`~blip_core.weights.io.WeightLoadError`,
    :class:`~blip_core.config.ConfigError`, or whatever ``verify`` raises) without leaving
    anything at ``dst``; an existing ``dst`` is replaced only with ``force``.
    """
    if to not in TARGETS:
        raise ConversionError(f"--to must be one of {', '.join(TARGETS)}, got {to!r}")
    if task != "auto" and task not in ORIGINAL_TASKS:
        raise ConversionError(
            f"--task must be auto or one of {', '.join(ORIGINAL_TASKS)}, got {task!r}"
        )
    src, dst = Path(src), Path(dst)
    if not src.exists():
        raise ConversionError(f"{src}: no such file or directory")
    check_destination(src, dst, force)
    tokenizer = Path(tokenizer) if tokenizer is not None else None
    check_tokenizer_dir(tokenizer)
    explicit_config = config is not None
    if config is not None and not isinstance(config, BlipConfig):
        config = read_config(config)

    log(f"reading {src}")
    source = load_source(src, task=task, config=config)
    notes = list(source.notes)
    for note in notes:
        log(f"note: {note}")
    check_runnable(source)
    source.state = dict(normalize_tied(source.state))
    expected = expected_shapes(source.class_name, source.config) if expected_shapes else None
    if expected is not None:
        hint = "  (does --config describe this checkpoint's sizes?)" if explicit_config else ""
        found = {k: tuple(np.shape(v)) for k, v in source.state.items()}
        check_keys(expected, found, source=str(src), hint=hint)
    target = "PyTorch" if to == "pt" else "TensorFlow"
    log(f"converting a {source.class_name} ({source.task}) to {target}")

    remove_stale_partials(dst.parent, log)
    tmp = make_partial_dir(dst)
    try:
        write_output(source, tmp, to, progress)
        copy_extra_files(source, tokenizer, tmp, log)
        diffs = None
        if verify is not None:
            verify_notes: list[str] = []
            diffs = verify(source, tmp, to, verify_notes)
            for note in verify_notes:
                log(f"note: {note}")
            notes.extend(verify_notes)
        install(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"wrote {dst} ({', '.join(sorted(p.name for p in dst.iterdir()))})")
    return ConversionResult(
        destination=dst,
        task=source.task,
        class_name=source.class_name,
        source_kind=source.kind,
        notes=notes,
        max_abs_diff=diffs,
    )


__all__ = ["ConversionResult", "ShapesHook", "VerifyHook", "convert_checkpoint"]
