"""Output containers shared by both backends (framework-free; fields hold torch or tf tensors).

Field names and order follow the ``transformers`` BLIP output classes, so ``outputs.logits``,
``outputs["logits"]`` and ``outputs[0]`` (the first field that is not ``None``) all work.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass
class ModelOutput:
    """A dataclass that also behaves like an ordered mapping of its non-``None`` fields."""

    def keys(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self) if getattr(self, f.name) is not None]

    def values(self) -> list[Any]:
        return [getattr(self, k) for k in self.keys()]

    def items(self) -> list[tuple[str, Any]]:
        return [(k, getattr(self, k)) for k in self.keys()]

    def to_tuple(self) -> tuple[Any, ...]:
        return tuple(self.values())

    def __getitem__(self, key: str | int | slice) -> Any:
        if isinstance(key, str):
            if key not in self.keys():
                raise KeyError(key)
            return getattr(self, key)
        return self.to_tuple()[key]

    def __contains__(self, key: object) -> bool:
        return key in self.keys()

    def __iter__(self):
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.keys())


@dataclass
class BaseModelOutputWithPooling(ModelOutput):
    last_hidden_state: Any = None  # (B, T, D)
    pooler_output: Any = None  # (B, D)
    hidden_states: Any = None  # tuple of (B, T, D), embeddings first
    attentions: Any = None  # tuple of (B, heads, T, T)


@dataclass
class BaseModelOutputWithPoolingAndCrossAttentions(ModelOutput):
    last_hidden_state: Any = None  # (B, T, D)
    pooler_output: Any = None  # (B, D) or None without a pooler
    past_key_values: Any = None
    hidden_states: Any = None
    attentions: Any = None
    cross_attentions: Any = None


@dataclass
class CausalLMOutputWithCrossAttentions(ModelOutput):
    loss: Any = None  # scalar, or (B,) with reduction="none"
    logits: Any = None  # (B, T, vocab)
    past_key_values: Any = None
    hidden_states: Any = None
    attentions: Any = None
    cross_attentions: Any = None


@dataclass
class BlipOutput(ModelOutput):
    loss: Any = None
    logits_per_image: Any = None  # (B_img, B_txt)
    logits_per_text: Any = None  # (B_txt, B_img)
    text_embeds: Any = None  # (B_txt, projection_dim), L2-normalised
    image_embeds: Any = None  # (B_img, projection_dim), L2-normalised
    text_model_output: Any = None
    vision_model_output: Any = None


@dataclass
class BlipForConditionalGenerationModelOutput(ModelOutput):
    loss: Any = None
    logits: Any = None  # (B, T, vocab)
    image_embeds: Any = None  # (B, N, D_vision)
    last_hidden_state: Any = None
    hidden_states: Any = None
    attentions: Any = None


@dataclass
class BlipTextVisionModelOutput(ModelOutput):
    loss: Any = None
    image_embeds: Any = None
    last_hidden_state: Any = None
    hidden_states: Any = None
    attentions: Any = None


@dataclass
class BlipImageTextMatchingModelOutput(ModelOutput):
    itm_score: Any = None  # (B, 2) ITM logits, or (B_img, B_txt) ITC cosine
    loss: Any = None
    image_embeds: Any = None
    last_hidden_state: Any = None
    hidden_states: Any = None
    vision_pooler_output: Any = None
    attentions: Any = None
    question_embeds: Any = None
