"""Confidence of generated text: the mean log-probability of its generated tokens under the
decoder that produced it (what BLIP users ask for beside a caption or an answer).

The generated tokens of a row are those after its prompt (``[DEC]`` plus any caption prompt) up
to and including the first ``[SEP]``; a row that hit its length limit counts to its last real
token.  Scores are teacher-forced through the decoder session over the same encoder states
(``backend.sequence_log_probs``) and summed by
:func:`blip_core.generation.sequence_log_likelihood`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from blip_core.generation import sequence_log_likelihood


def generated_mask(
    ids: np.ndarray, widths: int | Sequence[int], sep_id: int, pad_id: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(attention, scored)`` masks of right-padded ``ids`` ``(B, T)``: ``attention`` is 1 at
    every real token (prompt included), ``scored`` at the generated ones — from ``widths[b]``
    (row ``b``'s prompt length, ``[DEC]`` included; one int for all rows) up to and including
    the first ``[SEP]`` (or up to the first ``[PAD]`` of a row that hit its length limit)."""
    ids = np.asarray(ids)
    widths = np.broadcast_to(np.asarray(widths, dtype=np.int64), (len(ids),))
    attention = np.zeros(ids.shape, dtype=np.int64)
    scored = np.zeros(ids.shape, dtype=np.int64)
    for row, (seq, width) in enumerate(zip(ids, widths)):
        end = len(seq)
        for t in range(int(width), len(seq)):
            if seq[t] == sep_id:
                end = t + 1
                break
            if seq[t] == pad_id:
                end = t
                break
        attention[row, :end] = 1
        scored[row, width:end] = 1
    return attention, scored


def mean_log_prob(log_probs: np.ndarray, ids: np.ndarray, scored: np.ndarray) -> np.ndarray:
    """Mean of ``log p(ids[:, t] | ids[:, :t])`` over the positions ``t >= 1`` where ``scored``
    is 1 (``log_probs`` ``(B, T, V)``); ``nan`` for a row with no scored token."""
    total = sequence_log_likelihood(log_probs.astype(np.float64), ids, scored)
    count = scored[:, 1:].sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def decoder_scores(backend, decoder, states, states_mask, ids, widths, text_config) -> np.ndarray:
    """Mean token log-probability ``(N,)`` of generated ``ids`` ``(N, T)`` (numpy, as
    ``generate`` returns them: ``N = B * num_return_sequences``, row ``b * n + j`` from encoder
    row ``b``) against encoder ``states`` ``(B, L, D)`` (a backend tensor) with ``states_mask``
    ``(B, L)`` or ``None``."""
    ids = np.asarray(ids, dtype=np.int64)
    expansion = max(1, len(ids) // int(states.shape[0]))
    attention, scored = generated_mask(
        ids, widths, text_config.sep_token_id, text_config.pad_token_id
    )
    session = backend.open_session(decoder, states, states_mask, expansion, ids.shape[1])
    return mean_log_prob(backend.sequence_log_probs(session, ids, attention), ids, scored)


def softmax(scores: np.ndarray) -> np.ndarray:
    """Probabilities from log-likelihoods over the last axis (candidate answers)."""
    scores = np.asarray(scores, dtype=np.float64)
    e = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


__all__ = ["decoder_scores", "generated_mask", "mean_log_prob", "softmax"]
