"""Argument checks at the public boundary, written once for every backend and the CLI.

Each check raises ``ValueError`` (``TypeError`` for a wrong kind of value) whose message names
the argument, the value given and what is allowed, so both backends say the same thing.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np


def positive_int(name: str, value: Any, allow_none: bool = False) -> int | None:
    """``value`` as an ``int >= 1`` (``None`` passes when ``allow_none``)."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}={value!r}: expected a whole number >= 1")
    if value < 1:
        raise ValueError(f"{name}={value!r}: must be >= 1")
    return int(value)


def pixel_array(
    pixels: Any, image_size: int, patch_size: int, interpolate_pos_encoding: bool
) -> None:
    """``pixel_values`` (any array or tensor with ``shape`` and ``dtype``) must be
    ``(B, 3, H, W)`` floats with ``B >= 1``, holding no more patches than the model's position
    table unless ``interpolate_pos_encoding`` (as transformers, smaller images use the first
    positions)."""
    shape = tuple(int(d) for d in getattr(pixels, "shape", np.shape(pixels)))
    if len(shape) != 4 or shape[1] != 3:
        raise ValueError(
            f"pixel_values has shape {shape}; expected (batch, 3, height, width) "
            "as BlipProcessor / BlipImageProcessor return it"
        )
    if shape[0] < 1:
        raise ValueError("pixel_values holds no images (batch size 0)")
    dtype = str(getattr(pixels, "dtype", "float32"))
    if not any(kind in dtype for kind in ("float", "half")):
        raise TypeError(f"pixel_values has dtype {dtype}; expected floating point")
    height, width = shape[2:]
    if height < patch_size or width < patch_size:
        raise ValueError(
            f"pixel_values is {height}x{width}, smaller than one {patch_size}x{patch_size} patch"
        )
    patches = (height // patch_size) * (width // patch_size)
    if not interpolate_pos_encoding and patches > (image_size // patch_size) ** 2:
        raise ValueError(
            f"pixel_values is {height}x{width} but the model's position table is for "
            f"{image_size}x{image_size} (vision_config.image_size); resize the image "
            "(BlipImageProcessor does) or pass interpolate_pos_encoding=True"
        )


def token_ids(
    name: str,
    ids: np.ndarray,
    vocab_size: int,
    max_positions: int | None = None,
    mask: np.ndarray | None = None,
    mask_name: str = "attention_mask",
) -> np.ndarray:
    """``ids`` as a ``(N, T)`` int64 array of ids in ``[0, vocab_size)``; ``mask`` (when given)
    of the same shape with at least one attended token per row; ``T <= max_positions``."""
    ids = np.asarray(ids)
    if ids.ndim == 1:
        ids = ids[None]
    if ids.ndim != 2:
        raise ValueError(f"{name} has shape {ids.shape}; expected (batch, length)")
    if ids.size and not np.issubdtype(ids.dtype, np.integer):
        raise TypeError(f"{name} has dtype {ids.dtype}; expected integer token ids")
    if ids.shape[1] == 0:
        raise ValueError(f"{name} is empty (length 0); every row needs at least one token")
    bad = (ids < 0) | (ids >= vocab_size)
    if bad.any():
        value = int(ids[bad][0])
        raise ValueError(
            f"{name} holds token id {value}, outside the vocabulary [0, {vocab_size}) "
            "(text_config.vocab_size); was it tokenized with another model's tokenizer?"
        )
    if max_positions is not None and ids.shape[1] > max_positions:
        raise ValueError(
            f"{name} has {ids.shape[1]} tokens but the model's position table holds "
            f"{max_positions} (text_config.max_position_embeddings); truncate the text "
            "(the processor's truncation=True, max_length=...)"
        )
    if mask is not None:
        mask = np.asarray(mask)
        if mask.ndim == 1:
            mask = mask[None]
        if mask.shape != ids.shape:
            raise ValueError(
                f"{mask_name} has shape {mask.shape} but {name} has shape {ids.shape}; "
                "they must match"
            )
        if not mask.astype(bool).any(axis=1).all():
            raise ValueError(f"a row of {mask_name} attends to no token")
    return ids.astype(np.int64, copy=False)


def same_rows(name: str, rows: int, other: str, other_rows: int) -> None:
    """Two batched arguments that pair up row by row."""
    if rows != other_rows:
        raise ValueError(
            f"{name} has {rows} rows but {other} has {other_rows}; they pair up row by row"
        )


def embeddings(name: str, x: np.ndarray, ndim: tuple[int, ...] = (1, 2)) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim not in ndim or x.size == 0:
        raise ValueError(f"{name} has shape {x.shape}; expected a non-empty array of ndim {ndim}")
    return x


__all__ = ["embeddings", "pixel_array", "positive_int", "same_rows", "token_ids"]
