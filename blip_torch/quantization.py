"""int8 inference for the PyTorch backend through torchao (an optional dependency).

:func:`quantize` replaces the weights of the chosen towers' ``nn.Linear`` layers by torchao
int8 tensors (per-output-row scales) with ``torchao.quantization.quantize_``:

* ``"int8"`` -- :class:`torchao.quantization.Int8WeightOnlyConfig`: int8 weights, activations in
  the model dtype (bfloat16 unless told otherwise).  Halves the bytes a decode step streams.
* ``"int8-dynamic"`` -- :class:`torchao.quantization.Int8DynamicActivationInt8WeightConfig`:
  activations quantized per token at run time too (int8 x int8 products, VNNI/AMX-INT8).

On CPU these kernels pay only under ``torch.compile`` with bfloat16 activations (eager int8
weight-only is slower than float32 there), so :func:`quantize` casts to bfloat16 and opts in
to the compiled decode step (:func:`blip_torch.compile_decoder`) by default.  Embeddings,
LayerNorms and the attention products stay in the activation dtype; the tied LM-head weight
is quantized for the head only (the word embeddings keep their float copy).  Linear layers whose
``in_features`` is not a multiple of 8 keep float weights (see ``_IN_FEATURES_MULTIPLE``).

A quantized model is for inference: ``save_pretrained`` / ``state_dict`` round trips are not
supported (save before quantizing).
"""

from __future__ import annotations

import contextlib
import logging
import warnings

import torch
from torch import nn

SCHEMES = ("int8", "int8-dynamic")
PARTS = {"text": ("text_decoder", "text_encoder"), "vision": ("vision_model",)}


@contextlib.contextmanager
def _quiet_import():
    """Silence what importing torchao logs on a CPU-only torch: it tries its CUDA kernel
    libraries (``Failed to load ..._C_cutlass_90a.so``) and registers an Enum with torch's
    pytree (a deprecation warning); neither concerns the CPU paths used here."""
    loggers = [logging.getLogger(name) for name in ("torchao", "torch.utils._pytree")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _torchao(scheme: str):
    try:
        with _quiet_import():
            from torchao.quantization import (
                Int8DynamicActivationInt8WeightConfig,
                Int8WeightOnlyConfig,
                quantize_,
            )
    except ImportError as error:
        raise ImportError(
            f"quantization={scheme!r} needs torchao, which is not installed: "
            "pip install 'blip-twin[fast]' (or pip install torchao)"
        ) from error
    config = Int8WeightOnlyConfig() if scheme == "int8" else Int8DynamicActivationInt8WeightConfig()
    return quantize_, config


# Compiled on CPU (torch 2.13, torchao 0.18), inductor's int8 weight-only product crashes the
# process (SIGSEGV) when a Linear's in_features is not a multiple of 8 (36 and 37 do; 32, 40 and
# every BLIP-base width do not): such layers keep their float weights.
_IN_FEATURES_MULTIPLE = 8


def _quantizable(module: nn.Module, name: str) -> bool:
    return isinstance(module, nn.Linear) and module.in_features % _IN_FEATURES_MULTIPLE == 0


def _towers(model: nn.Module, parts) -> list[nn.Module]:
    from blip_torch.text import BlipTextLMHeadModel, BlipTextModel
    from blip_torch.vision import BlipVisionModel

    if isinstance(model, (BlipTextLMHeadModel, BlipTextModel, BlipVisionModel)):
        return [model]  # a bare tower: quantize all of it
    towers = []
    for part in parts:
        if part not in PARTS:
            raise ValueError(f"quantize parts={parts!r}: {part!r} is not one of {sorted(PARTS)}")
        towers += [getattr(model, name) for name in PARTS[part] if hasattr(model, name)]
    if not towers:
        raise TypeError(f"{type(model).__name__} has no BLIP tower named by parts={parts!r}")
    return towers


def quantize(
    model: nn.Module,
    scheme: str = "int8",
    dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
    parts: tuple[str, ...] = ("text",),
    compile: bool = True,
) -> nn.Module:
    """Quantize ``model``'s Linear layers to int8 in place (see the module notes); returns it.

    ``scheme``: ``"int8"`` or ``"int8-dynamic"``; ``dtype``: the activation dtype (default
    bfloat16; float32 works but is slow on CPU); ``device``: moved there first; ``parts``:
    ``"text"`` (decoder and text encoder, the default), ``"vision"``; ``compile``: opt in to
    the compiled decode step (:func:`blip_torch.compile_decoder`) when the model has a decoder.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"quantization={scheme!r} is not supported; allowed: {SCHEMES}")
    quantize_, config = _torchao(scheme)
    # torch.compile's cache asks every tensor subclass for a stable hash; torchao's int8 tensors
    # have none, so the first compiled step warns (the cache key falls back; results unchanged).
    warnings.filterwarnings("ignore", message=r".*does not implement _stable_hash_for_caching")
    towers = _towers(model, parts)
    model.to(dtype if dtype is not None else torch.bfloat16)
    if device is not None:
        model.to(device)
    for tower in towers:
        quantize_(tower, config, filter_fn=_quantizable)
    if compile:
        from blip_torch.generation import compile_decoder
        from blip_torch.text import BlipTextLMHeadModel

        if isinstance(model, BlipTextLMHeadModel) or hasattr(model, "text_decoder"):
            compile_decoder(model)
    return model


__all__ = ["SCHEMES", "quantize"]
