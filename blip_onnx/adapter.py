"""The ONNX Runtime backend adapter (:class:`blip_core.adapter.Backend`): numpy tensors, graphs.

Tensors are numpy arrays.  The weights live inside the exported graphs, so the weight operations
of the protocol (``build_empty``, ``assign``, ...) raise: an ONNX model is loaded with
``from_pretrained(OUT_DIR)`` from ``blip export`` output.
"""

from __future__ import annotations

import contextlib

import numpy as np

from blip_onnx.generation import OrtDecoderSession


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)


def _mask(mask, ids: np.ndarray) -> np.ndarray:
    if mask is None:
        return np.ones(ids.shape, dtype=np.int64)
    return np.asarray(mask, dtype=np.int64).reshape(ids.shape)


class OnnxBackend:
    """:class:`blip_core.adapter.Backend` for ``blip_onnx``."""

    name = "onnx"

    # -- tensors --------------------------------------------------------------------------------
    @staticmethod
    def to_numpy(x) -> np.ndarray | None:
        return None if x is None else np.asarray(x)

    @staticmethod
    def from_numpy(array: np.ndarray, like=None) -> np.ndarray:
        return np.ascontiguousarray(array)

    @staticmethod
    def inference():
        return contextlib.nullcontext()

    @staticmethod
    def take(x, indices: np.ndarray) -> np.ndarray:
        return np.asarray(x)[np.asarray(indices)]

    @staticmethod
    def model_class(name: str) -> type:
        import blip_onnx

        try:
            return getattr(blip_onnx, name)
        except AttributeError:
            raise ValueError(f"blip_onnx has no model class {name!r}") from None

    # -- weights (fixed inside the graphs) ------------------------------------------------------
    @staticmethod
    def _no_weights(*args, **kwargs):
        raise NotImplementedError(
            "blip_onnx models hold their weights inside the exported graphs; build one with "
            "from_pretrained(OUT_DIR) from 'blip export MODEL_DIR OUT_DIR --format onnx'"
        )

    build_empty = expected_shapes = assign = canonical_state = _no_weights

    # -- task operations ------------------------------------------------------------------------
    @staticmethod
    def image_states(model, pixel_values, interpolate_pos_encoding: bool) -> np.ndarray:
        if interpolate_pos_encoding:
            raise ValueError(
                "interpolate_pos_encoding=True is not available in blip_onnx: the exported "
                f"vision graph holds the position table of image_size="
                f"{model.config.vision_config.image_size}; resize the images to that size"
            )
        pixels = np.asarray(pixel_values, dtype=np.float32)
        return model.vision_model.run({"pixel_values": pixels})["last_hidden_state"]

    @staticmethod
    def encode_text(text_model, input_ids, attention_mask, encoder_states=None) -> np.ndarray:
        ids = np.asarray(input_ids, dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": _mask(attention_mask, ids)}
        if encoder_states is None:
            return text_model.unimodal.run(feeds)["last_hidden_state"]
        feeds["encoder_hidden_states"] = encoder_states
        return text_model.grounded.run(feeds)["last_hidden_state"]

    @staticmethod
    def open_session(decoder, encoder_states, encoder_mask, expansion: int, capacity: int):
        return OrtDecoderSession(decoder, encoder_states, encoder_mask, expansion)

    @staticmethod
    def sequence_log_probs(session, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return session.log_probs(ids, mask)

    @staticmethod
    def itc_image(model, image_states) -> np.ndarray:
        return model.graphs["image_embeds"].run({"image_states": image_states})["image_embeds"]

    @staticmethod
    def itc_text(model, input_ids, attention_mask) -> np.ndarray:
        ids = np.asarray(input_ids, dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": _mask(attention_mask, ids)}
        return model.text_encoder.unimodal.run(feeds)["text_embeds"]

    @staticmethod
    def itm_probability(model, image_states, input_ids, attention_mask) -> np.ndarray:
        """One image ``(1, L, D)`` against ``P`` texts is broadcast to ``P`` rows."""
        ids = np.asarray(input_ids, dtype=np.int64)
        states = np.asarray(image_states, dtype=np.float32)
        if states.shape[0] != ids.shape[0]:
            states = np.broadcast_to(states, (ids.shape[0], *states.shape[1:]))
        text = OnnxBackend.encode_text(model.text_encoder, ids, attention_mask, states)
        logits = model.graphs["itm_head"].run({"cls_states": text[:, 0, :]})["logits"]
        return _softmax(logits.astype(np.float32))[:, 1]


BACKEND = OnnxBackend()

__all__ = ["BACKEND", "OnnxBackend"]
