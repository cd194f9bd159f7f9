"""blip_tf weights: the canonical map, round trips, file formats, Keras saving, loading errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("transformers")
torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

import blip_tf  # noqa: E402
from blip_core.weights import WeightLoadError, read_checkpoint  # noqa: E402
from blip_core.weights.tf_map import canonical_to_keras_path  # noqa: E402
from blip_tf.checkpoint import keras_variables  # noqa: E402
from tests.helpers import TINY_TEXT, TINY_VISION, compare_outputs  # noqa: E402
from tests.tf.cases import (  # noqa: E402
    ALL_CLASSES,
    ROOT,
    config_for,
    save_reference,
    tiny_config,
    torch_state,
)
from tests.torch.cases import case_kwargs, to_torch  # noqa: E402

TIED = ("cls.predictions.decoder.weight", "cls.predictions.decoder.bias")


def _canonical_reference_keys(model) -> set[str]:
    return {k for k in model.state_dict() if not k.endswith(TIED) and "position_ids" not in k}


@pytest.mark.parametrize("class_name", ALL_CLASSES)
def test_weight_round_trip_is_bit_exact_and_one_to_one(class_name):
    """canonical (transformers state dict) -> Keras -> canonical: same keys, same bits."""
    from tests.reference import build_reference

    reference = build_reference(class_name)
    state = torch_state(reference)
    ours = getattr(blip_tf, class_name)(config_for(class_name, tiny_config()))
    ours.load_weights_dict(state)
    back = ours.get_weights_dict()
    assert set(back) == _canonical_reference_keys(reference)
    assert len(keras_variables(ours)) == len(back)  # one variable per canonical key
    for key, value in back.items():
        assert value.dtype == state[key].dtype and value.shape == state[key].shape, key
        np.testing.assert_array_equal(value, state[key], err_msg=key)


def test_variable_paths_follow_the_rule():
    model = blip_tf.BlipForConditionalGeneration(tiny_config())
    paths = set(keras_variables(model))
    for key in (
        "vision_model.encoder.layers.1.self_attn.qkv.weight",
        "vision_model.embeddings.patch_embedding.weight",
        "text_decoder.bert.encoder.layer.0.crossattention.output.LayerNorm.bias",
        "text_decoder.bert.embeddings.word_embeddings.weight",
        "text_decoder.cls.predictions.bias",
    ):
        assert canonical_to_keras_path(key) in paths, key
    assert "vision_model/encoder/layers_._1/self_attn/qkv/kernel" in paths
    assert "text_decoder/bert/encoder/layer_._0/crossattention/output/LayerNorm/beta" in paths
    # The LM head has no variable of its own: it reads the word embeddings.
    assert not any("decoder/kernel" in p for p in paths)


def test_paths_do_not_depend_on_where_the_model_is_built():
    with keras.name_scope("outer"):
        inner = blip_tf.BlipForQuestionAnswering(tiny_config())
    outer = blip_tf.BlipForQuestionAnswering(tiny_config())
    assert set(inner.get_weights_dict()) == set(outer.get_weights_dict())


def test_dropout_layers_own_no_weights():
    config = tiny_config()
    config.text_config.hidden_dropout_prob = 0.1
    config.vision_config.attention_dropout = 0.1
    model = blip_tf.BlipForConditionalGeneration(config)
    assert set(model.get_weights_dict()) == set(
        blip_tf.BlipForConditionalGeneration(tiny_config()).get_weights_dict()
    )


@pytest.mark.parametrize("class_name", ALL_CLASSES)
def test_save_pretrained_loads_in_transformers(tmp_path, class_name):
    """Our files are PyTorch files: transformers loads them strictly and computes the same."""
    import transformers
    from transformers.models.blip.modeling_blip_text import BlipTextLMHeadModel

    save_reference(class_name, tmp_path / "ref")
    ours = getattr(blip_tf, class_name).from_pretrained(tmp_path / "ref")
    ours.save_pretrained(tmp_path / "ours")
    config = json.loads((tmp_path / "ours" / "config.json").read_text())
    assert config["architectures"] == [class_name]
    cls = (
        BlipTextLMHeadModel
        if class_name == "BlipTextLMHeadModel"
        else getattr(transformers, class_name)
    )
    reloaded, info = cls.from_pretrained(tmp_path / "ours", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    assert not info["mismatched_keys"], info
    reloaded.eval()
    ref_state = torch_state(reloaded)
    for key, value in ours.get_weights_dict().items():
        np.testing.assert_array_equal(ref_state[key], value, err_msg=key)


def test_sub_model_loads_from_a_task_checkpoint(tmp_path):
    save_reference("BlipForConditionalGeneration", tmp_path)
    task = blip_tf.BlipForConditionalGeneration.from_pretrained(tmp_path)
    vision = blip_tf.BlipVisionModel.from_pretrained(tmp_path)
    decoder = blip_tf.BlipTextLMHeadModel.from_pretrained(tmp_path)
    assert vision.config.hidden_size == TINY_VISION["hidden_size"]
    pixels = case_kwargs("caption", TINY_TEXT, TINY_VISION)["pixel_values"]
    compare_outputs(vision(pixels), task.vision_model(pixels), atol=0.0)
    np.testing.assert_array_equal(
        decoder.get_output_embeddings().numpy(), task.text_decoder.get_output_embeddings().numpy()
    )


def test_pickle_and_sharded_checkpoints(tmp_path):
    reference = save_reference("BlipForImageTextRetrieval", tmp_path / "safe")
    reference.save_pretrained(tmp_path / "bin", safe_serialization=False)
    reference.save_pretrained(tmp_path / "sharded", max_shard_size="100KB")
    assert (tmp_path / "bin" / "pytorch_model.bin").is_file()
    assert (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    expected = blip_tf.BlipForImageTextRetrieval.from_pretrained(
        tmp_path / "safe"
    ).get_weights_dict()
    for name in ("bin", "sharded"):
        got = blip_tf.BlipForImageTextRetrieval.from_pretrained(tmp_path / name).get_weights_dict()
        assert set(got) == set(expected)
        for key in expected:
            np.testing.assert_array_equal(got[key], expected[key], err_msg=f"{name}: {key}")


def test_older_file_with_explicit_tied_keys_loads(tmp_path):
    from blip_core.weights.io import write_safetensors

    save_reference("BlipForConditionalGeneration", tmp_path)
    state = read_checkpoint(tmp_path)
    prefix = "text_decoder."
    state[prefix + TIED[0]] = state[prefix + "bert.embeddings.word_embeddings.weight"].copy()
    state[prefix + TIED[1]] = state[prefix + "cls.predictions.bias"].copy()
    write_safetensors(state, tmp_path / "model.safetensors")
    model = blip_tf.BlipForConditionalGeneration.from_pretrained(tmp_path)
    assert len(model.get_weights_dict()) == len(state) - 2


@pytest.mark.parametrize(
    "class_name", ["BlipForConditionalGeneration", "BlipTextModel", "BlipModel"]
)
def test_keras_native_save_and_load(tmp_path, class_name):
    config = config_for(class_name, tiny_config())
    kwargs = {"add_pooling_layer": False} if class_name == "BlipTextModel" else {}
    model = getattr(blip_tf, class_name)(config, **kwargs)
    case = {"BlipForConditionalGeneration": "caption", "BlipModel": "blip_model"}.get(
        class_name, "text_encoder"
    )
    inputs = case_kwargs(case, TINY_TEXT, TINY_VISION)
    expected = model(**inputs)

    model.save(tmp_path / "model.keras")
    restored = keras.models.load_model(tmp_path / "model.keras")
    assert type(restored) is type(model)
    assert getattr(restored, "add_pooling_layer", False) == getattr(
        model, "add_pooling_layer", False
    )
    compare_outputs(restored(**inputs), expected, atol=0.0)

    model.save_weights(tmp_path / "model.weights.h5")
    fresh = getattr(blip_tf, class_name)(config, **kwargs)
    fresh.load_weights(tmp_path / "model.weights.h5")
    compare_outputs(fresh(**inputs), expected, atol=0.0)


# ---- errors ------------------------------------------------------------------------------


def test_caption_checkpoint_into_retrieval_model_fails_loudly(tmp_path):
    save_reference("BlipForConditionalGeneration", tmp_path)
    with pytest.raises(WeightLoadError) as info:
        blip_tf.BlipForImageTextRetrieval.from_pretrained(tmp_path)
    message = str(info.value)
    assert "missing keys" in message and "text_encoder." in message
    assert "unexpected keys" in message and "text_decoder." in message
    assert str(tmp_path) in message


def test_wrong_shape_names_the_key(tmp_path):
    save_reference("BlipForConditionalGeneration", tmp_path)
    config = tiny_config()
    config.text_config.vocab_size = 98
    with pytest.raises(WeightLoadError, match=r"word_embeddings.weight: checkpoint has \(99, 32\)"):
        blip_tf.BlipForConditionalGeneration.from_pretrained(tmp_path, config=config)


def test_untied_lm_head_in_safetensors_is_refused(tmp_path):
    from blip_core.weights.io import write_safetensors

    save_reference("BlipForConditionalGeneration", tmp_path)
    state = read_checkpoint(tmp_path)
    state["text_decoder." + TIED[0]] = np.ones((99, 32), np.float32)
    write_safetensors(state, tmp_path / "model.safetensors")
    with pytest.raises(WeightLoadError, match="ties the LM-head weight"):
        blip_tf.BlipForConditionalGeneration.from_pretrained(tmp_path)


def test_missing_directory_and_missing_weights(tmp_path):
    with pytest.raises(FileNotFoundError):
        blip_tf.BlipModel.from_pretrained(tmp_path / "nowhere")
    tiny_config().save_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="no weights file"):
        blip_tf.BlipModel.from_pretrained(tmp_path)


def test_loading_safetensors_and_h5_needs_no_torch(tmp_path):
    """from_pretrained on safetensors and tf_model.h5 never imports torch (or transformers)."""
    save_reference("BlipForConditionalGeneration", tmp_path)
    code = (
        "import sys; sys.modules['torch'] = None; import blip_tf; "
        f"blip_tf.BlipForConditionalGeneration.from_pretrained({str(tmp_path)!r}); "
        f"blip_tf.BlipModel.from_pretrained({str(ROOT / 'tests/fixtures/tf_reference/blip_model')!r}); "
        "bad = [m for m in ('transformers', 'tf_keras') if m in sys.modules]; assert not bad, bad"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]


def test_eager_outputs_with_pytorch_inputs_helper(tmp_path):
    """The `to_torch` helper and numpy kwargs describe the same call (guards the cases)."""
    reference = save_reference("BlipForQuestionAnswering", tmp_path)
    ours = blip_tf.BlipForQuestionAnswering.from_pretrained(tmp_path)
    ours.config.text_config.ignore_encoder_attention_mask = True
    kwargs = case_kwargs("vqa", TINY_TEXT, TINY_VISION)
    with torch.no_grad():
        expected = reference(**to_torch(kwargs))
    compare_outputs(ours(**kwargs), expected, atol=1e-5)
