"""Channel layouts of image arrays: which axis holds the channels, moving it, and making 1-,
2- or 4-channel arrays RGB the way ``Image.convert("RGB")`` would."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

CHANNELS_FIRST = "channels_first"
CHANNELS_LAST = "channels_last"


def infer_channel_format(image: np.ndarray, num_channels: Sequence[int] = (1, 3)) -> str:
    """``"channels_first"`` or ``"channels_last"`` for a 3-D array, by the reference's rule.

    A first axis of size 1 or 3 wins (also when the last axis could be channels too); else a last
    axis of size 1 or 3; else ``ValueError``.
    """
    if image.ndim != 3:
        raise ValueError(f"expected a 3-D image array, got shape {image.shape}")
    if image.shape[0] in num_channels:
        return CHANNELS_FIRST
    if image.shape[2] in num_channels:
        return CHANNELS_LAST
    raise ValueError(
        f"cannot tell the channel axis of an image of shape {image.shape}: neither the first nor "
        f"the last axis has {' or '.join(map(str, num_channels))} entries; pass input_data_format"
    )


def to_channels_last(image: np.ndarray, fmt: str) -> np.ndarray:
    return image.transpose(1, 2, 0) if fmt == CHANNELS_FIRST else image


def from_channels_last(image: np.ndarray, fmt: str) -> np.ndarray:
    return image.transpose(2, 0, 1) if fmt == CHANNELS_FIRST else image


def rgb_from_array(image: np.ndarray, fmt: str | None) -> tuple[np.ndarray, str]:
    """Make an array 3-channel: (H, W) or 1 channel replicated, 2 (LA) or 4 (RGBA) channels lose
    alpha -- what ``Image.convert("RGB")`` does for those modes.  Returns (HWC or CHW array, fmt).

    The reference raises for these arrays (its normalize step expects 3 channels); handling them
    is an extension.
    """
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2), CHANNELS_LAST
    if fmt is None:
        try:
            fmt = infer_channel_format(image)
        except ValueError:
            fmt = infer_channel_format(image, num_channels=(2, 4))
    hwc = to_channels_last(image, fmt)
    channels = hwc.shape[2]
    if channels == 1 or channels == 2:
        hwc = np.repeat(hwc[:, :, :1], 3, axis=2)
    elif channels == 4:
        hwc = hwc[:, :, :3]
    return from_channels_last(hwc, fmt), fmt


def channel_count(image: np.ndarray, fmt: str | None) -> int | None:
    """Channel count of a 3-D array (None when it cannot be told), using ``fmt`` when given."""
    if image.ndim != 3:
        return None
    if fmt is not None:
        return image.shape[0] if fmt == CHANNELS_FIRST else image.shape[2]
    for candidates in ((1, 3), (2, 4)):
        try:
            fmt = infer_channel_format(image, candidates)
        except ValueError:
            continue
        return image.shape[0] if fmt == CHANNELS_FIRST else image.shape[2]
    return None
