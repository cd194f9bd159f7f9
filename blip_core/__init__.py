"""Framework-free BLIP: configs, preprocessing, tokenizer, processor, weight maps and file I/O.

Importing this package imports neither torch nor tensorflow.
"""

from blip_core.config import BlipConfig, BlipTextConfig, BlipVisionConfig, ConfigError

__all__ = ["BlipConfig", "BlipTextConfig", "BlipVisionConfig", "ConfigError"]
