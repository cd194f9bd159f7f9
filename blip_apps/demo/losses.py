"""Training batches and losses of the demo models (PyTorch): the generated scene stream, LM
losses for captioning and VQA, ITC + ITM with hard and edited negatives for retrieval, and the
training-only auxiliary vision head (per-patch shape labels).  Used by
:mod:`blip_apps.demo.training`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from blip_apps.demo import TASKS, data
from blip_core.image_processing import BlipImageProcessor
from blip_core.tokenization import BlipTokenizer
from blip_torch import (
    BlipForConditionalGeneration,
    BlipForImageTextRetrieval,
    BlipForQuestionAnswering,
)

ITC_TEMPERATURE = 0.07  # fixed: BlipForImageTextRetrieval has no temperature parameter


# ---- batches ----------------------------------------------------------------------------------


class Batches:
    """Generated training batches for one task (an endless, seeded stream of scenes)."""

    def __init__(self, tokenizer: BlipTokenizer, processor: BlipImageProcessor, seed, task: str):
        self.tokenizer = tokenizer
        self.processor = processor
        self.rng = np.random.default_rng([seed, 1 + TASKS.index(task)])

    def scenes(self, n: int) -> list[data.Scene]:
        return [data.sample_scene(self.rng) for _ in range(n)]

    def pixels(self, scenes: list[data.Scene]) -> torch.Tensor:
        images = [data.render(s) for s in scenes]
        return torch.from_numpy(self.processor(images, return_tensors="np")["pixel_values"])

    def text(self, texts: list[str], bos: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        enc = self.tokenizer(texts, padding="longest", return_tensors="np")
        ids = torch.from_numpy(enc["input_ids"]).long()
        mask = torch.from_numpy(enc["attention_mask"]).long()
        if bos:
            ids[:, 0] = self.tokenizer.bos_token_id
        return ids, mask


def patch_targets(scenes: list[data.Scene], patch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Dense targets for the auxiliary vision loss: per patch ``(B, N, 4)`` = (kind, colour,
    size, left-to-right rank) of the shape covering most of the patch (0 = background, a patch
    needs at least a quarter of its pixels covered), and per image the shape count - 1 ``(B,)``."""
    rows = []
    for scene in scenes:
        labels = data.label_map(scene)
        side = labels.shape[0] // patch
        blocks = labels.reshape(side, patch, side, patch).transpose(0, 2, 1, 3).reshape(side**2, -1)
        counts = np.stack([(blocks == i).sum(1) for i in range(1, len(scene.shapes) + 1)], 1)
        owner = np.where(counts.max(1) >= patch * patch // 4, counts.argmax(1) + 1, 0)
        table = np.zeros((len(scene.shapes) + 1, 4), dtype=np.int64)
        for i, s in enumerate(scene.shapes, start=1):
            table[i] = (
                1 + data.KINDS.index(s.kind),
                1 + data.COLOR_NAMES.index(s.color),
                1 + data.SIZES.index(s.size),
                i,
            )
        rows.append(table[owner])
    counts = torch.tensor([len(s.shapes) - 1 for s in scenes])
    return torch.from_numpy(np.stack(rows)), counts


class AuxVisionHead(nn.Module):
    """Training-only heads on the image tokens (not saved): dense per-patch labels and the shape
    count from the class token give the image encoder a strong signal from the first step."""

    SIZES = (1 + len(data.KINDS), 1 + len(data.COLOR_NAMES), 1 + len(data.SIZES), 4)

    def __init__(self, hidden: int, patch: int) -> None:
        super().__init__()
        self.patch = patch
        self.patches = nn.Linear(hidden, sum(self.SIZES))
        self.count = nn.Linear(hidden, 3)

    def loss(self, image_embeds: torch.Tensor, scenes: list[data.Scene]) -> torch.Tensor:
        targets, counts = patch_targets(scenes, self.patch)
        logits = self.patches(image_embeds[:, 1:]).split(self.SIZES, dim=-1)
        loss = F.cross_entropy(self.count(image_embeds[:, 0]), counts)
        for i, part in enumerate(logits):
            loss = loss + F.cross_entropy(part.flatten(0, 1), targets[..., i].flatten())
        return loss


def lm_labels(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return ids.masked_fill(mask == 0, -100)


# ---- losses -----------------------------------------------------------------------------------


def caption_loss(model: BlipForConditionalGeneration, batches: Batches, batch_size: int):
    scenes = batches.scenes(batch_size)
    ids, mask = batches.text([data.caption(s) for s in scenes], bos=True)
    out = model(
        batches.pixels(scenes), input_ids=ids, attention_mask=mask, labels=lm_labels(ids, mask)
    )
    return out.loss, out.image_embeds, scenes


def vqa_loss(model: BlipForQuestionAnswering, batches: Batches, batch_size: int, per_image=4):
    """``per_image`` questions per scene share one image encoding (the model's forward, unrolled)."""
    scenes = batches.scenes(batch_size // per_image)
    qa = [data.sample_question(s, batches.rng) for s in scenes for _ in range(per_image)]
    q_ids, q_mask = batches.text([q for q, _ in qa])
    a_ids, a_mask = batches.text([a for _, a in qa], bos=True)
    image_embeds = model.vision_model(batches.pixels(scenes)).last_hidden_state
    question = model.text_encoder(
        input_ids=q_ids,
        attention_mask=q_mask,
        encoder_hidden_states=image_embeds.repeat_interleave(per_image, dim=0),
    ).last_hidden_state
    out = model.text_decoder(
        input_ids=a_ids,
        attention_mask=a_mask,
        encoder_hidden_states=question,
        encoder_attention_mask=q_mask,
        labels=lm_labels(a_ids, a_mask),
    )
    return out.loss, image_embeds, scenes


def edit_scene(scene: data.Scene, rng: np.random.Generator) -> data.Scene:
    """A scene whose caption differs from ``scene``'s in one attribute or in the shapes' order."""
    target = data.caption(scene)
    while True:
        shapes = list(scene.shapes)
        i = int(rng.integers(len(shapes)))
        choice = int(rng.integers(4 if len(shapes) > 1 else 3))
        if choice == 3:  # swap two shapes' looks, keeping the positions
            j = (i + 1 + int(rng.integers(len(shapes) - 1))) % len(shapes)
            a, b = shapes[i], shapes[j]
            shapes[i] = data.Shape(b.kind, b.color, b.size, a.x, a.y, a.r)
            shapes[j] = data.Shape(a.kind, a.color, a.size, b.x, b.y, b.r)
        else:
            field = ("kind", "color", "size")[choice]
            values = {"kind": data.KINDS, "color": data.COLOR_NAMES, "size": data.SIZES}[field]
            old = shapes[i]
            new = dict(kind=old.kind, color=old.color, size=old.size)
            new[field] = values[int(rng.integers(len(values)))]
            shapes[i] = data.Shape(new["kind"], new["color"], new["size"], old.x, old.y, old.r)
        edited = data.Scene(tuple(shapes), scene.background)
        if data.caption(edited) != target:
            return edited


def retrieval_loss(model: BlipForImageTextRetrieval, batches: Batches, batch_size: int):
    """ITC (symmetric InfoNCE, equal captions count as positives) + ITM (positives, in-batch
    hard negatives drawn by ITC similarity, and captions of edited scenes)."""
    scenes = batches.scenes(batch_size)
    captions = [data.caption(s) for s in scenes]
    ids, mask = batches.text(captions)
    image_embeds = model.vision_model(batches.pixels(scenes)).last_hidden_state
    text_embeds = model.text_encoder(input_ids=ids, attention_mask=mask).last_hidden_state
    image_feat = F.normalize(model.vision_proj(image_embeds[:, 0]), dim=-1)
    text_feat = F.normalize(model.text_proj(text_embeds[:, 0]), dim=-1)
    sim_i2t = image_feat @ text_feat.t() / ITC_TEMPERATURE  # (B_img, B_txt)
    same = torch.tensor([[a == b for b in captions] for a in captions], dtype=torch.float32)
    targets = same / same.sum(1, keepdim=True)
    itc = (
        -(F.log_softmax(sim_i2t, 1) * targets).sum(1).mean()
        - (F.log_softmax(sim_i2t.t(), 1) * targets).sum(1).mean()
    ) / 2

    with torch.no_grad():  # hard negatives, as BLIP samples them
        weights = F.softmax(sim_i2t.float(), 1).masked_fill(same.bool(), 0) + 1e-6
        weights = weights.masked_fill(same.bool(), 0)
        neg_text = torch.multinomial(weights, 1).squeeze(1)
        neg_image = torch.multinomial(weights.t().contiguous(), 1).squeeze(1)
    edited = [data.caption(edit_scene(s, batches.rng)) for s in scenes]
    e_ids, e_mask = batches.text(edited)
    # edited captions may be longer or shorter: pad everything to one length
    length = max(ids.shape[1], e_ids.shape[1])
    ids, mask = (F.pad(t, (0, length - t.shape[1])) for t in (ids, mask))
    e_ids, e_mask = (F.pad(t, (0, length - t.shape[1])) for t in (e_ids, e_mask))
    all_ids = torch.cat([ids, ids, ids[neg_text], e_ids])
    all_mask = torch.cat([mask, mask, mask[neg_text], e_mask])
    all_images = torch.cat([image_embeds, image_embeds[neg_image], image_embeds, image_embeds])
    labels = torch.cat([torch.ones(batch_size), torch.zeros(3 * batch_size)]).long()
    hidden = model.text_encoder(
        input_ids=all_ids, attention_mask=all_mask, encoder_hidden_states=all_images
    ).last_hidden_state
    logits = model.itm_head(hidden[:, 0])
    # positives weigh as much as the three kinds of negatives together
    itm = F.cross_entropy(logits, labels, weight=torch.tensor([1.0, 3.0]))
    return itc + itm, image_embeds, scenes


__all__ = [
    "ITC_TEMPERATURE",
    "AuxVisionHead",
    "Batches",
    "caption_loss",
    "edit_scene",
    "lm_labels",
    "patch_targets",
    "retrieval_loss",
    "vqa_loss",
]
