"""Build random-weight reference models with transformers (a test-only dependency)."""

from __future__ import annotations

import os

os.environ.setdefault("USE_TF", "0")

from tests.helpers import TINY_COMPOSITE, TINY_TEXT, TINY_VISION  # noqa: E402

REFERENCE_CLASSES = (
    "BlipVisionModel",
    "BlipTextModel",
    "BlipTextLMHeadModel",
    "BlipModel",
    "BlipForConditionalGeneration",
    "BlipForQuestionAnswering",
    "BlipForImageTextRetrieval",
)


def reference_config(text=None, vision=None, composite=None):
    import transformers

    return transformers.BlipConfig(
        text_config=dict(TINY_TEXT if text is None else text),
        vision_config=dict(TINY_VISION if vision is None else vision),
        **(TINY_COMPOSITE if composite is None else composite),
    )


def perturb(model, seed: int = 0, scale: float = 0.05):
    """Add N(0, scale) noise to every parameter: the default init is near-zero for some weights
    (vision position/class embeddings use std 1e-10), which would hide bugs."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale)
    return model.eval()


def build_reference(class_name: str, config=None, seed: int = 0):
    """A perturbed transformers model of ``class_name`` built from a composite BlipConfig."""
    import torch
    import transformers

    torch.manual_seed(seed)
    config = config or reference_config()
    cls = getattr(transformers, class_name) if hasattr(transformers, class_name) else None
    if class_name == "BlipVisionModel":
        model = transformers.BlipVisionModel(config.vision_config)
    elif class_name == "BlipTextModel":
        model = transformers.BlipTextModel(config.text_config)
    elif class_name == "BlipTextLMHeadModel":
        from transformers.models.blip.modeling_blip_text import BlipTextLMHeadModel

        model = BlipTextLMHeadModel(config.text_config)
        # A fresh transformers BlipTextLMHeadModel is untied, but its from_pretrained ties the
        # LM-head weight to the word embeddings: tie first so the saved file means one thing.
        model.cls.predictions.decoder.weight = model.bert.embeddings.word_embeddings.weight
    else:
        model = cls(config)
    return perturb(model, seed)
