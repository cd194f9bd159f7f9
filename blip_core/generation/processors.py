"""Logits processors and warpers over numpy scores, in transformers' order: repetition penalty,
minimum length / minimum new tokens, then (sampling only) temperature, top-k, top-p."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from blip_core.generation.settings import GenerationConfig


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float32, copy=False)
    shifted = x - np.max(x, axis=-1, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))


def softmax(x: np.ndarray) -> np.ndarray:
    shifted = x - np.max(x, axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / np.sum(e, axis=-1, keepdims=True)


def apply_processors(
    scores: np.ndarray,
    histories: Sequence[np.ndarray],
    lengths: np.ndarray,
    prompt_lengths: np.ndarray,
    min_lengths: np.ndarray,
    config: GenerationConfig,
) -> np.ndarray:
    """Repetition penalty, then minimum length / minimum new tokens (eos forbidden).

    ``histories[i]``: the real tokens of row i so far (prompt + generated, no padding);
    ``lengths``: their counts.  Returns a new array.
    """
    scores = scores.copy()
    if config.repetition_penalty != 1.0:
        p = np.float32(config.repetition_penalty)
        for i, tokens in enumerate(histories):
            idx = np.unique(tokens)
            vals = scores[i, idx]
            scores[i, idx] = np.where(vals < 0, vals * p, vals / p)
    forbid = eos_forbidden(config, lengths, prompt_lengths, min_lengths)
    if forbid.any():
        scores[np.ix_(forbid, config.eos_ids)] = -np.inf
    return scores


def eos_forbidden(
    config: GenerationConfig,
    lengths: np.ndarray,
    prompt_lengths: np.ndarray,
    min_lengths: np.ndarray,
) -> np.ndarray:
    """Rows ``(N,)`` whose eos tokens the minimum-length processors forbid at ``lengths``
    (below ``min_length``, or fewer than ``min_new_tokens`` generated); all False without eos."""
    lengths = np.asarray(lengths)
    if not config.eos_ids:
        return np.zeros(lengths.shape, dtype=bool)
    forbid = lengths < min_lengths
    if config.min_new_tokens:
        forbid |= (lengths - prompt_lengths) < config.min_new_tokens
    return forbid


def apply_warpers(scores: np.ndarray, config: GenerationConfig, min_keep: int) -> np.ndarray:
    """Temperature, top-k, top-p (sampling only), as transformers' warpers."""
    if config.temperature != 1.0:
        scores = scores / np.float32(config.temperature)
    vocab = scores.shape[-1]
    if config.top_k:
        k = min(max(config.top_k, min_keep), vocab)
        kth = -np.partition(-scores, k - 1, axis=-1)[:, k - 1 : k]
        scores = np.where(scores < kth, -np.inf, scores)
    if config.top_p is not None and config.top_p < 1.0:
        order = np.argsort(scores, axis=-1, kind="stable")  # ascending
        sorted_scores = np.take_along_axis(scores, order, axis=-1)
        cumulative = np.cumsum(softmax(sorted_scores), axis=-1)
        remove_sorted = cumulative <= (1 - config.top_p)
        remove_sorted[:, -min_keep:] = False
        remove = np.zeros_like(remove_sorted)
        np.put_along_axis(remove, order, remove_sorted, axis=-1)
        scores = np.where(remove, -np.inf, scores)
    return scores
