"""The text model's attention (Keras 3): masks, the attention product, the attention layers.

One scores -> softmax -> context computation (:func:`attend`) serves every mode of
:class:`BlipTextSelfAttention`:

* the ordinary forward (training, scoring, the transformers-style ``past_key_value`` concat);
* decoding over a fixed-size slot cache (``cache=`` a :class:`blip_tf.cache.SelfSlots` for
  self-attention: the new keys/values are written into their slots, then all ``C`` slots are
  attended under the slot mask);
* decoding against per-image cross-attention keys/values (``cache=`` a
  :class:`blip_tf.cache.SharedKeyValues`): the ``E`` rows (beams, samples) of an image attend
  that image's keys/values as one matrix product (:func:`attend_grouped`), never copied per row.

In the cache modes ``hidden_states`` is 2-D ``(N * T, D)`` (every dense is then one plain
matrix product under XLA) and the layer returns 2-D context.
"""

from __future__ import annotations

import math

import keras
from keras import ops

from blip_core.config import BlipTextConfig
from blip_core.constants import CROSS_ATTENTION_MASK_VALUE_FP32, SELF_ATTENTION_MASK_VALUE
from blip_tf.checkpoint import dense, layer_norm


def self_attention_mask(attention_mask, query_length: int, is_decoder: bool, dtype: str):
    """Additive mask ``(B, 1, Tq, Tk)`` (or ``(B, 1, 1, Tk)``): BERT's ``(1 - m) * -10000``.

    ``attention_mask`` is ``(B, Tk)`` over past + current tokens (1 = attend).  In decoder mode a
    query at position ``past + i`` sees keys ``0 .. past + i``.
    """
    attention_mask = ops.cast(attention_mask, dtype)
    if len(attention_mask.shape) == 3:
        mask = attention_mask[:, None, :, :]
    elif is_decoder:
        key_length = ops.shape(attention_mask)[1]
        past = key_length - query_length
        q_pos = ops.arange(query_length)[:, None] + past
        k_pos = ops.arange(key_length)[None, :]
        causal = ops.cast(k_pos <= q_pos, dtype)  # (Tq, Tk)
        mask = causal[None, None] * attention_mask[:, None, None, :]
    else:
        mask = attention_mask[:, None, None, :]
    return (1.0 - mask) * SELF_ATTENTION_MASK_VALUE


def slot_attention_mask(key_mask, query_slots, dtype: str):
    """Additive mask ``(N, 1, T, C)`` over a slot cache: the same ``(1 - m) * -10000`` as
    :func:`self_attention_mask`, causal in slot order.

    ``key_mask`` ``(N, C)`` marks the attended slots (padding and unwritten slots 0: exactly zero
    weight); ``query_slots`` ``(T,)`` int32 are the slots of the queries, which see the slots
    ``0 .. query_slot``.
    """
    slots = ops.arange(ops.shape(key_mask)[1], dtype="int32")
    causal = ops.cast(slots[None, :] <= query_slots[:, None], dtype)  # (T, C)
    visible = ops.cast(key_mask, dtype)[:, None, None, :] * causal[None, None]
    return (1.0 - visible) * SELF_ATTENTION_MASK_VALUE


def cross_attention_mask(encoder_attention_mask, dtype: str):
    """Additive ``(B, 1, 1, Tk)`` mask ``(1 - m) * finfo(dtype).min`` (transformers'
    ``invert_attention_mask``)."""
    if dtype == "float32":
        fill = CROSS_ATTENTION_MASK_VALUE_FP32
    else:  # mixed precision: float16 / bfloat16 (ml_dtypes, a Keras dependency, knows both)
        import ml_dtypes

        fill = float(ml_dtypes.finfo(dtype).min)
    mask = ops.cast(encoder_attention_mask, dtype)
    if len(mask.shape) == 3:
        mask = mask[:, None, :, :]
    else:
        mask = mask[:, None, None, :]
    return (1.0 - mask) * fill


def softmax(scores):
    """Softmax over keys; a single key (the first decoding step) gives exactly 1 without
    tripping Keras' size-1 softmax warning (``exp(x - x)`` keeps nan/inf propagation)."""
    if scores.shape[-1] == 1:
        return ops.exp(scores - scores)
    return ops.softmax(scores, axis=-1)


def attend(
    query, key, value, mask, head_size: int, dropout=None, training=None, key_transposed=False
):
    """``softmax(q k^T / sqrt(head_size) + mask) v``: context ``(..., Tq, d)`` and the
    probabilities ``(..., Tq, Tk)``.

    ``query`` ``(..., Tq, d)``; ``key`` ``(..., Tk, d)``, or ``(..., d, Tk)`` when
    ``key_transposed`` (XLA:CPU computes the scores faster from that layout); ``value``
    ``(..., Tk, d)``; ``mask`` additive, broadcast against the scores, or None.  The scores
    are scaled, masked and normalised in float32; the probabilities are returned in the
    dtype of ``value``.
    """
    scores = ops.matmul(query, key if key_transposed else ops.swapaxes(key, -1, -2))
    # scale, mask and softmax in float32 under a bfloat16/float16 policy (no-ops in float32)
    scores = ops.cast(scores, "float32") / math.sqrt(head_size)
    if mask is not None:
        scores = scores + ops.cast(mask, "float32")
    probs = ops.cast(softmax(scores), value.dtype)
    attended = dropout(probs, training=training) if dropout is not None else probs
    return ops.matmul(attended, value), probs


def attend_grouped(query, key, value, mask, head_size: int, key_transposed: bool = False):
    """:func:`attend` for ``N = B * E`` query rows against ``B`` rows of keys/values.

    ``query`` ``(N, H, T, d)`` (row ``b * E + j`` belongs to key row ``b``); ``key/value``
    ``(B, H, L, d)`` (key ``(B, H, d, L)`` when ``key_transposed``); ``mask`` ``(B, 1, 1, L)``.
    The ``E`` rows of a key row are attended as one ``(E * T)``-query matrix product, so each
    image's keys/values are read once per step, not once per beam.  Returns the context with
    the heads merged, ``(N * T, H * d)``.
    """
    shape = ops.shape(query)
    rows, heads, length, depth = shape[0], shape[1], shape[2], shape[3]
    groups = ops.shape(value)[0]
    per_group = rows // groups
    q = ops.reshape(query, (groups, per_group, heads, length, depth))
    q = ops.reshape(ops.transpose(q, (0, 2, 1, 3, 4)), (groups, heads, per_group * length, depth))
    context, _ = attend(q, key, value, mask, head_size, key_transposed=key_transposed)
    context = ops.reshape(context, (groups, heads, per_group, length, depth))
    # one transpose straight to (N, T, H, d): the rows and the heads merged at once
    return ops.reshape(ops.transpose(context, (0, 2, 3, 1, 4)), (rows * length, heads * depth))


class BlipTextSelfAttention(keras.layers.Layer):
    """Multi-head attention over the layer's own tokens, or (``is_cross_attention``) over
    encoder states; see the module docstring for the three modes."""

    def __init__(self, config: BlipTextConfig, is_cross_attention: bool, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size = config.hidden_size
        self.num_attention_heads = config.num_attention_heads
        self.attention_head_size = config.hidden_size // config.num_attention_heads
        self.all_head_size = config.hidden_size
        self.kv_width = config.encoder_hidden_size if is_cross_attention else config.hidden_size
        self.is_cross_attention = is_cross_attention
        std = config.initializer_range
        self.query = dense(self.all_head_size, std, "query")
        self.key = dense(self.all_head_size, std, "key")
        self.value = dense(self.all_head_size, std, "value")
        self.dropout = keras.layers.Dropout(config.attention_probs_dropout_prob, name="dropout")

    def build(self, input_shape=None):
        self.query.build((None, None, self.hidden_size))
        self.key.build((None, None, self.kv_width))
        self.value.build((None, None, self.kv_width))

    def _heads(self, x, rows=None):
        """``(B, T, D)`` (or ``(rows * T, D)``) -> ``(B, heads, T, head_dim)``."""
        rows = ops.shape(x)[0] if rows is None else rows
        x = ops.reshape(x, (rows, -1, self.num_attention_heads, self.attention_head_size))
        return ops.transpose(x, (0, 2, 1, 3))

    def project_key_value(self, states):
        """Keys and values ``(B, heads, T, head_dim)`` for ``states`` ``(B, T, D_kv)``."""
        return self._heads(self.key(states)), self._heads(self.value(states))

    def call(
        self,
        hidden_states,
        attention_mask=None,
        encoder_hidden_states=None,
        past_key_value=None,
        output_attentions: bool = False,
        training=None,
        cache=None,
    ):
        """Returns ``(context, probs or None, (key, value))``.

        Ordinary mode: ``hidden_states`` ``(B, T, D)``, context ``(B, T, D)``; ``past_key_value``
        is concatenated before the new self-attention keys/values, or (cross-attention) used
        instead of projecting ``encoder_hidden_states``.  With ``cache`` (decoding):
        ``hidden_states`` ``(N * T, D)``, context ``(N * T, D)``, ``attention_mask`` the slot
        mask ``(N, 1, T, C)`` or the cross mask ``(B, 1, 1, L)``, and ``(key, value)`` the
        updated slot cache (self-attention) or the shared keys/values (cross-attention).
        """
        if cache is not None:
            return self._call_cached(hidden_states, attention_mask, cache, training)
        query = self._heads(self.query(hidden_states))
        if self.is_cross_attention:
            if past_key_value is not None:  # computed once per generate call
                key, value = past_key_value
            else:
                key, value = self.project_key_value(encoder_hidden_states)
        else:
            key, value = self.project_key_value(hidden_states)
            if past_key_value is not None:
                key = ops.concatenate([past_key_value[0], key], axis=2)
                value = ops.concatenate([past_key_value[1], value], axis=2)
        context, probs = attend(
            query, key, value, attention_mask, self.attention_head_size, self.dropout, training
        )
        batch = ops.shape(context)[0]
        context = ops.reshape(ops.transpose(context, (0, 2, 1, 3)), (batch, -1, self.all_head_size))
        return context, (probs if output_attentions else None), (key, value)

    def _call_cached(self, hidden_states, attention_mask, cache, training):
        query = self._heads(self.query(hidden_states), cache.rows)  # (N, H, T, d)
        if self.is_cross_attention:
            context = attend_grouped(
                query,
                cache.key,
                cache.value,
                attention_mask,
                self.attention_head_size,
                key_transposed=cache.key_transposed,
            )
            return context, None, (cache.key, cache.value)
        key, value = cache.write(
            self._heads(self.key(hidden_states), cache.rows),
            self._heads(self.value(hidden_states), cache.rows),
        )
        context, _ = attend(
            query, key, value, attention_mask, self.attention_head_size, self.dropout, training
        )
        context = ops.reshape(ops.transpose(context, (0, 2, 1, 3)), (-1, self.all_head_size))
        return context, None, (key, value)


class BlipTextSelfOutput(keras.layers.Layer):
    def __init__(self, config: BlipTextConfig, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size = config.hidden_size
        self.dense = dense(config.hidden_size, config.initializer_range, "dense")
        self.LayerNorm = layer_norm(config.layer_norm_eps, "LayerNorm")
        self.dropout = keras.layers.Dropout(config.hidden_dropout_prob, name="dropout")

    def build(self, input_shape=None):
        self.dense.build((None, None, self.hidden_size))
        self.LayerNorm.build((None, None, self.hidden_size))

    def call(self, hidden_states, input_tensor, training=None):
        return self.LayerNorm(
            self.dropout(self.dense(hidden_states), training=training) + input_tensor
        )


class BlipTextAttention(keras.layers.Layer):
    def __init__(self, config: BlipTextConfig, is_cross_attention: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.self = BlipTextSelfAttention(config, is_cross_attention, name="self")
        self.self_output = BlipTextSelfOutput(config, name="output")

    def build(self, input_shape=None):
        self.self.build()
        self.self_output.build()

    def call(
        self,
        hidden_states,
        attention_mask=None,
        encoder_hidden_states=None,
        past_key_value=None,
        output_attentions: bool = False,
        training=None,
        cache=None,
    ):
        context, probs, present = self.self(
            hidden_states,
            attention_mask=attention_mask,
            encoder_hidden_states=encoder_hidden_states,
            past_key_value=past_key_value,
            output_attentions=output_attentions,
            training=training,
            cache=cache,
        )
        return self.self_output(context, hidden_states, training=training), probs, present


__all__ = [
    "BlipTextAttention",
    "BlipTextSelfAttention",
    "BlipTextSelfOutput",
    "attend",
    "attend_grouped",
    "cross_attention_mask",
    "self_attention_mask",
    "slot_attention_mask",
    "softmax",
]
