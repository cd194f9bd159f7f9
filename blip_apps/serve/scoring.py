"""Confidence scores of generated text: the mean log-probability of the generated tokens, read
back through the decoder as :meth:`blip_core.tasks.QuestionAnsweringTasks.rank_answers` does
(``backend.open_session`` + ``backend.sequence_log_probs`` +
:func:`blip_core.generation.sequence_log_likelihood`).
"""

from __future__ import annotations

import numpy as np

from blip_core.generation import sequence_log_likelihood


def generated_mask(ids: np.ndarray, width: int, sep_token_id: int) -> np.ndarray:
    """1 at the generated positions of right-padded rows ``ids`` ``(B, T)``: from ``width``
    (the prompt, ``[DEC]`` included) up to and including the first ``[SEP]``; a row without
    ``[SEP]`` (it ran to its length limit) counts to its end."""
    ids = np.asarray(ids)
    mask = np.zeros(ids.shape, dtype=np.int64)
    for row, seq in enumerate(ids):
        ends = np.nonzero(seq[width:] == sep_token_id)[0]
        end = width + int(ends[0]) + 1 if len(ends) else len(seq)
        mask[row, width:end] = 1
    return mask


def mean_log_probs(backend, decoder, states, states_mask, ids: np.ndarray, width: int, sep: int):
    """Mean next-token log-probability of each row's generated tokens given ``states``."""
    ids = np.asarray(ids, dtype=np.int64)
    target = generated_mask(ids, width, sep)
    attend = np.zeros_like(target)
    for row, length in enumerate(target.argmax(axis=1) + target.sum(axis=1)):
        attend[row, : max(int(length), width)] = 1
    session = backend.open_session(decoder, states, states_mask, 1, ids.shape[1])
    log_probs = backend.sequence_log_probs(session, ids, attend)
    total = sequence_log_likelihood(log_probs, ids, target)
    return total / np.maximum(target[:, 1:].sum(axis=1), 1)


def caption_scores(model, pixels: np.ndarray, ids: np.ndarray, width: int) -> np.ndarray:
    """Scores ``(B,)`` of captions ``ids`` (``model.generate``'s output for ``pixels``) of a
    ``BlipForConditionalGeneration``; ``width``: the prompt's length with ``[DEC]``."""
    backend = model.backend
    with backend.inference():
        states = backend.image_states(model, backend.from_numpy(pixels), False)
        return mean_log_probs(
            backend,
            model.text_decoder,
            states,
            None,
            ids,
            width,
            model.config.text_config.sep_token_id,
        )


def answer_scores(model, pixels, question_ids, question_mask, ids) -> np.ndarray:
    """Scores ``(B,)`` of answers ``ids`` (from ``[DEC]``) a ``BlipForQuestionAnswering``
    generated for questions ``question_ids``/``question_mask`` about ``pixels``."""
    backend = model.backend
    with backend.inference():
        images = backend.image_states(model, backend.from_numpy(pixels), False)
        like = images
        question = backend.encode_text(
            model.text_encoder,
            backend.from_numpy(np.asarray(question_ids, dtype=np.int64), like=like),
            backend.from_numpy(np.asarray(question_mask, dtype=np.int64), like=like),
            images,
        )
        mask = np.asarray(question_mask, dtype=np.int64)
        return mean_log_probs(
            backend,
            model.text_decoder,
            question,
            mask,
            ids,
            1,
            model.config.text_config.sep_token_id,
        )


__all__ = ["answer_scores", "caption_scores", "generated_mask", "mean_log_probs"]
