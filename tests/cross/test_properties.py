"""Property tests over generate/rank arguments on both backends (issue 12).

Arbitrary settings and token ids: either both backends raise the same documented exception
(``ValueError`` / ``TypeError``, same message) or both return the same token ids / rankings.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("keras")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tests.cross.test_bad_input import BACKENDS, model, pixels  # noqa: E402

DOCUMENTED = (ValueError, TypeError)
SETTINGS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)


def outcome(call):
    """``("ok", numpy result)`` or ``("error", type name, message)``; anything undocumented fails."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = call()
    except DOCUMENTED as exc:
        return ("error", type(exc).__name__, str(exc))
    return ("ok", result)


def same(outcomes):
    first, second = outcomes
    assert first[0] == second[0], outcomes
    if first[0] == "error":
        assert first[1:] == second[1:], outcomes
    else:
        np.testing.assert_array_equal(first[1], second[1])


generation_kwargs = st.fixed_dictionaries(
    {},
    optional={
        "max_new_tokens": st.integers(-2, 70),
        "min_new_tokens": st.integers(0, 8),
        "num_beams": st.integers(-1, 3),
        "num_return_sequences": st.integers(0, 3),
        "repetition_penalty": st.sampled_from([0.0, 1.0, 1.3]),
        "length_penalty": st.sampled_from([0.5, 1.0]),
        "early_stopping": st.sampled_from([True, False, "never", "sometimes"]),
        "max_length": st.integers(0, 80),
    },
)
prompt_ids = st.lists(st.integers(-3, 104), min_size=1, max_size=6)


@SETTINGS
@given(kwargs=generation_kwargs, prompt=st.one_of(st.none(), prompt_ids))
def test_caption_generate_arguments(kwargs, prompt):
    def call(m):
        extra = {} if prompt is None else {"input_ids": np.array([prompt], dtype=np.int64)}
        return lambda: np.asarray(m.generate(pixels(m), **extra, **kwargs))

    same([outcome(call(model(b, "caption"))) for b in BACKENDS])


@SETTINGS
@given(
    question=prompt_ids,
    answers=st.lists(prompt_ids, min_size=0, max_size=3),
    kwargs=st.fixed_dictionaries({}, optional={"max_new_tokens": st.integers(-1, 6)}),
)
def test_vqa_arguments(question, answers, kwargs):
    def call(m):
        q = np.array([question], dtype=np.int64)
        if not answers:
            return lambda: np.asarray(m.generate(q, pixels(m), **kwargs))
        width = max(len(a) for a in answers)
        ids = np.zeros((len(answers), width), np.int64)
        mask = np.zeros_like(ids)
        for i, a in enumerate(answers):
            ids[i, : len(a)], mask[i, : len(a)] = a, 1
        return lambda: np.asarray(m.rank_answers(q, pixels(m), ids, answer_attention_mask=mask)[1])

    same([outcome(call(model(b, "vqa"))) for b in BACKENDS])


@SETTINGS
@given(k=st.one_of(st.integers(-2, 6), st.floats(0.5, 3.5), st.sampled_from([True, "2"])))
def test_rank_k(k):
    def call(m):
        embeds, states = m.encode_images(pixels(m, batch=3))
        ids = np.array([[1, 5, 6], [1, 7, 8], [1, 9, 10], [1, 11, 12]])
        texts = m.encode_texts(ids)
        return lambda: np.asarray(m.rank_texts(embeds[0], states[:1], texts, ids, k=k).indices)

    same([outcome(call(model(b, "itm"))) for b in BACKENDS])
