"""Bicubic resampling of the ViT position table, as numpy matrices (one implementation).

The arithmetic is that of ``torch.nn.functional.interpolate(mode="bicubic",
align_corners=False)``: cubic convolution with ``A = -0.75``, source positions
``(i + 0.5) * in / out - 0.5``, taps outside the grid clamped to the edge.  Used by the
converter (original checkpoints fine-tuned at another resolution) and by any backend that needs
``interpolate_pos_encoding`` as fixed matrices (static shapes under XLA).
"""

from __future__ import annotations

import math

import numpy as np

BICUBIC_A = -0.75  # the cubic convolution coefficient of torch (and PIL) bicubic resampling


def cubic_weights(t: np.ndarray) -> np.ndarray:
    """Weights ``(..., 4)`` of the taps at offsets -1, 0, 1, 2 for fractional positions ``t``."""
    a = BICUBIC_A
    t = np.asarray(t, dtype=np.float64)

    def near(x):  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return np.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], axis=-1)


def bicubic_matrix(in_size: int, out_size: int) -> np.ndarray:
    """``(out_size, in_size)`` float64 matrix of 1-D bicubic resampling: ``M @ x`` resizes a
    length-``in_size`` signal ``x`` to ``out_size`` samples (``align_corners=False``, edge taps
    clamped)."""
    if in_size < 1 or out_size < 1:
        raise ValueError(f"bicubic resize sizes must be positive, got {in_size} -> {out_size}")
    scale = in_size / out_size
    src = (np.arange(out_size, dtype=np.float64) + 0.5) * scale - 0.5
    base = np.floor(src)
    weights = cubic_weights(src - base)
    matrix = np.zeros((out_size, in_size), dtype=np.float64)
    for tap in range(4):
        index = np.clip(base.astype(np.int64) - 1 + tap, 0, in_size - 1)
        np.add.at(matrix, (np.arange(out_size), index), weights[:, tap])
    return matrix


def interpolate_position_embedding(
    position_embedding: np.ndarray, num_positions: int
) -> np.ndarray:
    """Resample a ViT position table ``(1, 1 + g*g, D)`` to ``(1, num_positions, D)``.

    The class-token row is kept; the ``g x g`` patch grid is resized bicubically to the new square
    grid (``align_corners=False``), as ``transformers``' ``interpolate_pos_encoding`` does.
    The result has the input's dtype.
    """
    table = np.asarray(position_embedding)
    if table.ndim != 3 or table.shape[0] != 1:
        raise ValueError(f"a position table is (1, positions, dim), got {table.shape}")
    old_grid, new_grid = math.isqrt(table.shape[1] - 1), math.isqrt(num_positions - 1)
    if old_grid * old_grid != table.shape[1] - 1 or new_grid * new_grid != num_positions - 1:
        raise ValueError(
            f"cannot interpolate {table.shape[1]} positions to {num_positions}: both must be "
            "1 + a square number of patches"
        )
    dim = table.shape[-1]
    grid = table[0, 1:].astype(np.float64).reshape(old_grid, old_grid, dim)
    resize = bicubic_matrix(old_grid, new_grid)
    resized = np.einsum("ai,ijd,bj->abd", resize, grid, resize).reshape(1, new_grid * new_grid, dim)
    return np.concatenate([table[:, :1], resized.astype(table.dtype)], axis=1)


__all__ = ["BICUBIC_A", "bicubic_matrix", "cubic_weights", "interpolate_position_embedding"]
