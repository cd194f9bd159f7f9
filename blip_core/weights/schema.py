"""The key space of the seven BLIP model classes, described once.

Every public class (``BlipModel``, the three task models, the three sub-models) is a list of
*parts*: a top-level module name (``vision_model``, ``text_decoder``, ...; ``""`` for a sub-model,
whose keys start at the root) and the kind of module it is (a ViT, a BERT text model, a BERT LM
head, a linear layer, a bare parameter).  From that one table come:

* :func:`key_pattern` / :data:`BLIP_KEY` -- which canonical keys a class (any class) has;
* :func:`lm_head_prefixes` / :data:`LM_HEAD_PREFIXES` -- where a tied LM head lives;
* :data:`SUBMODEL_PREFIXES` -- where a sub-model sits inside the whole-task checkpoints;
* :data:`TASK_CLASSES`, :data:`TASK_MODULES`, :data:`CLASS_TASKS` -- the converter's task names;
* :data:`TF_MODEL_LAYOUTS` -- how transformers' TF BLIP lays each class out in ``tf_model.h5``.

Nothing here imports a framework.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# --------------------------------------------------------------------------------------------
# Module kinds: the canonical keys below a module of each kind (regex, without the prefix).

_LIN = r"\.(weight|bias)"
_VISION = (
    r"embeddings\.(class_embedding|position_embedding|patch_embedding" + _LIN + ")"
    r"|encoder\.layers\.\d+\.(self_attn\.(qkv|projection)|layer_norm[12]|mlp\.fc[12])"
    + _LIN
    + r"|post_layernorm"
    + _LIN
)
_TEXT = (
    r"embeddings\.((word_embeddings|position_embeddings)\.weight|LayerNorm" + _LIN + ")"
    r"|encoder\.layer\.\d+\.("
    r"(attention|crossattention)\.(self\.(query|key|value)|output\.(dense|LayerNorm))"
    r"|intermediate\.dense|output\.(dense|LayerNorm))" + _LIN + r"|pooler\.dense" + _LIN
)
_LM = (
    r"bert\.(" + _TEXT + r")"
    r"|cls\.predictions\.(bias|decoder\.(weight|bias)|transform\.(dense|LayerNorm)" + _LIN + ")"
)


@dataclass(frozen=True)
class Kind:
    """A kind of module: its key regex and, for a sub-model, its own top-level Keras layers."""

    name: str
    keys: str  # regex of the keys below the module (the module prefix excluded)
    top_layers: tuple[str, ...] = ()  # the layers a TF sub-model of this kind writes at the top


VISION = Kind("vision", _VISION, ("embeddings", "encoder", "post_layernorm"))
TEXT = Kind("text", _TEXT, ("embeddings", "encoder", "pooler"))
LM_HEAD = Kind("lm_head", _LM, ("bert", "cls"))
LINEAR = Kind("linear", r"weight|bias")
PROJECTION = Kind("projection", r"weight")  # a linear layer without bias
PARAMETER = Kind("parameter", r"")  # the module *is* the parameter (``logit_scale``)


@dataclass(frozen=True)
class Part:
    """One top-level module of a class: ``prefix`` (``"vision_model"``; ``""`` at the root)."""

    prefix: str
    kind: Kind

    def pattern(self) -> str:
        if not self.prefix:
            return self.kind.keys
        if not self.kind.keys:
            return re.escape(self.prefix)
        return re.escape(self.prefix) + r"\.(" + self.kind.keys + ")"


@dataclass(frozen=True)
class ClassSchema:
    """One public BLIP class.

    ``task``: the converter's name for a whole model (``caption``, ``vqa``, ``itm``, ``model``),
    ``None`` for a sub-model.  ``tf_scope``: the Keras 2 model name transformers' ``TF<name>``
    writes in front of every ``tf_model.h5`` weight.  ``tf_main_layer``: the one layer
    ``TFBlipModel`` nests everything in (``""`` when the parts are the top-level layers).
    """

    name: str
    parts: tuple[Part, ...]
    task: str | None
    tf_scope: str
    tf_main_layer: str = ""

    @property
    def modules(self) -> tuple[str, ...]:
        """Top-level module names (``()`` for a sub-model)."""
        return tuple(p.prefix for p in self.parts if p.prefix)

    @property
    def lm_head_prefixes(self) -> tuple[str, ...]:
        """Key prefixes (``"text_decoder."``, ``""``) under which the class has a tied LM head."""
        return tuple(p.prefix + "." if p.prefix else "" for p in self.parts if p.kind is LM_HEAD)

    @property
    def tf_layout(self) -> tuple[str, str, tuple[str, ...]]:
        """``(model scope, main-layer prefix, top-level layer names in model order)``."""
        if self.tf_main_layer:
            layers: tuple[str, ...] = (self.tf_main_layer,)
        elif self.modules:
            layers = self.modules
        else:
            layers = self.parts[0].kind.top_layers
        return self.tf_scope, self.tf_main_layer, layers


def _schema(name, parts, task=None, tf_main_layer=""):
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()
    scope = "tf_" + snake  # BlipTextLMHeadModel -> tf_blip_text_lm_head_model
    return ClassSchema(name, tuple(Part(p, k) for p, k in parts), task, scope, tf_main_layer)


# Declaration order decides the order of the derived tables (task models first).
SCHEMAS: dict[str, ClassSchema] = {
    s.name: s
    for s in (
        _schema(
            "BlipForConditionalGeneration",
            [("vision_model", VISION), ("text_decoder", LM_HEAD)],
            task="caption",
        ),
        _schema(
            "BlipForQuestionAnswering",
            [("vision_model", VISION), ("text_encoder", TEXT), ("text_decoder", LM_HEAD)],
            task="vqa",
        ),
        _schema(
            "BlipForImageTextRetrieval",
            [
                ("vision_model", VISION),
                ("text_encoder", TEXT),
                ("vision_proj", LINEAR),
                ("text_proj", LINEAR),
                ("itm_head", LINEAR),
            ],
            task="itm",
        ),
        _schema(
            "BlipModel",
            [
                ("vision_model", VISION),
                ("text_model", TEXT),
                ("visual_projection", PROJECTION),
                ("text_projection", PROJECTION),
                ("logit_scale", PARAMETER),
            ],
            task="model",  # hub checkpoints only: the original code has no such model
            tf_main_layer="blip",
        ),
        _schema("BlipVisionModel", [("", VISION)]),
        _schema("BlipTextModel", [("", TEXT)]),
        _schema("BlipTextLMHeadModel", [("", LM_HEAD)]),
    )
}


def schema(class_name: str) -> ClassSchema:
    """The schema of ``class_name`` (a ``TF`` prefix, as transformers' TF classes have, dropped)."""
    name = class_name.removeprefix("TF")
    if name not in SCHEMAS:
        raise ValueError(
            f"unknown BLIP model class {class_name!r}; expected one of {', '.join(SCHEMAS)}"
        )
    return SCHEMAS[name]


def key_pattern(class_name: str) -> re.Pattern[str]:
    """The regex that fully matches every canonical key of ``class_name`` (and nothing else)."""
    return re.compile("|".join(p.pattern() for p in schema(class_name).parts))


def _unique(items):
    return tuple(dict.fromkeys(items))


# --------------------------------------------------------------------------------------------
# The derived tables.

# Any key of any of the seven classes.
BLIP_KEY = re.compile("|".join(_unique(p.pattern() for s in SCHEMAS.values() for p in s.parts)))

# Prefixes under which a BLIP text decoder (``BlipTextLMHeadModel``) lives in some class.
LM_HEAD_PREFIXES: tuple[str, ...] = _unique(p for s in SCHEMAS.values() for p in s.lm_head_prefixes)

# A sub-model class -> the prefixes it has inside the whole-model classes (where a whole-task
# checkpoint loaded into that sub-model finds its keys).
SUBMODEL_PREFIXES: dict[str, tuple[str, ...]] = {
    sub.name: _unique(
        part.prefix + "."
        for whole in SCHEMAS.values()
        for part in whole.parts
        if part.prefix and part.kind is sub.parts[0].kind
    )
    for sub in SCHEMAS.values()
    if sub.task is None
}

# task -> class name; task -> its top-level modules; class name -> task.
TASK_CLASSES: dict[str, str] = {s.task: s.name for s in SCHEMAS.values() if s.task}
TASK_MODULES: dict[str, tuple[str, ...]] = {s.task: s.modules for s in SCHEMAS.values() if s.task}
CLASS_TASKS: dict[str, str] = {name: task for task, name in TASK_CLASSES.items()}

# class name -> (Keras 2 model scope, main-layer prefix, top-level layer names in model order)
TF_MODEL_LAYOUTS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    name: s.tf_layout for name, s in SCHEMAS.items()
}


def is_blip_key(key: str) -> bool:
    """Whether ``key`` is a canonical key of one of the seven BLIP model classes."""
    return BLIP_KEY.fullmatch(key) is not None


__all__ = [
    "BLIP_KEY",
    "CLASS_TASKS",
    "LM_HEAD_PREFIXES",
    "SCHEMAS",
    "SUBMODEL_PREFIXES",
    "TASK_CLASSES",
    "TASK_MODULES",
    "TF_MODEL_LAYOUTS",
    "ClassSchema",
    "Kind",
    "Part",
    "is_blip_key",
    "key_pattern",
    "schema",
]
