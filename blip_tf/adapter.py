"""The Keras/TensorFlow backend adapter (:class:`blip_core.adapter.Backend`)."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

import numpy as np
import tensorflow as tf
from keras import ops

from blip_tf.checkpoint import assign_state, canonical_shapes, get_weights_dict, no_init_weights
from blip_tf.generation import TFDecoderSession, project_cross_key_values


def l2_normalize(x, eps: float | None = None):
    """``x / ||x||`` over the last axis; with ``eps``, ``F.normalize``'s ``x / max(||x||, eps)``.
    The norm is taken in float32 under a bfloat16/float16 policy; the result has ``x``'s dtype."""
    x32 = ops.cast(x, "float32")
    norm = ops.sqrt(ops.sum(ops.square(x32), axis=-1, keepdims=True))
    return ops.cast(x32 / (ops.maximum(norm, eps) if eps is not None else norm), x.dtype)


class TFBackend:
    """:class:`blip_core.adapter.Backend` for ``blip_tf``."""

    name = "tf"

    # -- tensors --------------------------------------------------------------------------------
    @staticmethod
    def to_numpy(x) -> np.ndarray | None:
        if x is None:
            return None
        if isinstance(x, (tf.Tensor, tf.Variable)) and x.dtype in (tf.bfloat16, tf.float16):
            x = tf.cast(x, tf.float32)  # numpy has no bfloat16: widen (exactly) to float32
        return x.numpy() if hasattr(x, "numpy") else np.asarray(x)

    @staticmethod
    def from_numpy(array: np.ndarray, like=None) -> tf.Tensor:
        return tf.constant(array)

    @staticmethod
    def inference():
        return contextlib.nullcontext()

    @staticmethod
    def take(x, indices: np.ndarray) -> tf.Tensor:
        return tf.gather(x, np.asarray(indices))

    @staticmethod
    def model_class(name: str) -> type:
        import blip_tf

        try:
            return getattr(blip_tf, name)
        except AttributeError:
            raise ValueError(f"blip_tf has no model class {name!r}") from None

    # -- weights --------------------------------------------------------------------------------
    @staticmethod
    def build_empty(cls: type, config, **kwargs):
        with no_init_weights():  # every weight comes from the checkpoint: no random draws
            return cls(config, **kwargs)

    @staticmethod
    def expected_shapes(model) -> dict[str, tuple[int, ...]]:
        return canonical_shapes(model)

    @staticmethod
    def assign(model, state: Mapping[str, np.ndarray]) -> None:
        assign_state(model, state, release_pages=True)

    @staticmethod
    def canonical_state(model) -> dict[str, np.ndarray]:
        return get_weights_dict(model)

    # -- task operations ------------------------------------------------------------------------
    @staticmethod
    def image_states(model, pixel_values, interpolate_pos_encoding: bool) -> tf.Tensor:
        """Through XLA (the vision model's call, compiled)."""
        return model.vision_model.compiled_forward(pixel_values, interpolate_pos_encoding)[0]

    @staticmethod
    def encode_text(text_model, input_ids, attention_mask, encoder_states=None) -> tf.Tensor:
        encoder_mask = None
        if encoder_states is not None:
            encoder_mask = tf.ones(tf.shape(encoder_states)[:2], dtype=tf.int32)
        return text_model(
            input_ids=tf.convert_to_tensor(input_ids),
            attention_mask=None if attention_mask is None else tf.convert_to_tensor(attention_mask),
            encoder_hidden_states=encoder_states,
            encoder_attention_mask=encoder_mask,
            training=False,
        ).last_hidden_state

    @staticmethod
    def open_session(decoder, encoder_states, encoder_mask, expansion: int, capacity: int):
        return TFDecoderSession(decoder, encoder_states, encoder_mask, expansion, capacity)

    @staticmethod
    def sequence_log_probs(session, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return session.log_probs(ids, mask).numpy()

    @staticmethod
    def itc_image(model, image_states) -> tf.Tensor:
        return l2_normalize(model.vision_proj(image_states[:, 0, :]), eps=1e-12)

    @staticmethod
    def itc_text(model, input_ids, attention_mask) -> tf.Tensor:
        states = TFBackend.encode_text(model.text_encoder, input_ids, attention_mask)
        return l2_normalize(model.text_proj(states[:, 0, :]), eps=1e-12)

    @staticmethod
    def itm_probability(model, image_states, input_ids, attention_mask) -> np.ndarray:
        """The image's cross keys/values are projected once and broadcast over the texts."""
        image_states = tf.cast(tf.convert_to_tensor(image_states), model.text_encoder.compute_dtype)
        cross = project_cross_key_values(model.text_encoder, image_states)
        rows = int(np.shape(input_ids)[0])
        text = model.config.text_config
        heads = text.num_attention_heads
        empty = tf.zeros((rows, heads, 0, text.hidden_size // heads), image_states.dtype)
        past = tuple((empty, empty, k, v) for k, v in cross)
        states = model.text_encoder(
            input_ids=tf.convert_to_tensor(input_ids),
            attention_mask=None if attention_mask is None else tf.convert_to_tensor(attention_mask),
            encoder_attention_mask=tf.ones((rows, int(image_states.shape[1])), tf.int32),
            past_key_values=past,
            training=False,
        ).last_hidden_state
        logits = ops.cast(model.itm_head(states[:, 0, :]), "float32")
        return ops.convert_to_numpy(ops.softmax(logits, axis=-1)[:, 1])


BACKEND = TFBackend()

__all__ = ["BACKEND", "TFBackend"]
