"""Decoding for the PyTorch backend: a KV-cached decoder session for blip_core's search loops.

Cross-attention keys/values over the encoder states (image or question) are projected once per
``generate`` call and shared by every step; beams reuse them through an index, never re-projecting.
"""

from __future__ import annotations

import numpy as np
import torch

from blip_torch.text import BlipTextLMHeadModel


class TorchDecoderSession:
    """A :class:`blip_core.generation.DecoderSession` over a :class:`BlipTextLMHeadModel`."""

    def __init__(
        self,
        decoder: BlipTextLMHeadModel,
        encoder_hidden_states: torch.Tensor,
        encoder_attention_mask: torch.Tensor | None,
        expansion: int,
    ):
        self.decoder = decoder
        self.device = encoder_hidden_states.device
        layers = decoder.bert.encoder.layer
        # (B, heads, N, head_dim) per layer, computed once; rows expanded for beams/samples.
        index = torch.arange(encoder_hidden_states.shape[0], device=self.device)
        index = index.repeat_interleave(expansion)
        self.cross = []
        for layer in layers:
            k, v = layer.crossattention.self.project_key_value(encoder_hidden_states)
            self.cross.append((k.index_select(0, index), v.index_select(0, index)))
        if encoder_attention_mask is None:
            encoder_attention_mask = torch.ones(
                encoder_hidden_states.shape[:2], dtype=torch.long, device=self.device
            )
        self.encoder_attention_mask = encoder_attention_mask.index_select(0, index)
        self.self_cache: list[tuple[torch.Tensor, torch.Tensor]] | None = None

    def _run(self, ids: np.ndarray, mask: np.ndarray, positions: np.ndarray) -> np.ndarray:
        def tensor(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(a)).to(self.device)

        if self.self_cache is None:  # first call: an empty self-attention cache
            empty = self.cross[0][0][:, :, :0, :]
            self.self_cache = [(empty, empty)] * len(self.cross)
        past = tuple((sk, sv, ck, cv) for (sk, sv), (ck, cv) in zip(self.self_cache, self.cross))
        out = self.decoder.bert(
            input_ids=tensor(ids),
            attention_mask=tensor(mask),
            position_ids=tensor(positions),
            encoder_attention_mask=self.encoder_attention_mask,
            past_key_values=past,
            use_cache=True,
            is_decoder=True,
        )
        self.self_cache = [(layer[0], layer[1]) for layer in out.past_key_values]
        logits = self.decoder.cls(out.last_hidden_state[:, -1, :])  # (N, vocab)
        return logits.float().cpu().numpy()

    @torch.no_grad()
    def log_probs(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> torch.Tensor:
        """Next-token log-probabilities ``(N, T, V)`` for whole (right-padded) sequences."""
        empty = self.cross[0][0][:, :, :0, :]
        past = tuple((empty, empty, ck, cv) for ck, cv in self.cross)
        ids = torch.from_numpy(np.ascontiguousarray(input_ids)).to(self.device)
        mask = torch.from_numpy(np.ascontiguousarray(attention_mask)).to(self.device)
        out = self.decoder.bert(
            input_ids=ids,
            attention_mask=mask,
            encoder_attention_mask=self.encoder_attention_mask,
            past_key_values=past,
            is_decoder=True,
        )
        return torch.log_softmax(self.decoder.cls(out.last_hidden_state).float(), dim=-1)

    @torch.no_grad()
    def prefill(self, input_ids, attention_mask, position_ids) -> np.ndarray:
        return self._run(input_ids, attention_mask, position_ids)

    @torch.no_grad()
    def step(self, token_ids, attention_mask, position_ids) -> np.ndarray:
        return self._run(token_ids[:, None], attention_mask, position_ids[:, None])

    def reorder(self, indices: np.ndarray) -> None:
        index = torch.from_numpy(np.ascontiguousarray(indices)).to(self.device)
        self.self_cache = [
            (k.index_select(0, index), v.index_select(0, index)) for k, v in self.self_cache
        ]
