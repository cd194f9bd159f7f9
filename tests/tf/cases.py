"""Shared helpers of the blip_tf tests: reference checkpoints on disk, numpy outputs, configs."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("USE_TF", "0")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from blip_core.config import BlipConfig, BlipTextConfig, BlipVisionConfig  # noqa: E402
from tests.helpers import TINY_COMPOSITE, TINY_TEXT, TINY_VISION  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TF_FIXTURES = ROOT / "tests" / "fixtures" / "tf_reference"

ALL_CLASSES = (
    "BlipVisionModel",
    "BlipTextModel",
    "BlipTextLMHeadModel",
    "BlipModel",
    "BlipForConditionalGeneration",
    "BlipForQuestionAnswering",
    "BlipForImageTextRetrieval",
)


def tiny_config(**composite) -> BlipConfig:
    return BlipConfig(
        text_config=BlipTextConfig(**TINY_TEXT),
        vision_config=BlipVisionConfig(**TINY_VISION),
        **{**TINY_COMPOSITE, **composite},
    )


def config_for(class_name: str, config: BlipConfig):
    """The config object a class takes: the composite, or its vision / text part."""
    if class_name == "BlipVisionModel":
        return config.vision_config
    if class_name in ("BlipTextModel", "BlipTextLMHeadModel"):
        return config.text_config
    return config


def set_faithful_masks(model) -> None:
    """Reproduce transformers 4.57, which drops encoder_attention_mask in cross-attention."""
    text_config = getattr(model.config, "text_config", model.config)
    text_config.ignore_encoder_attention_mask = True


def save_reference(class_name: str, directory: Path, config=None, seed: int = 0):
    """A perturbed transformers model saved with its own save_pretrained; returns the model."""
    from tests.reference import build_reference

    model = build_reference(class_name, config, seed=seed)
    model.save_pretrained(directory)
    return model


def torch_state(model) -> dict[str, np.ndarray]:
    """A transformers model's state dict as numpy (all keys, tied ones included)."""
    return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}


def load_fixture_inputs(directory: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """(kwargs, expected) from a fixture's expected.npz (``in.``/``flag.``/``out.``/``tf.``)."""
    data = dict(np.load(directory / "expected.npz"))
    kwargs = {k[3:]: v for k, v in data.items() if k.startswith("in.")}
    kwargs.update({k[5:]: bool(v) for k, v in data.items() if k.startswith("flag.")})
    return kwargs, data
