"""generate(): token-for-token parity with transformers 4.57.6, batching, caching, sampling."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import blip_torch  # noqa: E402
from tests.helpers import TINY_TEXT, make_inputs  # noqa: E402

SEP, PAD, BOS = TINY_TEXT["sep_token_id"], TINY_TEXT["pad_token_id"], TINY_TEXT["bos_token_id"]


def trim(ids, prompt_len: int) -> list[int]:
    """A generated sequence as a list: cut after the first [SEP] past the prompt, else drop the
    trailing fill (transformers fills finished beams with [SEP] when pad is 0, we use [PAD])."""
    ids = list(ids)
    for i in range(prompt_len, len(ids)):
        if ids[i] == SEP:
            return ids[: i + 1]
    while ids and ids[-1] == PAD and len(ids) > prompt_len:
        ids.pop()
    return ids


def boost_sep(model, prefix: str, amount: float) -> None:
    """Make [SEP] likely enough that sequences end at different steps (amounts found by a scan:
    larger ones end every sequence at once, smaller ones never)."""
    with torch.no_grad():
        model.get_submodule(prefix + "cls.predictions").bias[SEP] += amount


@pytest.fixture(scope="module")
def caption_pair(tmp_path_factory):
    from tests.reference import build_reference

    ref = build_reference("BlipForConditionalGeneration", seed=3)
    boost_sep(ref, "text_decoder.", 0.2)
    path = tmp_path_factory.mktemp("caption")
    ref.save_pretrained(path)
    return ref, blip_torch.BlipForConditionalGeneration.from_pretrained(path)


@pytest.fixture(scope="module")
def vqa_pair(tmp_path_factory):
    from tests.reference import build_reference

    ref = build_reference("BlipForQuestionAnswering", seed=4)
    boost_sep(ref, "text_decoder.", 0.3)
    path = tmp_path_factory.mktemp("vqa")
    ref.save_pretrained(path)
    return ref, blip_torch.BlipForQuestionAnswering.from_pretrained(path)


def prompt_batch(lengths: list[int], seed: int = 0):
    """Processor-style prompts: [CLS] words [SEP], right-padded."""
    rng = np.random.default_rng(seed)
    width = max(lengths)
    ids = np.zeros((len(lengths), width), dtype=np.int64)
    mask = np.zeros_like(ids)
    for i, n in enumerate(lengths):
        ids[i, :n] = [2, *rng.integers(5, 90, n - 2), SEP]
        mask[i, :n] = 1
    return torch.from_numpy(ids), torch.from_numpy(mask)


SETTINGS = [
    {},
    {"num_beams": 3},
    {"num_beams": 4},
    {"num_beams": 3, "num_return_sequences": 2, "length_penalty": 0.6},
    {"num_beams": 3, "early_stopping": True, "max_length": 14},
    {"num_beams": 4, "early_stopping": "never", "max_new_tokens": 9},
    {"repetition_penalty": 1.4, "min_length": 6},
    {"num_beams": 3, "min_new_tokens": 4, "repetition_penalty": 1.2},
]


@pytest.mark.parametrize(
    "settings", SETTINGS, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()) or "greedy"
)
@pytest.mark.parametrize("with_prompt", [False, True])
def test_caption_generate_matches_reference(caption_pair, settings, with_prompt):
    ref, ours = caption_pair
    pixels = torch.from_numpy(make_inputs(batch=3, seed=11)["pixel_values"])
    kwargs = dict(settings)
    prompt_len = 1
    if with_prompt:
        ids, mask = prompt_batch([5, 5, 5])  # the reference cannot batch mixed lengths
        kwargs.update(input_ids=ids, attention_mask=mask)
        prompt_len = 4
    with torch.no_grad():
        # the reference writes [DEC] into the caller's input_ids: give it a copy
        ref_kwargs = {k: v.clone() if torch.is_tensor(v) else v for k, v in kwargs.items()}
        expected = ref.generate(pixel_values=pixels, **ref_kwargs)
    got = ours.generate(pixels, **kwargs)
    assert [trim(r, prompt_len) for r in got.tolist()] == [
        trim(r, prompt_len) for r in expected.tolist()
    ]
    assert len(got) == 3 * settings.get("num_return_sequences", 1)


def test_reference_cases_cover_early_and_late_endings(caption_pair):
    _, ours = caption_pair
    pixels = torch.from_numpy(make_inputs(batch=3, seed=11)["pixel_values"])
    rows = ours.generate(pixels, num_beams=3).tolist() + ours.generate(pixels).tolist()
    ended = [SEP in r[1:] for r in rows]
    assert any(ended) and not all(ended), "the eos path is not exercised"


@pytest.mark.parametrize(
    "settings", [{}, {"num_beams": 3}, {"num_beams": 4, "num_return_sequences": 2}]
)
def test_vqa_generate_matches_reference(vqa_pair, settings):
    ref, ours = vqa_pair
    inp = make_inputs(batch=3, length=7, lengths=[7, 7, 7], seed=5)
    ids, mask = torch.from_numpy(inp["input_ids"]), torch.from_numpy(inp["attention_mask"])
    pixels = torch.from_numpy(inp["pixel_values"])
    with torch.no_grad():
        expected = ref.generate(input_ids=ids, pixel_values=pixels, attention_mask=mask, **settings)
    got = ours.generate(ids, pixels, attention_mask=mask, **settings)
    assert [trim(r, 1) for r in got.tolist()] == [trim(r, 1) for r in expected.tolist()]


@pytest.mark.parametrize("settings", [{}, {"num_beams": 3}, {"num_beams": 3, "max_length": 11}])
def test_mixed_length_prompts_batch_equals_each_alone(caption_pair, settings):
    ref, ours = caption_pair
    pixels = torch.from_numpy(make_inputs(batch=3, seed=12)["pixel_values"])
    ids, mask = prompt_batch([3, 7, 5], seed=2)
    batched = ours.generate(pixels, input_ids=ids, attention_mask=mask, **settings).tolist()
    for row, n in enumerate([3, 7, 5]):
        alone = ours.generate(pixels[row : row + 1], input_ids=ids[row : row + 1, :n], **settings)
        with torch.no_grad():
            expected = ref.generate(
                pixel_values=pixels[row : row + 1],
                input_ids=ids[row : row + 1, :n].clone(),
                **settings,
            )
        assert trim(batched[row], n - 1) == trim(alone[0].tolist(), n - 1)
        assert trim(alone[0].tolist(), n - 1) == trim(expected[0].tolist(), n - 1)


def test_vqa_padded_questions_batch_equals_each_alone(vqa_pair):
    _, ours = vqa_pair
    inp = make_inputs(batch=3, length=8, lengths=[8, 3, 5], seed=6)
    ids, mask = torch.from_numpy(inp["input_ids"]), torch.from_numpy(inp["attention_mask"])
    pixels = torch.from_numpy(inp["pixel_values"])
    for settings in ({}, {"num_beams": 3}):
        batched = ours.generate(ids, pixels, attention_mask=mask, **settings).tolist()
        for row, n in enumerate([8, 3, 5]):
            alone = ours.generate(ids[row : row + 1, :n], pixels[row : row + 1], **settings)
            assert trim(batched[row], 1) == trim(alone[0].tolist(), 1)


def test_cross_attention_projected_once_per_layer(caption_pair):
    _, ours = caption_pair
    calls = []
    hooks = [
        layer.crossattention.self.key.register_forward_hook(lambda *_: calls.append(1))
        for layer in ours.text_decoder.bert.encoder.layer
    ]
    try:
        pixels = torch.from_numpy(make_inputs(batch=2, seed=1)["pixel_values"])
        for settings in ({}, {"num_beams": 4}):
            calls.clear()
            out = ours.generate(pixels, max_new_tokens=12, min_new_tokens=10, **settings)
            assert out.shape[1] > 8
            assert len(calls) == len(ours.text_decoder.bert.encoder.layer)
    finally:
        for h in hooks:
            h.remove()


def test_seeded_sampling_is_reproducible(caption_pair):
    _, ours = caption_pair
    pixels = torch.from_numpy(make_inputs(batch=2, seed=1)["pixel_values"])
    kw = dict(do_sample=True, top_k=20, top_p=0.9, temperature=1.3, num_return_sequences=2)
    a = ours.generate(pixels, seed=7, **kw)
    b = ours.generate(pixels, seed=7, **kw)
    c = ours.generate(pixels, seed=8, **kw)
    assert a.tolist() == b.tolist()
    assert a.tolist() != c.tolist()
    assert a.shape[0] == 4
    beam_a = ours.generate(pixels, seed=3, do_sample=True, num_beams=3)
    assert beam_a.tolist() == ours.generate(pixels, seed=3, do_sample=True, num_beams=3).tolist()


def test_bad_generation_arguments(caption_pair):
    _, ours = caption_pair
    pixels = torch.from_numpy(make_inputs(batch=1)["pixel_values"])
    with pytest.raises(ValueError, match="num_return_sequences=3: cannot exceed num_beams"):
        ours.generate(pixels, num_beams=2, num_return_sequences=3)
    with pytest.raises(TypeError, match="unknown generation argument"):
        ours.generate(pixels, beams=2)
    with pytest.raises(ValueError, match="top_p"):
        ours.generate(pixels, do_sample=True, top_p=1.5)


def test_caller_generation_config_gets_blip_ids(caption_pair):
    from blip_core import GenerationConfig

    _, ours = caption_pair
    pixels = torch.from_numpy(make_inputs(batch=1, seed=1)["pixel_values"])
    via_config = ours.generate(pixels, generation_config=GenerationConfig(num_beams=3))
    assert via_config.tolist() == ours.generate(pixels, num_beams=3).tolist()
