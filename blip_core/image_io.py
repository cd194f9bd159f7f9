"""Image inputs: reading image files, and flattening what callers pass into a list of images.

:func:`load_image` opens a file the way the reference does (EXIF orientation applied, converted
to RGB) and turns every failure -- a missing path, a directory, a file Pillow cannot read, a
decompression bomb -- into an :class:`ImageLoadError` that names the file.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import PIL.Image
import PIL.ImageOps

from blip_core.feature import is_tensor, tensor_to_numpy

__all__ = ["ImageLoadError", "flatten_images", "load_image"]


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


def load_image(path: str | os.PathLike) -> PIL.Image.Image:
    """Open an image file as an RGB ``PIL.Image`` (EXIF orientation applied), like the reference.

    Raises:
        ImageLoadError: the file is missing, is a directory, or is not an image Pillow can read;
            the message names the path.
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
            return image.convert("RGB")
    except (PIL.UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise ImageLoadError(text, f"not a readable image ({type(exc).__name__}: {exc})") from exc


def flatten_images(images: Any) -> list[PIL.Image.Image | np.ndarray]:
    """Turn one image, a batch array (4-D) or (nested) lists of images into a flat list.

    Paths are loaded, framework tensors become numpy arrays.  Anything else is a ``TypeError``.
    """
    out: list[PIL.Image.Image | np.ndarray] = []

    def visit(item: Any) -> None:
        if isinstance(item, PIL.Image.Image):
            out.append(item)
        elif isinstance(item, (str, os.PathLike)):
            out.append(load_image(item))
        elif isinstance(item, (list, tuple)):
            for sub in item:
                visit(sub)
        elif isinstance(item, np.ndarray) or is_tensor(item):
            array = item if isinstance(item, np.ndarray) else tensor_to_numpy(item)
            if array.ndim == 4:  # a batch (B, C, H, W) or (B, H, W, C)
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
    return out
