"""Decoding for the PyTorch backend: a KV-cached decoder session for blip_core's search loops.

Cross-attention keys/values over the encoder states (image or question) are projected once per
``generate`` call and shared by every step; beams reuse them through an index, never re-projecting.

The self-attention cache is a fixed-size :class:`blip_torch.cache.SlotCache` of ``capacity``
slots (the longest sequence the search will ask for): each step writes one slot and has the
same shapes as the last, so it can run compiled (:func:`compile_decoder`).  Without a capacity
the session grows a concat cache instead (the transformers-style ``past_key_values``).

Logits leave the session as float32 numpy (converted on the device from the model dtype).
Optional fast paths keep the vocabulary on the device (see
:class:`blip_core.generation.DecoderSession`): greedy search takes the argmax of exactly those
float32 logits there (``torch.argmax`` and ``np.argmax`` both pick the first maximal index), so
only ``N`` ids cross to the host; beam search takes each row's top ``k`` log-probabilities
(log-softmax in float32 on the device: the same values as the host's within float32 rounding).
The minimum-length processor's eos suppression is applied on the device; under a repetition
penalty or when sampling the search asks for full logits.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.utils._python_dispatch import is_traceable_wrapper_subclass

from blip_torch.cache import SlotCache, empty_self_kv
from blip_torch.text import BlipTextLMHeadModel
from blip_torch.text_attention import fuse_projections

_COMPILED_STEP = "_blip_compiled_step"  # attribute compile_decoder sets on the decoder
_COMPILED_CAPACITY_MULTIPLE = 16  # compiled steps: fewer distinct shapes -> fewer recompiles


def decode_step(decoder, ids, key_mask, positions, slots, keys, values, cross_keys,
                cross_values, encoder_mask) -> torch.Tensor:  # fmt: skip
    """One slot-cache forward of ``decoder``: writes ``ids`` ``(N, T)`` into ``slots`` ``(T,)``
    and returns the last position's float32 logits ``(N, V)``.  Plain tensors and lists in,
    one tensor out, so ``torch.compile`` sees static shapes."""
    cache = SlotCache(keys, values, list(zip(cross_keys, cross_values)), slots)
    out = decoder.bert(
        input_ids=ids,
        attention_mask=key_mask,
        position_ids=positions,
        encoder_attention_mask=encoder_mask,
        past_key_values=cache,
        is_decoder=True,
    )
    return decoder.cls(out.last_hidden_state[:, -1, :]).float()


def compile_decoder(model: torch.nn.Module, mode: str | None = None, **options) -> torch.nn.Module:
    """Opt in to a ``torch.compile``-d decode step for ``model``'s text decoder (in place);
    returns ``model``.

    Every later ``generate`` (greedy, sampling, beam) runs its one-token steps through the
    compiled :func:`decode_step` over the fixed-size slot cache; prefill and sequence scoring
    stay eager.  The first step per ``(rows, capacity)`` shape compiles (seconds); capacities
    are rounded up to a multiple of 16 to reuse compiled shapes.  ``mode``: ``torch.compile``'s
    mode (``"reduce-overhead"`` for CUDA graphs on a GPU); ``options`` go to ``torch.compile``.
    Tokens match the eager step's up to float rounding of the compiled kernels.

    The compiled step skips dynamo's per-call guards on the decoder's modules (they cost
    1.7 ms of a 13 ms int8 step, 0.6 ms of a bf16 one, with ~200 weight tensors to check);
    instead each ``generate`` compares the decoder's weights (storage, dtype, device) and
    training flags with those the step was compiled for, and compiles afresh if a ``.to()``,
    a quantization or an assignment replaced them.  With inductor's ``freezing`` on (set by
    :func:`blip_torch.compile_vision`) weights are constants of the compiled graph: an
    in-place change after the first step is not seen.
    """
    decoder = (
        model if isinstance(model, BlipTextLMHeadModel) else getattr(model, "text_decoder", None)
    )
    if not isinstance(decoder, BlipTextLMHeadModel):
        raise TypeError(f"{type(model).__name__} has no BLIP text decoder to compile")
    fuse_projections(decoder.bert)
    settings = dict(options.pop("options", None) or {})
    if mode is not None:  # torch.compile takes a mode or options, not both: the mode's options
        from torch._inductor import list_mode_options

        settings = {**list_mode_options(mode), **settings}
    settings.setdefault("guard_filter_fn", torch.compiler.skip_guard_on_all_nn_modules_unsafe)

    def make() -> Callable:
        return torch.compile(decode_step, dynamic=False, options=settings, **options)

    entry = (make(), _weights_signature(decoder), make)
    object.__setattr__(decoder, _COMPILED_STEP, entry)  # not a submodule: keys unchanged
    return model


def _address(t: torch.Tensor) -> Any:
    """Where ``t``'s data lives: its data pointer, or its inner tensors' for a wrapper
    subclass (torchao's int8 tensors)."""
    if is_traceable_wrapper_subclass(t):
        names, _ = t.__tensor_flatten__()
        return tuple(_address(getattr(t, name)) for name in names)
    return t.data_ptr()


def _weights_signature(decoder: torch.nn.Module) -> tuple:
    """The decoder's weights as a compiled step assumes them (see :func:`compile_decoder`)."""
    tensors = itertools.chain(decoder.parameters(), decoder.buffers())
    return (
        tuple((t.dtype, t.device, type(t), _address(t)) for t in tensors),
        tuple(m.training for m in decoder.modules()),
    )


def _compiled_step(decoder: BlipTextLMHeadModel) -> Callable | None:
    """The decoder's compiled step, compiled afresh if its weights changed since."""
    entry = getattr(decoder, _COMPILED_STEP, None)
    if entry is None:
        return None
    compiled, signature, make = entry
    now = _weights_signature(decoder)
    if now != signature:
        compiled = make()
        object.__setattr__(decoder, _COMPILED_STEP, (compiled, now, make))
    return compiled


class TorchDecoderSession:
    """A :class:`blip_core.generation.DecoderSession` over a :class:`BlipTextLMHeadModel`.

    ``capacity``: the most tokens (prompt + generated) a row will hold; a fixed-size slot cache
    of that many slots is used (enlarged, once per overflow, if the search goes past it: left-
    aligned prompts of mixed lengths need the longest prompt's width plus the most new tokens).  ``None``: a concat cache that grows by one position per step.
    """

    def __init__(
        self,
        decoder: BlipTextLMHeadModel,
        encoder_hidden_states: torch.Tensor,
        encoder_attention_mask: torch.Tensor | None,
        expansion: int,
        capacity: int | None = None,
    ):
        self.decoder = decoder
        self.device = encoder_hidden_states.device
        fuse_projections(decoder.bert)  # one product for q/k/v per layer (no-op once fused)
        layers = decoder.bert.encoder.layer
        # (B, heads, N, head_dim) per layer, computed once and not expanded: the ``expansion``
        # rows of each image (beams, samples) are consecutive and reordered only among
        # themselves, so cross-attention reads each image's keys/values once for all of them.
        self.rows = encoder_hidden_states.shape[0] * expansion
        self.cross = list(decoder.bert.cross_key_values(encoder_hidden_states))
        if encoder_attention_mask is None:
            encoder_attention_mask = torch.ones(
                encoder_hidden_states.shape[:2], dtype=torch.long, device=self.device
            )
        self.encoder_attention_mask = encoder_attention_mask
        self.self_cache: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        self.last: torch.Tensor | None = None  # the logits of the last fast-path call
        self.compiled = _compiled_step(decoder)
        self.cache: SlotCache | None = None
        if capacity is not None:
            if self.compiled is not None:
                step = _COMPILED_CAPACITY_MULTIPLE
                capacity = -(-capacity // step) * step
            k = self.cross[0][0]
            config = decoder.config
            self.cache = SlotCache.allocate(
                self.rows, capacity, config.num_attention_heads,
                config.hidden_size // config.num_attention_heads, len(layers), k,
                cross=self.cross,
            )  # fmt: skip

    def _tensor(self, a: np.ndarray) -> torch.Tensor:
        # A fresh C-order copy: a column like ids[:, None] has stride 0 on its size-1 axis,
        # which a compiled step would take for a new input layout and compile again.
        return torch.from_numpy(np.array(a, order="C")).to(self.device)

    def _slot_mask(self, mask: np.ndarray) -> torch.Tensor:
        rows, width = mask.shape
        if width > self.cache.capacity:  # a capacity too small for the search: grow, once
            step = _COMPILED_CAPACITY_MULTIPLE
            self.cache.grow(max(-(-width // step) * step, 2 * self.cache.capacity))
        padded = np.zeros((rows, self.cache.capacity), dtype=np.int64)
        padded[:, :width] = mask
        return self._tensor(padded)

    def _logits(self, ids: np.ndarray, mask: np.ndarray, positions: np.ndarray) -> torch.Tensor:
        """Float32 next-token logits ``(N, V)`` on the device."""
        if self.cache is not None:
            length, width = ids.shape[1], mask.shape[1]
            slots = torch.arange(width - length, width, device=self.device)
            one_step = length == 1 and self.compiled is not None
            run = self.compiled if one_step else decode_step
            return run(
                self.decoder, self._tensor(ids), self._slot_mask(mask), self._tensor(positions),
                slots, self.cache.keys, self.cache.values, [k for k, _ in self.cross],
                [v for _, v in self.cross], self.encoder_attention_mask,
            )  # fmt: skip
        if self.self_cache is None:  # first call: an empty self-attention cache
            empty = empty_self_kv(self.cross[0][0], self.rows)
            self.self_cache = [(empty, empty)] * len(self.cross)
        past = tuple((sk, sv, ck, cv) for (sk, sv), (ck, cv) in zip(self.self_cache, self.cross))
        out = self.decoder.bert(
            input_ids=self._tensor(ids),
            attention_mask=self._tensor(mask),
            position_ids=self._tensor(positions),
            encoder_attention_mask=self.encoder_attention_mask,
            past_key_values=past,
            use_cache=True,
            is_decoder=True,
        )
        self.self_cache = [(layer[0], layer[1]) for layer in out.past_key_values]
        return self.decoder.cls(out.last_hidden_state[:, -1, :]).float()

    @torch.no_grad()
    def log_probs(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> torch.Tensor:
        """Next-token log-probabilities ``(N, T, V)`` for whole (right-padded) sequences."""
        empty = empty_self_kv(self.cross[0][0], self.rows)
        past = tuple((empty, empty, ck, cv) for ck, cv in self.cross)
        out = self.decoder.bert(
            input_ids=self._tensor(input_ids),
            attention_mask=self._tensor(attention_mask),
            encoder_attention_mask=self.encoder_attention_mask,
            past_key_values=past,
            is_decoder=True,
        )
        return torch.log_softmax(self.decoder.cls(out.last_hidden_state).float(), dim=-1)

    @torch.no_grad()
    def prefill(self, input_ids, attention_mask, position_ids) -> np.ndarray:
        return self._logits(input_ids, attention_mask, position_ids).cpu().numpy()

    @torch.no_grad()
    def step(self, token_ids, attention_mask, position_ids) -> np.ndarray:
        logits = self._logits(token_ids[:, None], attention_mask, position_ids[:, None])
        return logits.cpu().numpy()

    def _suppressed(self, scores: torch.Tensor, suppress, suppress_ids) -> torch.Tensor:
        """``scores`` ``(N, V)``, or a copy with ``suppress_ids`` at -inf in the rows
        ``suppress`` marks (``scores`` itself is left as it is)."""
        if suppress is None or not len(suppress_ids) or not np.any(suppress):
            return scores
        rows = self._tensor(np.flatnonzero(suppress))[:, None]
        columns = self._tensor(np.asarray(suppress_ids, dtype=np.int64))[None, :]
        return scores.index_put((rows, columns), scores.new_tensor(float("-inf")))

    def _argmax(self, logits, suppress, suppress_ids) -> np.ndarray:
        self.last = logits
        return self._suppressed(logits, suppress, suppress_ids).argmax(-1).cpu().numpy()

    def _topk(self, logits, k, suppress, suppress_ids) -> tuple[np.ndarray, np.ndarray]:
        self.last = logits
        log_probs = self._suppressed(torch.log_softmax(logits, dim=-1), suppress, suppress_ids)
        values, ids = torch.topk(log_probs, min(k, log_probs.shape[-1]), dim=-1)
        return values.cpu().numpy(), ids.cpu().numpy()

    @torch.no_grad()
    def prefill_tokens(self, input_ids, attention_mask, position_ids, suppress=None,
                       suppress_ids=()) -> np.ndarray:  # fmt: skip
        """The argmax ids ``(N,)`` of :meth:`prefill`'s logits (``suppress_ids`` at -inf in
        the rows ``suppress`` marks), chosen on the device: ``np.argmax``'s first maximum."""
        logits = self._logits(input_ids, attention_mask, position_ids)
        return self._argmax(logits, suppress, suppress_ids)

    @torch.no_grad()
    def step_tokens(self, token_ids, attention_mask, position_ids, suppress=None,
                    suppress_ids=()) -> np.ndarray:  # fmt: skip
        """:meth:`prefill_tokens` for one step (the arguments of :meth:`step`)."""
        logits = self._logits(token_ids[:, None], attention_mask, position_ids[:, None])
        return self._argmax(logits, suppress, suppress_ids)

    @torch.no_grad()
    def prefill_topk(self, input_ids, attention_mask, position_ids, k, suppress=None,
                     suppress_ids=()) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        """The ``k`` largest float32 log-softmax values ``(N, k)`` of :meth:`prefill`'s logits
        per row, largest first, and their ids (``suppress_ids`` at -inf in the rows
        ``suppress`` marks); only these cross to the host (beam search)."""
        logits = self._logits(input_ids, attention_mask, position_ids)
        return self._topk(logits, k, suppress, suppress_ids)

    @torch.no_grad()
    def step_topk(self, token_ids, attention_mask, position_ids, k, suppress=None,
                  suppress_ids=()) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        """:meth:`prefill_topk` for one step (the arguments of :meth:`step`)."""
        logits = self._logits(token_ids[:, None], attention_mask, position_ids[:, None])
        return self._topk(logits, k, suppress, suppress_ids)

    def last_logits(self) -> np.ndarray:
        """The float32 logits ``(N, V)`` of the last ``*_tokens`` / ``*_topk`` call."""
        return self.last.cpu().numpy()

    def reorder(self, indices: np.ndarray) -> None:
        index = self._tensor(indices)
        if self.cache is not None:
            self.cache.reorder(index)
            return
        self.self_cache = [
            (k.index_select(0, index), v.index_select(0, index)) for k, v in self.self_cache
        ]


__all__ = ["TorchDecoderSession", "compile_decoder", "decode_step"]
