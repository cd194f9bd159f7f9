"""BLIP image preprocessing with Pillow and numpy: load, convert to RGB, resize, rescale, normalize.

Mirrors ``transformers``' (slow) ``BlipImageProcessor`` step by step, including its quirks, so the
pixels agree to float32 rounding:

* Resizing goes through Pillow on ``uint8`` data.  A float array whose values are all integers is
  cast to ``uint8``; a float array in ``[0, 1]`` is multiplied by 255, *truncated* to ``uint8``,
  resized, and divided by 255 again -- after which the default ``do_rescale`` divides by 255 a
  second time (pass ``do_rescale=False`` for images already in ``[0, 1]``, as the reference says).
* Non-RGB Pillow images are converted with ``Image.convert("RGB")``: grayscale is replicated, the
  alpha channel is dropped (not composited), palettes are expanded.
* 16-bit images (Pillow modes ``I;16*`` / ``I``, ``uint16`` arrays) are scaled to 8 bits by
  ``value >> 8`` -- a deliberate difference: the reference clips every value above 255 to 255.
  ``scale_16bit=False`` reproduces the reference (see :mod:`blip_core.image_io`).
* Images without pixels (a zero-sized axis) are a ``ValueError`` naming the shape.
* Image files are opened, EXIF-transposed and converted to RGB whatever ``do_convert_rgb`` says.

Importing this module imports neither torch nor tensorflow; they are imported only to build
``return_tensors="pt"`` / ``"tf"`` outputs.
"""

from __future__ import annotations

import copy
import json
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image

from blip_core.feature import BatchFeature, convert_to_tensors, to_numpy
from blip_core.image_io import (
    ImageLoadError,
    flatten_images,
    load_image,
    scale_16bit_array,
    to_rgb,
)
from blip_core.image_layout import (
    CHANNELS_FIRST,
    CHANNELS_LAST,
    channel_count,
    from_channels_last,
    infer_channel_format,
    rgb_from_array,
    to_channels_last,
)

logger = logging.getLogger(__name__)
_warned_rescaled = False  # warn once per process, as the reference's ``warning_once``

IMAGE_PROCESSOR_NAME = "preprocessor_config.json"
OPENAI_CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
OPENAI_CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
BICUBIC = 3  # PIL.Image.Resampling.BICUBIC


# BatchFeature, ImageLoadError, load_image, convert_to_tensors and to_numpy live in
# blip_core.feature / blip_core.image_io and are re-exported from here.
__all__ = [
    "BatchFeature",
    "BlipImageProcessor",
    "ImageLoadError",
    "convert_to_tensors",
    "infer_channel_format",
    "load_image",
    "to_numpy",
]


# --------------------------------------------------------------------------------------------
# Array steps (each mirrors the reference function of the same purpose)
# --------------------------------------------------------------------------------------------


def _needs_rescale_for_pil(image: np.ndarray) -> bool:
    """The reference's ``_rescale_for_pil_conversion``: should ``image`` be scaled by 255 before
    the ``uint8`` cast that Pillow resizing needs?"""
    if image.dtype == np.uint8:
        return False
    if np.allclose(image, image.astype(int)):
        if np.all(image >= 0) and np.all(image <= 255):
            return False
        raise ValueError(
            "the image has integer values outside [0, 255] "
            f"(got [{image.min()}, {image.max()}]) and cannot be converted to uint8 for resizing"
        )
    if np.all(image >= 0) and np.all(image <= 1):
        return True
    raise ValueError(
        "the image has float values outside [0, 1] "
        f"(got [{image.min()}, {image.max()}]) and cannot be converted to uint8 for resizing"
    )


def rescale(image: np.ndarray, scale: float) -> np.ndarray:
    """``image * scale`` computed in float64 and returned as float32 (the reference's rounding)."""
    return (image.astype(np.float64) * scale).astype(np.float32)


def resize(image: np.ndarray, height: int, width: int, resample: int, fmt: str) -> np.ndarray:
    """Resize a (H, W, C) or (C, H, W) array to (height, width) with Pillow, keeping ``fmt``.

    As in the reference: float data in [0, 1] is scaled to [0, 255] and truncated to uint8 for
    Pillow, then scaled back to [0, 1] (float32); other data is cast to uint8 and stays uint8.
    """
    hwc = to_channels_last(image, fmt)
    if hwc.shape[-1] == 1:
        hwc = hwc[:, :, 0]
    scaled = _needs_rescale_for_pil(hwc)
    if scaled:
        hwc = rescale(hwc, 255)
    pil = PIL.Image.fromarray(hwc.astype(np.uint8))
    out = np.array(pil.resize((width, height), resample=resample))
    if out.ndim == 2:
        out = out[:, :, None]
    out = from_channels_last(out, fmt)
    return rescale(out, 1 / 255) if scaled else out


def normalize(
    image: np.ndarray, mean: float | Sequence[float], std: float | Sequence[float], fmt: str
) -> np.ndarray:
    """``(image - mean) / std`` per channel, in float32 (or the image's float dtype)."""
    channel_axis = 0 if fmt == CHANNELS_FIRST else 2
    channels = image.shape[channel_axis]
    if not np.issubdtype(image.dtype, np.floating):
        image = image.astype(np.float32)
    mean_arr = _per_channel("image_mean", mean, channels, image.dtype)
    std_arr = _per_channel("image_std", std, channels, image.dtype)
    shape = (channels, 1, 1) if fmt == CHANNELS_FIRST else (1, 1, channels)
    return (image - mean_arr.reshape(shape)) / std_arr.reshape(shape)


def _per_channel(name: str, value: Any, channels: int, dtype: np.dtype) -> np.ndarray:
    if isinstance(value, Iterable):
        value = list(value)
        if len(value) != channels:
            raise ValueError(
                f"{name} has {len(value)} entries but the image has {channels} channels"
            )
    else:
        value = [value] * channels
    return np.array(value, dtype=dtype)


def _size_dict(size: Any) -> dict[str, int]:
    """Accept ``{"height": h, "width": w}``, an int (square) or a (height, width) pair."""
    if isinstance(size, dict):
        if "height" in size and "width" in size:
            return {"height": int(size["height"]), "width": int(size["width"])}
        raise ValueError(
            f"size must have the keys 'height' and 'width' (BLIP resizes to a fixed size), "
            f"got {sorted(size)}"
        )
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        return {"height": int(size), "width": int(size)}
    if isinstance(size, (list, tuple)) and len(size) == 2:
        return {"height": int(size[0]), "width": int(size[1])}
    raise ValueError(
        f"size must be a dict with height/width, an int or (height, width), got {size!r}"
    )


def _check_format(name: str, value: str | None, allow_none: bool) -> str | None:
    aliases = {"channels_first": CHANNELS_FIRST, "channels_last": CHANNELS_LAST}
    if value is None and allow_none:
        return None
    value = getattr(value, "value", value)  # a transformers ChannelDimension enum
    if value not in aliases:
        raise ValueError(f"{name} must be 'channels_first' or 'channels_last', got {value!r}")
    return aliases[value]


# --------------------------------------------------------------------------------------------
# The processor
# --------------------------------------------------------------------------------------------


class BlipImageProcessor:
    """BLIP image preprocessing: RGB, resize to ``size``, rescale to [0, 1], CLIP-normalize.

    Args:
        do_resize: resize every image to ``(size["height"], size["width"])`` (aspect not kept).
        size: ``{"height": 384, "width": 384}`` by default; an int means a square.
        resample: Pillow filter (``3`` = bicubic).
        do_rescale: multiply by ``rescale_factor`` (1/255); turn it off for [0, 1] float inputs.
        rescale_factor: the scale of the rescale step.
        do_normalize: subtract ``image_mean`` and divide by ``image_std`` per channel.
        image_mean, image_std: OpenAI CLIP statistics by default.
        do_convert_rgb: convert non-RGB Pillow images (and 1-, 2- or 4-channel arrays) to RGB.
        scale_16bit: scale 16-bit images to 8 bits by ``>> 8`` (default); ``False`` keeps the
            reference's conversion, which clips values above 255.  Written to
            ``preprocessor_config.json`` only when ``False``.
        **kwargs: other keys of a ``preprocessor_config.json``; kept and written back unchanged.

    Calling the processor returns a :class:`BatchFeature` with ``pixel_values`` of shape
    ``(B, 3, height, width)``, float32.
    """

    model_input_names = ["pixel_values"]
    _KNOWN = (
        "do_resize",
        "size",
        "resample",
        "do_rescale",
        "rescale_factor",
        "do_normalize",
        "image_mean",
        "image_std",
        "do_convert_rgb",
    )

    def __init__(
        self,
        do_resize: bool = True,
        size: dict[str, int] | int | Sequence[int] | None = None,
        resample: int = BICUBIC,
        do_rescale: bool = True,
        rescale_factor: float = 1 / 255,
        do_normalize: bool = True,
        image_mean: float | Sequence[float] | None = None,
        image_std: float | Sequence[float] | None = None,
        do_convert_rgb: bool = True,
        scale_16bit: bool = True,
        **kwargs: Any,
    ) -> None:
        self.do_resize = bool(do_resize)
        self.size = _size_dict(size if size is not None else {"height": 384, "width": 384})
        self.resample = int(resample)
        self.do_rescale = bool(do_rescale)
        self.rescale_factor = rescale_factor
        self.do_normalize = bool(do_normalize)
        self.image_mean = list(image_mean) if isinstance(image_mean, Iterable) else image_mean
        self.image_std = list(image_std) if isinstance(image_std, Iterable) else image_std
        if self.image_mean is None:
            self.image_mean = list(OPENAI_CLIP_MEAN)
        if self.image_std is None:
            self.image_std = list(OPENAI_CLIP_STD)
        self.do_convert_rgb = bool(do_convert_rgb)
        self.scale_16bit = bool(scale_16bit)
        kwargs.pop("image_processor_type", None)
        self.processor_class: str | None = kwargs.pop("processor_class", None)
        self.extra: dict[str, Any] = kwargs

    def __repr__(self) -> str:
        return f"{type(self).__name__}({json.dumps(self.to_dict(), sort_keys=True)})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BlipImageProcessor) and self.to_dict() == other.to_dict()

    # ---- preprocessing --------------------------------------------------------------------

    def __call__(
        self, images: Any, return_tensors: str | None = None, **kwargs: Any
    ) -> BatchFeature:
        """Same as :meth:`preprocess`."""
        return self.preprocess(images, return_tensors=return_tensors, **kwargs)

    def preprocess(
        self,
        images: Any,
        do_resize: bool | None = None,
        size: dict[str, int] | int | Sequence[int] | None = None,
        resample: int | None = None,
        do_rescale: bool | None = None,
        rescale_factor: float | None = None,
        do_normalize: bool | None = None,
        image_mean: float | Sequence[float] | None = None,
        image_std: float | Sequence[float] | None = None,
        return_tensors: str | None = None,
        do_convert_rgb: bool | None = None,
        data_format: str = CHANNELS_FIRST,
        input_data_format: str | None = None,
        scale_16bit: bool | None = None,
    ) -> BatchFeature:
        """Preprocess one image or a batch.

        Args:
            images: a ``PIL.Image``, a numpy array ((H, W, C) or (C, H, W), uint8 in [0, 255] or
                float), a torch/tensorflow tensor, a path to an image file, a 4-D batch array, or
                a (nested) list of these.
            return_tensors: ``None`` (numpy), ``"np"``, ``"pt"`` or ``"tf"``.
            data_format: layout of the output, ``"channels_first"`` (default) or
                ``"channels_last"``.
            input_data_format: layout of array inputs when it cannot be inferred (e.g. 3x3x3).
            scale_16bit: scale 16-bit images by ``>> 8`` (``False``: clip, as the reference).
            Other arguments override the processor's settings for this call.

        Returns:
            BatchFeature with ``pixel_values``: float32 ``(B, 3, H, W)`` (``(B, H, W, 3)`` with
            ``data_format="channels_last"``).  With ``return_tensors=None`` and images of
            different shapes (``do_resize=False``) it is a list of ``(3, H_i, W_i)`` arrays.
        """
        do_resize = self.do_resize if do_resize is None else do_resize
        size_d = _size_dict(self.size if size is None else size)
        resample = self.resample if resample is None else int(resample)
        do_rescale = self.do_rescale if do_rescale is None else do_rescale
        rescale_factor = self.rescale_factor if rescale_factor is None else rescale_factor
        do_normalize = self.do_normalize if do_normalize is None else do_normalize
        image_mean = self.image_mean if image_mean is None else image_mean
        image_std = self.image_std if image_std is None else image_std
        do_convert_rgb = self.do_convert_rgb if do_convert_rgb is None else do_convert_rgb
        scale_16bit = self.scale_16bit if scale_16bit is None else bool(scale_16bit)
        out_format = _check_format("data_format", data_format, allow_none=False)
        in_format = _check_format("input_data_format", input_data_format, allow_none=True)

        arrays: list[tuple[np.ndarray, str]] = []
        for image in flatten_images(images, scale_16bit):
            if isinstance(image, PIL.Image.Image):
                if do_convert_rgb and image.mode != "RGB":
                    image = to_rgb(image, scale_16bit)
                array = np.array(image)
                if array.ndim != 3:
                    raise ValueError(
                        f"a {image.mode!r} Pillow image has no channel axis; "
                        "use do_convert_rgb=True to make it RGB"
                    )
                # Pillow arrays are always (H, W, C); the reference infers the layout instead and
                # misreads images 1 or 3 pixels high.
                arrays.append((array, CHANNELS_LAST))
                continue
            fmt = in_format
            if scale_16bit and image.dtype.kind == "u" and image.dtype.itemsize == 2:
                image = scale_16bit_array(image)
            if do_convert_rgb and (image.ndim == 2 or channel_count(image, fmt) in (1, 2, 4)):
                image, fmt = rgb_from_array(image, fmt)
            if image.ndim != 3:
                raise ValueError(
                    f"an image array of shape {image.shape} has no channel axis; "
                    "use do_convert_rgb=True to make it RGB"
                )
            arrays.append((image, fmt or infer_channel_format(image)))

        global _warned_rescaled
        if do_rescale and not _warned_rescaled and _is_scaled(arrays[0][0]):
            _warned_rescaled = True
            logger.warning(
                "The images look already rescaled to [0, 1]; do_rescale=True divides them by 255 "
                "again. Pass do_rescale=False for such inputs."
            )

        pixel_values = []
        for array, fmt in arrays:
            if do_resize:
                array = resize(array, size_d["height"], size_d["width"], resample, fmt)
            if do_rescale:
                array = rescale(array, rescale_factor)
            if do_normalize:
                array = normalize(array, image_mean, image_std, fmt)
            if fmt != out_format:
                array = from_channels_last(to_channels_last(array, fmt), out_format)
            pixel_values.append(np.asarray(array, dtype=np.float32))

        if len({a.shape for a in pixel_values}) == 1:
            stacked: Any = np.stack(pixel_values)
        elif return_tensors is None:
            stacked = pixel_values
        else:
            shapes = sorted({a.shape for a in pixel_values})
            raise ValueError(
                f"cannot stack images of different shapes {shapes} into one tensor; "
                "use do_resize=True"
            )
        return BatchFeature(pixel_values=stacked).convert_to_tensors(return_tensors)

    # ---- (de)serialisation ----------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The ``preprocessor_config.json`` content (known fields, type tag, kept unknown keys)."""
        out: dict[str, Any] = copy.deepcopy(self.extra)
        for key in self._KNOWN:
            out[key] = copy.deepcopy(getattr(self, key))
        if not self.scale_16bit:  # default files stay identical to the reference's
            out["scale_16bit"] = False
        out["image_processor_type"] = "BlipImageProcessor"
        if self.processor_class is not None:
            out["processor_class"] = self.processor_class
        return out

    def to_json_string(self) -> str:
        """JSON text of :meth:`to_dict`, keys sorted as the reference writes them."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any], **overrides: Any) -> BlipImageProcessor:
        """Build from a ``preprocessor_config.json`` mapping; ``overrides`` replace its keys."""
        data = {**data, **overrides}
        return cls(**data)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, **overrides: Any) -> BlipImageProcessor:
        """Read ``preprocessor_config.json`` from a hub-layout directory (or the file itself)."""
        path = Path(path)
        file = path / IMAGE_PROCESSOR_NAME if path.is_dir() else path
        if not file.is_file():
            if not path.exists():
                raise FileNotFoundError(f"{path}: no such file or directory")
            raise FileNotFoundError(f"{path}: no {IMAGE_PROCESSOR_NAME} in this directory")
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{file}: not valid JSON ({exc})") from exc
        if not isinstance(data, dict):
            raise ValueError(f"{file}: expected a JSON object, got {type(data).__name__}")
        return cls.from_dict(data, **overrides)

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write ``preprocessor_config.json`` into ``directory`` (created if needed)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        out = directory / IMAGE_PROCESSOR_NAME
        tmp = out.with_suffix(".json.tmp")
        tmp.write_text(self.to_json_string(), encoding="utf-8")
        os.replace(tmp, out)
        return out


def _is_scaled(image: np.ndarray) -> bool:
    """The reference's ``is_scaled_image``: a non-uint8 image with every value in [0, 1]."""
    if image.dtype == np.uint8:
        return False
    return bool(np.min(image) >= 0 and np.max(image) <= 1)
