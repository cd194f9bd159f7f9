"""Convert BLIP checkpoints between formats: original ``.pth``, PyTorch hub, TensorFlow hub.

    blip-convert SRC DST --to {pt,tf} [--task {caption,vqa,itm,auto}] [--config CONFIG_JSON]
                 [--tokenizer DIR] [--force] [--no-verify]

``SRC`` is a hub-layout directory (``model.safetensors``, sharded safetensors,
``pytorch_model.bin`` or ``tf_model.h5``, with ``config.json``) or an original Salesforce BLIP
checkpoint file (``model_base_caption_capfilt_large.pth``, ...: a pickle of
``{"model": state_dict}``).  ``DST`` becomes a new hub-layout directory: ``config.json`` plus
``model.safetensors`` (``--to pt``) or the ``tf_model.h5`` layout that ``transformers``' TF BLIP
writes (``--to tf``).

Safety: the source is only read (pickles with ``torch.load(weights_only=True)``, which never runs
code from the file); the output is assembled in a hidden temporary directory beside ``DST``,
verified there, and renamed into place only when complete, so an interrupted or failed run leaves
no ``DST``; an existing ``DST`` is replaced only with ``--force``.

Verification (on unless ``--no-verify``): the written directory is loaded in the target backend
and the source in the source backend (an original checkpoint: its mapped weights in
``blip_torch``), both run on a fixed probe input, and the largest absolute difference of every
output is printed; above ``1e-4`` the conversion fails.

Memory: weights are read once, renamed without copying, written tensor by tensor, and the
verification models are built on torch's ``meta`` device and take the arrays over
(``assign=True``), so the peak stays near one copy of the weights (``--to tf`` adds the layout
transposes of the HDF5 writer).

This module imports neither torch nor tensorflow at import time.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from blip_core.config import CONFIG_NAME, BlipConfig, ConfigError
from blip_core.weights.io import (
    SAFE_WEIGHTS_NAME,
    TF_WEIGHTS_NAME,
    WeightLoadError,
    check_keys,
    find_weights_file,
    read_checkpoint,
    read_safetensors,
    read_torch_pickle,
    write_safetensors_file,
)
from blip_core.weights.names import (
    DECODER_WEIGHT,
    WORD_EMBEDDINGS,
    lm_head_prefixes,
    normalize_tied,
)
from blip_core.weights.original_map import (
    CLASS_TASKS,
    ORIGINAL_TASKS,
    TASK_CLASSES,
    convert_original_state,
    infer_task,
    is_original_checkpoint,
)

TARGETS = ("pt", "tf")
DEFAULT_ATOL = 1e-4
# Show a progress bar when writing at least this many bytes.
PROGRESS_MIN_BYTES = 64 * 2**20
PICKLE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
# Files copied from --tokenizer (or a hub SRC) so that BlipProcessor.from_pretrained(DST) works.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "special_tokens_map.json",
    "added_tokens.json",
    "preprocessor_config.json",
)
GENERATION_CONFIG = "generation_config.json"


class ConversionError(ValueError):
    """A conversion that cannot be done; the message says why and what would work."""


class VerificationError(ConversionError):
    """The written checkpoint does not reproduce the source's outputs."""


# --------------------------------------------------------------------------------------------
# Progress.


class Progress:
    """Byte progress on stderr: tqdm when installed, else a counter printed every ~10%."""

    def __init__(self, total: int, desc: str, enabled: bool | None = None, stream=None):
        self.total, self.desc, self.done = total, desc, 0
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = total >= PROGRESS_MIN_BYTES if enabled is None else enabled
        self._bar = None
        self._next_report = 0.0
        if self.enabled:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self._bar = tqdm(
                    total=total, desc=desc, unit="B", unit_scale=True, file=self.stream, leave=True
                )

    def update(self, nbytes: int) -> None:
        self.done += nbytes
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(nbytes)
        elif self.done >= self._next_report or self.done >= self.total:
            pct = 100.0 * self.done / self.total if self.total else 100.0
            print(
                f"{self.desc}: {self.done / 2**20:.0f}/{self.total / 2**20:.0f} MiB ({pct:.0f}%)",
                file=self.stream,
                flush=True,
            )
            self._next_report = self.done + self.total / 10

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


# --------------------------------------------------------------------------------------------
# Writing.


def write_safetensors_streaming(
    state: Mapping[str, np.ndarray],
    path: str | os.PathLike,
    metadata: Mapping[str, str] | None = None,
    progress: Progress | None = None,
) -> Path:
    """Write ``state`` tensor by tensor (see :func:`blip_core.weights.io.write_safetensors_file`)."""
    try:
        return write_safetensors_file(
            state, path, metadata, None if progress is None else progress.update
        )
    except ValueError as exc:
        raise ConversionError(str(exc)) from exc


def with_lm_head_weights(state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``state`` plus ``cls.predictions.decoder.weight`` (the word embeddings) under every LM
    head, so that every loader gets the output projection whether or not it ties weights."""
    out = dict(state)
    for prefix in lm_head_prefixes(out):
        if prefix + WORD_EMBEDDINGS in out:
            out.setdefault(prefix + DECODER_WEIGHT, out[prefix + WORD_EMBEDDINGS])
    return out


# --------------------------------------------------------------------------------------------
# Reading the source.


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


def _read_config(path: str | os.PathLike) -> BlipConfig:
    path = Path(path)
    if not path.exists():
        raise ConversionError(f"--config {path}: no such file")
    return BlipConfig.from_pretrained(path)


def _read_weights_file(path: Path) -> tuple[dict[str, np.ndarray], str]:
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


def _hub_task(config: BlipConfig, state: Mapping[str, np.ndarray], task: str, where: Path) -> str:
    """The task of a hub checkpoint: its config's ``architectures``, else its modules."""
    names = [a.removeprefix("TF") for a in config.extra.get("architectures") or []]
    known = [CLASS_TASKS[name] for name in names if name in CLASS_TASKS]
    found = known[0] if known else infer_task(state)
    if task not in ("auto", found):
        raise ConversionError(
            f"{where} holds a {TASK_CLASSES[found]} ({found}); --task {task} cannot be made from "
            "it (a hub checkpoint converts to the same task; drop --task)"
        )
    return found


def load_source(
    src: str | os.PathLike, task: str = "auto", config: BlipConfig | None = None
) -> Source:
    """Read ``src`` (hub directory, hub weights file, or original ``.pth``) into a :class:`Source`."""
    src = Path(src)
    if not src.exists():
        raise ConversionError(f"{src}: no such file or directory")
    if src.is_dir():
        backend = "tf" if find_weights_file(src).name.endswith(".h5") else "pt"
        state = read_checkpoint(src)
        directory: Path | None = src
    else:
        state, backend = _read_weights_file(src)
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
    where = src
    found = _hub_task(config, state, task, where)
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


# --------------------------------------------------------------------------------------------
# Models for verification.


def _torch_model_from_state(
    class_name: str, config: BlipConfig, state: Mapping[str, np.ndarray], source: str
):
    """A ``blip_torch`` model whose parameters *are* the arrays of ``state`` (no copy).

    The same strict pipeline as ``from_pretrained`` (tied-key normalisation, one error listing
    missing / unexpected / mis-shaped keys), but the model is built on the ``meta`` device and
    takes the arrays over, so verification costs no second copy of the weights.
    """
    import torch

    import blip_torch
    from blip_torch.checkpoint import expected_shapes, tied_aliases

    with torch.device("meta"):
        model = getattr(blip_torch, class_name)(config)
    state = normalize_tied(dict(state))
    expected = expected_shapes(model)
    check_keys(expected, {k: tuple(np.shape(v)) for k, v in state.items()}, source=source)
    params = model.state_dict(keep_vars=True)
    tensors = {}
    with warnings.catch_warnings():
        # safetensors arrays are read-only views; the model never writes to them.
        warnings.filterwarnings("ignore", message=".*not writable.*")
        for key, value in state.items():
            tensor = torch.from_numpy(np.ascontiguousarray(value))
            tensors[key] = tensor.to(params[key].dtype)
    for alias, canonical in tied_aliases(model).items():
        tensors[alias] = tensors[canonical]
    model.load_state_dict(tensors, strict=True, assign=True)
    return model.eval()


def expected_key_shapes(class_name: str, config: BlipConfig) -> dict[str, tuple[int, ...]] | None:
    """Canonical keys and shapes of ``class_name`` for ``config`` (None without torch)."""
    try:
        import torch

        import blip_torch
        from blip_torch.checkpoint import expected_shapes
    except ImportError:
        return None
    with torch.device("meta"):
        model = getattr(blip_torch, class_name)(config)
    return expected_shapes(model)


def _blip_tf():
    try:
        import blip_tf
    except ImportError:
        return None
    return blip_tf


class _Runner:
    """One loaded model and how to feed it numpy inputs and read numpy outputs."""

    def __init__(self, model, backend: str, description: str):
        self.model, self.backend, self.description = model, backend, description

    def tensor(self, array: np.ndarray):
        if self.backend == "pt":
            import torch

            return torch.from_numpy(array)
        return array

    @staticmethod
    def numpy(value) -> np.ndarray:
        if hasattr(value, "detach"):
            return value.detach().cpu().float().numpy()
        if hasattr(value, "numpy"):
            return np.asarray(value.numpy(), dtype=np.float32)
        return np.asarray(value, dtype=np.float32)

    def context(self):
        if self.backend == "pt":
            import torch

            return torch.no_grad()
        return contextlib.nullcontext()


def torch_runner_from_state(source: Source) -> _Runner:
    model = _torch_model_from_state(
        source.class_name, source.config, source.state, str(source.path)
    )
    return _Runner(model, "pt", f"blip_torch.{source.class_name} (weights of {source.path})")


def load_runner(
    directory: Path, backend: str, class_name: str, notes: list[str], label: str
) -> _Runner:
    """Load a hub directory in ``backend`` (``tf`` without blip_tf: read back into blip_torch)."""
    if backend == "tf":
        blip_tf = _blip_tf()
        cls = getattr(blip_tf, class_name, None) if blip_tf is not None else None
        if cls is not None:
            return _Runner(cls.from_pretrained(directory), "tf", f"blip_tf.{class_name} ({label})")
        notes.append(
            f"blip_tf is not importable: {label} was checked by reading its tf_model.h5 back into "
            "blip_torch instead of running it in blip_tf"
        )
    config = BlipConfig.from_pretrained(directory)
    state = read_checkpoint(directory)
    model = _torch_model_from_state(class_name, config, state, str(directory))
    return _Runner(model, "pt", f"blip_torch.{class_name} ({label})")


# --------------------------------------------------------------------------------------------
# The probe.


def probe_inputs(config: BlipConfig, seed: int = 0) -> dict[str, np.ndarray]:
    """A fixed batch: 2 images ``(2, 3, S, S)``, a padded text batch ``(2, 7)``, answers ``(2, 4)``."""
    rng = np.random.default_rng(seed)
    text, size = config.text_config, config.vision_config.image_size
    high = min(text.vocab_size, 30000)
    low = min(1000, high // 2)
    pixels = rng.standard_normal((2, 3, size, size)).astype(np.float32)
    ids = rng.integers(low, high, size=(2, 7)).astype(np.int64)
    ids[:, 0] = text.bos_token_id if text.bos_token_id < text.vocab_size else ids[:, 0]
    mask = np.ones_like(ids)
    mask[1, 5:] = 0
    ids[1, 5:] = text.pad_token_id
    answers = rng.integers(low, high, size=(2, 4)).astype(np.int64)
    answers[:, 0] = ids[0, 0]
    return {
        "pixel_values": pixels,
        "input_ids": ids,
        "attention_mask": mask,
        "decoder_input_ids": answers,
        "decoder_attention_mask": np.ones_like(answers),
    }


def run_probe(
    runner: _Runner, task: str, inputs: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """The named outputs of one task model on ``inputs`` (every head the task model has)."""
    model, t, n = runner.model, runner.tensor, runner.numpy
    px, ids, mask = t(inputs["pixel_values"]), t(inputs["input_ids"]), t(inputs["attention_mask"])
    out: dict[str, np.ndarray] = {}
    with runner.context():
        if task == "model":
            result = model(input_ids=ids, pixel_values=px, attention_mask=mask)
            for name in ("logits_per_image", "text_embeds", "image_embeds"):
                out[name] = n(getattr(result, name))
            return out
        vision = model.vision_model(pixel_values=px)
        out["vision_model.last_hidden_state"] = n(vision.last_hidden_state)
        out["vision_model.pooler_output"] = n(vision.pooler_output)
        if task == "caption":
            out["logits"] = n(model(pixel_values=px, input_ids=ids, attention_mask=mask).logits)
        elif task == "vqa":
            question = model.text_encoder(
                input_ids=ids, attention_mask=mask, encoder_hidden_states=vision.last_hidden_state
            ).last_hidden_state
            out["text_encoder.last_hidden_state"] = n(question)
            out["text_decoder.logits"] = n(
                model.text_decoder(
                    input_ids=t(inputs["decoder_input_ids"]),
                    attention_mask=t(inputs["decoder_attention_mask"]),
                    encoder_hidden_states=question,
                    encoder_attention_mask=mask,
                ).logits
            )
        elif task == "itm":
            for head, flag in (("itm_score", True), ("itc_score", False)):
                result = model(
                    input_ids=ids, pixel_values=px, attention_mask=mask, use_itm_head=flag
                )
                out[head] = n(result.itm_score)
        else:  # pragma: no cover - tasks are validated earlier
            raise ValueError(task)
    return out


def compare_probes(
    source: Mapping[str, np.ndarray], target: Mapping[str, np.ndarray], atol: float
) -> tuple[list[str], list[str]]:
    """Table rows ``name  shape  max|diff|`` and failure descriptions."""
    rows, failures = [], []
    for name in sorted(set(source) | set(target)):
        if name not in source or name not in target:
            failures.append(f"{name}: produced by only one side")
            continue
        a, b = np.asarray(source[name], np.float64), np.asarray(target[name], np.float64)
        if a.shape != b.shape:
            failures.append(f"{name}: shape {a.shape} vs {b.shape}")
            continue
        diff = float(np.max(np.abs(a - b))) if a.size else 0.0
        rows.append(f"  {name:36s} {str(a.shape):18s} max|diff| {diff:.3e}")
        if not diff <= atol:  # catches NaN too
            failures.append(f"{name}: max|diff| {diff:.3e} > {atol:g}")
    return rows, failures


# --------------------------------------------------------------------------------------------
# The conversion.


@dataclass
class ConversionResult:
    destination: Path
    task: str
    class_name: str
    source_kind: str
    notes: list[str]
    max_abs_diff: dict[str, float] | None  # None when not verified


def _check_runnable(source: Source) -> None:
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


def _check_destination(src: Path, dst: Path, force: bool) -> None:
    if dst.exists() or dst.is_symlink():
        if not force:
            raise ConversionError(f"{dst} already exists; pass --force to replace it")
        if not dst.is_dir() or dst.is_symlink():
            raise ConversionError(f"{dst} exists and is not a directory; refusing to replace it")
    src_abs, dst_abs = src.resolve(), dst.resolve()
    if src_abs == dst_abs or dst_abs in src_abs.parents:
        raise ConversionError(f"{dst} holds the source {src}; choose another destination")


def _copy_extra_files(source: Source, tokenizer: Path | None, out: Path, log) -> None:
    copied: list[str] = []
    if source.kind == "hub" and source.directory is not None:
        for name in (*TOKENIZER_FILES, GENERATION_CONFIG):
            if (source.directory / name).is_file():
                shutil.copyfile(source.directory / name, out / name)
                copied.append(name)
        if copied:
            log(f"copied from {source.directory}: {', '.join(copied)}")
    if tokenizer is not None:
        names = [n for n in TOKENIZER_FILES if (tokenizer / n).is_file()]
        for name in names:
            shutil.copyfile(tokenizer / name, out / name)
        log(f"copied from {tokenizer}: {', '.join(names)}")


def _check_tokenizer_dir(tokenizer: Path | None) -> None:
    if tokenizer is None:
        return
    if not tokenizer.is_dir():
        raise ConversionError(f"--tokenizer {tokenizer}: no such directory")
    if not any((tokenizer / n).is_file() for n in ("tokenizer.json", "vocab.txt")):
        raise ConversionError(
            f"--tokenizer {tokenizer}: no tokenizer.json or vocab.txt in this directory"
        )


def _write_output(source: Source, out: Path, to: str) -> None:
    state = source.state
    if to == "pt":
        state = with_lm_head_weights(state)
        total = sum(int(np.asarray(v).nbytes) for v in state.values())
        progress = Progress(total, f"writing {SAFE_WEIGHTS_NAME}")
        try:
            write_safetensors_streaming(state, out / SAFE_WEIGHTS_NAME, progress=progress)
        finally:
            progress.close()
    else:
        from blip_core.weights.h5 import write_tf_h5

        # write_tf_h5 stores the word embeddings as transformers' untied TF LM-head kernel.
        write_tf_h5(state, out / TF_WEIGHTS_NAME, source.class_name)
    source.config.extra["architectures"] = [source.class_name]
    # transformers' TF BLIP cannot build a model without vision_config.num_channels (its input
    # signature needs it), which transformers 4.57's BlipVisionConfig no longer writes.  Every
    # other reader ignores or keeps it.
    source.config.vision_config.extra.setdefault("num_channels", 3)
    source.config.save_pretrained(out)


def _verify(
    source: Source, out: Path, to: str, atol: float, log, notes: list[str]
) -> dict[str, float]:
    inputs = probe_inputs(source.config)
    if source.backend == "tf" and source.kind == "hub" and source.path.is_dir() and _blip_tf():
        source.state.clear()  # the source is loaded from its directory instead
        src_runner = load_runner(
            source.path, "tf", source.class_name, notes, f"source {source.path}"
        )
    else:
        if source.backend == "tf":
            notes.append("the tf_model.h5 source was run in blip_torch (blip_tf is not importable)")
        src_runner = torch_runner_from_state(source)
    src_out = run_probe(src_runner, source.task, inputs)
    del src_runner
    source.state.clear()  # frees the source weights before the output is loaded
    dst_runner = load_runner(out, to, source.class_name, notes, "converted output")
    dst_out = run_probe(dst_runner, source.task, inputs)
    del dst_runner
    rows, failures = compare_probes(src_out, dst_out, atol)
    log(f"verification on a fixed probe input (tolerance {atol:g}):")
    log(f"  source: {source.path} in {'blip_tf' if source.backend == 'tf' else 'blip_torch'}")
    log(f"  target: the converted directory in {'blip_tf' if to == 'tf' else 'blip_torch'}")
    for row in rows:
        log(row)
    if failures:
        raise VerificationError("verification failed: " + "; ".join(failures))
    return {
        name: float(np.max(np.abs(np.asarray(src_out[name], np.float64) - dst_out[name])))
        for name in src_out
    }


def _install(tmp: Path, dst: Path) -> None:
    """Rename the finished ``tmp`` to ``dst`` (an existing ``dst`` is moved aside first)."""
    backup = None
    if dst.exists():
        backup = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".old", dir=dst.parent))
        backup.rmdir()
        os.replace(dst, backup)
    try:
        os.replace(tmp, dst)
    except BaseException:
        if backup is not None:
            os.replace(backup, dst)
        raise
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)


def convert_checkpoint(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    to: str,
    *,
    task: str = "auto",
    config: str | os.PathLike | BlipConfig | None = None,
    tokenizer: str | os.PathLike | None = None,
    force: bool = False,
    verify: bool = True,
    atol: float = DEFAULT_ATOL,
    log: Callable[[str], None] = print,
) -> ConversionResult:
    """Convert the checkpoint at ``src`` to a new hub-layout directory ``dst`` (``to``: ``pt`` or
    ``tf``).  Raises :class:`ConversionError` (or :class:`~blip_core.weights.io.WeightLoadError`,
    :class:`~blip_core.config.ConfigError`) without leaving anything at ``dst``."""
    if to not in TARGETS:
        raise ConversionError(f"--to must be one of {', '.join(TARGETS)}, got {to!r}")
    if task != "auto" and task not in ORIGINAL_TASKS:
        raise ConversionError(
            f"--task must be auto or one of {', '.join(ORIGINAL_TASKS)}, got {task!r}"
        )
    src, dst = Path(src), Path(dst)
    if not src.exists():
        raise ConversionError(f"{src}: no such file or directory")
    _check_destination(src, dst, force)
    tokenizer = Path(tokenizer) if tokenizer is not None else None
    _check_tokenizer_dir(tokenizer)
    if config is not None and not isinstance(config, BlipConfig):
        config = _read_config(config)

    log(f"reading {src}")
    source = load_source(src, task=task, config=config)
    notes = list(source.notes)
    for note in notes:
        log(f"note: {note}")
    _check_runnable(source)
    source.state = normalize_tied(source.state)
    expected = expected_key_shapes(source.class_name, source.config)
    if expected is not None:
        hint = "  (does --config describe this checkpoint's sizes?)" if config is not None else ""
        check_keys(
            expected,
            {k: tuple(np.shape(v)) for k, v in source.state.items()},
            source=str(src),
            hint=hint,
        )
    log(
        f"converting a {source.class_name} ({source.task}) to {'PyTorch' if to == 'pt' else 'TensorFlow'}"
    )

    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".partial", dir=dst.parent))
    try:
        _write_output(source, tmp, to)
        _copy_extra_files(source, tokenizer, tmp, log)
        diffs = None
        if verify:
            verify_notes: list[str] = []
            diffs = _verify(source, tmp, to, atol, log, verify_notes)
            for note in verify_notes:
                log(f"note: {note}")
            notes.extend(verify_notes)
        _install(tmp, dst)
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


# --------------------------------------------------------------------------------------------
# Command line.


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="blip-convert",
        description=(
            "Convert a BLIP checkpoint (original Salesforce .pth, or a hub directory with "
            "model.safetensors / pytorch_model.bin / tf_model.h5) into a new hub directory for "
            "PyTorch (model.safetensors) or TensorFlow (tf_model.h5)."
        ),
    )
    parser.add_argument("src", help="hub-layout directory or original BLIP .pth checkpoint")
    parser.add_argument("dst", help="new output directory (must not exist unless --force)")
    parser.add_argument("--to", required=True, choices=TARGETS, help="output format")
    parser.add_argument(
        "--task",
        default="auto",
        choices=(*ORIGINAL_TASKS, "auto"),
        help="task model to build from an original checkpoint (default: inferred from its heads)",
    )
    parser.add_argument(
        "--config",
        metavar="CONFIG_JSON",
        help="explicit config.json (any sizes) instead of inference",
    )
    parser.add_argument(
        "--tokenizer", metavar="DIR", help="copy tokenizer and preprocessor files from DIR into DST"
    )
    parser.add_argument("--force", action="store_true", help="replace an existing DST directory")
    parser.add_argument(
        "--no-verify", action="store_true", help="skip loading both sides and comparing outputs"
    )
    parser.add_argument(
        "--atol",
        type=float,
        default=DEFAULT_ATOL,
        help=f"verification tolerance (default {DEFAULT_ATOL:g})",
    )
    return parser


def _sigterm(signum, frame):  # pragma: no cover - exercised by sending a signal
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    """``blip-convert`` / ``scripts/convert_weights.py``: 0 on success, 1 on error, 3 when the
    verification fails, 130 when interrupted (argparse usage errors exit with 2)."""
    args = build_parser().parse_args(argv)
    previous = None
    with contextlib.suppress(ValueError):  # not the main thread
        previous = signal.signal(signal.SIGTERM, _sigterm)
    try:
        result = convert_checkpoint(
            args.src,
            args.dst,
            args.to,
            task=args.task,
            config=args.config,
            tokenizer=args.tokenizer,
            force=args.force,
            verify=not args.no_verify,
            atol=args.atol,
            log=lambda line: print(line, flush=True),
        )
    except VerificationError as exc:
        print(f"blip-convert: error: {exc}; nothing was written to {args.dst}", file=sys.stderr)
        return 3
    except (ConversionError, WeightLoadError, ConfigError, OSError, ValueError, KeyError) as exc:
        message = str(exc) if not isinstance(exc, KeyError) else f"unexpected key {exc}"
        print(f"blip-convert: error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"blip-convert: interrupted; nothing was written to {args.dst}", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            with contextlib.suppress(ValueError):
                signal.signal(signal.SIGTERM, previous)
    if result.max_abs_diff is not None:
        worst = max(result.max_abs_diff.values(), default=0.0)
        print(f"verified: largest difference {worst:.3e} (tolerance {args.atol:g})")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


__all__ = [
    "ConversionError",
    "ConversionResult",
    "Progress",
    "Source",
    "VerificationError",
    "convert_checkpoint",
    "load_source",
    "main",
    "probe_inputs",
    "run_probe",
    "write_safetensors_streaming",
]
