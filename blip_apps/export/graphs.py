"""The ONNX graphs of a BLIP model: small ``torch.nn.Module`` wrappers over blip_torch's own layers.

Each wrapper's ``forward`` is what one ONNX graph computes; it calls the model's layers (the
same code ``blip_torch`` runs), so the graph holds the same numerics.  A class exports only the
graphs its tasks need (:data:`CLASS_GRAPHS`):

==================  ============================================================================
graph               inputs -> outputs
==================  ============================================================================
vision              pixel_values (B,3,H,W) -> last_hidden_state (B,L,Dv), pooler_output (B,Dv)
text_encoder        input_ids, attention_mask (B,T), encoder_hidden_states (B,L,Dv)
                    -> last_hidden_state (B,T,D)   (image-grounded: VQA question, ITM)
text_embeds         input_ids, attention_mask (B,T) -> last_hidden_state (B,T,D),
                    text_embeds (B,E)               (unimodal encoder + L2-normalised text_proj)
image_embeds        image_states (B,L,Dv) -> image_embeds (B,E)  (L2-normalised vision_proj)
itm_head            cls_states (B,D) -> logits (B,2)
decoder_cross_kv    encoder_hidden_states (B,L,De) -> cross_key_i, cross_value_i (B,H,L,hd)
                    for every decoder layer i: projected once per image/question
decoder_step        input_ids, position_ids (N,T), attention_mask (N,P+T),
                    encoder_attention_mask (N,L), past_key_i, past_value_i (N,H,P,hd),
                    cross_key_i, cross_value_i (N,H,L,hd)
                    -> logits (N,T,V), present_key_i, present_value_i (N,H,P+T,hd)
==================  ============================================================================

``decoder_step`` is the decoder's own forward with ``past_key_values``: ``P = 0`` (an empty
cache) is a prefill or a whole-sequence scoring pass, ``T = 1`` a search step.  Cross-attention
keys/values are inputs and never recomputed from the image states.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

# the graphs each public class needs, in the order they are exported
CLASS_GRAPHS: dict[str, tuple[str, ...]] = {
    "BlipForConditionalGeneration": ("vision", "decoder_cross_kv", "decoder_step"),
    "BlipForQuestionAnswering": ("vision", "text_encoder", "decoder_cross_kv", "decoder_step"),
    "BlipForImageTextRetrieval": (
        "vision",
        "text_encoder",
        "text_embeds",
        "image_embeds",
        "itm_head",
    ),
    "BlipVisionModel": ("vision",),
}


class VisionGraph(nn.Module):
    def __init__(self, vision_model: nn.Module):
        super().__init__()
        self.vision_model = vision_model

    def forward(self, pixel_values: torch.Tensor):
        out = self.vision_model(pixel_values=pixel_values)
        return out.last_hidden_state, out.pooler_output


class GroundedEncoderGraph(nn.Module):
    """The text encoder cross-attending to every position of ``encoder_hidden_states``."""

    def __init__(self, text_encoder: nn.Module):
        super().__init__()
        self.text_encoder = text_encoder

    def forward(self, input_ids, attention_mask, encoder_hidden_states):
        encoder_mask = torch.ones(
            encoder_hidden_states.shape[:2], dtype=torch.long, device=input_ids.device
        )
        return self.text_encoder(
            input_ids=input_ids,
            attention_mask=attention_mask,
            encoder_hidden_states=encoder_hidden_states,
            encoder_attention_mask=encoder_mask,
        ).last_hidden_state


class TextEmbedsGraph(nn.Module):
    """The unimodal text encoder and the ITC text projection of its ``[CLS]``."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.text_encoder = model.text_encoder
        self.text_proj = model.text_proj

    def forward(self, input_ids, attention_mask):
        states = self.text_encoder(
            input_ids=input_ids, attention_mask=attention_mask
        ).last_hidden_state
        return states, F.normalize(self.text_proj(states[:, 0, :]), dim=-1)


class ImageEmbedsGraph(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.vision_proj = model.vision_proj

    def forward(self, image_states):
        return F.normalize(self.vision_proj(image_states[:, 0, :]), dim=-1)


class ItmHeadGraph(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.itm_head = model.itm_head

    def forward(self, cls_states):
        return self.itm_head(cls_states)


class CrossKVGraph(nn.Module):
    """Every decoder layer's cross-attention keys and values, computed once."""

    def __init__(self, decoder: nn.Module):
        super().__init__()
        self.layers = decoder.bert.encoder.layer

    def forward(self, encoder_hidden_states):
        out = []
        for layer in self.layers:
            out.extend(layer.crossattention.self.project_key_value(encoder_hidden_states))
        return tuple(out)


class DecoderStepGraph(nn.Module):
    """The decoder's own forward over a self-attention cache, cross K/V given."""

    def __init__(self, decoder: nn.Module):
        super().__init__()
        self.decoder = decoder
        self.num_layers = len(decoder.bert.encoder.layer)

    def forward(self, input_ids, position_ids, attention_mask, encoder_attention_mask, *caches):
        n = self.num_layers
        past_self, cross = caches[: 2 * n], caches[2 * n :]
        past = tuple(
            (past_self[2 * i], past_self[2 * i + 1], cross[2 * i], cross[2 * i + 1])
            for i in range(n)
        )
        out = self.decoder.bert(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            encoder_attention_mask=encoder_attention_mask,
            past_key_values=past,
            use_cache=True,
            is_decoder=True,
        )
        logits = self.decoder.cls(out.last_hidden_state)
        presents = []
        for layer in out.past_key_values:
            presents.extend(layer[:2])
        return (logits, *presents)


@dataclass
class GraphSpec:
    """One graph to export: its wrapper, input/output names, dynamic axes and a probe input."""

    name: str
    module: nn.Module
    inputs: list[str]
    outputs: list[str]
    dynamic_axes: dict[str, dict[int, str]]
    probes: list[tuple[torch.Tensor, ...]] = field(default_factory=list)  # first one is traced


def _layer_names(prefix_key: str, prefix_value: str, n: int) -> list[str]:
    names = []
    for i in range(n):
        names += [f"{prefix_key}_{i}", f"{prefix_value}_{i}"]
    return names


def _ids(generator, batch: int, length: int, vocab: int) -> torch.Tensor:
    return torch.randint(4, vocab, (batch, length), generator=generator)


def _mask(batch: int, length: int, pad_last_row: int = 0) -> torch.Tensor:
    mask = torch.ones((batch, length), dtype=torch.long)
    if pad_last_row:
        mask[-1, length - pad_last_row :] = 0
    return mask


def graph_specs(model: nn.Module, class_name: str, seed: int = 0) -> list[GraphSpec]:
    """The :class:`GraphSpec` of every graph ``class_name`` needs, with probe inputs drawn from
    ``seed`` (batch 2, a padded row) that the exporter traces and the verification replays."""
    g = torch.Generator().manual_seed(seed)
    config = model.config
    vision = config.vision_config if hasattr(config, "vision_config") else config
    batch, size = 2, vision.image_size
    pixels = torch.randn((batch, 3, size, size), generator=g)
    num_states = (size // vision.patch_size) ** 2 + 1
    image_states = torch.randn((batch, num_states, vision.hidden_size), generator=g)
    specs = []
    for name in CLASS_GRAPHS[class_name]:
        if name == "vision":
            vision_model = model.vision_model if hasattr(model, "vision_model") else model
            specs.append(
                GraphSpec(
                    name,
                    VisionGraph(vision_model),
                    ["pixel_values"],
                    ["last_hidden_state", "pooler_output"],
                    {
                        "pixel_values": {0: "batch"},
                        "last_hidden_state": {0: "batch"},
                        "pooler_output": {0: "batch"},
                    },
                    [(pixels,)],
                )
            )
            continue
        text = config.text_config
        vocab, length = text.vocab_size, 5
        ids, mask = _ids(g, batch, length, vocab), _mask(batch, length, pad_last_row=2)
        seq = {0: "batch", 1: "sequence"}
        if name == "text_encoder":
            specs.append(
                GraphSpec(
                    name,
                    GroundedEncoderGraph(model.text_encoder),
                    ["input_ids", "attention_mask", "encoder_hidden_states"],
                    ["last_hidden_state"],
                    {
                        "input_ids": seq,
                        "attention_mask": seq,
                        "encoder_hidden_states": {0: "batch", 1: "encoder_sequence"},
                        "last_hidden_state": seq,
                    },
                    [(ids, mask, image_states)],
                )
            )
        elif name == "text_embeds":
            specs.append(
                GraphSpec(
                    name,
                    TextEmbedsGraph(model),
                    ["input_ids", "attention_mask"],
                    ["last_hidden_state", "text_embeds"],
                    {
                        "input_ids": seq,
                        "attention_mask": seq,
                        "last_hidden_state": seq,
                        "text_embeds": {0: "batch"},
                    },
                    [(ids, mask)],
                )
            )
        elif name == "image_embeds":
            specs.append(
                GraphSpec(
                    name,
                    ImageEmbedsGraph(model),
                    ["image_states"],
                    ["image_embeds"],
                    {
                        "image_states": {0: "batch", 1: "encoder_sequence"},
                        "image_embeds": {0: "batch"},
                    },
                    [(image_states,)],
                )
            )
        elif name == "itm_head":
            cls_states = torch.randn((batch, text.hidden_size), generator=g)
            specs.append(
                GraphSpec(
                    name,
                    ItmHeadGraph(model),
                    ["cls_states"],
                    ["logits"],
                    {"cls_states": {0: "batch"}, "logits": {0: "batch"}},
                    [(cls_states,)],
                )
            )
        else:
            specs.append(_decoder_spec(name, model, g, batch))
    return specs


def _decoder_spec(name: str, model: nn.Module, g: torch.Generator, batch: int) -> GraphSpec:
    text = model.config.text_config
    decoder = model.text_decoder
    n = text.num_hidden_layers
    heads = text.num_attention_heads
    head_dim = text.hidden_size // heads
    enc_len = 7
    enc_states = torch.randn((batch, enc_len, text.encoder_hidden_size), generator=g)
    enc_axes = {0: "batch", 1: "encoder_sequence"}
    if name == "decoder_cross_kv":
        outs = _layer_names("cross_key", "cross_value", n)
        axes = {
            "encoder_hidden_states": enc_axes,
            **{o: {0: "batch", 2: "encoder_sequence"} for o in outs},
        }
        return GraphSpec(
            name, CrossKVGraph(decoder), ["encoder_hidden_states"], outs, axes, [(enc_states,)]
        )
    past_names = _layer_names("past_key", "past_value", n)
    cross_names = _layer_names("cross_key", "cross_value", n)
    present_names = _layer_names("present_key", "present_value", n)
    inputs = ["input_ids", "position_ids", "attention_mask", "encoder_attention_mask"]
    axes = {
        "input_ids": {0: "batch", 1: "sequence"},
        "position_ids": {0: "batch", 1: "sequence"},
        "attention_mask": {0: "batch", 1: "total_sequence"},
        "encoder_attention_mask": {0: "batch", 1: "encoder_sequence"},
        "logits": {0: "batch", 1: "sequence"},
    }
    axes.update({p: {0: "batch", 2: "past_sequence"} for p in past_names})
    axes.update({c: {0: "batch", 2: "encoder_sequence"} for c in cross_names})
    axes.update({p: {0: "batch", 2: "total_sequence"} for p in present_names})
    cross = []
    with torch.no_grad():
        for layer in decoder.bert.encoder.layer:
            cross.extend(layer.crossattention.self.project_key_value(enc_states))
    enc_mask = _mask(batch, enc_len, pad_last_row=3)

    def probe(past_len: int, length: int):
        past = [torch.randn((batch, heads, past_len, head_dim), generator=g) for _ in range(2 * n)]
        mask = _mask(batch, past_len + length)
        mask[-1, 0] = 0  # a left-padded row
        positions = torch.arange(past_len, past_len + length).repeat(batch, 1)
        ids = _ids(g, batch, length, text.vocab_size)
        return (ids, positions, mask, enc_mask, *past, *cross)

    # traced with a non-empty cache; replayed as a step and as a prefill (empty cache)
    probes = [probe(3, 1), probe(0, 4), probe(2, 2)]
    return GraphSpec(
        name,
        DecoderStepGraph(decoder),
        inputs + past_names + cross_names,
        ["logits", *present_names],
        axes,
        probes,
    )
