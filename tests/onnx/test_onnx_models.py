"""blip_onnx against blip_torch on the same weights: token-identical ids, outputs within 1e-4."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.helpers import compare_outputs, make_inputs

ATOL = 1e-4  # the export's verification tolerance (observed differences are ~1e-6)


def _t(x):
    return torch.from_numpy(np.asarray(x))


def _same_ids(ours, reference):
    reference = reference.numpy()
    assert ours.dtype == np.int64
    assert ours.shape == reference.shape, (ours, reference)
    np.testing.assert_array_equal(ours, reference)


@pytest.fixture(scope="module")
def inputs():
    return make_inputs(batch=3, length=7, vocab=99, image_size=32)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"num_beams": 3},
        {"num_beams": 3, "num_return_sequences": 2, "max_new_tokens": 6},
        {"min_new_tokens": 5, "max_new_tokens": 8, "repetition_penalty": 1.3},
    ],
    ids=["greedy", "beam3", "beam3-return2", "min-length-penalty"],
)
def test_caption_generate_token_identical(models, inputs, kwargs):
    onnx_model, torch_model = models["caption"]
    pixels = inputs["pixel_values"]
    ours = onnx_model.generate(pixels, **kwargs)
    with torch.no_grad():
        ref = torch_model.generate(_t(pixels), **kwargs)
    _same_ids(ours, ref)


@pytest.mark.parametrize("num_beams", [1, 3])
def test_caption_prompt_token_identical(models, inputs, num_beams):
    onnx_model, torch_model = models["caption"]
    ids = inputs["input_ids"].copy()
    ids[:, 0] = 2  # a [CLS]-like first token; generate turns it into [DEC]
    mask = inputs["attention_mask"]
    pixels = inputs["pixel_values"]
    ours = onnx_model.generate(pixels, input_ids=ids, attention_mask=mask, num_beams=num_beams)
    with torch.no_grad():
        ref = torch_model.generate(
            _t(pixels), input_ids=_t(ids), attention_mask=_t(mask), num_beams=num_beams
        )
    _same_ids(ours, ref)


def test_caption_generate_one_image(models, inputs):
    onnx_model, torch_model = models["caption"]
    pixels = inputs["pixel_values"][:1]  # batch 1 (exported with batch 2): dynamic batch
    with torch.no_grad():
        _same_ids(onnx_model.generate(pixels), torch_model.generate(_t(pixels)))


def test_caption_forward_outputs(models, inputs):
    onnx_model, torch_model = models["caption"]
    kwargs = {k: inputs[k] for k in ("pixel_values", "input_ids", "attention_mask", "labels")}
    ours = onnx_model(**kwargs)
    with torch.no_grad():
        ref = torch_model(**{k: _t(v) for k, v in kwargs.items()})
    compare_outputs(ours, ref, ATOL)
    assert isinstance(ours.logits, np.ndarray)
    assert len(onnx_model(**kwargs, return_dict=False)) == len(ref.to_tuple())


@pytest.mark.parametrize("num_beams", [1, 3])
def test_vqa_generate_token_identical(models, inputs, num_beams):
    onnx_model, torch_model = models["vqa"]
    q = {k: inputs[k] for k in ("input_ids", "pixel_values", "attention_mask")}
    ours = onnx_model.generate(**q, num_beams=num_beams, max_new_tokens=8)
    with torch.no_grad():
        ref = torch_model.generate(
            **{k: _t(v) for k, v in q.items()}, num_beams=num_beams, max_new_tokens=8
        )
    _same_ids(ours, ref)


def test_vqa_forward_outputs(models, inputs):
    onnx_model, torch_model = models["vqa"]
    answers = make_inputs(batch=3, length=5, vocab=99, seed=7, lengths=[5, 2, 3])
    kwargs = {
        **{k: inputs[k] for k in ("input_ids", "pixel_values", "attention_mask")},
        "decoder_input_ids": answers["input_ids"],
        "decoder_attention_mask": answers["attention_mask"],
        "labels": answers["labels"],
    }
    ours = onnx_model(**kwargs)
    with torch.no_grad():
        ref = torch_model(**{k: _t(v) for k, v in kwargs.items()})
    compare_outputs(ours, ref, ATOL)


def test_vqa_rank_answers_equal(models, inputs):
    onnx_model, torch_model = models["vqa"]
    q = {k: inputs[k] for k in ("input_ids", "pixel_values", "attention_mask")}
    answers = make_inputs(batch=4, length=4, vocab=99, seed=3, lengths=[4, 2, 3, 2])
    a = {"answer_ids": answers["input_ids"], "answer_attention_mask": answers["attention_mask"]}
    scores, ranking = onnx_model.rank_answers(**q, **a)
    with torch.no_grad():
        ref_scores, ref_ranking = torch_model.rank_answers(
            **{k: _t(v) for k, v in {**q, **a}.items()}
        )
    np.testing.assert_allclose(scores, ref_scores.numpy(), atol=ATOL)
    np.testing.assert_array_equal(ranking, ref_ranking.numpy())


@pytest.mark.parametrize("use_itm_head", [True, False])
def test_itm_forward_outputs(models, inputs, use_itm_head):
    onnx_model, torch_model = models["itm"]
    kwargs = {k: inputs[k] for k in ("input_ids", "pixel_values", "attention_mask")}
    ours = onnx_model(**kwargs, use_itm_head=use_itm_head)
    with torch.no_grad():
        ref = torch_model(**{k: _t(v) for k, v in kwargs.items()}, use_itm_head=use_itm_head)
    compare_outputs(ours, ref, ATOL)


def test_retrieval_embeddings_and_ranking_equal(models, inputs):
    onnx_model, torch_model = models["itm"]
    pixels, ids, mask = inputs["pixel_values"], inputs["input_ids"], inputs["attention_mask"]
    image_embeds, image_states = onnx_model.encode_images(pixels)
    text_embeds = onnx_model.encode_texts(ids, mask)
    with torch.no_grad():
        ref_image_embeds, ref_states = torch_model.encode_images(_t(pixels))
        ref_text_embeds = torch_model.encode_texts(_t(ids), _t(mask))
    np.testing.assert_allclose(image_embeds, ref_image_embeds.numpy(), atol=ATOL)
    np.testing.assert_allclose(image_states, ref_states.numpy(), atol=ATOL)
    np.testing.assert_allclose(text_embeds, ref_text_embeds.numpy(), atol=ATOL)

    probs = onnx_model.itm_probability(image_states[:1], ids, mask)  # one image, 3 texts
    with torch.no_grad():
        ref_probs = torch_model.itm_probability(ref_states[:1], _t(ids), _t(mask))
    np.testing.assert_allclose(probs, ref_probs.numpy(), atol=ATOL)

    texts = onnx_model.rank_texts(image_embeds[0], image_states[:1], text_embeds, ids, mask, k=2)
    images = onnx_model.rank_images(text_embeds[1], ids[1:2], image_embeds, image_states,
                                    mask[1:2], k=3)  # fmt: skip
    with torch.no_grad():
        ref_texts = torch_model.rank_texts(ref_image_embeds[0], ref_states[:1], ref_text_embeds,
                                           _t(ids), _t(mask), k=2)  # fmt: skip
        ref_images = torch_model.rank_images(ref_text_embeds[1], _t(ids[1:2]), ref_image_embeds,
                                             ref_states, _t(mask[1:2]), k=3)  # fmt: skip
    for ours, ref in ((texts, ref_texts), (images, ref_images)):
        np.testing.assert_array_equal(np.asarray(ours.indices), np.asarray(ref.indices))
        np.testing.assert_allclose(ours.itm_scores, ref.itm_scores, atol=ATOL)
        np.testing.assert_allclose(ours.itc_scores, ref.itc_scores, atol=ATOL)


def test_vision_model_from_any_export(exported, models, inputs):
    import blip_onnx

    vision = blip_onnx.BlipVisionModel.from_pretrained(exported["caption"], threads=1)
    _, torch_model = models["caption"]
    ours = vision(inputs["pixel_values"])
    with torch.no_grad():
        ref = torch_model.vision_model(_t(inputs["pixel_values"]))
    compare_outputs(ours, ref, ATOL)


def test_wrong_class_and_interpolation_are_refused(exported, models, inputs):
    import blip_onnx

    with pytest.raises(blip_onnx.ExportedModelError, match="BlipForConditionalGeneration"):
        blip_onnx.BlipForQuestionAnswering.from_pretrained(exported["caption"])
    with pytest.raises(ValueError, match="interpolate_pos_encoding"):
        models["caption"][0].generate(inputs["pixel_values"], interpolate_pos_encoding=True)
