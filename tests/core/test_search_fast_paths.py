"""The search's device fast paths make exactly the choices of the full-logits search.

A numpy decoder session with tie-heavy logits (half-integer scores over a small vocabulary, so
many tokens share a score) is run twice: as a plain session (full logits every step) and with
the optional fast paths (``*_tokens`` argmax, ``*_topk`` candidates) whose top-k returns tied
tokens in a shuffled order, as a device kernel may.  Every greedy and beam configuration gives
the same ids, and the tie fallback (``last_logits``) is exercised.
"""

from __future__ import annotations

import numpy as np
import pytest

from blip_core.generation import GenerationConfig, generate_ids, log_softmax
from blip_core.generation.search import _device_candidates, _topk_indices

VOCAB = 24
EOS = 3


class PlainSession:
    """Logits that depend on each row's last token and position: rows that share them share
    logits, so beams meet ties both inside a row and across rows."""

    def __init__(self, rows: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.table = (rng.integers(-6, 7, (VOCAB, 64, VOCAB)) * 0.5).astype(np.float32)
        self.table[:, :4, EOS] -= 2.0  # eos unlikely at first, so sequences run a while
        self.rows = rows

    def _logits(self, tokens, positions):
        return self.table[tokens, positions].copy()  # (N, V)

    def prefill(self, ids, mask, positions):
        return self._logits(ids[:, -1], positions[:, -1])

    def step(self, token_ids, mask, position_ids):
        return self._logits(token_ids, position_ids)

    def reorder(self, indices):
        pass  # the logits depend on the fed token and position only


class FastSession(PlainSession):
    def __init__(self, rows: int, seed: int = 0):
        super().__init__(rows, seed)
        self.rng = np.random.default_rng(seed + 100)
        self.calls = {"tokens": 0, "topk": 0, "fallback": 0}

    @staticmethod
    def _suppress(scores, suppress, suppress_ids):
        if suppress is not None and len(suppress_ids):
            scores[np.ix_(np.asarray(suppress, bool), list(suppress_ids))] = -np.inf
        return scores

    def _argmax(self, logits, suppress, suppress_ids):
        self.calls["tokens"] += 1
        return np.argmax(self._suppress(logits.copy(), suppress, suppress_ids), axis=-1)

    def _topk(self, logits, k, suppress, suppress_ids):
        """Top k by value; tied tokens come back in a random order (a device's freedom)."""
        self.calls["topk"] += 1
        self.last = logits
        lp = self._suppress(log_softmax(logits), suppress, suppress_ids)
        noise = self.rng.random(lp.shape)
        order = np.lexsort((noise, -lp), axis=-1)[:, :k]
        return np.take_along_axis(lp, order, axis=-1), order

    def prefill_tokens(self, ids, mask, positions, suppress=None, suppress_ids=()):
        return self._argmax(self.prefill(ids, mask, positions), suppress, suppress_ids)

    def step_tokens(self, token_ids, mask, positions, suppress=None, suppress_ids=()):
        return self._argmax(self.step(token_ids, mask, positions), suppress, suppress_ids)

    def prefill_topk(self, ids, mask, positions, k, suppress=None, suppress_ids=()):
        return self._topk(self.prefill(ids, mask, positions), k, suppress, suppress_ids)

    def step_topk(self, token_ids, mask, positions, k, suppress=None, suppress_ids=()):
        return self._topk(self.step(token_ids, mask, positions), k, suppress, suppress_ids)

    def last_logits(self):
        self.calls["fallback"] += 1
        return self.last


PROMPTS = [[1, 5], [1, 7, 9, 11], [1], [1, 2, 2]]
CONFIGS = [
    dict(max_new_tokens=12),
    dict(max_new_tokens=12, min_new_tokens=6),
    dict(max_length=14, min_length=9),
    dict(max_new_tokens=10, num_beams=2),
    dict(max_new_tokens=12, num_beams=3, min_new_tokens=5),
    dict(max_new_tokens=12, num_beams=4, num_return_sequences=2, length_penalty=0.5),
    dict(max_new_tokens=12, num_beams=3, early_stopping=True),
    dict(max_new_tokens=12, num_beams=3, early_stopping="never", length_penalty=2.0),
    dict(max_new_tokens=8, num_beams=5, min_length=6),
]


@pytest.mark.parametrize("settings", CONFIGS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fast_paths_give_the_full_search_ids(settings, seed):
    config = GenerationConfig(pad_token_id=0, eos_token_id=EOS, **settings)
    sessions = []

    def opener(kind):
        def open_session(expansion):
            session = kind(len(PROMPTS) * expansion, seed)
            sessions.append(session)
            return session

        return open_session

    want = generate_ids(opener(PlainSession), PROMPTS, config)
    got = generate_ids(opener(FastSession), PROMPTS, config)
    assert got == want
    fast = sessions[-1]
    used = fast.calls["topk"] if config.num_beams > 1 else fast.calls["tokens"]
    assert used > 0  # the fast path ran
    assert any(len(ids) > len(p) + 1 for ids, p in zip(got, PROMPTS))  # not trivially short


def test_beam_fast_path_meets_ties_and_falls_back():
    """Over the beam configurations, the tie guard sends some steps back to full logits and
    lets the others through."""
    fallback = topk = 0
    for seed in range(3):
        for settings in CONFIGS:
            if settings.get("num_beams", 1) == 1:
                continue
            session = FastSession(0, seed)
            config = GenerationConfig(pad_token_id=0, eos_token_id=EOS, **settings)
            generate_ids(lambda expansion, s=session: s, PROMPTS, config)
            fallback += session.calls["fallback"]
            topk += session.calls["topk"]
    assert 0 < fallback < topk


def test_device_candidates_equal_the_full_ranking_or_decline():
    """Random rows (with ties): whenever the candidates from each row's top k+1 are returned,
    they are the full ranking's top ``keep`` (values, beams, tokens)."""
    rng = np.random.default_rng(7)
    answered = 0
    for _ in range(300):
        batch, beams, vocab = 2, int(rng.integers(1, 5)), 12
        keep = 2 * beams
        lp = (rng.integers(-8, 1, (batch, beams, vocab)) * 0.25).astype(np.float32)
        running = (rng.integers(-4, 1, (batch, beams)) * 0.5).astype(np.float32)
        acc = (lp + running[:, :, None]).reshape(batch, beams * vocab)
        idx = _topk_indices(acc, keep)
        want = (np.take_along_axis(acc, idx, 1), idx // vocab, idx % vocab)
        order = np.lexsort((rng.random(lp.shape), -lp), axis=-1)[:, :, : keep + 1]
        values = np.take_along_axis(lp, order, axis=-1)
        got = _device_candidates(values, order, running, keep)
        if got is not None:
            answered += 1
            for g, w in zip(got, want):
                np.testing.assert_array_equal(g, w)
    assert 50 < answered < 300  # both outcomes happen


def test_topk_indices_break_ties_to_the_lower_index():
    x = np.array([[1.0, 3.0, 3.0, 2.0, 3.0], [0.0, 0.0, 0.0, 0.0, 0.0]], dtype=np.float32)
    assert _topk_indices(x, 2).tolist() == [[1, 2], [0, 1]]
    assert _topk_indices(x, 4).tolist() == [[1, 2, 4, 3], [0, 1, 2, 3]]
    assert _topk_indices(x, 5).tolist() == [[1, 2, 4, 3, 0], [0, 1, 2, 3, 4]]
