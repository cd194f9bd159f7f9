"""Forward-pass cases shared by the parity tests: (class name, kwargs builder)."""

from __future__ import annotations

import numpy as np

from tests.helpers import make_inputs


def _encoder_states(batch: int, width: int, length: int = 6, seed: int = 1):
    rng = np.random.default_rng(seed)
    states = rng.standard_normal((batch, length, width)).astype(np.float32)
    mask = np.ones((batch, length), dtype=np.int64)
    mask[0, -2:] = 0  # exercise the finfo.min cross-attention mask
    return states, mask


def case_kwargs(name: str, text_cfg: dict, vision_cfg: dict, batch: int = 3) -> dict:
    """Keyword arguments (numpy) for one parity case; the same for ours and the reference."""
    vocab = text_cfg["vocab_size"]
    image = vision_cfg["image_size"]
    inp = make_inputs(batch=batch, length=9, vocab=vocab, image_size=image)
    text = {"input_ids": inp["input_ids"], "attention_mask": inp["attention_mask"]}
    states, states_mask = _encoder_states(batch, vision_cfg["hidden_size"])
    if name == "vision":
        return {"pixel_values": inp["pixel_values"], "output_hidden_states": True,
                "output_attentions": True}  # fmt: skip
    if name == "text_encoder":
        return {**text, "output_hidden_states": True, "output_attentions": True}
    if name == "text_cross":
        return {**text, "encoder_hidden_states": states, "encoder_attention_mask": states_mask,
                "output_hidden_states": True, "output_attentions": True}  # fmt: skip
    if name == "text_decoder_mode":
        return {**text, "encoder_hidden_states": states, "is_decoder": True}
    if name == "lm_head":
        return {**text, "encoder_hidden_states": states, "encoder_attention_mask": states_mask,
                "labels": inp["labels"]}  # fmt: skip
    if name == "blip_model":
        return {**text, "pixel_values": inp["pixel_values"], "return_loss": True}
    if name == "caption":
        return {**text, "pixel_values": inp["pixel_values"], "labels": inp["labels"]}
    if name == "caption_no_labels":
        return {**text, "pixel_values": inp["pixel_values"]}
    if name == "vqa":
        answers = make_inputs(batch=batch, length=5, vocab=vocab, seed=7, lengths=[5, 2, 3][:batch])
        return {**text, "pixel_values": inp["pixel_values"],
                "decoder_input_ids": answers["input_ids"],
                "decoder_attention_mask": answers["attention_mask"],
                "labels": answers["labels"]}  # fmt: skip
    if name == "itm":
        return {**text, "pixel_values": inp["pixel_values"], "use_itm_head": True}
    if name == "itc":
        return {**text, "pixel_values": inp["pixel_values"], "use_itm_head": False}
    raise KeyError(name)


CASES = {
    "vision": "BlipVisionModel",
    "text_encoder": "BlipTextModel",
    "text_cross": "BlipTextModel",
    "text_decoder_mode": "BlipTextModel",
    "lm_head": "BlipTextLMHeadModel",
    "blip_model": "BlipModel",
    "caption": "BlipForConditionalGeneration",
    "caption_no_labels": "BlipForConditionalGeneration",
    "vqa": "BlipForQuestionAnswering",
    "itm": "BlipForImageTextRetrieval",
    "itc": "BlipForImageTextRetrieval",
}


def to_torch(kwargs: dict) -> dict:
    import torch

    return {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
