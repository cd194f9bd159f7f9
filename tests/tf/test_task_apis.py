"""blip_tf VQA answer ranking, retrieval ranking, the [ENC] option and the task pipeline:
equal to blip_torch on the committed fixtures, and to brute force."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
tf = pytest.importorskip("tensorflow")

import blip_tf  # noqa: E402
import blip_torch  # noqa: E402
from blip_core.generation import GenerationConfig  # noqa: E402
from tests.helpers import make_inputs  # noqa: E402

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "reference"


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """blip_torch is the oracle; 2 threads on a shared 2-core machine make it crawl."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def vqa():
    return (
        blip_torch.BlipForQuestionAnswering.from_pretrained(FIXTURES / "vqa"),
        blip_tf.BlipForQuestionAnswering.from_pretrained(FIXTURES / "vqa"),
    )


@pytest.fixture(scope="module")
def itm():
    return (
        blip_torch.BlipForImageTextRetrieval.from_pretrained(FIXTURES / "itm"),
        blip_tf.BlipForImageTextRetrieval.from_pretrained(FIXTURES / "itm"),
    )


def _t(x):
    return torch.from_numpy(np.asarray(x))


def _answers():
    # right-padded "[CLS] answer [SEP]" rows of different lengths
    ids = np.array([[2, 40, 3, 0, 0], [2, 41, 42, 3, 0], [2, 43, 44, 45, 3], [2, 46, 3, 0, 0]])
    return ids, (ids != 0).astype(np.int64)


def test_rank_answers_equals_torch_and_brute_force(vqa):
    ours_torch, ours_tf = vqa
    inp = make_inputs(batch=2, length=7, lengths=[7, 4], seed=3)
    q_ids, q_mask, pixels = inp["input_ids"], inp["attention_mask"], inp["pixel_values"]
    a_ids, a_mask = _answers()
    scores, ranking = ours_tf.rank_answers(q_ids, pixels, a_ids, q_mask, a_mask)
    assert isinstance(scores, tf.Tensor) and scores.shape == (2, 4) and ranking.dtype == tf.int64
    with torch.no_grad():
        t_scores, t_ranking = ours_torch.rank_answers(
            _t(q_ids), _t(pixels), _t(a_ids), _t(q_mask), _t(a_mask)
        )
    np.testing.assert_allclose(scores.numpy(), t_scores.numpy(), atol=1e-5)
    np.testing.assert_array_equal(ranking.numpy(), t_ranking.numpy())
    for b in range(2):
        for a in range(4):
            n = int(a_mask[a].sum())
            labels = a_ids[a : a + 1, :n].copy()
            labels[0, 0] = ours_tf.config.text_config.bos_token_id
            loss = ours_tf(
                input_ids=q_ids[b : b + 1, : int(q_mask[b].sum())],
                pixel_values=pixels[b : b + 1],
                labels=labels,
            ).loss  # mean over the n - 1 predicted tokens
            assert scores[b, a].numpy() == pytest.approx(-float(loss) * (n - 1), abs=1e-4)
        order = np.argsort(-scores[b].numpy(), kind="stable")
        assert ranking[b].numpy().tolist() == order.tolist()


def test_retrieval_equals_torch_and_brute_force(itm):
    ours_torch, ours_tf = itm
    inp = make_inputs(batch=5, length=8, seed=9)
    ids, mask, pixels = inp["input_ids"], inp["attention_mask"], inp["pixel_values"][:4]
    img_emb, img_states = ours_tf.encode_images(pixels)
    txt_emb = ours_tf.encode_texts(ids, mask)
    with torch.no_grad():
        t_img_emb, t_img_states = ours_torch.encode_images(_t(pixels))
        t_txt_emb = ours_torch.encode_texts(_t(ids), _t(mask))
    np.testing.assert_allclose(img_emb.numpy(), t_img_emb.numpy(), atol=1e-5)
    np.testing.assert_allclose(img_states.numpy(), t_img_states.numpy(), atol=1e-5)
    np.testing.assert_allclose(txt_emb.numpy(), t_txt_emb.numpy(), atol=1e-5)
    itc_full = ours_tf(input_ids=ids, pixel_values=pixels, attention_mask=mask, use_itm_head=False)
    np.testing.assert_allclose(
        img_emb.numpy() @ txt_emb.numpy().T, itc_full.itm_score.numpy(), atol=1e-5
    )

    def brute_itm(i, t):
        logits = ours_tf(
            input_ids=ids[t : t + 1], pixel_values=pixels[i : i + 1], attention_mask=mask[t : t + 1]
        ).itm_score
        return float(tf.nn.softmax(logits, -1)[0, 1])

    result = ours_tf.rank_texts(img_emb[1], img_states[1:2], txt_emb, ids, mask, k=3)
    with torch.no_grad():
        expected = ours_torch.rank_texts(
            t_img_emb[1], t_img_states[1:2], t_txt_emb, _t(ids), _t(mask), k=3
        )
    np.testing.assert_array_equal(result.indices, expected.indices)
    np.testing.assert_allclose(result.itm_scores, expected.itm_scores, atol=1e-5)
    np.testing.assert_allclose(result.itc_scores, expected.itc_scores, atol=1e-5)
    itc = img_emb[1].numpy() @ txt_emb.numpy().T
    shortlist = np.argsort(-itc, kind="stable")[:3]
    assert sorted(result.indices.tolist()) == sorted(shortlist.tolist())
    for idx, s_itc, s_itm in zip(result.indices, result.itc_scores, result.itm_scores):
        assert s_itm == pytest.approx(brute_itm(1, int(idx)), abs=1e-5)
        assert s_itc == pytest.approx(itc[idx], abs=1e-6)
    assert list(result.itm_scores) == sorted(result.itm_scores, reverse=True)

    result = ours_tf.rank_images(txt_emb[2], ids[2:3], img_emb, img_states, mask[2:3], k=4)
    with torch.no_grad():
        expected = ours_torch.rank_images(
            t_txt_emb[2], _t(ids[2:3]), t_img_emb, t_img_states, _t(mask[2:3]), k=4
        )
    np.testing.assert_array_equal(result.indices, expected.indices)
    np.testing.assert_allclose(result.itm_scores, expected.itm_scores, atol=1e-5)
    assert sorted(result.indices.tolist()) == [0, 1, 2, 3]
    for idx, s_itm in zip(result.indices, result.itm_scores):
        assert s_itm == pytest.approx(brute_itm(int(idx), 2), abs=1e-5)


def test_itm_probability_shares_one_image(itm):
    """One image ``(1, L, D)`` against many texts equals the image repeated per text."""
    _, ours_tf = itm
    inp = make_inputs(batch=4, length=8, seed=2)
    _, states = ours_tf.encode_images(inp["pixel_values"][:1])
    shared = ours_tf.itm_probability(states, inp["input_ids"], inp["attention_mask"])
    repeated = ours_tf.itm_probability(
        tf.repeat(states, 4, axis=0), inp["input_ids"], inp["attention_mask"]
    )
    assert shared.shape == (4,)
    np.testing.assert_allclose(shared.numpy(), repeated.numpy(), atol=1e-6)


def test_enc_token_option(itm, vqa):
    ours_torch, ours_tf = itm
    inp = make_inputs(batch=2, length=6, seed=1)
    ids, mask, pixels = inp["input_ids"], inp["attention_mask"], inp["pixel_values"]
    enc = ours_tf.config.text_config.bos_token_id + 1
    plain = ours_tf(input_ids=ids, pixel_values=pixels, attention_mask=mask).itm_score.numpy()
    with_enc = ours_tf(
        input_ids=ids, pixel_values=pixels, attention_mask=mask, use_enc_token=True
    ).itm_score.numpy()
    manual = ids.copy()
    manual[:, 0] = enc
    expected = ours_tf(input_ids=manual, pixel_values=pixels, attention_mask=mask).itm_score
    np.testing.assert_array_equal(with_enc, expected.numpy())
    assert not np.allclose(with_enc, plain)
    assert ids[0, 0] != enc  # the caller's ids are not modified
    with torch.no_grad():
        t_with_enc = ours_torch(
            input_ids=_t(ids), pixel_values=_t(pixels), attention_mask=_t(mask), use_enc_token=True
        ).itm_score.numpy()
    np.testing.assert_allclose(with_enc, t_with_enc, atol=1e-5)
    itm_enc = ours_tf.itm_probability(ours_tf.encode_images(pixels)[1], ids, mask, True)
    itm_manual = ours_tf.itm_probability(ours_tf.encode_images(pixels)[1], manual, mask)
    np.testing.assert_array_equal(itm_enc.numpy(), itm_manual.numpy())

    vqa_torch, vqa_tf = vqa
    answers = vqa_tf.generate(ids, pixels, attention_mask=mask, use_enc_token=True).numpy()
    np.testing.assert_array_equal(
        answers, vqa_tf.generate(manual, pixels, attention_mask=mask).numpy()
    )
    with torch.no_grad():
        expected = vqa_torch.generate(
            _t(ids), _t(pixels), attention_mask=_t(mask), use_enc_token=True
        )
    np.testing.assert_array_equal(answers, expected.numpy())


def test_generation_config_loaded_from_the_directory():
    model = blip_tf.BlipForConditionalGeneration.from_pretrained(FIXTURES / "caption")
    assert model.generation_config == GenerationConfig.from_pretrained(FIXTURES / "caption")
    # [SEP] still ends a caption and [PAD] pads, whatever the file's token ids say
    config = model._generation_config(None, {})
    text = model.config.text_config
    assert (config.eos_token_id, config.pad_token_id) == (text.sep_token_id, text.pad_token_id)


def test_pipeline_gives_the_torch_results():
    """blip_core.pipeline (what the `blip` command runs) on numpy inputs, both backends."""
    from blip_apps.pipeline import Backend, Captioner, Matcher, QuestionAnswerer

    pixels = make_inputs(batch=3, seed=21)["pixel_values"]
    results = {}
    for name in ("torch", "tf"):
        backend = Backend(name)
        if name == "torch":
            torch.set_num_threads(1)  # Backend("torch") sets every core again
        captioner = Captioner(FIXTURES / "caption", backend)
        qa = QuestionAnswerer(FIXTURES / "vqa", backend)
        matcher = Matcher(FIXTURES / "itm", backend)
        embeds, states = matcher.encode_images(pixels)
        results[name] = {
            "greedy": captioner.caption_pixels(pixels, max_new_tokens=6),
            "beams": captioner.caption_pixels(
                pixels, prompt="a picture of", strip=True, num_beams=3, max_length=12
            ),
            "answer": qa.answer(pixels, "what is it?", num_beams=3),
            "rank": qa.rank(pixels, "what is it?", ["a cat", "a dog", "two birds"]),
            "match": matcher.match(pixels, ["a cat", "a dog on grass"]),
            "search": matcher.search(embeds, states, "a dog", k=2).as_list(),
        }
    ours, expected = results["tf"], results["torch"]
    for key in ("greedy", "beams", "answer"):
        assert ours[key] == expected[key], key
    assert [a for a, _ in ours["rank"]] == [a for a, _ in expected["rank"]]
    np.testing.assert_allclose(
        [s for _, s in ours["rank"]], [s for _, s in expected["rank"]], atol=1e-5
    )
    for got, want in zip(ours["match"] + ours["search"], expected["match"] + expected["search"]):
        assert got.keys() == want.keys()
        for key, value in want.items():
            assert got[key] == (value if isinstance(value, str) else pytest.approx(value, abs=1e-5))
