"""Generation settings and the search loops, shared by both backends (numpy only).

A backend supplies a *decoder session*: an object that runs the text decoder over a key/value
cache and returns next-token logits as numpy.  Everything else — prompts, padding, logits
processors, greedy/sampling/beam bookkeeping, stopping — lives here once, so both backends make
the same decisions from the same numbers.

The search follows transformers 4.57's ``generate`` (same processors in the same order, the same
vectorised beam search with its early-stopping heuristic), with two deliberate differences:

* Prompts of different lengths are left-aligned internally and every row has its own length
  limits, so a batch gives, per row, exactly what that row gives alone (transformers drops the
  last *column* of a right-padded batch and shares one length limit).
* Finished beam sequences are padded with ``pad_token_id`` (transformers pads beam outputs with
  ``eos_token_id`` when ``pad_token_id`` is 0).
* Sampling uses numpy's random generator (``seed``), so both of our backends sample the same
  tokens; samples differ from transformers', which uses torch's generator.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

GENERATION_CONFIG_NAME = "generation_config.json"

# The original BLIP captioning settings (BLIP's demo and evaluation): 3 beams, max_length 20,
# min_length 5, and the prompt "a picture of " which is stripped from the returned caption.
ORIGINAL_BLIP_PROMPT = "a picture of "
ORIGINAL_BLIP_CAPTION = {"num_beams": 3, "max_length": 20, "min_length": 5}

_NEG = -1.0e9  # transformers' "impossible" beam score


@dataclass
class GenerationConfig:
    """Decoding settings (the fields and defaults of transformers' ``GenerationConfig``)."""

    max_length: int = 20  # total length, prompt included
    max_new_tokens: int | None = None  # overrides max_length when set
    min_length: int = 0  # total length, prompt included
    min_new_tokens: int | None = None
    do_sample: bool = False
    num_beams: int = 1
    num_return_sequences: int = 1
    temperature: float = 1.0
    top_k: int | None = 50
    top_p: float | None = 1.0
    repetition_penalty: float = 1.0
    length_penalty: float = 1.0
    early_stopping: bool | str = False
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    pad_token_id: int | None = None
    seed: int | None = None  # numpy seed for sampling; None draws fresh entropy
    extra: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        def bad(name: str, why: str) -> ValueError:
            return ValueError(f"generation setting {name}={getattr(self, name)!r}: {why}")

        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise bad("max_new_tokens", "must be >= 1")
        if self.max_length < 1:
            raise bad("max_length", "must be >= 1")
        if self.num_beams < 1:
            raise bad("num_beams", "must be >= 1")
        if self.num_return_sequences < 1:
            raise bad("num_return_sequences", "must be >= 1")
        if self.num_beams > 1 and self.num_return_sequences > self.num_beams:
            raise bad("num_return_sequences", f"cannot exceed num_beams ({self.num_beams})")
        if self.num_beams == 1 and not self.do_sample and self.num_return_sequences > 1:
            raise bad("num_return_sequences", "greedy search returns one sequence per input")
        if not self.temperature > 0:
            raise bad("temperature", "must be > 0")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise bad("top_p", "must be in (0, 1]")
        if self.top_k is not None and self.top_k < 0:
            raise bad("top_k", "must be >= 0")
        if not self.repetition_penalty > 0:
            raise bad("repetition_penalty", "must be > 0")
        if self.early_stopping not in (True, False, "never"):
            raise bad("early_stopping", "must be True, False or 'never'")

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenerationConfig:
        data = copy.deepcopy(data)
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: data.pop(k) for k in list(data) if k in names}
        return cls(**known, extra=data)

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in copy.deepcopy(self.extra).items() if not k.startswith("_")}
        for f in dataclasses.fields(self):
            if f.name != "extra":
                out[f.name] = copy.deepcopy(getattr(self, f.name))
        return out

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> GenerationConfig:
        path = Path(directory)
        file = path / GENERATION_CONFIG_NAME if path.is_dir() else path
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FileNotFoundError(f"{file}: no such file") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"{file}: not valid JSON ({exc})") from exc
        return cls.from_dict(data)

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        path = Path(directory) / GENERATION_CONFIG_NAME
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n", "utf-8")
        return path

    def merged(self, **overrides: Any) -> GenerationConfig:
        """A validated copy with ``overrides`` applied (unknown names are an error)."""
        names = {f.name for f in dataclasses.fields(self)} - {"extra"}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise TypeError(f"unknown generation argument(s): {', '.join(unknown)}")
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["extra"] = copy.deepcopy(self.extra)
        data.update({k: v for k, v in overrides.items() if v is not None or k == "seed"})
        return GenerationConfig(**data)

    @property
    def eos_ids(self) -> list[int]:
        if self.eos_token_id is None:
            return []
        if isinstance(self.eos_token_id, int):
            return [self.eos_token_id]
        return list(self.eos_token_id)


def resolve_generation_config(
    base: GenerationConfig | None,
    generation_config: GenerationConfig | None,
    kwargs: dict,
    max_positions: int | None = None,
) -> GenerationConfig:
    """The settings for one call: ``generation_config`` (or the model's) updated by kwargs.

    When no ``max_length`` was asked for and it has its default (20), it counts *new* tokens, as
    in transformers (``max_length = 20 + prompt length``, capped at ``max_positions``).
    """
    config = (generation_config or base or GenerationConfig()).merged(**kwargs)
    default = kwargs.get("max_length") is None and config.max_length == 20
    config.extra["_max_length_is_default"] = default
    config.extra["_max_positions"] = max_positions
    return config


def blip_generation_config(
    model_config: GenerationConfig | None,
    text_config,
    generation_config: GenerationConfig | None,
    kwargs: dict,
) -> GenerationConfig:
    """Settings for a BLIP ``generate`` call, as the reference builds them: the model's settings
    (``generation_config.json``) with BLIP's ids (``[DEC]`` starts, ``[SEP]`` ends, ``[PAD]``
    pads); a caller's ``generation_config`` gets the ids it leaves unset; kwargs win."""
    ids = dict(
        bos_token_id=text_config.bos_token_id,
        eos_token_id=text_config.sep_token_id,
        pad_token_id=text_config.pad_token_id,
    )
    base = (model_config or GenerationConfig()).merged(**ids)
    if generation_config is not None:
        unset = {k: v for k, v in ids.items() if getattr(generation_config, k) is None}
        generation_config = generation_config.merged(**unset)
    return resolve_generation_config(
        base, generation_config, kwargs, text_config.max_position_embeddings
    )


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


# -- logits processors (numpy, in transformers' order) -------------------------------------------


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float32, copy=False)
    shifted = x - np.max(x, axis=-1, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))


def _softmax(x: np.ndarray) -> np.ndarray:
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
    eos = config.eos_ids
    if eos:
        forbid = lengths < min_lengths
        if config.min_new_tokens:
            forbid |= (lengths - prompt_lengths) < config.min_new_tokens
        if forbid.any():
            scores[np.ix_(forbid, eos)] = -np.inf
    return scores


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
        cumulative = np.cumsum(_softmax(sorted_scores), axis=-1)
        remove_sorted = cumulative <= (1 - config.top_p)
        remove_sorted[:, -min_keep:] = False
        remove = np.zeros_like(remove_sorted)
        np.put_along_axis(remove, order, remove_sorted, axis=-1)
        scores = np.where(remove, -np.inf, scores)
    return scores


# -- prompts ----------------------------------------------------------------------------------


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


def _limits(config: GenerationConfig, prompt_lengths: np.ndarray):
    if config.max_new_tokens is not None:
        max_lengths = prompt_lengths + config.max_new_tokens
    elif config.extra.get("_max_length_is_default"):
        # As transformers: an unset max_length (the default 20) means 20 *new* tokens, capped by
        # the position table.
        max_lengths = prompt_lengths + config.max_length
        cap = config.extra.get("_max_positions")
        if cap:
            max_lengths = np.minimum(max_lengths, cap)
    else:
        max_lengths = np.full_like(prompt_lengths, config.max_length)
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
    logits = session.prefill(ids, mask, positions)
    next_positions = positions[:, -1] + 1
    while unfinished.any():
        lengths = np.array([len(h) for h in histories])
        scores = apply_processors(logits, histories, lengths, prompt_lengths, min_lengths, config)
        if config.do_sample:
            scores = apply_warpers(scores, config, min_keep=1)
            probs = _softmax(scores.astype(np.float64))
            tokens = np.array([rng.choice(probs.shape[1], p=p / p.sum()) for p in probs])
        else:
            tokens = np.argmax(scores, axis=-1)
        tokens = np.where(unfinished, tokens, config.pad_token_id).astype(np.int64)
        for i in np.flatnonzero(unfinished):
            histories[i] = np.append(histories[i], tokens[i])
        lengths = lengths + unfinished
        unfinished = unfinished & ~np.isin(tokens, eos) & (lengths < max_lengths)
        if not unfinished.any():
            break
        mask = np.concatenate([mask, np.ones((len(rows), 1), dtype=np.int64)], axis=1)
        logits = session.step(tokens, mask, next_positions)
        next_positions = next_positions + 1
    return [h.tolist() for h in histories]


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
    logits = session.prefill(ids, mask, positions)
    next_positions = positions[:, -1] + 1
    batch_offset = (np.arange(batch) * beams)[:, None]
    t = 0
    while True:
        log_probs = _log_softmax(logits)  # (B*K, V)
        histories = [
            np.concatenate([prompt_tokens[b], running_seq[b, k, :t]])
            for b in range(batch)
            for k in range(beams)
        ]
        lengths = np.repeat(prompt_lengths, beams) + t
        log_probs = apply_processors(
            log_probs,
            histories,
            lengths,
            np.repeat(prompt_lengths, beams),
            np.repeat(min_lengths, beams),
            config,
        )
        if config.do_sample:
            log_probs = apply_warpers(log_probs, config, min_keep=2)
        vocab = log_probs.shape[-1]
        acc = (log_probs.reshape(batch, beams, vocab) + running_scores[:, :, None]).reshape(
            batch, beams * vocab
        )
        if config.do_sample:
            probs = _softmax(acc.astype(np.float64))
            top_idx = np.stack(
                [rng.choice(acc.shape[1], size=keep, replace=False, p=p / p.sum()) for p in probs]
            )
        else:
            top_idx = _topk_indices(acc, keep)
        top_lp = np.take_along_axis(acc, top_idx, axis=1)  # (B, 2K)
        top_beam = top_idx // vocab
        top_ids = top_idx % vocab
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
        logits = session.step(tokens, mask, next_positions)
        next_positions = next_positions + 1

    out = []
    for b in range(batch):
        for k in range(config.num_return_sequences):
            out.append(prompt_tokens[b].tolist() + seqs[b, k, : seq_len[b, k]].tolist())
    return out


def _topk_indices(x: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest values per row, largest first (ties: lower index first)."""
    if k < x.shape[1]:
        part = np.argpartition(-x, k - 1, axis=1)[:, :k]
    else:
        part = np.tile(np.arange(x.shape[1]), (x.shape[0], 1))
    vals = np.take_along_axis(x, part, axis=1)
    order = np.empty_like(part)
    for r in range(x.shape[0]):
        order[r] = np.lexsort((part[r], -vals[r]))
    return np.take_along_axis(part, order, axis=1)


def pad_sequences(sequences: Sequence[Sequence[int]], pad_token_id: int) -> np.ndarray:
    """Right-pad token lists into an int64 array ``(N, max_len)``."""
    width = max((len(s) for s in sequences), default=0)
    out = np.full((len(sequences), width), pad_token_id, dtype=np.int64)
    for i, s in enumerate(sequences):
        out[i, : len(s)] = s
    return out


# -- prompts for the BLIP task models ----------------------------------------------------------


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
