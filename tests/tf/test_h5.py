"""``tf_model.h5``: files written by transformers' own TF BLIP, our reader and writer, errors."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import warnings

import h5py
import numpy as np
import pytest

import blip_tf  # noqa: E402
from blip_core.weights import WeightLoadError, read_checkpoint  # noqa: E402
from blip_core.weights.h5 import (  # noqa: E402
    _read_name_list,
    _write_name_list,
    read_tf_h5,
    read_tf_h5_variables,
    write_tf_h5,
)
from tests.helpers import flatten_outputs  # noqa: E402
from tests.tf.cases import (  # noqa: E402
    ALL_CLASSES,
    ROOT,
    TF_FIXTURES,
    config_for,
    load_fixture_inputs,
    tiny_config,
)

FIXTURE_CLASSES = {"caption": "BlipForConditionalGeneration", "blip_model": "BlipModel"}


def _random_state(class_name: str, seed: int = 0) -> dict[str, np.ndarray]:
    model = getattr(blip_tf, class_name)(config_for(class_name, tiny_config()))
    rng = np.random.default_rng(seed)
    return {
        k: rng.standard_normal(v.shape).astype(np.float32)
        for k, v in model.get_weights_dict().items()
    }


@pytest.mark.parametrize("case", sorted(FIXTURE_CLASSES))
def test_transformers_tf_files_load_and_match_pytorch(case):
    """Files written by transformers' TF BLIP (converted from PyTorch) give the PyTorch outputs."""
    directory = TF_FIXTURES / case
    kwargs, data = load_fixture_inputs(directory)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = getattr(blip_tf, FIXTURE_CLASSES[case]).from_pretrained(directory)
    lm_head_warnings = [w for w in caught if "LM-head kernel" in str(w.message)]
    # transformers lost the tied LM-head kernel when it converted the caption model.
    assert len(lm_head_warnings) == (1 if case == "caption" else 0)
    got = flatten_outputs(model(**kwargs))
    expected = {k[4:]: v for k, v in data.items() if k.startswith("out.")}
    assert set(expected) <= set(got)
    for key, value in expected.items():
        np.testing.assert_allclose(got[key], value, atol=1e-5, err_msg=key)
    if case == "caption":  # transformers' own TF model computes wrong logits from this file
        assert np.abs(data["tf.logits"] - expected["logits"]).max() > 0.1


def test_reader_layout_on_a_transformers_file():
    path = TF_FIXTURES / "blip_model" / "tf_model.h5"
    raw = read_tf_h5_variables(path)
    assert all(name.startswith("blip/") for name in raw)  # TFBlipModel's main layer
    assert raw["blip/vision_model/embeddings/patch_embedding/kernel"].shape == (8, 8, 3, 32)
    state = read_tf_h5(path)
    assert state["vision_model.embeddings.patch_embedding.weight"].shape == (32, 3, 8, 8)
    assert state["logit_scale"].shape == ()
    model = blip_tf.BlipModel(tiny_config())
    assert set(state) == set(model.get_weights_dict())


def test_reader_can_keep_the_file_lm_head_kernel():
    path = TF_FIXTURES / "caption" / "tf_model.h5"
    with pytest.warns(UserWarning, match="LM-head kernel"):
        tied = read_tf_h5(path)
    raw = read_tf_h5(path, keep_decoder_weight=True)
    key = "text_decoder.cls.predictions.decoder.weight"
    assert key not in tied and raw[key].shape == (99, 32)
    assert set(raw) - set(tied) == {key}


@pytest.mark.parametrize("class_name", ALL_CLASSES)
def test_writer_reader_round_trip(tmp_path, class_name):
    state = _random_state(class_name)
    path = write_tf_h5(state, tmp_path / "tf_model.h5", class_name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the writer stores the tied kernel: no warning back
        back = read_tf_h5(path)
    assert set(back) == set(state)
    for key in state:
        np.testing.assert_array_equal(back[key], state[key], err_msg=key)
    with h5py.File(path, "r") as file:
        names = _read_name_list(file, "layer_names")
    from blip_core.weights.h5 import TF_MODEL_LAYOUTS

    assert names == list(TF_MODEL_LAYOUTS[class_name][2])


def test_loading_our_h5_into_blip_tf(tmp_path):
    state = _random_state("BlipForQuestionAnswering", seed=3)
    write_tf_h5(state, tmp_path / "tf_model.h5", "TFBlipForQuestionAnswering")
    tiny_config().save_pretrained(tmp_path)
    model = blip_tf.BlipForQuestionAnswering.from_pretrained(tmp_path)
    for key, value in model.get_weights_dict().items():
        np.testing.assert_array_equal(value, state[key], err_msg=key)


def test_long_name_lists_are_chunked_like_keras():
    names = [f"model/{'x' * 200}/layer_{i}/kernel:0" for i in range(1000)]
    with h5py.File("chunked.h5", "w", driver="core", backing_store=False) as file:
        _write_name_list(file, "weight_names", names)
        assert "weight_names" not in file.attrs and "weight_names0" in file.attrs
        assert _read_name_list(file, "weight_names") == names


@pytest.mark.skipif(
    importlib.util.find_spec("transformers") is None
    or importlib.util.find_spec("tf_keras") is None,
    reason="transformers' TF BLIP (transformers + tf-keras) is needed",
)
def test_transformers_tf_loads_our_h5(tmp_path):
    """transformers' TFBlipForConditionalGeneration loads our tf_model.h5 (no missing or
    unexpected weights) and computes the PyTorch outputs (our file keeps the LM head tied)."""
    case = TF_FIXTURES / "caption"
    shutil.copy(case / "config.json", tmp_path / "config.json")
    with pytest.warns(UserWarning):
        state = read_checkpoint(case)
    write_tf_h5(state, tmp_path / "tf_model.h5", "BlipForConditionalGeneration")
    code = (
        "import sys, numpy as np, transformers\n"
        "from transformers.utils import logging\n"
        "logging.set_verbosity_error()\n"
        f"model, info = transformers.TFBlipForConditionalGeneration.from_pretrained("
        f"{str(tmp_path)!r}, output_loading_info=True)\n"
        "assert not info['missing_keys'] and not info['unexpected_keys'], info\n"
        f"data = dict(np.load({str(case / 'expected.npz')!r}))\n"
        "kw = {k[3:]: v for k, v in data.items() if k.startswith('in.')}\n"
        "out = model(**kw)\n"
        "diff = float(np.abs(out.logits.numpy() - data['out.logits']).max())\n"
        "assert diff < 1e-4, diff\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("USE_TF", "USE_TORCH")}
    env.update(TF_USE_LEGACY_KERAS="1", USE_TORCH="0", TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]


# ---- errors ------------------------------------------------------------------------------


def _write_bert_like_h5(path):
    with h5py.File(path, "w") as file:
        _write_name_list(file, "layer_names", ["bert"])
        group = file.create_group("bert")
        names = [
            "tf_bert_model/bert/embeddings/word_embeddings/weight:0",
            "tf_bert_model/bert/embeddings/token_type_embeddings/embeddings:0",
        ]
        _write_name_list(group, "weight_names", names)
        for name in names:
            group.create_dataset(name, data=np.zeros((4, 2), np.float32))


def test_h5_of_another_model_is_one_clear_error(tmp_path):
    _write_bert_like_h5(tmp_path / "tf_model.h5")
    with pytest.raises(WeightLoadError, match="tf_model.h5: not a BLIP checkpoint"):
        read_tf_h5(tmp_path / "tf_model.h5")
    tiny_config().save_pretrained(tmp_path)
    with pytest.raises(WeightLoadError, match="not a BLIP checkpoint"):
        blip_tf.BlipForConditionalGeneration.from_pretrained(tmp_path)


def test_h5_with_some_foreign_names_is_refused(tmp_path):
    state = _random_state("BlipVisionModel")
    path = write_tf_h5(state, tmp_path / "tf_model.h5", "BlipVisionModel")
    with h5py.File(path, "a") as file:
        group = file["encoder"]
        names = _read_name_list(group, "weight_names") + ["tf_blip_vision_model/encoder/rogue/w:0"]
        del group.attrs["weight_names"]
        _write_name_list(group, "weight_names", names)
        group.create_dataset(names[-1], data=np.zeros(3, np.float32))
    with pytest.raises(WeightLoadError, match="1 variables are not BLIP weights: encoder/rogue/w"):
        read_tf_h5(path)


def test_keras3_weights_file_and_garbage_are_refused(tmp_path):
    model = blip_tf.BlipVisionModel(tiny_config().vision_config)
    model.save_weights(tmp_path / "model.weights.h5")
    with pytest.raises(WeightLoadError, match="no 'layer_names' attribute"):
        read_tf_h5(tmp_path / "model.weights.h5")
    (tmp_path / "tf_model.h5").write_bytes(b"not an hdf5 file")
    with pytest.raises(WeightLoadError, match="not a readable HDF5 file"):
        read_tf_h5(tmp_path / "tf_model.h5")
    with pytest.raises(FileNotFoundError):
        read_tf_h5(tmp_path / "missing.h5")


def test_h5_with_wrong_shapes_names_the_key(tmp_path):
    shutil.copy(TF_FIXTURES / "caption" / "tf_model.h5", tmp_path / "tf_model.h5")
    config = tiny_config()
    config.vision_config.intermediate_size = 40
    config.save_pretrained(tmp_path)
    with (
        pytest.warns(UserWarning),
        pytest.raises(WeightLoadError, match=r"fc1.weight: checkpoint has \(41, 32\)"),
    ):
        blip_tf.BlipForConditionalGeneration.from_pretrained(tmp_path)


def test_writer_refuses_keys_of_another_class(tmp_path):
    state = _random_state("BlipForImageTextRetrieval")
    with pytest.raises(ValueError, match="itm_head.*does not have"):
        write_tf_h5(state, tmp_path / "x.h5", "BlipForConditionalGeneration")
    with pytest.raises(ValueError, match="unknown BLIP model class"):
        write_tf_h5(state, tmp_path / "x.h5", "BertModel")
    assert not (tmp_path / "x.h5").exists()
