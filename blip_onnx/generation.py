"""Decoding for the ONNX Runtime backend: a decoder session for blip_core's search loops.

The ``decoder_cross_kv`` graph projects every layer's cross-attention keys/values over the
encoder states (image or question) once per call; the ``decoder_step`` graph (the decoder's own
forward with a self-attention cache) takes them as inputs at every step.  Beams and samples
share them through ``np.repeat`` of the rows, done once.
"""

from __future__ import annotations

import numpy as np


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """``log_softmax`` over the last axis, in float32."""
    logits = logits.astype(np.float32, copy=False)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


class OrtDecoderSession:
    """A :class:`blip_core.generation.DecoderSession` over the exported decoder graphs.

    ``decoder``: a :class:`blip_onnx.models.TextDecoder` (its ``cross_kv`` and ``step`` graphs);
    ``encoder_hidden_states`` ``(B, L, D_enc)``; rows are each encoder row repeated
    ``expansion`` times.
    """

    def __init__(self, decoder, encoder_hidden_states, encoder_attention_mask, expansion: int):
        self.decoder = decoder
        states = np.asarray(encoder_hidden_states, dtype=np.float32)
        cross = decoder.cross_kv.run({"encoder_hidden_states": states})
        n = decoder.num_layers
        # (B * expansion, heads, L, head_dim) per layer
        self.cross = {}
        for i in range(n):
            for kind in ("key", "value"):
                name = f"cross_{kind}_{i}"
                self.cross[name] = np.repeat(cross[name], expansion, axis=0)
        if encoder_attention_mask is None:
            encoder_attention_mask = np.ones(states.shape[:2], dtype=np.int64)
        mask = np.asarray(encoder_attention_mask, dtype=np.int64).reshape(states.shape[:2])
        self.encoder_attention_mask = np.repeat(mask, expansion, axis=0)
        first = self.cross["cross_key_0"]
        self.empty = np.zeros((first.shape[0], first.shape[1], 0, first.shape[3]), np.float32)
        self.self_cache: dict[str, np.ndarray] | None = None

    def _feeds(self, ids, mask, positions, cache) -> dict[str, np.ndarray]:
        feeds = {
            "input_ids": ids,
            "position_ids": positions,
            "attention_mask": mask,
            "encoder_attention_mask": self.encoder_attention_mask,
            **self.cross,
        }
        for i in range(self.decoder.num_layers):
            for kind in ("key", "value"):
                feeds[f"past_{kind}_{i}"] = (
                    self.empty if cache is None else cache[f"present_{kind}_{i}"]
                )
        return feeds

    def _run(self, ids: np.ndarray, mask: np.ndarray, positions: np.ndarray) -> np.ndarray:
        out = self.decoder.step.run(self._feeds(ids, mask, positions, self.self_cache))
        self.self_cache = {k: v for k, v in out.items() if k.startswith("present_")}
        return out["logits"][:, -1, :]

    def logits(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Logits ``(N, T, V)`` of whole (right-padded) sequences over an empty cache."""
        ids = np.asarray(input_ids, dtype=np.int64)
        positions = np.broadcast_to(np.arange(ids.shape[1], dtype=np.int64), ids.shape)
        mask = np.asarray(attention_mask, dtype=np.int64)
        return self.decoder.step.run(self._feeds(ids, mask, positions, None))["logits"]

    def log_probs(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Next-token log-probabilities ``(N, T, V)`` for whole (right-padded) sequences."""
        return log_softmax(self.logits(input_ids, attention_mask))

    def prefill(self, input_ids, attention_mask, position_ids) -> np.ndarray:
        self.self_cache = None
        return self._run(input_ids, attention_mask, position_ids)

    def step(self, token_ids, attention_mask, position_ids) -> np.ndarray:
        return self._run(
            np.asarray(token_ids)[:, None], attention_mask, np.asarray(position_ids)[:, None]
        )

    def reorder(self, indices: np.ndarray) -> None:
        indices = np.asarray(indices)
        self.self_cache = {k: v[indices] for k, v in self.self_cache.items()}


__all__ = ["OrtDecoderSession", "log_softmax"]
