"""The decode-time state that :meth:`blip_tf.text.BlipTextModel.call` runs over (``cache=``).

A :class:`SlotCache` holds, per text layer, a fixed-size self-attention cache (keys and values
``(N, heads, C, head_dim)``) and the cross-attention keys/values of the encoder states, computed
once per ``generate`` call, one row per image (``(B, heads, L, head_dim)``, ``N = B * E``).
Shapes never change from step to step, so XLA compiles the decoder once per shape:

* a call writes its ``T`` tokens at slots ``slot .. slot + T - 1`` (an exact one-hot
  placement: ``tf.where`` over the written slots, the others keep their bits);
* ``key_mask`` ``(N, C)`` marks the attended slots; padding and unwritten slots are masked like
  padding (``(1 - m) * -10000``: exactly zero weight after the softmax), and attention is
  causal in slot order;
* the cross keys may be laid out ``(B, heads, head_dim, L)`` (``cross_keys_transposed``), the
  layout XLA:CPU computes the scores from faster.

:meth:`SlotCache.bind` turns it into the per-call views the layers take: a :class:`SelfSlots`
per self-attention layer, a :class:`SharedKeyValues` per cross-attention layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import tensorflow as tf

from blip_tf.attention import slot_attention_mask


# Plain (frozen dataclass) records, not NamedTuples: Keras walks tuples in call arguments and
# refuses ones that mix tensors and Python values; a dataclass reaches the layer as one object.
@dataclass(frozen=True)
class SelfSlots:
    """One self-attention layer's slot cache for one call (see :meth:`write`)."""

    key: Any  # (N, heads, C, head_dim)
    value: Any  # (N, heads, C, head_dim)
    place: Any  # (T, C) one-hot: token t goes to slot slot + t
    written: Any  # (C, 1) bool: the slots this call writes
    rows: Any  # N

    def write(self, key, value):
        """The cache with the new ``key/value`` ``(N, heads, T, head_dim)`` in their slots."""
        key = tf.where(self.written, tf.einsum("nhtd,tc->nhcd", key, self.place), self.key)
        value = tf.where(self.written, tf.einsum("nhtd,tc->nhcd", value, self.place), self.value)
        return key, value


@dataclass(frozen=True)
class SharedKeyValues:
    """One cross-attention layer's keys/values, one row per encoder row (never per beam)."""

    key: Any  # (B, heads, L, head_dim), or (B, heads, head_dim, L) when key_transposed
    value: Any  # (B, heads, L, head_dim)
    rows: Any  # N = B * E query rows; row b * E + j attends to encoder row b
    key_transposed: bool


@dataclass(frozen=True)
class SlotCache:
    """Inputs of one decoding call (prefill or step) of :class:`blip_tf.text.BlipTextModel`.

    ``keys``/``values``: per layer ``(N, heads, C, head_dim)``; ``slot``: int32 scalar, the
    first slot this call writes; ``key_mask`` ``(N, C)``: 1 on the slots attended after this
    call (padding and unwritten slots 0); ``cross_keys``/``cross_values``: per layer
    ``(B, heads, L, head_dim)`` (keys ``(B, heads, head_dim, L)`` when
    ``cross_keys_transposed``); ``cross_bias`` ``(B, 1, 1, L)`` additive (zeros to attend all).
    """

    keys: Sequence[Any]
    values: Sequence[Any]
    slot: Any
    key_mask: Any
    cross_keys: Sequence[Any]
    cross_values: Sequence[Any]
    cross_bias: Any
    cross_keys_transposed: bool = False

    def bind(self, rows, length, dtype: str) -> BoundSlotCache:
        """The per-layer views for a call of ``rows`` x ``length`` new tokens."""
        capacity = tf.shape(self.key_mask)[1]
        query_slots = self.slot + tf.range(length)  # (T,)
        hit = tf.range(capacity)[None, :] == query_slots[:, None]  # (T, C)
        return BoundSlotCache(
            self,
            rows,
            self_mask=slot_attention_mask(self.key_mask, query_slots, dtype),
            place=tf.cast(hit, dtype),
            written=tf.reduce_any(hit, axis=0)[:, None],
        )


class BoundSlotCache:
    """A :class:`SlotCache` bound to one call: the slot mask ``(N, 1, T, C)`` shared by every
    self-attention layer, the cross mask, and :meth:`layer` views."""

    def __init__(self, cache: SlotCache, rows, self_mask, place, written):
        self.cache = cache
        self.rows = rows
        self.self_mask = self_mask
        self.cross_mask = cache.cross_bias
        self.place = place
        self.written = written

    def layer(self, index: int) -> tuple[SelfSlots, SharedKeyValues]:
        cache = self.cache
        return (
            SelfSlots(cache.keys[index], cache.values[index], self.place, self.written, self.rows),
            SharedKeyValues(
                cache.cross_keys[index],
                cache.cross_values[index],
                self.rows,
                cache.cross_keys_transposed,
            ),
        )


__all__ = ["BoundSlotCache", "SelfSlots", "SharedKeyValues", "SlotCache"]
