"""BLIP in Keras 3 (TensorFlow backend): the transformers BLIP API over blip_core.

Weights move between frameworks as canonical numpy dicts (PyTorch state-dict names):
``model.get_weights_dict()`` / ``model.load_weights_dict(state)``; checkpoints load with
``Class.from_pretrained(directory)`` (safetensors, sharded safetensors, ``tf_model.h5``, or
``pytorch_model.bin`` when torch is installed) and save with ``model.save_pretrained(directory)``.
``from_pretrained(..., dtype="bfloat16" | "mixed_bfloat16" | "auto")`` runs in low precision
(:mod:`blip_tf.precision`); the default stays float32.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from blip_core.config import BlipConfig, BlipTextConfig, BlipVisionConfig  # noqa: E402
from blip_tf.models import (  # noqa: E402
    BlipForConditionalGeneration,
    BlipForImageTextRetrieval,
    BlipForQuestionAnswering,
    BlipModel,
    BlipPreTrainedModel,
    BlipTextLMHeadModel,
    BlipTextModel,
    BlipVisionModel,
    TFBlipForConditionalGeneration,
    TFBlipForImageTextRetrieval,
    TFBlipForQuestionAnswering,
    TFBlipModel,
    TFBlipTextLMHeadModel,
    TFBlipTextModel,
    TFBlipVisionModel,
)
from blip_tf.precision import auto_dtype, hardware_report  # noqa: E402

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
    "TFBlipForConditionalGeneration",
    "TFBlipForImageTextRetrieval",
    "TFBlipForQuestionAnswering",
    "TFBlipModel",
    "TFBlipTextLMHeadModel",
    "TFBlipTextModel",
    "TFBlipVisionModel",
    "auto_dtype",
    "hardware_report",
]
