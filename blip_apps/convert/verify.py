"""The converter's numeric verification: load both sides in a backend, run a probe, compare.

The written folder is loaded in the target backend (``--to tf``: ``blip_tf``; ``--to pt``:
``blip_torch``) and the source in its own (a ``tf_model.h5`` hub folder in ``blip_tf``;
everything else -- original checkpoints included -- from its mapped canonical weights in
``blip_torch``), both through the one load sequence (:func:`blip_core.loading.from_state`,
:func:`blip_core.loading.from_pretrained`) and the backend adapter
(:class:`blip_core.adapter.Backend`: ``from_numpy``, ``to_numpy``, ``inference``).  Both run a
fixed probe input; the largest absolute difference of every output is printed, and above the
tolerance the conversion fails.

Memory: the torch adapter builds on the ``meta`` device and adopts the (memory-mapped) arrays,
and the source model is freed before the output is loaded, so the peak stays near one copy of
the weights.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from blip_apps.backends import load_backend
from blip_core.config import BlipConfig
from blip_core.loading import from_pretrained, from_state
from blip_core.weights.convert import ConversionError, Source

DEFAULT_ATOL = 1e-4
# The converter's format names -> backend names and packages.
BACKEND_NAMES = {"pt": "torch", "tf": "tf"}
PACKAGES = {"pt": "blip_torch", "tf": "blip_tf"}


class VerificationError(ConversionError):
    """The written checkpoint does not reproduce the source's outputs."""


def optional_backend(name: str) -> Any | None:
    """The adapter of backend ``name`` (``"torch"``, ``"tf"``), or None when not importable."""
    try:
        return load_backend(name)
    except ImportError:
        return None


def _required(fmt: str) -> Any:
    backend = optional_backend(BACKEND_NAMES[fmt])
    if backend is None:
        raise ConversionError(
            f"verification needs {PACKAGES[fmt]} and its framework installed; install it, or "
            "pass --no-verify to convert without checking the outputs"
        )
    return backend


def expected_shapes(class_name: str, config: BlipConfig) -> dict[str, tuple[int, ...]] | None:
    """Canonical keys and shapes of ``class_name`` for ``config`` (a ``blip_torch`` model on the
    meta device: no storage); None without torch."""
    backend = optional_backend("torch")
    if backend is None:
        return None
    model = backend.build_empty(backend.model_class(class_name), config)
    return backend.expected_shapes(model)


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
    backend: Any, model: Any, task: str, inputs: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """The named float32 outputs of one task ``model`` on ``inputs`` (every head it has).

    ``backend`` converts tensors (``from_numpy``, ``to_numpy``, ``inference``): a backend
    adapter, which also serves the transformers reference models of the same framework.
    """

    def t(array):
        return backend.from_numpy(array)

    def n(value):
        return np.asarray(backend.to_numpy(value), dtype=np.float32)

    px, ids, mask = t(inputs["pixel_values"]), t(inputs["input_ids"]), t(inputs["attention_mask"])
    out: dict[str, np.ndarray] = {}
    with backend.inference():
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
        else:
            raise ValueError(f"unknown task {task!r}; expected caption, vqa, itm or model")
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
# Loading both sides.


def load_source_model(source: Source, notes: list[str]) -> tuple[Any, Any, str]:
    """``(backend, model, description)`` of the source: a ``tf_model.h5`` hub folder in
    ``blip_tf`` (when importable), anything else from its canonical state in ``blip_torch``."""
    if source.backend == "tf" and source.kind == "hub" and source.path.is_dir():
        tf = optional_backend("tf")
        if tf is not None:
            source.state.clear()  # the source is loaded from its directory instead
            model = from_pretrained(tf, tf.model_class(source.class_name), source.path)
            return tf, model, f"blip_tf.{source.class_name} (source {source.path})"
    if source.backend == "tf":
        notes.append("the tf_model.h5 source was run in blip_torch (blip_tf is not importable)")
    torch = _required("pt")
    cls = torch.model_class(source.class_name)
    model = from_state(torch, cls, source.config, source.state, str(source.path))
    return torch, model, f"blip_torch.{source.class_name} (weights of {source.path})"


def load_written(directory: Path, to: str, class_name: str, notes: list[str]) -> tuple[Any, Any]:
    """``(backend, model)`` of the written folder in the target backend; a ``tf_model.h5``
    without ``blip_tf`` is read back into ``blip_torch`` instead (with a note)."""
    if to == "tf":
        tf = optional_backend("tf")
        if tf is not None:
            return tf, from_pretrained(tf, tf.model_class(class_name), directory)
        notes.append(
            "blip_tf is not importable: the converted output was checked by reading its "
            "tf_model.h5 back into blip_torch instead of running it in blip_tf"
        )
    torch = _required("pt")
    return torch, from_pretrained(torch, torch.model_class(class_name), directory)


def verify_conversion(
    source: Source,
    out: Path,
    to: str,
    notes: list[str],
    *,
    atol: float = DEFAULT_ATOL,
    log: Callable[[str], None] = print,
) -> dict[str, float]:
    """Run the source and the written folder ``out`` on :func:`probe_inputs`; log the table and
    return ``{output: max |diff|}``.  Raises :class:`VerificationError` above ``atol``.

    ``source.state`` is emptied on the way (the source model is freed before ``out`` is loaded).
    """
    inputs = probe_inputs(source.config)
    backend, model, _ = load_source_model(source, notes)
    src_out = run_probe(backend, model, source.task, inputs)
    source_backend = backend.name
    del model
    source.state.clear()
    backend, model = load_written(out, to, source.class_name, notes)
    dst_out = run_probe(backend, model, source.task, inputs)
    target_backend = backend.name
    del model
    rows, failures = compare_probes(src_out, dst_out, atol)
    log(f"verification on a fixed probe input (tolerance {atol:g}):")
    log(f"  source: {source.path} in {PACKAGES['tf' if source_backend == 'tf' else 'pt']}")
    log(
        f"  target: the converted directory in {PACKAGES['tf' if target_backend == 'tf' else 'pt']}"
    )
    for row in rows:
        log(row)
    if failures:
        raise VerificationError("verification failed: " + "; ".join(failures))
    return {
        name: float(np.max(np.abs(np.asarray(src_out[name], np.float64) - dst_out[name])))
        if src_out[name].size
        else 0.0
        for name in src_out
    }


__all__ = [
    "DEFAULT_ATOL",
    "VerificationError",
    "compare_probes",
    "expected_shapes",
    "load_source_model",
    "load_written",
    "optional_backend",
    "probe_inputs",
    "run_probe",
    "verify_conversion",
]
