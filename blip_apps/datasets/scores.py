"""Confidence scores for generated text, from the decoder the text came from.

* :func:`caption_scores`: the mean log-probability of each caption's generated tokens (its
  ``[SEP]`` included, the prompt excluded), teacher-forced through the caption model's decoder
  over the image states: ``model.backend.open_session`` + ``sequence_log_probs``, summed by
  :func:`blip_core.generation.sequence_log_likelihood`, divided by the token count;
* :func:`answer_scores`: the same mean for generated VQA answers, from ``rank_answers`` (the
  decoder over the question states) with each image's own answer as its candidate;
* :func:`softmax`: candidate probabilities from ranked log-likelihoods.
"""

from __future__ import annotations

import numpy as np

from blip_core.generation import sequence_log_likelihood


def generated_mask(
    ids: np.ndarray, width: int, sep_id: int, pad_id: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(attention, scored)`` masks of ``ids`` ``(B, T)``: ``attention`` is 1 at every real
    token (prompt included), ``scored`` at the generated ones — positions from ``width`` (the
    prompt's length, ``[DEC]`` included) up to and including the first ``[SEP]`` (or up to the
    first ``[PAD]`` of a row that hit its length limit)."""
    attention = np.zeros(ids.shape, dtype=np.int64)
    mask = np.zeros(ids.shape, dtype=np.int64)
    for row, seq in enumerate(ids):
        end = len(seq)
        for t in range(width, len(seq)):
            if seq[t] == sep_id:
                end = t + 1
                break
            if seq[t] == pad_id:
                end = t
                break
        attention[row, :end] = 1
        mask[row, width:end] = 1
    return attention, mask


def mean_log_prob(log_probs: np.ndarray, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean of ``log p(ids[:, t] | ids[:, :t])`` over the positions ``t >= 1`` where ``mask`` is
    1; ``nan`` for a row with no scored token."""
    total = sequence_log_likelihood(log_probs.astype(np.float64), ids, mask)
    count = mask[:, 1:].sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def caption_scores(model, image_states, ids: np.ndarray, width: int) -> np.ndarray:
    """Mean token log-probability ``(B,)`` of generated caption ids ``(B, T)`` (``[DEC]`` +
    prompt of ``width - 1`` tokens + caption, as ``generate`` returns them) given the images'
    vision states ``(B, L, D)`` (a backend tensor)."""
    text = model.config.text_config
    ids = np.asarray(ids, dtype=np.int64)
    attention, mask = generated_mask(ids, width, text.sep_token_id, text.pad_token_id)
    backend = model.backend
    with backend.inference():
        session = backend.open_session(model.text_decoder, image_states, None, 1, ids.shape[1])
        log_probs = backend.sequence_log_probs(session, ids, attention)
    return mean_log_prob(log_probs, ids, mask)


def answer_scores(
    model, backend_tensor, question_ids, question_mask, pixel_values, answer_ids, answer_mask
) -> np.ndarray:
    """Mean token log-probability ``(B,)`` of image ``i``'s generated answer ``i`` (its tokens
    after ``[DEC]``, ``[SEP]`` included).  ``answer_ids`` ``(B, T)`` are the tokenized answers
    (``[CLS] answer [SEP]``); the distinct answers are ranked once for every image and each
    image reads its own answer's score."""
    answer_ids = np.asarray(answer_ids, dtype=np.int64)
    answer_mask = np.asarray(answer_mask, dtype=np.int64)
    keys = [tuple(row[m > 0]) for row, m in zip(answer_ids, answer_mask)]
    unique = list(dict.fromkeys(keys))
    first = [keys.index(k) for k in unique]
    t = backend_tensor
    scores, _ = model.rank_answers(
        t(question_ids), pixel_values, t(answer_ids[first]),
        attention_mask=t(question_mask), answer_attention_mask=t(answer_mask[first]),
    )  # fmt: skip
    scores = model.backend.to_numpy(scores).astype(np.float64)
    counts = answer_mask.sum(axis=1) - 1  # the tokens after [DEC]
    own = np.array([scores[i, unique.index(k)] for i, k in enumerate(keys)])
    return own / np.maximum(counts, 1)


def softmax(scores: np.ndarray) -> np.ndarray:
    """Probabilities over the last axis of log-likelihoods (numerically stable)."""
    scores = np.asarray(scores, dtype=np.float64)
    shifted = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


__all__ = ["answer_scores", "caption_scores", "generated_mask", "mean_log_prob", "softmax"]
