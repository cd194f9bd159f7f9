"""blip_tf models as Keras-native ``.keras`` files: save, load, identical outputs."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import FIXTURES, flatten_outputs, make_inputs

keras = pytest.importorskip("keras")
pytest.importorskip("tensorflow")


def _inputs(task):
    inp = make_inputs(batch=2, length=6, vocab=99, seed=4)
    if task == "caption":
        return {k: inp[k] for k in ("pixel_values", "input_ids", "attention_mask")}
    if task == "vqa":
        return {k: inp[k] for k in ("input_ids", "pixel_values", "attention_mask")} | {
            "decoder_input_ids": inp["input_ids"], "labels": inp["labels"]}  # fmt: skip
    return {k: inp[k] for k in ("input_ids", "pixel_values", "attention_mask")}


@pytest.mark.parametrize(
    "task, name",
    [
        ("caption", "BlipForConditionalGeneration"),
        ("vqa", "BlipForQuestionAnswering"),
        ("itm", "BlipForImageTextRetrieval"),
    ],
)
def test_keras_file_round_trip_is_exact(tmp_path, task, name):
    import blip_tf

    model = getattr(blip_tf, name).from_pretrained(FIXTURES / task)
    inputs = _inputs(task)
    before = flatten_outputs(model(**inputs))
    path = tmp_path / f"{task}.keras"
    model.save(str(path))
    loaded = keras.models.load_model(str(path))
    assert type(loaded) is type(model)
    after = flatten_outputs(loaded(**inputs))
    assert set(after) == set(before)
    for key in before:
        np.testing.assert_array_equal(after[key], before[key], err_msg=key)
    if task == "caption":
        pixels = inputs["pixel_values"]
        np.testing.assert_array_equal(
            np.asarray(loaded.generate(pixels, max_new_tokens=6)),
            np.asarray(model.generate(pixels, max_new_tokens=6)),
        )
