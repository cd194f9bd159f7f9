"""Framework-free BLIP: configs, preprocessing, tokenizer, processor, weight maps and file I/O.

Importing this package imports neither torch nor tensorflow.
"""

from blip_core.config import (
    BlipConfig,
    BlipTextConfig,
    BlipVisionConfig,
    ConfigError,
    ConfigWarning,
)
from blip_core.generation import GenerationConfig
from blip_core.image_processing import BatchFeature, BlipImageProcessor, ImageLoadError
from blip_core.processing import BlipProcessor
from blip_core.tokenization import BatchEncoding, BlipTokenizer

__all__ = [
    "BatchEncoding",
    "BatchFeature",
    "BlipConfig",
    "BlipImageProcessor",
    "BlipProcessor",
    "BlipTextConfig",
    "BlipTokenizer",
    "BlipVisionConfig",
    "ConfigError",
    "ConfigWarning",
    "GenerationConfig",
    "ImageLoadError",
]
