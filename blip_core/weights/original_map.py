"""Original Salesforce BLIP checkpoints (``salesforce/BLIP``) -> canonical keys, one way.

The original ``.pth`` files are pickles of ``{"model": state_dict, ...}`` written by the BLIP
repository's ``models/blip.py`` (``blip_decoder``), ``blip_vqa.py``, ``blip_retrieval.py`` and
``blip_pretrain.py``.  Their ViT (``models/vit.py``) names differ from the canonical
(``transformers``) names; their BERT text modules (``models/med.py``) already use the canonical
names.  This module knows:

* :data:`RENAMES` -- one regex per original ViT parameter, the text / head keys that pass through
  unchanged, and :data:`DROPS`, the keys a BLIP inference model has no use for (momentum encoders,
  contrastive queues, temperature, buffers), each with its reason.  A key matching neither is an
  error that lists it;
* :func:`infer_model_size` / :func:`build_config` -- ``base`` or ``large`` from tensor shapes and
  the ``config.json`` transformers' hub checkpoints use for that size;
* :func:`convert_original_state` -- all of it together, including the bicubic resampling of the
  ViT position table (:mod:`blip_core.weights.resize`; the VQA models were fine-tuned at 480 px,
  the pre-training checkpoints at 224 px).

Which task a set of modules makes is :mod:`blip_core.weights.task_inference` (re-exported here).

The configs built here keep ``transformers``' values where the two disagree: in particular the
vision LayerNorm epsilon is 1e-5, where the original ViT used 1e-6 (the hub checkpoints converted
by ``transformers`` run with 1e-5 too).  Nothing here imports torch or tensorflow.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from blip_core.config import BlipConfig, BlipTextConfig, BlipVisionConfig
from blip_core.weights.resize import bicubic_matrix, interpolate_position_embedding
from blip_core.weights.task_inference import (
    CLASS_TASKS,
    ORIGINAL_TASKS,
    TASK_CLASSES,
    TASK_MODULES,
    OriginalCheckpointError,
    infer_task,
    select_task_modules,
    top_level_modules,
)

# --------------------------------------------------------------------------------------------
# Key renaming.

_WB = r"(weight|bias)"
# The BERT modules of med.py (BertModel with add_pooling_layer=False, BertLMHeadModel): their
# keys are already the canonical ones.  Listed exactly so that anything else is reported.
_BERT = (
    r"embeddings\.((word_embeddings|position_embeddings)\.weight|LayerNorm\." + _WB + ")"
    r"|encoder\.layer\.\d+\.("
    r"(attention|crossattention)\.(self\.(query|key|value)|output\.(dense|LayerNorm))"
    r"|intermediate\.dense|output\.(dense|LayerNorm))\." + _WB
)
_LM_HEAD = (
    r"cls\.predictions\.(bias|decoder\.(weight|bias)|transform\.(dense|LayerNorm)\." + _WB + ")"
)

# (original pattern, canonical template); first full match wins.
RENAMES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), template)
    for pattern, template in (
        (r"visual_encoder\.cls_token", r"vision_model.embeddings.class_embedding"),
        (r"visual_encoder\.pos_embed", r"vision_model.embeddings.position_embedding"),
        (
            r"visual_encoder\.patch_embed\.proj\." + _WB,
            r"vision_model.embeddings.patch_embedding.\1",
        ),
        (
            r"visual_encoder\.blocks\.(\d+)\.norm([12])\." + _WB,
            r"vision_model.encoder.layers.\1.layer_norm\2.\3",
        ),
        (
            r"visual_encoder\.blocks\.(\d+)\.attn\.qkv\." + _WB,
            r"vision_model.encoder.layers.\1.self_attn.qkv.\2",
        ),
        (
            r"visual_encoder\.blocks\.(\d+)\.attn\.proj\." + _WB,
            r"vision_model.encoder.layers.\1.self_attn.projection.\2",
        ),
        (
            r"visual_encoder\.blocks\.(\d+)\.mlp\.fc([12])\." + _WB,
            r"vision_model.encoder.layers.\1.mlp.fc\2.\3",
        ),
        (r"visual_encoder\.norm\." + _WB, r"vision_model.post_layernorm.\1"),
        # Text modules and heads pass through.
        (r"(text_encoder\.(?:" + _BERT + r"))", r"\1"),
        (r"(text_decoder\.bert\.(?:" + _BERT + r"))", r"\1"),
        (r"(text_decoder\.(?:" + _LM_HEAD + r"))", r"\1"),
        (r"((?:vision_proj|text_proj|itm_head)\." + _WB + r")", r"\1"),
    )
)

# (original pattern, reason); keys a BLIP inference model does not use.
DROPS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), reason)
    for pattern, reason in (
        (r"\w+_m\..+", "momentum encoders (training only)"),
        (r"(image|text|idx)_queue|ptr_queue|queue_ptr", "contrastive queues (training only)"),
        (r"temp", "contrastive temperature (training only)"),
        (r".+\.position_ids", "position_ids buffers (recomputed)"),
        # add_pooling_layer=False in every original task model; a pooler here is never used.
        (r"text_(encoder|decoder\.bert)\.pooler\.dense\." + _WB, "text pooler (unused by BLIP)"),
    )
)


@dataclass
class KeyMapping:
    """How the keys of one original checkpoint map: ``renamed`` ``{original: canonical}``,
    ``dropped`` ``{reason: [original keys]}``."""

    renamed: dict[str, str] = field(default_factory=dict)
    dropped: dict[str, list[str]] = field(default_factory=dict)


def is_original_checkpoint(keys: Iterable[str]) -> bool:
    """Whether ``keys`` look like an original Salesforce checkpoint (its ViT is ``visual_encoder``)."""
    return any(k.startswith("visual_encoder.") for k in keys)


def map_original_keys(keys: Iterable[str]) -> KeyMapping:
    """Rename every original key or drop it with a reason; raise listing keys that match no rule."""
    mapping = KeyMapping()
    unmatched: list[str] = []
    for key in keys:
        for pattern, template in RENAMES:
            match = pattern.fullmatch(key)
            if match:
                mapping.renamed[key] = match.expand(template)
                break
        else:
            for pattern, reason in DROPS:
                if pattern.fullmatch(key):
                    mapping.dropped.setdefault(reason, []).append(key)
                    break
            else:
                unmatched.append(key)
    if unmatched:
        unmatched.sort()
        shown = ", ".join(unmatched[:10])
        more = f", ... ({len(unmatched) - 10} more)" if len(unmatched) > 10 else ""
        raise OriginalCheckpointError(
            f"{len(unmatched)} keys of the original checkpoint match no conversion rule: "
            f"{shown}{more} (supported: the BLIP caption, VQA, retrieval/ITM and pre-training "
            "checkpoints of salesforce/BLIP)"
        )
    return mapping


# --------------------------------------------------------------------------------------------
# Sizes and configs.

# The vision towers of the released checkpoints (ViT-B/16 and ViT-L/16) ...
VISION_PRESETS = {
    "base": dict(
        hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12
    ),
    "large": dict(
        hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16
    ),
}
# ... and the text side, the same BERT-base for both (BLIP adds [DEC] and [ENC] to its vocabulary).
TEXT_PRESET = dict(
    vocab_size=30524,
    hidden_size=768,
    intermediate_size=3072,
    num_hidden_layers=12,
    num_attention_heads=12,
    max_position_embeddings=512,
)
# The hub configs: 384 px images, 16 px patches, 256-wide ITC projections.
IMAGE_SIZE = 384
PATCH_SIZE = 16
IMAGE_TEXT_HIDDEN_SIZE = 256


def _layer_count(shapes: Mapping[str, tuple[int, ...]], prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    indices = {int(m.group(1)) for k in shapes if (m := pattern.match(k))}
    return max(indices) + 1 if indices else 0


def describe_shapes(shapes: Mapping[str, tuple[int, ...]]) -> dict[str, dict[str, int]]:
    """The size facts that shapes reveal: widths, depths, vocabulary, patch and position counts."""
    vision = {}
    if "vision_model.embeddings.class_embedding" in shapes:
        vision["hidden_size"] = int(shapes["vision_model.embeddings.class_embedding"][-1])
    vision["num_hidden_layers"] = _layer_count(shapes, "vision_model.encoder.layers.")
    fc1 = shapes.get("vision_model.encoder.layers.0.mlp.fc1.weight")
    if fc1:
        vision["intermediate_size"] = int(fc1[0])
    patch = shapes.get("vision_model.embeddings.patch_embedding.weight")
    if patch:
        vision["patch_size"] = int(patch[-1])
    pos = shapes.get("vision_model.embeddings.position_embedding")
    if pos:
        vision["num_positions"] = int(pos[1])
    text = {}
    for prefix in ("text_encoder.", "text_decoder.bert.", "text_model."):
        emb = shapes.get(prefix + "embeddings.word_embeddings.weight")
        if emb is None:
            continue
        text["vocab_size"], text["hidden_size"] = int(emb[0]), int(emb[1])
        text["num_hidden_layers"] = _layer_count(shapes, prefix + "encoder.layer.")
        inter = shapes.get(prefix + "encoder.layer.0.intermediate.dense.weight")
        if inter:
            text["intermediate_size"] = int(inter[0])
        positions = shapes.get(prefix + "embeddings.position_embeddings.weight")
        if positions:
            text["max_position_embeddings"] = int(positions[0])
        break
    return {"vision": vision, "text": text}


def infer_model_size(shapes: Mapping[str, tuple[int, ...]]) -> str:
    """``"base"`` (ViT-B: 768 wide, 12 layers) or ``"large"`` (ViT-L: 1024 wide, 24 layers) from
    canonical key shapes; the text side must be BERT-base (768 wide, 12 layers, vocab 30524).

    Raises :class:`OriginalCheckpointError` for other sizes (pass an explicit config for those).
    """
    facts = describe_shapes(shapes)
    vision, text = facts["vision"], facts["text"]
    size = None
    for name, preset in VISION_PRESETS.items():
        if all(
            vision.get(k) == preset[k]
            for k in ("hidden_size", "num_hidden_layers", "intermediate_size")
        ):
            size = name
    text_ok = all(text.get(k) == TEXT_PRESET[k] for k in text)
    if size is None or not text_ok or vision.get("patch_size", PATCH_SIZE) != PATCH_SIZE:
        raise OriginalCheckpointError(
            f"the checkpoint's sizes (vision {vision}, text {text}) are neither BLIP base "
            "(ViT-B/16: 768 wide, 12 layers) nor large (ViT-L/16: 1024 wide, 24 layers) with a "
            "BERT-base text model (768 wide, 12 layers, vocab 30524); pass --config CONFIG_JSON "
            "giving the sizes"
        )
    return size


def build_config(
    size: str, task: str, shapes: Mapping[str, tuple[int, ...]] | None = None
) -> BlipConfig:
    """The ``config.json`` of transformers' hub checkpoints for a ``base``/``large`` model."""
    if size not in VISION_PRESETS:
        raise ValueError(f"unknown size {size!r}; expected one of {', '.join(VISION_PRESETS)}")
    image_text_hidden_size = IMAGE_TEXT_HIDDEN_SIZE
    if shapes and "vision_proj.weight" in shapes:
        image_text_hidden_size = int(shapes["vision_proj.weight"][0])
    config = BlipConfig(
        text_config=BlipTextConfig(**TEXT_PRESET),
        vision_config=BlipVisionConfig(
            **VISION_PRESETS[size], image_size=IMAGE_SIZE, patch_size=PATCH_SIZE
        ),
        projection_dim=512,
        image_text_hidden_size=image_text_hidden_size,
    )
    config.extra["architectures"] = [TASK_CLASSES[task]]
    return config


# --------------------------------------------------------------------------------------------
# Everything together.


@dataclass
class OriginalConversion:
    """The canonical state, config and task of one original checkpoint, plus notes for the user."""

    state: dict[str, np.ndarray]
    config: BlipConfig
    task: str
    notes: list[str] = field(default_factory=list)


def convert_original_state(
    original: dict[str, np.ndarray], task: str = "auto", config: BlipConfig | None = None
) -> OriginalConversion:
    """Map an original state dict to canonical names for one task model.

    ``original`` is consumed (emptied) so that dropped tensors are freed as early as possible.
    ``task`` is ``auto`` or one of :data:`ORIGINAL_TASKS`; ``config`` replaces size inference.
    Tied copies (``cls.predictions.decoder.*``) are kept; callers normalise them.
    """
    mapping = map_original_keys(list(original))
    notes: list[str] = []
    for reason, keys in mapping.dropped.items():
        notes.append(f"dropped {len(keys)} key{'s' if len(keys) != 1 else ''}: {reason}")
    state = {canonical: original[key] for key, canonical in mapping.renamed.items()}
    original.clear()
    if task == "auto":
        task = infer_task(state)
        notes.append(f"task inferred from the heads present: {task} ({TASK_CLASSES[task]})")
    elif task not in ORIGINAL_TASKS:
        raise ValueError(
            f"unknown task {task!r}; expected auto or one of {', '.join(ORIGINAL_TASKS)}"
        )
    state, unused = select_task_modules(state, task)
    if unused:
        notes.append(f"dropped modules that {TASK_CLASSES[task]} does not use: {', '.join(unused)}")
    shapes = {k: tuple(np.shape(v)) for k, v in state.items()}
    if config is None:
        size = infer_model_size(shapes)
        config = build_config(size, task, shapes)
        notes.append(
            f"model size inferred from shapes: {size} (vision {config.vision_config.hidden_size} "
            f"wide, {config.vision_config.num_hidden_layers} layers, "
            f"{config.vision_config.num_attention_heads} heads); config values of the "
            "transformers hub checkpoints (vision layer_norm_eps 1e-5; the original ViT used 1e-6)"
        )
    else:
        config = config.copy()
        config.extra["architectures"] = [TASK_CLASSES[task]]
    key = "vision_model.embeddings.position_embedding"
    wanted = config.vision_config.num_positions
    if key in state and np.ndim(state[key]) == 3 and state[key].shape[1] != wanted:
        old = state[key].shape[1]
        try:
            state[key] = interpolate_position_embedding(state[key], wanted)
        except ValueError as exc:
            raise OriginalCheckpointError(f"{key}: {exc}") from None
        patch = config.vision_config.patch_size
        old_grid, new_grid = math.isqrt(old - 1), math.isqrt(wanted - 1)
        notes.append(
            f"interpolated {key} (bicubic, class token kept) from {old_grid}x{old_grid} patches "
            f"({old_grid * patch} px) to {new_grid}x{new_grid} ({new_grid * patch} px, the "
            "configured image_size)"
        )
    return OriginalConversion(state=state, config=config, task=task, notes=notes)


__all__ = [
    "CLASS_TASKS",
    "DROPS",
    "ORIGINAL_TASKS",
    "RENAMES",
    "TASK_CLASSES",
    "TASK_MODULES",
    "KeyMapping",
    "OriginalCheckpointError",
    "OriginalConversion",
    "bicubic_matrix",
    "build_config",
    "convert_original_state",
    "describe_shapes",
    "infer_model_size",
    "infer_task",
    "interpolate_position_embedding",
    "is_original_checkpoint",
    "map_original_keys",
    "select_task_modules",
    "top_level_modules",
]
