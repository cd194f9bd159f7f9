"""Torch modules <-> canonical numpy dicts, and ``from_pretrained`` / ``save_pretrained``.

The load/save sequence itself is :mod:`blip_core.loading`, shared by every backend; this file
only knows how a ``torch.nn.Module`` holds its weights.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn

from blip_core import loading
from blip_core.config import BlipConfig


def tied_aliases(model: nn.Module) -> dict[str, str]:
    """``{alias_key: canonical_key}`` for parameters shared under two names (the LM-head weight)."""
    seen: dict[int, str] = {}
    aliases: dict[str, str] = {}
    for key, tensor in model.state_dict(keep_vars=True).items():
        if id(tensor) in seen:
            aliases[key] = seen[id(tensor)]
        else:
            seen[id(tensor)] = key
    return aliases


def expected_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    aliases = tied_aliases(model)
    return {k: tuple(v.shape) for k, v in model.state_dict().items() if k not in aliases}


def state_to_numpy(model: nn.Module) -> dict[str, np.ndarray]:
    """Canonical numpy state (float32 copies; tied aliases dropped)."""
    aliases = tied_aliases(model)
    return {
        k: v.detach().cpu().float().numpy().copy()
        if v.is_floating_point()
        else v.detach().cpu().numpy().copy()
        for k, v in model.state_dict().items()
        if k not in aliases
    }


def tie_lm_heads(model: nn.Module) -> None:
    """Tie every LM head's output weight to its word embeddings again."""
    for module in model.modules():
        if hasattr(module, "tie_weights") and hasattr(module, "cls"):
            module.tie_weights()


def assign_state(model: nn.Module, state: Mapping[str, np.ndarray]) -> None:
    """Load a checked canonical state (every expected key present, shapes right).

    A model built on the meta device adopts the arrays' memory (``assign=True``): with
    memory-mapped files, one copy of the weights in all; otherwise values are copied in.
    """
    params = model.state_dict()
    aliases = tied_aliases(model)
    meta = any(p.is_meta for p in params.values())
    tensors = {}
    for key, value in state.items():
        tensors[key] = torch.from_numpy(np.ascontiguousarray(value)).to(params[key].dtype)
    for alias, canonical in aliases.items():
        tensors[alias] = tensors[canonical]
    model.load_state_dict(tensors, strict=True, assign=meta)
    if meta:  # assign=True gives each key its own Parameter: tie the shared ones again
        tie_lm_heads(model)
        if set(tied_aliases(model)) != set(aliases):
            raise RuntimeError(f"tied weights not restored after loading: {sorted(aliases)}")


def load_numpy_state(
    model: nn.Module, state: Mapping[str, np.ndarray], source: str = "state"
) -> nn.Module:
    """Strictly load a canonical numpy dict: one error listing missing/unexpected/mis-shaped keys."""
    from blip_torch.adapter import BACKEND

    return loading.load_state(BACKEND, model, state, source)


_INIT_FUNCTIONS = (
    "uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "xavier_uniform_",
    "xavier_normal_", "kaiming_uniform_", "kaiming_normal_",
)  # fmt: skip


@contextlib.contextmanager
def skip_init():
    """Make ``torch.nn.init``'s fill functions no-ops while a model is built on the meta
    device: the values would be discarded, and the first random fill of a meta tensor imports
    torch._dynamo (most of a BLIP-base ``from_pretrained``'s time before this)."""
    saved = {name: getattr(nn.init, name) for name in _INIT_FUNCTIONS}
    try:
        for name in _INIT_FUNCTIONS:
            setattr(nn.init, name, lambda tensor, *args, **kwargs: tensor)
        yield
    finally:
        for name, function in saved.items():
            setattr(nn.init, name, function)


class PreTrainedMixin:
    """``from_pretrained`` / ``save_pretrained`` for the blip_torch models."""

    config_class = BlipConfig

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        config=None,
        torch_dtype: torch.dtype | str | None = None,
        device: str | torch.device | None = None,
        *,
        dtype: torch.dtype | str | None = None,
        quantization: str | None = None,
        quantization_parts: tuple[str, ...] = ("text",),
    ):
        """Build from a hub-layout directory (see :func:`blip_core.loading.from_pretrained`).

        ``torch_dtype`` (or ``dtype``, transformers' newer name; give one): a torch dtype, its
        name (``"bfloat16"``, ``"float16"``, ``"float32"``) or ``"auto"`` -- the dtype
        :func:`blip_core.hardware.choose_dtype` picks for ``device`` (bfloat16 on CPUs with
        AMX-BF16, on AVX-512 BF16 CPUs where measured faster and on bf16 GPUs, float32
        elsewhere; see :mod:`blip_torch.precision` for what stays float32).  None keeps float32, the default.
        ``device`` moves the weights (``ValueError`` naming what is there when this machine or
        torch build lacks it).  ``quantization="int8"``: int8 weights for the Linear
        layers through torchao (:func:`blip_torch.quantize`; activations bfloat16 unless a
        dtype is given); ``quantization_parts``: the towers it applies to, ``("text",)`` by
        default, ``("text", "vision")`` adds the vision tower's int8 x int8 graph (compiled on
        its first call; see :mod:`blip_torch.quantization`).
        """
        from blip_torch.adapter import BACKEND
        from blip_torch.precision import check_device, pick_dtype_argument, resolve_dtype

        if device is not None:
            device = check_device(device)
        argument, value = pick_dtype_argument(torch_dtype, dtype)
        target = resolve_dtype(value, device, argument)
        model = loading.from_pretrained(BACKEND, cls, pretrained_model_name_or_path, config)
        if quantization is not None:
            from blip_torch.quantization import quantize

            return quantize(
                model, quantization, dtype=target, device=device, parts=tuple(quantization_parts)
            )
        if target is not None and target != torch.float32:
            model.to(target)
        if device is not None:
            model.to(device)
        return model

    def save_pretrained(self, save_directory: str | os.PathLike) -> Path:
        """Write ``config.json`` and ``model.safetensors`` in canonical names."""
        from blip_torch.adapter import BACKEND

        return loading.save_pretrained(BACKEND, self, save_directory)
