"""The search loops (greedy, sampling, beam search) over a backend's :class:`DecoderSession`.

A backend supplies a *decoder session*: an object that runs the text decoder over a key/value
cache and returns next-token logits as numpy.  Everything else — prompts, padding, logits
processors, greedy/sampling/beam bookkeeping, stopping — lives here once, so both backends make
the same decisions from the same numbers.

The search follows transformers 4.57's ``generate`` (same processors in the same order, the same
vectorised beam search with its early-stopping heuristic), with three deliberate differences:

* Prompts of different lengths are left-aligned internally and every row has its own length
  limits, so a batch gives, per row, exactly what that row gives alone (transformers drops the
  last *column* of a right-padded batch and shares one length limit).
* Finished beam sequences are padded with ``pad_token_id`` (transformers pads beam outputs with
  ``eos_token_id`` when ``pad_token_id`` is 0).
* Sampling uses numpy's random generator (``seed``), so both of our backends sample the same
  tokens; samples differ from transformers', which uses torch's generator.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from blip_core.generation.processors import (
    apply_processors,
    apply_warpers,
    eos_forbidden,
    log_softmax,
    softmax,
)
from blip_core.generation.prompts import left_align
from blip_core.generation.settings import GenerationConfig

_NEG = -1.0e9  # transformers' "impossible" beam score


class DecoderSession(Protocol):
    """What a backend provides: a text decoder over a KV cache, answering with numpy logits.

    Rows are ``batch * expansion`` (beams or samples), already matched to expanded encoder
    states by the backend.
    """

    def prefill(
        self, input_ids: np.ndarray, attention_mask: np.ndarray, position_ids: np.ndarray
    ) -> np.ndarray:
        """Run the (left-padded) prompts ``(N, T)``; return last-position logits ``(N, V)``."""

    def step(
        self, token_ids: np.ndarray, attention_mask: np.ndarray, position_ids: np.ndarray
    ) -> np.ndarray:
        """Feed one token per row ``(N,)`` (mask ``(N, L)``, positions ``(N,)``); logits ``(N, V)``."""

    def reorder(self, indices: np.ndarray) -> None:
        """Reorder the cache rows (beam search): row ``i`` becomes old row ``indices[i]``."""

    # Optional fast paths, so the host is not sent ``(N, V)`` logits every step.  Each takes the
    # arguments of ``prefill`` / ``step`` plus ``suppress`` (``(N,)`` bool or None) and
    # ``suppress_ids``: in the rows ``suppress`` marks, those token ids score -inf first (the
    # minimum-length processor, decided here and applied on the device).
    # * ``prefill_tokens`` / ``step_tokens`` (greedy): the argmax ids ``(N,)`` of the float32
    #   logits (the first maximal index, as ``np.argmax``).
    # * ``prefill_topk`` / ``step_topk`` (beam search; one more argument ``k``): the ``k``
    #   largest float32 log-softmax values ``(N, k)``, largest first, and their token ids; and
    #   ``last_logits()``: the float32 logits ``(N, V)`` of the last call, for the steps where
    #   those ``k`` cannot settle the choice (ties at the k-th place).
    # They are used only where no other processor would change the scores, so the search makes
    # the same choices; a session without them always returns logits.


def _limits(config: GenerationConfig, prompt_lengths: np.ndarray):
    cap = config.extra.get("_max_positions")
    if config.max_new_tokens is not None:
        max_lengths = prompt_lengths + config.max_new_tokens
    elif config.extra.get("_max_length_is_default"):
        # As transformers: an unset max_length (the default 20) means 20 *new* tokens.
        max_lengths = prompt_lengths + config.max_length
    else:
        max_lengths = np.full_like(prompt_lengths, config.max_length)
    if cap:  # never past the position table (the task layer warns when a request is cut)
        max_lengths = np.minimum(max_lengths, cap)
    min_lengths = np.full_like(prompt_lengths, config.min_length or 0)
    return max_lengths, min_lengths


def length_limits(config: GenerationConfig, prompt_lengths: np.ndarray):
    """Per-row ``(max_lengths, min_lengths)`` (prompt included) that the searches apply, so a
    backend can size its key/value cache: ``prompt + max_new`` tokens at most."""
    return _limits(config, np.asarray(prompt_lengths))


# -- the searches ------------------------------------------------------------------------------


def generate_ids(
    open_session,
    prompts: Sequence[Sequence[int]],
    config: GenerationConfig,
) -> list[list[int]]:
    """Run greedy, sampling or beam search; return one token list per output sequence.

    ``open_session(expansion)`` returns a :class:`DecoderSession` whose rows are the prompts each
    repeated ``expansion`` times (row ``b * expansion + j``).  Each returned list is the prompt
    followed by the generated tokens (ending with an eos token unless a length limit stopped it);
    outputs are ordered ``b * num_return_sequences + j``.
    """
    if config.pad_token_id is None:
        raise ValueError("generation needs pad_token_id")
    if not prompts:
        return []
    if config.num_beams > 1:
        return _beam_search(open_session, prompts, config)
    return _greedy_or_sample(open_session, prompts, config)


def _greedy_or_sample(open_session, prompts, config: GenerationConfig) -> list[list[int]]:
    expansion = config.num_return_sequences if config.do_sample else 1
    rows = [list(p) for p in prompts for _ in range(expansion)]
    ids, mask, positions, prompt_lengths = left_align(rows, config.pad_token_id)
    max_lengths, min_lengths = _limits(config, prompt_lengths)
    rng = np.random.default_rng(config.seed) if config.do_sample else None
    eos = np.array(config.eos_ids, dtype=np.int64)
    session = open_session(expansion)
    histories = [np.asarray(r, dtype=np.int64) for r in rows]
    unfinished = prompt_lengths < max_lengths
    lengths = np.array([len(h) for h in histories])
    on_device = _on_device(session, config, "step_tokens")
    if on_device:
        suppress = eos_forbidden(config, lengths, prompt_lengths, min_lengths)
        device_tokens = session.prefill_tokens(ids, mask, positions, suppress, config.eos_ids)
        logits = None
    else:
        logits = session.prefill(ids, mask, positions)
    next_positions = positions[:, -1] + 1
    while unfinished.any():
        lengths = np.array([len(h) for h in histories])
        if logits is None:  # greedy, no processor changes the scores: the session's argmax
            tokens = device_tokens
        elif config.do_sample:
            scores = apply_processors(
                logits, histories, lengths, prompt_lengths, min_lengths, config
            )
            scores = apply_warpers(scores, config, min_keep=1)
            probs = softmax(scores.astype(np.float64))
            tokens = np.array([rng.choice(probs.shape[1], p=p / p.sum()) for p in probs])
        else:
            scores = apply_processors(
                logits, histories, lengths, prompt_lengths, min_lengths, config
            )
            tokens = np.argmax(scores, axis=-1)
        tokens = np.where(unfinished, tokens, config.pad_token_id).astype(np.int64)
        for i in np.flatnonzero(unfinished):
            histories[i] = np.append(histories[i], tokens[i])
        lengths = lengths + unfinished
        unfinished = unfinished & ~np.isin(tokens, eos) & (lengths < max_lengths)
        if not unfinished.any():
            break
        mask = np.concatenate([mask, np.ones((len(rows), 1), dtype=np.int64)], axis=1)
        if on_device:
            suppress = eos_forbidden(config, lengths, prompt_lengths, min_lengths)
            device_tokens = session.step_tokens(
                tokens, mask, next_positions, suppress, config.eos_ids
            )
        else:
            logits = session.step(tokens, mask, next_positions)
        next_positions = next_positions + 1
    return [h.tolist() for h in histories]


def _on_device(session, config, method: str) -> bool:
    """Whether the search may use the session's optional fast path ``method`` (``"step_tokens"``
    for greedy argmax, ``"step_topk"`` for beam candidates): not when sampling, and not under a
    repetition penalty (which needs each row's history); the minimum-length processor travels
    as ``suppress``, so the choices are those of the processed logits the session would have
    returned."""
    return not config.do_sample and config.repetition_penalty == 1.0 and hasattr(session, method)


def _device_candidates(values, ids, running_scores, keep):
    """The best ``keep`` candidates per image from each row's device top-k, or None where
    those cannot settle it exactly.

    ``values`` / ``ids``: ``(B, K, k)``, each row's ``k`` largest log-probabilities, largest
    first, and their token ids; ``running_scores`` ``(B, K)``.  The full search ranks
    ``log_prob + running_score`` over every (beam, token), largest first, ties to the lower
    (beam, token): ranked the same way, the fetched candidates give its ``keep`` best unless a
    token a row left out could reach them -- it scores at most that row's last fetched value,
    so the answer stands when every row's last fetched value is below the ``keep``-th best.
    Returns ``(top_lp, top_beam, top_ids)``, each ``(B, keep)``.
    """
    batch, beams, k = values.shape
    if beams * k < keep:
        return None
    acc = values + running_scores[:, :, None]  # float32, as the full search adds them
    flat = acc.reshape(batch, beams * k)
    flat_ids = ids.reshape(batch, beams * k)
    beam = np.repeat(np.arange(beams), k)
    order = np.stack([np.lexsort((flat_ids[b], beam, -flat[b]))[:keep] for b in range(batch)])
    top_lp = np.take_along_axis(flat, order, axis=1)
    if np.any(acc[:, :, -1] >= top_lp[:, -1:]):
        return None
    return top_lp, beam[order], np.take_along_axis(flat_ids, order, axis=1)


def _beam_search(open_session, prompts, config: GenerationConfig) -> list[list[int]]:
    """transformers 4.57's vectorised beam search, per-row lengths, cache reordered in place."""
    batch, beams = len(prompts), config.num_beams
    rows = [list(p) for p in prompts for _ in range(beams)]
    ids, mask, positions, row_prompt_lengths = left_align(rows, config.pad_token_id)
    prompt_lengths = row_prompt_lengths[::beams]
    max_lengths, min_lengths = _limits(config, prompt_lengths)
    max_new = np.maximum(max_lengths - prompt_lengths, 0)
    steps = int(max_new.max())
    if steps == 0:
        return [list(p) for p in prompts for _ in range(config.num_return_sequences)]
    eos = np.array(config.eos_ids, dtype=np.int64)
    keep = max(2, 1 + len(eos)) * beams
    top_beam_mask = np.arange(keep) < beams
    rng = np.random.default_rng(config.seed) if config.do_sample else None
    lp, early = config.length_penalty, config.early_stopping

    running_seq = np.full((batch, beams, steps), config.pad_token_id, dtype=np.int64)
    running_scores = np.zeros((batch, beams), dtype=np.float32)
    running_scores[:, 1:] = _NEG
    seqs = running_seq.copy()
    seq_len = np.zeros((batch, beams), dtype=np.int64)
    beam_scores = np.full((batch, beams), _NEG, dtype=np.float32)
    finished = np.zeros((batch, beams), dtype=bool)
    improvable = np.ones((batch, 1), dtype=bool)
    prompt_tokens = [np.asarray(p, dtype=np.int64) for p in prompts]

    session = open_session(beams)
    on_device = _on_device(session, config, "step_topk")
    row_prompt_lengths = np.repeat(prompt_lengths, beams)
    row_min_lengths = np.repeat(min_lengths, beams)

    def run(first: bool, *args):
        """(logits, None), or (None, the rows' device top candidates) on the fast path."""
        if not on_device:
            return (session.prefill if first else session.step)(*args), None
        suppress = eos_forbidden(config, row_prompt_lengths + t, row_prompt_lengths,
                                 row_min_lengths)  # fmt: skip
        call = session.prefill_topk if first else session.step_topk
        return None, call(*args, keep + 1, suppress, config.eos_ids)

    t = 0
    logits, candidates = run(True, ids, mask, positions)
    next_positions = positions[:, -1] + 1
    batch_offset = (np.arange(batch) * beams)[:, None]
    while True:
        picked = None
        if candidates is not None:
            values, cand_ids = (c.reshape(batch, beams, -1) for c in candidates)
            picked = _device_candidates(values, cand_ids, running_scores, keep)
            if picked is None:  # a left-out token could compete: the full logits decide
                logits = session.last_logits()
        if picked is not None:
            top_lp, top_beam, top_ids = picked
        else:
            top_lp, top_beam, top_ids = _host_candidates(
                logits, running_seq, running_scores, prompt_tokens, row_prompt_lengths,
                row_min_lengths, t, keep, config, rng,
            )  # fmt: skip
        top_seq = np.take_along_axis(running_seq, top_beam[:, :, None], axis=1).copy()
        top_seq[:, :, t] = top_ids
        top_src = top_beam + batch_offset  # flat source row of each candidate
        hits = np.isin(top_ids, eos) | ((prompt_lengths + t + 1) >= max_lengths)[:, None]

        # the best num_beams candidates that are not finished keep running
        run_lp = top_lp + hits.astype(np.float32) * np.float32(_NEG)
        nxt = _topk_indices(run_lp, beams)
        running_seq = np.take_along_axis(top_seq, nxt[:, :, None], axis=1)
        running_scores = np.take_along_axis(run_lp, nxt, axis=1)
        running_src = np.take_along_axis(top_src, nxt, axis=1)

        # finished candidates among the top num_beams compete with the finished beams
        just_finished = hits & top_beam_mask[None, :]
        norm = top_lp / np.float32((t + 1) ** lp)
        full = finished.all(axis=-1, keepdims=True) & (early is True)
        norm = norm + full.astype(np.float32) * np.float32(_NEG)
        norm = norm + (~improvable).astype(np.float32) * np.float32(_NEG)
        norm = norm + (~just_finished).astype(np.float32) * np.float32(_NEG)
        merged_seq = np.concatenate([seqs, top_seq], axis=1)
        merged_scores = np.concatenate([beam_scores, norm], axis=1)
        merged_len = np.concatenate([seq_len, np.full_like(top_ids, t + 1)], axis=1)
        merged_finished = np.concatenate([finished, just_finished], axis=1)
        best = _topk_indices(merged_scores, beams)
        seqs = np.take_along_axis(merged_seq, best[:, :, None], axis=1)
        beam_scores = np.take_along_axis(merged_scores, best, axis=1)
        seq_len = np.take_along_axis(merged_len, best, axis=1)
        finished = np.take_along_axis(merged_finished, best, axis=1)

        t += 1
        if early == "never" and lp > 0.0:
            hypothetical = max_new.astype(np.float64)[:, None]
        else:
            hypothetical = np.float64(t)
        best_running = running_scores[:, :1] / (hypothetical**lp)
        worst_finished = np.where(finished, beam_scores.min(axis=1, keepdims=True), _NEG)
        improvable = improvable & np.any(best_running > worst_finished, axis=-1, keepdims=True)
        exists_open = not (finished.all() and early is True)
        if not (improvable.any() and exists_open and not hits.all()) or t >= steps:
            break
        session.reorder(running_src.reshape(-1))
        tokens = running_seq[:, :, t - 1].reshape(-1)
        mask = np.concatenate([mask, np.ones((batch * beams, 1), dtype=np.int64)], axis=1)
        logits, candidates = run(False, tokens, mask, next_positions)
        next_positions = next_positions + 1

    out = []
    for b in range(batch):
        for k in range(config.num_return_sequences):
            out.append(prompt_tokens[b].tolist() + seqs[b, k, : seq_len[b, k]].tolist())
    return out


def _host_candidates(logits, running_seq, running_scores, prompt_tokens, row_prompt_lengths,
                     row_min_lengths, t, keep, config, rng):  # fmt: skip
    """The ``keep`` best (or sampled) candidates per image from full logits ``(B*K, V)``:
    log-softmax, processors (and warpers when sampling) on every row, then the top ``keep``
    of ``log_prob + running_score`` over every (beam, token).  Returns ``(top_lp, top_beam,
    top_ids)``, each ``(B, keep)``."""
    batch, beams = running_scores.shape
    histories = [
        np.concatenate([prompt_tokens[b], running_seq[b, k, :t]])
        for b in range(batch)
        for k in range(beams)
    ]
    log_probs = apply_processors(
        log_softmax(logits), histories, row_prompt_lengths + t, row_prompt_lengths,
        row_min_lengths, config,
    )  # fmt: skip
    if config.do_sample:
        log_probs = apply_warpers(log_probs, config, min_keep=2)
    vocab = log_probs.shape[-1]
    acc = (log_probs.reshape(batch, beams, vocab) + running_scores[:, :, None]).reshape(
        batch, beams * vocab
    )
    if config.do_sample:
        probs = softmax(acc.astype(np.float64))
        top_idx = np.stack(
            [rng.choice(acc.shape[1], size=keep, replace=False, p=p / p.sum()) for p in probs]
        )
    else:
        top_idx = _topk_indices(acc, keep)
    return np.take_along_axis(acc, top_idx, axis=1), top_idx // vocab, top_idx % vocab


def _topk_indices(x: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest values per row, largest first; ties go to the lower index,
    at the k-th place too (``argpartition`` alone would pick any of the tied values there)."""
    rows, n = x.shape
    if k >= n:
        return np.stack([np.lexsort((np.arange(n), -x[r])) for r in range(rows)])
    kth = -np.partition(-x, k - 1, axis=1)[:, k - 1]  # the k-th largest value of each row
    out = np.empty((rows, k), dtype=np.int64)
    for r in range(rows):
        above = np.flatnonzero(x[r] > kth[r])
        tied = np.flatnonzero(x[r] == kth[r])[: k - len(above)]
        index = np.concatenate([above, tied])
        out[r] = index[np.lexsort((index, -x[r, index]))]
    return out


def pad_sequences(sequences: Sequence[Sequence[int]], pad_token_id: int) -> np.ndarray:
    """Right-pad token lists into an int64 array ``(N, max_len)``."""
    width = max((len(s) for s in sequences), default=0)
    out = np.full((len(sequences), width), pad_token_id, dtype=np.int64)
    for i, s in enumerate(sequences):
        out[i, : len(s)] = s
    return out
