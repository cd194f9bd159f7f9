"""Image inputs: reading image files, and flattening what callers pass into a list of images.

:func:`load_image` opens a file the way the reference does (EXIF orientation applied, converted
to RGB) and turns every failure -- a missing path, a directory, a file Pillow cannot read, a
decompression bomb (more than twice ``PIL.Image.MAX_IMAGE_PIXELS`` pixels) -- into an
:class:`ImageLoadError` that names the file.

16-bit images (Pillow modes ``I;16``, ``I;16L``, ``I;16B``, ``I;16N`` and ``I``, which is how
Pillow opens 16-bit grayscale PNGs, and ``uint16`` arrays) are *scaled* to 8 bits by
``value >> 8`` (``floor(value / 256)``: 0 stays 0, 65535 becomes 255; mode ``I`` values are
first clipped to ``[0, 65535]``).  The reference converts them with Pillow, which *clips* every
value above 255 to 255 -- a normal 16-bit photo comes out almost white.  ``scale_16bit=False``
keeps the reference's conversion where its exact pixels must be reproduced.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import PIL.Image
import PIL.ImageOps

from blip_core.feature import is_tensor, tensor_to_numpy

__all__ = ["SIXTEEN_BIT_MODES", "ImageLoadError", "flatten_images", "load_image", "to_rgb"]

SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})


class ImageLoadError(ValueError, OSError):
    """An image file that is missing or that Pillow cannot read.

    Subclasses both ``ValueError`` (what ``transformers`` raises for a missing path) and ``OSError``
    (what Pillow raises for an unreadable file), so either ``except`` clause catches it.
    """

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = str(path)
        super().__init__(f"cannot load image {self.path!r}: {reason}")

    def __str__(self) -> str:
        return str(self.args[0])


def scale_16bit_array(array: np.ndarray) -> np.ndarray:
    """16-bit values (``uint16``, or wider integers meant as 16-bit) -> ``uint8`` by ``>> 8``,
    after clipping to ``[0, 65535]``."""
    return (np.clip(array, 0, 65535).astype(np.uint32) >> 8).astype(np.uint8)


def to_rgb(image: PIL.Image.Image, scale_16bit: bool = True) -> PIL.Image.Image:
    """``image`` as an 8-bit RGB ``PIL.Image``: 16-bit modes scaled by ``>> 8`` (or, with
    ``scale_16bit=False``, clipped by Pillow as in the reference), other modes converted with
    ``Image.convert("RGB")`` (grayscale replicated, alpha dropped, palettes expanded)."""
    if scale_16bit and image.mode in SIXTEEN_BIT_MODES:
        image = PIL.Image.fromarray(scale_16bit_array(np.asarray(image)))
    return image if image.mode == "RGB" else image.convert("RGB")


def check_not_empty(image: PIL.Image.Image | np.ndarray) -> None:
    """A ``ValueError`` naming the shape when an image has no pixels (a zero-sized axis)."""
    if isinstance(image, PIL.Image.Image):
        if image.width == 0 or image.height == 0:
            raise ValueError(
                f"a {image.width}x{image.height} {image.mode!r} Pillow image has no pixels; "
                "every image needs at least 1x1 pixels"
            )
    elif 0 in image.shape:
        raise ValueError(
            f"an image array of shape {tuple(image.shape)} is empty (an axis of size 0); every "
            "image needs at least 1x1 pixels and one channel"
        )


def load_image(path: str | os.PathLike, scale_16bit: bool = True) -> PIL.Image.Image:
    """Open an image file as an RGB ``PIL.Image`` (EXIF orientation applied), like the reference;
    16-bit files are scaled to 8 bits unless ``scale_16bit=False`` (see the module docstring).

    Raises:
        ImageLoadError: the file is missing, is a directory, is not an image Pillow can read, or
            is a decompression bomb (``PIL.Image.DecompressionBombError``); the message names the
            path.
    """
    text = os.fspath(path)
    if isinstance(text, bytes):
        text = text.decode()
    if text.startswith(("http://", "https://")):
        raise ImageLoadError(text, "URLs are not fetched; download the image and pass its path")
    if not os.path.exists(text):
        raise ImageLoadError(text, "no such file")
    if not os.path.isfile(text):
        raise ImageLoadError(text, "not a regular file")
    try:
        with PIL.Image.open(text) as image:
            image = PIL.ImageOps.exif_transpose(image)
            return to_rgb(image, scale_16bit)
    except PIL.Image.DecompressionBombError as exc:  # an Exception, not an OSError
        raise ImageLoadError(
            text,
            f"refused as a decompression bomb ({exc}); raise PIL.Image.MAX_IMAGE_PIXELS "
            "if the file is trusted",
        ) from exc
    except (PIL.UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise ImageLoadError(text, f"not a readable image ({type(exc).__name__}: {exc})") from exc


def flatten_images(images: Any, scale_16bit: bool = True) -> list[PIL.Image.Image | np.ndarray]:
    """Turn one image, a batch array (4-D) or (nested) lists of images into a flat list.

    Paths are loaded (``scale_16bit`` as in :func:`load_image`), framework tensors become numpy
    arrays.  Anything else is a ``TypeError``; an image without pixels a ``ValueError``.
    """
    out: list[PIL.Image.Image | np.ndarray] = []

    def visit(item: Any) -> None:
        if isinstance(item, PIL.Image.Image):
            out.append(item)
        elif isinstance(item, (str, os.PathLike)):
            out.append(load_image(item, scale_16bit))
        elif isinstance(item, (list, tuple)):
            for sub in item:
                visit(sub)
        elif isinstance(item, np.ndarray) or is_tensor(item):
            array = item if isinstance(item, np.ndarray) else tensor_to_numpy(item)
            if array.ndim == 4:  # a batch (B, C, H, W) or (B, H, W, C)
                check_not_empty(array)
                out.extend(array)
            elif array.ndim in (2, 3):
                out.append(array)
            else:
                raise ValueError(
                    f"an image array must have 2 (H, W), 3 (H, W, C / C, H, W) or 4 (batch) "
                    f"dimensions, got shape {tuple(array.shape)}"
                )
        else:
            raise TypeError(
                f"unsupported image type {type(item).__module__}.{type(item).__qualname__}: "
                "expected a PIL.Image.Image, a numpy array, a torch/tensorflow tensor, a path "
                "(str or os.PathLike), or a list of these"
            )

    visit(images)
    if not out:
        raise ValueError("no images given (empty list)")
    for image in out:
        check_not_empty(image)
    return out
