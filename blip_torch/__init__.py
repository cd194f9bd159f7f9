"""BLIP in PyTorch: the transformers BLIP API over blip_core."""

from blip_core.config import BlipConfig, BlipTextConfig, BlipVisionConfig
from blip_torch.generation import compile_decoder
from blip_torch.models import (
    BlipForConditionalGeneration,
    BlipForImageTextRetrieval,
    BlipForQuestionAnswering,
    BlipModel,
    BlipPreTrainedModel,
    BlipTextLMHeadModel,
    BlipTextModel,
    BlipVisionModel,
)
from blip_torch.precision import auto_dtype, hardware_report
from blip_torch.quantization import quantize
from blip_torch.vision import compile_vision

__all__ = [
    "BlipConfig",
    "BlipForConditionalGeneration",
    "BlipForImageTextRetrieval",
    "BlipForQuestionAnswering",
    "BlipModel",
    "BlipPreTrainedModel",
    "BlipTextConfig",
    "BlipTextLMHeadModel",
    "BlipTextModel",
    "BlipVisionConfig",
    "BlipVisionModel",
    "auto_dtype",
    "compile_decoder",
    "compile_vision",
    "hardware_report",
    "quantize",
]
