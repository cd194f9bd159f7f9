"""Prompt building for the BLIP task models: left-aligned decoder prompts, captioning prompts
from the processor's ``input_ids``, candidate answers as decoder inputs, sequence scores, and
stripping the original BLIP prompt from a caption."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from blip_core.generation.settings import ORIGINAL_BLIP_PROMPT


def left_align(prompts: Sequence[Sequence[int]], pad_token_id: int):
    """Left-pad token lists: ids ``(N, T)``, mask ``(N, T)``, positions ``(N, T)``, lengths ``(N,)``."""
    lengths = np.array([len(p) for p in prompts], dtype=np.int64)
    if (lengths == 0).any():
        raise ValueError("every prompt needs at least one token (the BOS token)")
    width = int(lengths.max())
    ids = np.full((len(prompts), width), pad_token_id, dtype=np.int64)
    mask = np.zeros((len(prompts), width), dtype=np.int64)
    for i, p in enumerate(prompts):
        ids[i, width - len(p) :] = p
        mask[i, width - len(p) :] = 1
    positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0)
    return ids, mask, positions, lengths


def check_attention_mask(
    ids: np.ndarray,
    mask: np.ndarray,
    ids_name: str = "input_ids",
    mask_name: str = "attention_mask",
) -> None:
    """A ``ValueError`` naming both arguments when ``mask`` does not have ``ids``' shape (a mask
    shorter than the ids used to end in a numpy IndexError)."""
    if mask.shape != ids.shape:
        raise ValueError(
            f"{mask_name} has shape {tuple(mask.shape)} but {ids_name} has shape "
            f"{tuple(ids.shape)}; they must match (one mask entry per token)"
        )


def caption_prompts(
    input_ids: np.ndarray | None,
    attention_mask: np.ndarray | None,
    batch_size: int,
    bos_token_id: int,
    sep_token_id: int,
) -> list[list[int]]:
    """Per-row decoder prompts for captioning, from the processor's right-padded ``input_ids``.

    As transformers: token 0 becomes ``[DEC]`` and the prompt's trailing ``[SEP]`` is dropped —
    but per row (its last real token), not the batch's last column.  No ``input_ids``: ``[DEC]``.
    """
    if input_ids is None:
        return [[bos_token_id] for _ in range(batch_size)]
    input_ids = np.asarray(input_ids)
    if input_ids.ndim == 1:
        input_ids = input_ids[None]
    if attention_mask is None:
        attention_mask = np.ones_like(input_ids)
    attention_mask = np.asarray(attention_mask)
    if attention_mask.ndim == 1:
        attention_mask = attention_mask[None]
    check_attention_mask(input_ids, attention_mask)
    if input_ids.shape[0] not in (1, batch_size):
        raise ValueError(
            f"input_ids has {input_ids.shape[0]} rows but pixel_values has {batch_size} images"
        )
    if input_ids.shape[0] == 1 and batch_size > 1:
        input_ids = np.repeat(input_ids, batch_size, axis=0)
        attention_mask = np.repeat(attention_mask, batch_size, axis=0)
    prompts = []
    for row, row_mask in zip(input_ids, attention_mask):
        real = row[row_mask.astype(bool)].tolist()
        if not real:
            raise ValueError("a prompt row has no attended tokens")
        real[0] = bos_token_id
        if len(real) > 1 and real[-1] == sep_token_id:
            real = real[:-1]
        prompts.append(real)
    return prompts


def answer_prompts(
    answer_ids: np.ndarray, answer_mask: np.ndarray | None, bos_token_id: int
) -> tuple[np.ndarray, np.ndarray]:
    """Candidate answers as decoder inputs: token 0 becomes ``[DEC]`` (as VQA training labels)."""
    ids = np.array(answer_ids, dtype=np.int64, copy=True)
    if ids.ndim == 1:
        ids = ids[None]
    mask = np.ones_like(ids) if answer_mask is None else np.asarray(answer_mask, dtype=np.int64)
    if mask.ndim == 1:
        mask = mask[None]
    check_attention_mask(ids, mask, "answer_ids", "answer_mask")
    ids[:, 0] = bos_token_id
    return ids, mask


def sequence_log_likelihood(log_probs: np.ndarray, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Sum of ``log p(ids[:, t] | ids[:, :t])`` for t >= 1 where ``mask`` is 1.

    ``log_probs`` ``(N, T, V)`` are next-token log-probabilities at each position.
    """
    targets = ids[:, 1:]
    picked = np.take_along_axis(log_probs[:, :-1, :], targets[:, :, None], axis=2)[:, :, 0]
    return (picked * mask[:, 1:]).sum(axis=1)


def strip_prompt(text: str, prompt: str = ORIGINAL_BLIP_PROMPT) -> str:
    """Remove a decoded prompt from the front of a caption (the original BLIP returns
    ``caption[len(prompt):]``); text that does not start with it is returned stripped."""
    head = prompt.strip().lower()
    stripped = text.strip()
    if head and stripped.lower().startswith(head):
        return stripped[len(head) :].strip()
    return stripped
