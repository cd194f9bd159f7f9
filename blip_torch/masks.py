"""Additive attention masks of the PyTorch text model: self-attention (BERT's ``-10000``, causal
in decoder mode), over a fixed-size slot cache, and cross-attention (``finfo.min``)."""

from __future__ import annotations

import torch

from blip_core.constants import SELF_ATTENTION_MASK_VALUE


def self_attention_mask(
    attention_mask: torch.Tensor, query_length: int, is_decoder: bool, dtype: torch.dtype
) -> torch.Tensor:
    """Additive mask ``(B, 1, Tq, Tk)`` (or ``(B, 1, 1, Tk)``): BERT's ``(1 - m) * -10000``.

    ``attention_mask`` is ``(B, Tk)`` over past + current tokens (1 = attend).  In decoder mode a
    query at position ``past + i`` sees keys ``0 .. past + i``.
    """
    if attention_mask.dim() == 3:
        mask = attention_mask[:, None, :, :]
    elif is_decoder:
        key_length = attention_mask.shape[1]
        past = key_length - query_length
        q_pos = torch.arange(query_length, device=attention_mask.device)[:, None] + past
        k_pos = torch.arange(key_length, device=attention_mask.device)[None, :]
        causal = (k_pos <= q_pos).to(dtype)  # (Tq, Tk)
        mask = causal[None, None] * attention_mask[:, None, None, :].to(dtype)
    else:
        mask = attention_mask[:, None, None, :]
    return (1.0 - mask.to(dtype)) * SELF_ATTENTION_MASK_VALUE


def cross_attention_mask(encoder_attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Additive ``(B, 1, 1, Tk)`` mask ``(1 - m) * finfo(dtype).min`` (transformers' invert_attention_mask)."""
    if encoder_attention_mask.dim() == 3:
        mask = encoder_attention_mask[:, None, :, :]
    else:
        mask = encoder_attention_mask[:, None, None, :]
    return (1.0 - mask.to(dtype)) * torch.finfo(dtype).min


def slot_attention_mask(
    key_mask: torch.Tensor, query_slots: torch.Tensor, dtype: torch.dtype
) -> torch.Tensor:
    """Additive mask ``(N, 1, T, C)`` over a slot cache: the same ``(1 - m) * -10000`` as
    :func:`self_attention_mask`, causal in slot order.

    ``key_mask`` ``(N, C)`` marks the attended slots (padding and unwritten slots 0, which get
    exactly zero weight in float32 softmax accumulation); ``query_slots`` ``(T,)`` are the slots
    of the queries, each of which sees the slots ``0 .. query_slot``.
    """
    slots = torch.arange(key_mask.shape[1], device=key_mask.device)
    causal = (slots[None, :] <= query_slots[:, None]).to(dtype)  # (T, C)
    visible = key_mask.to(dtype)[:, None, None, :] * causal[None, None]
    return (1.0 - visible) * SELF_ATTENTION_MASK_VALUE


__all__ = ["cross_attention_mask", "self_attention_mask", "slot_attention_mask"]
