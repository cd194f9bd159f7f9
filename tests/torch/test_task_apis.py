"""VQA answer ranking, retrieval ranking and the [ENC] option, checked against brute force."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import blip_torch  # noqa: E402
from tests.helpers import make_inputs  # noqa: E402

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "reference"


@pytest.fixture(scope="module")
def vqa():
    return blip_torch.BlipForQuestionAnswering.from_pretrained(FIXTURES / "vqa")


@pytest.fixture(scope="module")
def itm():
    return blip_torch.BlipForImageTextRetrieval.from_pretrained(FIXTURES / "itm")


def _answers():
    # right-padded "[CLS] answer [SEP]" rows of different lengths
    ids = torch.tensor([[2, 40, 3, 0, 0], [2, 41, 42, 3, 0], [2, 43, 44, 45, 3], [2, 46, 3, 0, 0]])
    return ids, (ids != 0).long()


def test_rank_answers_equals_brute_force_loss(vqa):
    inp = make_inputs(batch=2, length=7, lengths=[7, 4], seed=3)
    q_ids, q_mask = torch.from_numpy(inp["input_ids"]), torch.from_numpy(inp["attention_mask"])
    pixels = torch.from_numpy(inp["pixel_values"])
    a_ids, a_mask = _answers()
    scores, ranking = vqa.rank_answers(q_ids, pixels, a_ids, q_mask, a_mask)
    assert scores.shape == (2, 4) and ranking.shape == (2, 4)
    for b in range(2):
        for a in range(4):
            labels = a_ids[a : a + 1].clone()
            labels[0, 0] = vqa.config.text_config.bos_token_id
            n = int(a_mask[a].sum())
            labels = labels[:, :n]
            with torch.no_grad():
                loss = vqa(
                    input_ids=q_ids[b : b + 1, : int(q_mask[b].sum())],
                    pixel_values=pixels[b : b + 1],
                    labels=labels,
                ).loss  # mean over the n-1 predicted tokens
            assert scores[b, a].item() == pytest.approx(-loss.item() * (n - 1), abs=1e-4)
        assert ranking[b].tolist() == np.argsort(-scores[b].numpy(), kind="stable").tolist()


def test_rank_texts_and_images_against_brute_force(itm):
    inp = make_inputs(batch=5, length=8, seed=9)
    ids, mask = torch.from_numpy(inp["input_ids"]), torch.from_numpy(inp["attention_mask"])
    pixels = torch.from_numpy(inp["pixel_values"][:4])
    img_emb, img_states = itm.encode_images(pixels)
    txt_emb = itm.encode_texts(ids, mask)
    # brute force with the transformers-style forward: ITC cosine and ITM logits per pair
    with torch.no_grad():
        itc_full = itm(input_ids=ids, pixel_values=pixels, attention_mask=mask, use_itm_head=False)
    np.testing.assert_allclose((img_emb @ txt_emb.T).numpy(), itc_full.itm_score.numpy(), atol=1e-5)

    def brute_itm(i, t):
        with torch.no_grad():
            logits = itm(
                input_ids=ids[t : t + 1], pixel_values=pixels[i : i + 1],
                attention_mask=mask[t : t + 1],
            ).itm_score  # fmt: skip
        return torch.softmax(logits, -1)[0, 1].item()

    result = itm.rank_texts(img_emb[1], img_states[1:2], txt_emb, ids, mask, k=3)
    itc = (img_emb[1] @ txt_emb.T).numpy()
    shortlist = np.argsort(-itc, kind="stable")[:3]
    assert sorted(result.indices.tolist()) == sorted(shortlist.tolist())
    expected_itm = {int(t): brute_itm(1, int(t)) for t in shortlist}
    for idx, s_itc, s_itm in zip(result.indices, result.itc_scores, result.itm_scores):
        assert s_itm == pytest.approx(expected_itm[int(idx)], abs=1e-5)
        assert s_itc == pytest.approx(itc[idx], abs=1e-6)
    assert list(result.itm_scores) == sorted(result.itm_scores, reverse=True)

    result = itm.rank_images(txt_emb[2], ids[2:3], img_emb, img_states, mask[2:3], k=4)
    assert sorted(result.indices.tolist()) == [0, 1, 2, 3]
    for idx, s_itm in zip(result.indices, result.itm_scores):
        assert s_itm == pytest.approx(brute_itm(int(idx), 2), abs=1e-5)


def test_enc_token_option(itm, vqa):
    inp = make_inputs(batch=2, length=6, seed=1)
    ids, mask = torch.from_numpy(inp["input_ids"]), torch.from_numpy(inp["attention_mask"])
    pixels = torch.from_numpy(inp["pixel_values"])
    enc = itm.config.text_config.bos_token_id + 1
    with torch.no_grad():
        plain = itm(input_ids=ids, pixel_values=pixels, attention_mask=mask).itm_score
        with_enc = itm(
            input_ids=ids, pixel_values=pixels, attention_mask=mask, use_enc_token=True
        ).itm_score
        manual = ids.clone()
        manual[:, 0] = enc
        expected = itm(input_ids=manual, pixel_values=pixels, attention_mask=mask).itm_score
    assert torch.equal(with_enc, expected) and not torch.allclose(with_enc, plain)
    assert ids[0, 0] != enc  # the caller's ids are not modified
    a = vqa.generate(ids, pixels, attention_mask=mask, use_enc_token=True)
    manual_ids = ids.clone()
    manual_ids[:, 0] = enc
    assert a.tolist() == vqa.generate(manual_ids, pixels, attention_mask=mask).tolist()
