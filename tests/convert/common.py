"""Shared pieces of the conversion tests: reference models renamed back to original BLIP keys."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from tests.helpers import TINY_COMPOSITE, TINY_TEXT, TINY_VISION

os.environ.setdefault("USE_TF", "0")

# A "large-shaped" tiny model: the vision tower is wider and deeper than the text model (as ViT-L
# against BERT-base), so cross-attention key/value weights are not square.
LARGE_LIKE_VISION = dict(
    hidden_size=48,
    intermediate_size=50,
    num_hidden_layers=3,
    num_attention_heads=6,
    image_size=32,
    patch_size=8,
)

TASK_CLASSES = {
    "caption": "BlipForConditionalGeneration",
    "vqa": "BlipForQuestionAnswering",
    "itm": "BlipForImageTextRetrieval",
}

# canonical -> original, written independently of blip_core.weights.original_map.
_TO_ORIGINAL = (
    (r"vision_model\.embeddings\.class_embedding", "visual_encoder.cls_token"),
    (r"vision_model\.embeddings\.position_embedding", "visual_encoder.pos_embed"),
    (r"vision_model\.embeddings\.patch_embedding\.(\w+)", r"visual_encoder.patch_embed.proj.\1"),
    (
        r"vision_model\.encoder\.layers\.(\d+)\.layer_norm(\d)\.(\w+)",
        r"visual_encoder.blocks.\1.norm\2.\3",
    ),
    (
        r"vision_model\.encoder\.layers\.(\d+)\.self_attn\.qkv\.(\w+)",
        r"visual_encoder.blocks.\1.attn.qkv.\2",
    ),
    (
        r"vision_model\.encoder\.layers\.(\d+)\.self_attn\.projection\.(\w+)",
        r"visual_encoder.blocks.\1.attn.proj.\2",
    ),
    (
        r"vision_model\.encoder\.layers\.(\d+)\.mlp\.(fc\d)\.(\w+)",
        r"visual_encoder.blocks.\1.mlp.\2.\3",
    ),
    (r"vision_model\.post_layernorm\.(\w+)", r"visual_encoder.norm.\1"),
)


def to_original_key(key: str) -> str:
    for pattern, template in _TO_ORIGINAL:
        if re.fullmatch(pattern, key):
            return re.sub(pattern, template, key)
    return key


def reference_config(vision: dict | None = None, image_size: int | None = None):
    import transformers

    vision = dict(TINY_VISION if vision is None else vision)
    if image_size is not None:
        vision["image_size"] = image_size
    return transformers.BlipConfig(
        text_config=dict(TINY_TEXT), vision_config=vision, **TINY_COMPOSITE
    )


def build_model(task: str, vision: dict | None = None, seed: int = 0):
    """A perturbed transformers task model with its LM-head weight tied to the word embeddings."""
    import torch
    import transformers

    from tests.reference import perturb

    torch.manual_seed(seed)
    model = getattr(transformers, TASK_CLASSES[task])(reference_config(vision))
    if hasattr(model, "text_decoder"):
        lm = model.text_decoder
        lm.cls.predictions.decoder.weight = lm.bert.embeddings.word_embeddings.weight
    return perturb(model, seed)


def original_state_dict(model, momentum: bool = True, seed: int = 1) -> dict:
    """The model's weights in original Salesforce names, with what the original training code
    also saved: tied LM-head copies, momentum encoders, queues, temperature, position_ids."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    state = {to_original_key(k): v.detach().clone() for k, v in model.state_dict().items()}
    for prefix in ("text_decoder.",):
        if prefix + "cls.predictions.bias" in state:
            emb = state[prefix + "bert.embeddings.word_embeddings.weight"]
            state[prefix + "cls.predictions.decoder.weight"] = emb
            state[prefix + "cls.predictions.decoder.bias"] = state[prefix + "cls.predictions.bias"]
    for module in ("text_encoder.", "text_decoder.bert."):
        if any(k.startswith(module) for k in state):
            state[module + "embeddings.position_ids"] = torch.arange(64).unsqueeze(0)
    if momentum:
        for key in list(state):
            head, _, rest = key.partition(".")
            if head in ("visual_encoder", "text_encoder", "vision_proj", "text_proj"):
                value = state[key]
                noise = torch.randn(value.shape, generator=gen) if value.is_floating_point() else 0
                state[f"{head}_m.{rest}"] = value + noise
        state["image_queue"] = torch.randn(20, 16, generator=gen)
        state["text_queue"] = torch.randn(20, 16, generator=gen)
        state["idx_queue"] = torch.full((1, 16), -100)
        state["ptr_queue"] = torch.zeros(1, dtype=torch.long)
        state["temp"] = torch.tensor(0.07)
    return state


def save_original(path: Path, state: dict) -> Path:
    import torch

    torch.save({"model": state, "epoch": 3, "config": {"image_size": 384}}, path)
    return path


def write_config(model, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    model.config.to_json_file(str(directory / "config.json"))
    return directory / "config.json"


def reference_probe(model, task: str, inputs: dict) -> dict[str, np.ndarray]:
    """Outputs of a transformers PyTorch model on the conversion probe (same calls as ours;
    the torch adapter only converts the tensors)."""
    from blip_apps.convert.verify import run_probe
    from blip_torch.adapter import BACKEND

    return run_probe(BACKEND, model, task, inputs)


def ours_probe(directory: Path, task: str, inputs: dict, match_reference: bool = True):
    """blip_torch.from_pretrained(directory) on the probe."""
    import blip_torch
    from blip_apps.convert.verify import run_probe
    from blip_torch.adapter import BACKEND

    model = getattr(blip_torch, TASK_CLASSES[task]).from_pretrained(directory)
    if match_reference:  # transformers' PyTorch BLIP ignores the cross-attention mask
        model.config.text_config.ignore_encoder_attention_mask = True
    return run_probe(BACKEND, model, task, inputs)


def assert_close(ours: dict, reference: dict, atol: float) -> None:
    assert set(ours) == set(reference), (sorted(ours), sorted(reference))
    for name in ours:
        diff = float(np.max(np.abs(np.asarray(ours[name], np.float64) - reference[name])))
        assert diff <= atol, f"{name}: max|diff| {diff:.3e} > {atol}"


def leftovers(parent: Path, name: str) -> list[str]:
    """Anything a conversion to ``parent/name`` left behind (the output or temporary dirs)."""
    return sorted(
        p.name for p in parent.iterdir() if p.name == name or p.name.startswith(f".{name}.")
    )
