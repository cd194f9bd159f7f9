"""The demo scene generator: deterministic per seed, and text consistent with the scene."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from blip_apps.demo import data


def _fingerprint(examples: list[data.Example]) -> list:
    return [(e.scene, e.caption, e.question, e.answer, e.image.tobytes()) for e in examples]


def test_same_seed_same_examples():
    assert _fingerprint(data.make_examples(7, 20)) == _fingerprint(data.make_examples(7, 20))


def test_different_seeds_differ():
    a, b = data.make_examples(7, 20), data.make_examples(8, 20)
    assert [e.scene for e in a] != [e.scene for e in b]
    train = {e.scene for e in data.make_examples(data.TRAIN_SEED, 200)}
    heldout = {e.scene for e in data.heldout_examples(200)}
    assert not train & heldout


def test_known_first_example():
    """Pins the generator: a change here changes the held-out set the models are scored on."""
    first = data.heldout_examples(1)[0]
    assert first.caption == GOLDEN_CAPTION
    assert (first.question, first.answer) == GOLDEN_QA


def test_images_are_rgb_64():
    for e in data.make_examples(3, 5):
        assert e.image.mode == "RGB" and e.image.size == (64, 64)


def _shape_pixels(image, shape: data.Shape) -> np.ndarray:
    pixels = np.asarray(image, dtype=np.int32)
    return pixels[shape.y, shape.x]  # every shape covers its centre


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_text_matches_scene(seed):
    for e in data.make_examples(seed, 100):
        shapes = e.scene.shapes
        assert 1 <= len(shapes) <= 3
        xs = [s.x for s in shapes]
        assert xs == sorted(xs) and all(b - a >= data.MIN_DX for a, b in zip(xs, xs[1:]))
        assert e.caption == " left of ".join(f"a {s.size} {s.color} {s.kind}" for s in shapes)
        assert (e.question, e.answer) in data.all_questions(e.scene)
        for s in shapes:  # the drawn colour at the centre is the named colour
            colour = _shape_pixels(e.image, s)
            assert np.abs(colour - np.array(data.COLORS[s.color])).max() <= 2


def test_questions_are_unambiguous():
    for e in data.make_examples(5, 200):
        answers: dict[str, set[str]] = {}
        for q, a in data.all_questions(e.scene):
            answers.setdefault(q, set()).add(a)
        assert all(len(v) == 1 for v in answers.values())
        assert answers["how many shapes are there?"] == {data.NUMBERS[len(e.scene.shapes)]}


def test_retrieval_set_has_distinct_captions():
    gallery = data.retrieval_set(data.HELDOUT_SEED, 100)
    assert len({e.caption for e in gallery}) == 100


def test_corpus_covers_all_words():
    words = {w for line in data.corpus() for w in line.replace("?", " ?").split()}
    for e in data.make_examples(11, 300):
        text = f"{e.caption} {e.question} {e.answer}".replace("?", " ?")
        assert set(text.split()) <= words


def test_blip_apps_demo_imports_no_framework():
    code = (
        "import sys, blip_apps.demo, blip_apps.demo.data; "
        "bad = [m for m in ('torch', 'tensorflow', 'keras') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_model_dir_errors(tmp_path, monkeypatch):
    import blip_apps.demo as demo

    with pytest.raises(ValueError, match="unknown demo task"):
        demo.model_dir("segmentation")
    monkeypatch.setattr(demo, "MODELS_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match="train_demo.py"):
        demo.model_dir("caption")


GOLDEN_CAPTION = "a large red triangle"
GOLDEN_QA = ("is there a purple circle?", "no")


def test_example_images_are_the_generator_scenes():
    from PIL import Image

    examples = Path(__file__).resolve().parents[2] / "examples"
    for name, scene in data.EXAMPLE_SCENES.items():
        sh = list(scene.shapes)
        assert all(data._fits(s, sh[:i]) for i, s in enumerate(sh)), name
        assert sh == sorted(sh, key=lambda s: s.x), name
        with Image.open(examples / f"{name}.png") as image:
            assert np.array_equal(np.asarray(image.convert("RGB")), np.asarray(data.render(scene)))
