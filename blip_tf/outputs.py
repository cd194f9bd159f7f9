"""Output containers of blip_tf: the shared :mod:`blip_core.outputs` classes, made TF-nestable.

Each class here subclasses the framework-free class of the same name (same fields, same order,
``isinstance`` holds) and adds TensorFlow's nest protocol, so a ``tf.function`` (XLA included)
can return it whole.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from blip_core import outputs as _core


class _TFNestable:
    """``tf.nest`` support: the dataclass fields, in order, are the components."""

    def __tf_flatten__(self) -> tuple[tuple, tuple[Any, ...]]:
        return (), tuple(getattr(self, f.name) for f in dataclasses.fields(self))

    @classmethod
    def __tf_unflatten__(cls, metadata: tuple, components: tuple[Any, ...]):
        return cls(*components)


@dataclass
class ModelOutput(_TFNestable, _core.ModelOutput):
    pass


@dataclass
class BaseModelOutputWithPooling(_TFNestable, _core.BaseModelOutputWithPooling):
    pass


@dataclass
class BaseModelOutputWithPoolingAndCrossAttentions(
    _TFNestable, _core.BaseModelOutputWithPoolingAndCrossAttentions
):
    pass


@dataclass
class CausalLMOutputWithCrossAttentions(_TFNestable, _core.CausalLMOutputWithCrossAttentions):
    pass


@dataclass
class BlipOutput(_TFNestable, _core.BlipOutput):
    pass


@dataclass
class BlipForConditionalGenerationModelOutput(
    _TFNestable, _core.BlipForConditionalGenerationModelOutput
):
    pass


@dataclass
class BlipTextVisionModelOutput(_TFNestable, _core.BlipTextVisionModelOutput):
    pass


@dataclass
class BlipImageTextMatchingModelOutput(_TFNestable, _core.BlipImageTextMatchingModelOutput):
    pass


__all__ = [
    "BaseModelOutputWithPooling",
    "BaseModelOutputWithPoolingAndCrossAttentions",
    "BlipForConditionalGenerationModelOutput",
    "BlipImageTextMatchingModelOutput",
    "BlipOutput",
    "BlipTextVisionModelOutput",
    "CausalLMOutputWithCrossAttentions",
    "ModelOutput",
]
