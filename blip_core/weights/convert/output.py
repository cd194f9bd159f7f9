"""Writing a converted checkpoint: weights, ``config.json`` and the files that travel with it.

``--to pt`` writes ``model.safetensors`` in canonical names with the LM-head weight written out
(:func:`with_lm_head_weights`); ``--to tf`` writes the ``tf_model.h5`` layout of transformers'
TF BLIP (:func:`blip_core.weights.h5.write_tf_h5`).  ``config.json`` is written by the one
config writer, :func:`blip_core.loading.write_config`.  Numpy only.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from blip_core.generation import GENERATION_CONFIG_NAME
from blip_core.loading import write_config
from blip_core.weights.convert.source import ConversionError, Source
from blip_core.weights.io import SAFE_WEIGHTS_NAME, TF_WEIGHTS_NAME, write_safetensors_file
from blip_core.weights.names import fill_untied_lm_head

TARGETS = ("pt", "tf")
# Files copied from --tokenizer (or a hub SRC) so that BlipProcessor.from_pretrained(DST) works.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "special_tokens_map.json",
    "added_tokens.json",
    "preprocessor_config.json",
)

# ``progress(total_bytes, description)`` -> an object with ``update(nbytes)`` and ``close()``.
ProgressFactory = Callable[[int, str], Any]


def with_lm_head_weights(state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A new dict: ``state`` plus ``cls.predictions.decoder.weight`` (the word-embedding array)
    under every LM head, so that every loader gets the output projection whether or not it
    ties weights."""
    return dict(fill_untied_lm_head(dict(state)))


def _state_bytes(state: Mapping[str, np.ndarray]) -> int:
    return sum(int(np.asarray(v).nbytes) for v in state.values())


def write_output(
    source: Source, out: Path, to: str, progress: ProgressFactory | None = None
) -> None:
    """Write ``source`` into the directory ``out`` in format ``to`` (``pt`` or ``tf``), then its
    ``config.json`` (``architectures`` set to the source's class)."""
    if to not in TARGETS:
        raise ConversionError(f"--to must be one of {', '.join(TARGETS)}, got {to!r}")
    if to == "pt":
        state, name = with_lm_head_weights(source.state), SAFE_WEIGHTS_NAME
    else:
        # write_tf_h5 stores the word embeddings as transformers' untied TF LM-head kernel.
        state, name = source.state, TF_WEIGHTS_NAME
    total = _state_bytes(state)
    reporter = progress(total, f"writing {name}") if progress is not None else None
    try:
        if to == "pt":
            try:
                write_safetensors_file(state, out / name)
            except ValueError as exc:
                raise ConversionError(str(exc)) from exc
        else:
            from blip_core.weights.h5 import write_tf_h5

            write_tf_h5(state, out / name, source.class_name)
        if reporter is not None:
            reporter.update(total)
    finally:
        if reporter is not None:
            reporter.close()
    # transformers' TF BLIP cannot build a model without vision_config.num_channels (its input
    # signature needs it), which transformers 4.57's BlipVisionConfig no longer writes.  Every
    # other reader ignores or keeps it.
    source.config.vision_config.extra.setdefault("num_channels", 3)
    source.config.extra["architectures"] = [source.class_name]
    write_config(source.config, source.class_name, out)


def check_tokenizer_dir(tokenizer: Path | None) -> None:
    """``--tokenizer DIR`` must be a directory with ``tokenizer.json`` or ``vocab.txt``."""
    if tokenizer is None:
        return
    if not tokenizer.is_dir():
        raise ConversionError(f"--tokenizer {tokenizer}: no such directory")
    if not any((tokenizer / n).is_file() for n in ("tokenizer.json", "vocab.txt")):
        raise ConversionError(
            f"--tokenizer {tokenizer}: no tokenizer.json or vocab.txt in this directory"
        )


def copy_extra_files(
    source: Source, tokenizer: Path | None, out: Path, log: Callable[[str], None]
) -> list[str]:
    """Copy the tokenizer / preprocessor / generation files of a hub source, then those of
    ``tokenizer``, into ``out``; returns the names copied."""
    copied: list[str] = []
    if source.kind == "hub" and source.directory is not None:
        from_source = []
        for name in (*TOKENIZER_FILES, GENERATION_CONFIG_NAME):
            if (source.directory / name).is_file():
                shutil.copyfile(source.directory / name, out / name)
                from_source.append(name)
        if from_source:
            log(f"copied from {source.directory}: {', '.join(from_source)}")
        copied += from_source
    if tokenizer is not None:
        names = [n for n in TOKENIZER_FILES if (tokenizer / n).is_file()]
        for name in names:
            shutil.copyfile(tokenizer / name, out / name)
        log(f"copied from {tokenizer}: {', '.join(names)}")
        copied += names
    return copied


__all__ = [
    "TARGETS",
    "TOKENIZER_FILES",
    "check_tokenizer_dir",
    "copy_extra_files",
    "with_lm_head_weights",
    "write_output",
]
