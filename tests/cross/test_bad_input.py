"""Bad arguments to the task methods: the same clear error from both backends (issue 12).

Each case calls one public method with one wrong argument on blip_torch and blip_tf models of
the committed transformers-written fixtures, and checks that both raise the documented exception
type with the same message, which names the argument and the value.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
torch = pytest.importorskip("torch")
pytest.importorskip("keras")

import blip_tf  # noqa: E402
import blip_torch  # noqa: E402
from tests.helpers import FIXTURES  # noqa: E402

BACKENDS = {"torch": blip_torch, "tf": blip_tf}
_MODELS: dict = {}


def model(backend: str, task: str):
    cls = {
        "caption": "BlipForConditionalGeneration",
        "vqa": "BlipForQuestionAnswering",
        "itm": "BlipForImageTextRetrieval",
    }[task]
    key = (backend, task)
    if key not in _MODELS:
        _MODELS[key] = getattr(BACKENDS[backend], cls).from_pretrained(FIXTURES / task)
    return _MODELS[key]


def pixels(m, batch: int = 1, size: int | None = None) -> np.ndarray:
    size = size or m.config.vision_config.image_size
    return np.random.default_rng(0).standard_normal((batch, 3, size, size)).astype(np.float32)


def both(task: str, call, expected_type, *words):
    """Run ``call(model)`` on both backends: the same exception type and message."""
    messages = []
    for backend in BACKENDS:
        with pytest.raises(expected_type) as info:
            call(model(backend, task))
        messages.append(str(info.value))
        for word in words:
            assert word in str(info.value), (backend, str(info.value))
    assert messages[0] == messages[1], messages
    return messages[0]


def test_generate_rejects_out_of_vocabulary_ids():
    vocab = 99  # the fixtures' text vocabulary
    both(
        "caption",
        lambda m: m.generate(pixels(m), input_ids=np.array([[1, vocab + 5]])),
        ValueError,
        "input_ids",
        str(vocab + 5),
        "vocab",
    )


def test_mask_shorter_than_ids():
    both(
        "caption",
        lambda m: m.generate(
            pixels(m), input_ids=np.array([[1, 5, 6]]), attention_mask=np.array([[1, 1]])
        ),
        ValueError,
        "attention_mask",
        "(1, 2)",
        "(1, 3)",
    )


def test_wrong_pixel_layout_and_size():
    both(
        "caption",
        lambda m: m.generate(np.zeros((1, 32, 32, 3), np.float32)),
        ValueError,
        "(1, 32, 32, 3)",
    )
    both(
        "caption",
        lambda m: m.generate(pixels(m, size=64)),
        ValueError,
        "64x64",
        "interpolate_pos_encoding",
    )
    both(
        "caption",
        lambda m: m.generate(np.zeros((0, 3, 32, 32), np.float32)),
        ValueError,
        "batch size 0",
    )


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"max_new_tokens": 0}, ["max_new_tokens", "0"]),
        ({"num_beams": -1}, ["num_beams", "-1"]),
        ({"num_return_sequences": 0}, ["num_return_sequences"]),
    ],
)
def test_generation_counts(kwargs, words):
    both("caption", lambda m: m.generate(pixels(m), **kwargs), ValueError, *words)


def test_prompt_longer_than_position_table():
    def call(m):
        limit = m.config.text_config.max_position_embeddings
        return m.generate(pixels(m), input_ids=np.full((1, limit + 3), 5))

    both("caption", call, ValueError, "max_position_embeddings")


def test_generation_stops_at_the_position_table_with_a_warning():
    """max_new_tokens past the table: both backends stop there and warn (no IndexError in
    torch, no clamped garbage from XLA), and give the same ids."""
    out = {}
    for backend in BACKENDS:
        m = model(backend, "caption")
        limit = m.config.text_config.max_position_embeddings
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ids = m.generate(pixels(m), max_new_tokens=limit + 40, min_new_tokens=limit + 40)
        ids = np.asarray(ids)
        assert ids.shape[1] <= limit, (backend, ids.shape)
        assert any("max_position_embeddings" in str(w.message) for w in caught), backend
        out[backend] = ids
    np.testing.assert_array_equal(out["torch"], out["tf"])


def test_vqa_batch_mismatch():
    both(
        "vqa",
        lambda m: m.generate(np.array([[1, 5, 6], [1, 7, 8]]), pixels(m, batch=3)),
        ValueError,
        "input_ids has 2 rows",
        "pixel_values has 3",
    )


def test_rank_answers_without_candidates():
    both(
        "vqa",
        lambda m: m.rank_answers(np.array([[1, 5, 6]]), pixels(m), np.zeros((1, 0), np.int64)),
        ValueError,
        "answer_ids",
    )


@pytest.mark.parametrize("k", [0, -1])
def test_rank_texts_rejects_non_positive_k(k):
    def call(m):
        embeds, states = m.encode_images(pixels(m))
        ids = np.array([[1, 5, 6], [1, 7, 8]])
        texts = m.encode_texts(ids)
        return m.rank_texts(embeds[0], states, texts, ids, k=k)

    both("itm", call, ValueError, "k=", str(k))


def test_rank_images_rejects_non_integer_k():
    def call(m):
        embeds, states = m.encode_images(pixels(m, batch=2))
        ids = np.array([[1, 5, 6]])
        return m.rank_images(m.encode_texts(ids)[0], ids, embeds, states, k=2.5)

    both("itm", call, TypeError, "k=2.5")


def test_k_larger_than_collection_returns_everything_once():
    for backend in BACKENDS:
        m = model(backend, "itm")
        embeds, states = m.encode_images(pixels(m, batch=3))
        ids = np.array([[1, 5, 6]])
        result = m.rank_images(m.encode_texts(ids)[0], ids, embeds, states, k=10)
        assert sorted(result.indices.tolist()) == [0, 1, 2]
