"""A fixed-size key/value cache for decoding: static shapes at every step.

Each decoder layer owns preallocated self-attention buffers ``(N, heads, C, head_dim)`` (``C``
slots, zero-filled); a forward writes its ``T`` new keys/values into the slots ``slots`` (``(T,)``
long) with ``index_copy_`` and attends all ``C`` slots under a key mask ``(N, C)`` (unwritten and
padding slots 0).  Shapes never change between steps, so a step can be compiled once
(``torch.compile``, CUDA graphs) or exported with fixed shapes.  The cross-attention keys/values
(projected once per ``generate``) ride along unchanged.

Masked slots get the additive ``-10000`` of BERT's mask, so their softmax weight underflows to
exactly 0 (float32 accumulation): the attended values equal those of the growing-concat cache
up to summation order (on the fixtures within 2e-6).  One difference, invisible in the outputs:
a padding query (mask 0) sees no key, so its own (never attended) state is a uniform average
over every masked key -- C slots here, T keys in the concat cache.  The old concat
``past_key_values`` tuples keep working everywhere.
"""

from __future__ import annotations

from typing import NamedTuple

import torch


def empty_self_kv(cross_key: torch.Tensor, rows: int) -> torch.Tensor:
    """A zero-length self-attention key/value ``(rows, heads, 0, head_dim)`` beside the
    cross-attention keys ``cross_key`` (one copy per image, so possibly fewer rows)."""
    return cross_key.new_zeros((rows, cross_key.shape[1], 0, cross_key.shape[3]))


class SelfSlots(NamedTuple):
    """One layer's self-attention slot buffers and where this forward writes."""

    key: torch.Tensor  # (N, heads, C, head_dim)
    value: torch.Tensor  # (N, heads, C, head_dim)
    slots: torch.Tensor  # (T,) long: the slot of each new token


class SlotCache:
    """Self-attention slot buffers for every layer, plus the shared cross-attention keys/values.

    Pass it as ``past_key_values`` to :class:`blip_torch.text.BlipTextModel` with
    ``attention_mask`` ``(N, C)`` (the key mask over slots, the new tokens' slots included) and
    explicit ``position_ids``; set :attr:`slots` first (:meth:`at`).
    """

    def __init__(
        self,
        keys: list[torch.Tensor],
        values: list[torch.Tensor],
        cross: list[tuple[torch.Tensor, torch.Tensor]] | None,
        slots: torch.Tensor | None = None,
    ):
        self.keys, self.values, self.cross, self.slots = keys, values, cross, slots

    @classmethod
    def allocate(cls, rows: int, capacity: int, heads: int, head_dim: int, layers: int,
                 like: torch.Tensor, cross=None) -> SlotCache:  # fmt: skip
        """Zero-filled buffers ``(rows, heads, capacity, head_dim)`` of ``like``'s dtype/device."""
        shape = (rows, heads, capacity, head_dim)
        keys = [like.new_zeros(shape) for _ in range(layers)]
        values = [like.new_zeros(shape) for _ in range(layers)]
        return cls(keys, values, cross)

    @property
    def capacity(self) -> int:
        return self.keys[0].shape[2]

    def at(self, slots: torch.Tensor) -> SlotCache:
        """This cache, writing its next forward's tokens into ``slots``."""
        self.slots = slots
        return self

    def layer_caches(self) -> tuple:
        """Per-layer ``(SelfSlots, None, cross_key, cross_value)`` tuples for the text layers."""
        if self.slots is None:
            raise ValueError("SlotCache.slots is not set: call cache.at(slots) first")
        cross = self.cross or [(None, None)] * len(self.keys)
        return tuple(
            (SelfSlots(k, v, self.slots), None, ck, cv)
            for k, v, (ck, cv) in zip(self.keys, self.values, cross)
        )

    def grow(self, capacity: int) -> None:
        """Enlarge every buffer to ``capacity`` slots (new slots zero); shapes change, so a
        compiled step recompiles once."""
        extra = capacity - self.capacity
        if extra > 0:
            pad = (0, 0, 0, extra)  # the slot axis: dim 2 of (N, heads, C, head_dim)
            self.keys = [torch.nn.functional.pad(k, pad) for k in self.keys]
            self.values = [torch.nn.functional.pad(v, pad) for v in self.values]

    def reorder(self, index: torch.Tensor) -> None:
        """Row ``i`` becomes old row ``index[i]`` (beam search), in place: buffers keep their
        storage, so compiled / graph-captured steps stay valid."""
        for buffer in (*self.keys, *self.values):
            buffer.copy_(buffer.index_select(0, index))


__all__ = ["SelfSlots", "SlotCache"]
