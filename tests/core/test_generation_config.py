"""GenerationConfig and the framework-free search helpers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from blip_core.generation import (
    GenerationConfig,
    apply_processors,
    apply_warpers,
    caption_prompts,
    left_align,
    strip_prompt,
)


def test_reads_hub_generation_config(tmp_path):
    (tmp_path / "generation_config.json").write_text(
        json.dumps({"max_length": 30, "num_beams": 3, "min_length": 5, "transformers_version": "x"})
    )
    config = GenerationConfig.from_pretrained(tmp_path)
    assert (config.max_length, config.num_beams, config.min_length) == (30, 3, 5)
    config.save_pretrained(tmp_path / "out")
    assert (
        json.loads((tmp_path / "out" / "generation_config.json").read_text())[
            "transformers_version"
        ]
        == "x"
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(num_beams=0), "num_beams=0"),
        (dict(num_beams=2, num_return_sequences=3), "cannot exceed num_beams"),
        (dict(num_return_sequences=2), "greedy search returns one sequence"),
        (dict(temperature=0.0), "temperature=0.0"),
        (dict(top_p=0.0), "top_p=0.0"),
        (dict(early_stopping="sometimes"), "early_stopping"),
    ],
)
def test_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GenerationConfig(**kwargs)


def test_caption_prompts_per_row():
    ids = np.array([[101, 7, 8, 102, 0], [101, 9, 102, 0, 0], [101, 5, 6, 7, 102]])
    mask = (ids != 0).astype(int)
    assert caption_prompts(ids, mask, 3, 30522, 102) == [
        [30522, 7, 8],
        [30522, 9],
        [30522, 5, 6, 7],
    ]
    assert caption_prompts(None, None, 2, 30522, 102) == [[30522], [30522]]
    with pytest.raises(ValueError, match="2 rows but pixel_values has 3 images"):
        caption_prompts(ids[:2], mask[:2], 3, 30522, 102)


def test_left_align_positions():
    ids, mask, pos, lengths = left_align([[5, 6, 7], [8]], pad_token_id=0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert pos.tolist() == [[0, 1, 2], [0, 0, 0]]
    assert lengths.tolist() == [3, 1]


def test_processors_by_hand():
    scores = np.array([[1.0, -2.0, 3.0, 0.5]], dtype=np.float32)
    config = GenerationConfig(repetition_penalty=2.0, eos_token_id=3, min_length=5)
    out = apply_processors(
        scores, [np.array([0, 1, 1])], np.array([3]), np.array([1]), np.array([5]), config
    )
    assert out.tolist() == [[0.5, -4.0, 3.0, -np.inf]]  # penalised 0 and 1; eos banned (3 < 5)
    warped = apply_warpers(
        np.log(np.array([[0.5, 0.3, 0.15, 0.05]])), GenerationConfig(top_k=0, top_p=0.7), 1
    )
    assert np.isfinite(warped).tolist() == [[True, True, False, False]]
    warped = apply_warpers(
        np.array([[1.0, 4.0, 3.0, 2.0]]), GenerationConfig(top_k=2, temperature=2.0), 1
    )
    assert warped.tolist() == [[-np.inf, 2.0, 1.5, -np.inf]]


def test_strip_prompt():
    assert strip_prompt("a picture of a dog on a beach") == "a dog on a beach"
    assert strip_prompt("two cats") == "two cats"
