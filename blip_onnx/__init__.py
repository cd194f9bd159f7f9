"""BLIP on ONNX Runtime: the transformers BLIP API over graphs written by ``blip export``.

Imports onnxruntime, numpy and blip_core only (neither torch nor tensorflow)::

    from blip_onnx import BlipForConditionalGeneration
    model = BlipForConditionalGeneration.from_pretrained("blip-onnx/")  # blip export output
    ids = model.generate(pixel_values, num_beams=3)                       # numpy int64
"""

from blip_core.config import BlipConfig, BlipTextConfig, BlipVisionConfig
from blip_onnx.adapter import BACKEND, OnnxBackend
from blip_onnx.models import (
    BlipForConditionalGeneration,
    BlipForImageTextRetrieval,
    BlipForQuestionAnswering,
    BlipOnnxModel,
    BlipVisionModel,
)
from blip_onnx.runtime import ExportedModelError

__all__ = [
    "BACKEND",
    "BlipConfig",
    "BlipForConditionalGeneration",
    "BlipForImageTextRetrieval",
    "BlipForQuestionAnswering",
    "BlipOnnxModel",
    "BlipTextConfig",
    "BlipVisionConfig",
    "BlipVisionModel",
    "ExportedModelError",
    "OnnxBackend",
]
