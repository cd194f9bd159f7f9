"""Every endpoint's answer equals the library call on the same input; scores equal
transformers' teacher-forced log-probabilities of the same tokens."""

from __future__ import annotations

import numpy as np
import pytest
import requests

from tests.serve.conftest import EXAMPLES, pixels, upload

IMAGE = EXAMPLES[0]


def _reference_mean_log_prob(logits, ids, width, sep):
    """Mean of log p(ids[t] | ids[:t]) for t from ``width`` to the first [SEP] (included)."""
    import torch

    log_probs = torch.log_softmax(logits.float(), dim=-1)[0].numpy()
    ids = ids[0]
    end = width + int(np.nonzero(ids[width:] == sep)[0][0]) + 1
    picked = [log_probs[t - 1, ids[t]] for t in range(width, end)]
    return float(np.mean(picked))


def _generated_ids(task, pv, **kwargs):
    with task.backend.inference():
        out = task.model.generate(task.tensor(pv), **kwargs)
    return task.numpy(out)


@pytest.mark.parametrize("fields", [{}, {"prompt": "a picture of", "num_beams": 3}])
def test_caption_equals_library(server, library, fields):
    import torch
    import transformers

    from blip_apps.demo import model_dir

    got = requests.post(f"{server['url']}/caption", files=upload(IMAGE, **fields), timeout=60)
    assert got.status_code == 200, got.text
    body = got.json()
    task = library["caption"]
    pv = pixels(task, IMAGE)
    gen = {"num_beams": fields["num_beams"]} if "num_beams" in fields else {}
    prompt = fields.get("prompt")
    assert body["caption"] == task.caption_pixels(pv, prompt=prompt, **gen)[0]

    kwargs = dict(gen)
    width = 1
    if prompt:
        tok = task.processor.tokenizer([prompt], return_tensors="np")
        kwargs.update(input_ids=task.tensor(tok["input_ids"]))
        kwargs.update(attention_mask=task.tensor(tok["attention_mask"]))
        width = tok["input_ids"].shape[1] - 1  # [CLS] prompt [SEP] -> [DEC] prompt
    ids = _generated_ids(task, pv, **kwargs)
    ref = transformers.BlipForConditionalGeneration.from_pretrained(model_dir("caption")).eval()
    with torch.no_grad():
        vision = ref.vision_model(pixel_values=torch.from_numpy(pv))[0]
        logits = ref.text_decoder(
            input_ids=torch.from_numpy(ids), encoder_hidden_states=vision
        ).logits
    expected = _reference_mean_log_prob(logits, ids, width, ref.config.text_config.sep_token_id)
    assert body["score"] == pytest.approx(expected, abs=1e-4)
    assert body["score"] <= 0


def test_vqa_equals_library(server, library):
    import torch
    import transformers

    from blip_apps.demo import model_dir

    question = "what color is the circle?"
    got = requests.post(
        f"{server['url']}/vqa", files=upload(IMAGE, question=question), timeout=60
    ).json()
    task = library["vqa"]
    pv = pixels(task, IMAGE)
    assert got["answer"] == task.answer(pv, question)[0]

    ids, mask = task._inputs(pv, question)
    with task.backend.inference():
        answer = task.numpy(
            task.model.generate(task.tensor(ids), task.tensor(pv), attention_mask=task.tensor(mask))
        )
    ref = transformers.BlipForQuestionAnswering.from_pretrained(model_dir("vqa")).eval()
    with torch.no_grad():
        vision = ref.vision_model(pixel_values=torch.from_numpy(pv))[0]
        q = ref.text_encoder(
            input_ids=torch.from_numpy(ids),
            attention_mask=torch.from_numpy(mask),
            encoder_hidden_states=vision,
        )[0]
        logits = ref.text_decoder(
            input_ids=torch.from_numpy(answer),
            encoder_hidden_states=q,
            encoder_attention_mask=torch.from_numpy(mask),
        ).logits
    expected = _reference_mean_log_prob(logits, answer, 1, ref.config.text_config.sep_token_id)
    assert got["score"] == pytest.approx(expected, abs=1e-4)


def test_vqa_ranking_equals_library(server, library):
    question, answers = "how many shapes are there?", ["one", "two", "three"]
    got = requests.post(
        f"{server['url']}/vqa",
        files=upload(IMAGE, question=question, answers=" one, two ,three"),
        timeout=60,
    ).json()
    expected = library["vqa"].rank(pixels(library["vqa"], IMAGE), question, answers)
    assert [(r["answer"], r["score"]) for r in got["ranking"]] == expected
    assert (got["answer"], got["score"]) == expected[0]


def test_match_equals_library(server, library):
    texts = ["two blue shapes", "a red cross", "three in a row"]
    got = requests.post(f"{server['url']}/match", files=upload(IMAGE, text=texts), timeout=60)
    assert got.status_code == 200, got.text
    task = library["retrieval"]
    expected = task.match(pixels(task, IMAGE), texts)
    assert [m["text"] for m in got.json()["matches"]] == texts
    for m, e in zip(got.json()["matches"], expected):
        assert m["itm"] == pytest.approx(e["itm"], abs=1e-6)
        assert m["itc"] == pytest.approx(e["itc"], abs=1e-6)


def test_embed_equals_library(server, library):
    task = library["retrieval"]
    image = requests.post(f"{server['url']}/embed", files=upload(IMAGE), timeout=60).json()
    expected, _ = task.encode_images(pixels(task, IMAGE))
    np.testing.assert_allclose(image["embedding"], expected[0], atol=1e-6)
    assert np.linalg.norm(image["embedding"]) == pytest.approx(1.0, abs=1e-5)

    text = "two blue shapes"
    got = requests.post(f"{server['url']}/embed", files={"text": (None, text)}, timeout=60).json()
    tok = task.processor.tokenizer([text], return_tensors="np")
    with task.backend.inference():
        ref = task.numpy(
            task.model.encode_texts(
                task.tensor(tok["input_ids"]), task.tensor(tok["attention_mask"])
            )
        )
    np.testing.assert_allclose(got["embedding"], ref[0], atol=1e-6)


def test_health_docs_and_page(server):
    health = requests.get(f"{server['url']}/health", timeout=10)
    assert health.status_code == 200
    assert health.json()["tasks"] == ["caption", "retrieval", "vqa"]
    spec = requests.get(f"{server['url']}/openapi.json", timeout=10).json()
    assert {"/caption", "/vqa", "/match", "/embed", "/health"} <= set(spec["paths"])
    page = requests.get(f"{server['url']}/", timeout=10)
    assert page.status_code == 200 and 'id="file"' in page.text
