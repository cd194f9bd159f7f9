"""The bundled demo checkpoints: they load in every installed backend, agree across backends, and
caption held-out scenes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from blip_apps.demo import TASKS, data, model_dir

ROOT = Path(__file__).resolve().parents[2]
MAX_DIR_BYTES = 10_000_000  # the budget per shipped model directory


def _tf_available() -> bool:
    try:
        import blip_tf
    except ImportError:
        return False
    from blip_apps.demo.evaluate import CLASS_NAMES

    return all(hasattr(blip_tf, name) for name in CLASS_NAMES.values())


@pytest.fixture(scope="module")
def eval_demo():
    """The demo evaluation library (what scripts/eval_demo.py runs)."""
    from blip_apps.demo import evaluate

    return evaluate


@pytest.fixture(scope="module")
def examples():
    return data.heldout_examples(8)


@pytest.mark.parametrize("task", TASKS)
def test_bundled_files(task):
    directory = model_dir(task)
    size = sum(p.stat().st_size for p in directory.iterdir() if p.is_file())
    assert size <= MAX_DIR_BYTES, f"{directory} holds {size} bytes"
    config = json.loads((directory / "config.json").read_text())
    vocab = (directory / "vocab.txt").read_text().splitlines()
    text = config["text_config"]
    assert text["vocab_size"] == len(vocab)
    assert vocab[text["bos_token_id"]] == "[DEC]"
    assert vocab[text["sep_token_id"]] == "[SEP]"
    assert vocab[text["pad_token_id"]] == "[PAD]"
    tokenizer_config = json.loads((directory / "tokenizer_config.json").read_text())
    assert tokenizer_config["bos_token"] == "[DEC]"
    processor = json.loads((directory / "preprocessor_config.json").read_text())
    assert processor["size"] == {"height": 64, "width": 64}


def _outputs(eval_demo, backend_name: str, examples) -> dict[str, np.ndarray]:
    """Caption ids, answer ids and retrieval scores from one backend, on fixed inputs."""
    pytest.importorskip("torch" if backend_name == "torch" else "tensorflow")
    from blip_apps.backends import load_backend

    backend = load_backend(backend_name, threads=2)
    out = {}
    caption = eval_demo.Task(backend, "caption", model_dir("caption"))
    pixels = caption.pixels([e.image for e in examples])
    out["caption_ids"] = eval_demo.caption_ids(caption, pixels, greedy_loop=True)
    if hasattr(caption.model, "generate"):
        out["caption_generate_ids"] = eval_demo.caption_ids(caption, pixels, greedy_loop=False)
    vqa = eval_demo.Task(backend, "vqa", model_dir("vqa"))
    q_ids, q_mask = vqa.text([e.question for e in examples])
    out["answer_ids"] = eval_demo.answer_ids(vqa, pixels, q_ids, q_mask, greedy_loop=True)
    retrieval = eval_demo.Task(backend, "retrieval", model_dir("retrieval"))
    itc, itm = eval_demo.retrieval_scores(retrieval, examples, k=2)
    out["itc"], out["itm"] = itc, np.nan_to_num(itm, nan=-1.0)
    out["captions"] = caption.tokenizer.batch_decode(out["caption_ids"], skip_special_tokens=True)
    return out


@pytest.fixture(scope="module")
def torch_outputs(eval_demo, examples):
    return _outputs(eval_demo, "torch", examples)


def test_torch_captions_held_out_scenes(torch_outputs, examples):
    """Loose on purpose (the full held-out score is in scripts/eval_demo.py): at least 3 of the
    first 5 held-out scenes get exactly their canonical caption."""
    hits = sum(p == e.caption for p, e in zip(torch_outputs["captions"][:5], examples))
    assert hits >= 3, list(zip(torch_outputs["captions"][:5], [e.caption for e in examples]))


def test_torch_generate_matches_greedy_loop(torch_outputs):
    if "caption_generate_ids" not in torch_outputs:
        pytest.skip("blip_torch has no generate() yet")
    a, b = torch_outputs["caption_ids"], torch_outputs["caption_generate_ids"]
    length = min(a.shape[1], b.shape[1])
    np.testing.assert_array_equal(a[:, :length], b[:, :length])


def test_torch_answers_and_retrieval(torch_outputs, examples, eval_demo):
    # not a score (see scripts/eval_demo.py), just that the heads are the trained ones
    vqa_tokenizer = eval_demo.BlipTokenizer.from_pretrained(model_dir("vqa"))
    answers = vqa_tokenizer.batch_decode(torch_outputs["answer_ids"], skip_special_tokens=True)
    assert sum(a == e.answer for a, e in zip(answers, examples)) >= 5
    itc = torch_outputs["itc"]
    assert (itc.argmax(0) == np.arange(len(examples))).sum() >= 5


@pytest.mark.skipif(not _tf_available(), reason="blip_tf is not importable")
def test_tf_matches_torch(torch_outputs, eval_demo, examples):
    tf_outputs = _outputs(eval_demo, "tf", examples)
    for key in ("caption_ids", "answer_ids"):
        np.testing.assert_array_equal(tf_outputs[key], torch_outputs[key], err_msg=key)
    for key in ("itc", "itm"):
        np.testing.assert_allclose(tf_outputs[key], torch_outputs[key], atol=1e-4, err_msg=key)


def test_training_vocabulary_is_deterministic():
    """blip_apps.demo.training (scripts/train_demo.py) builds its vocabulary in a fixed order
    (the tokenizers WordPiece trainer alone gives different ids from run to run), with every
    demo word one token."""
    pytest.importorskip("torch")  # the training module imports it
    from blip_apps.demo import training as module

    first, second = module.train_tokenizer(), module.train_tokenizer()
    assert first.get_vocab() == second.get_vocab()
    assert first.convert_ids_to_tokens(list(range(7))) == module.SPECIAL_TOKENS
    assert first.bos_token_id == module.SPECIAL_TOKENS.index("[DEC]")


def test_training_smoke_run_saves_a_loadable_model(tmp_path):
    """Two caption steps through the script's library function: the saved directory loads
    strictly, with the deterministic tokenizer and the config built from it.  (The shipped
    models predate the fixed-order vocabulary, so their vocabularies differ.)"""
    pytest.importorskip("torch")
    from blip_apps.demo.training import make_config, train_demo_models, train_tokenizer
    from blip_torch import BlipForConditionalGeneration

    lines = []
    times = train_demo_models(
        tmp_path, steps_caption=2, batch_size=2, tasks=["caption"], threads=1, echo=lines.append
    )
    assert set(times) == {"caption"}
    assert any("caption step 2/2" in line for line in lines)
    assert (tmp_path / "train_log.txt").read_text().splitlines() == lines
    model = BlipForConditionalGeneration.from_pretrained(tmp_path / "caption")
    # the saved tokenizer is the deterministic one, and the config was sized from it
    vocab = train_tokenizer().get_vocab()
    saved = (tmp_path / "caption" / "vocab.txt").read_text().splitlines()
    assert saved == sorted(vocab, key=vocab.get)
    assert model.config.text_config.vocab_size == len(vocab)
    saved_config = {k: v for k, v in model.config.to_dict().items() if k != "architectures"}
    assert saved_config == make_config(train_tokenizer()).to_dict()
    with pytest.raises(ValueError, match="unknown"):
        train_demo_models(tmp_path, tasks=["segmentation"])


def test_demo_report_captions_the_examples():
    """`make demo`'s report (torch only): the captions the README lists for the example images
    (3 beams), the questions and the caption-matching table."""
    pytest.importorskip("torch")
    from blip_apps.backends import load_backend
    from blip_apps.demo.run import QUESTIONS, demo_report

    images = [ROOT / "examples" / "orange_cross.png", ROOT / "examples" / "two_blues.png"]
    report = demo_report(images, {"torch": load_backend("torch", threads=2)})
    assert "a large orange cross" in report
    assert "a small blue triangle left of a large blue circle" in report
    assert all(q in report for q in QUESTIONS)
    assert "Best-matching caption per image (ITM)" in report
    with pytest.raises(ValueError, match="at least one image"):
        demo_report([], {"torch": None})
