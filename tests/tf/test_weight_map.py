"""The canonical <-> Keras weight map (framework-free): rules, transforms, inverses."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from blip_core.weights import tf_map
from blip_core.weights.h5 import is_blip_key
from tests.tf.cases import ROOT

EXAMPLES = {
    # canonical key: (keras path, transform)
    "vision_model.embeddings.class_embedding": (
        "vision_model/embeddings/class_embedding",
        "identity",
    ),
    "vision_model.embeddings.position_embedding": (
        "vision_model/embeddings/position_embedding",
        "identity",
    ),
    "vision_model.embeddings.patch_embedding.weight": (
        "vision_model/embeddings/patch_embedding/kernel",
        "conv2d",
    ),
    "vision_model.encoder.layers.11.self_attn.qkv.weight": (
        "vision_model/encoder/layers_._11/self_attn/qkv/kernel",
        "linear",
    ),
    "vision_model.encoder.layers.0.layer_norm2.bias": (
        "vision_model/encoder/layers_._0/layer_norm2/beta",
        "identity",
    ),
    "vision_model.post_layernorm.weight": ("vision_model/post_layernorm/gamma", "identity"),
    "text_decoder.bert.embeddings.word_embeddings.weight": (
        "text_decoder/bert/embeddings/word_embeddings/embeddings",
        "identity",
    ),
    "text_decoder.bert.encoder.layer.3.crossattention.self.key.bias": (
        "text_decoder/bert/encoder/layer_._3/crossattention/self/key/bias",
        "identity",
    ),
    "text_encoder.encoder.layer.0.output.LayerNorm.weight": (
        "text_encoder/encoder/layer_._0/output/LayerNorm/gamma",
        "identity",
    ),
    "text_decoder.cls.predictions.bias": ("text_decoder/cls/predictions/bias", "identity"),
    "text_decoder.cls.predictions.decoder.weight": (
        "text_decoder/cls/predictions/decoder/kernel",
        "linear",
    ),
    "logit_scale": ("logit_scale", "identity"),
    "visual_projection.weight": ("visual_projection/kernel", "linear"),
    "itm_head.bias": ("itm_head/bias", "identity"),
    "embeddings.patch_embedding.bias": ("embeddings/patch_embedding/bias", "identity"),
}


@pytest.mark.parametrize("key", sorted(EXAMPLES))
def test_examples_both_directions(key):
    path, transform = EXAMPLES[key]
    assert tf_map.canonical_to_keras_path(key) == path
    assert tf_map.keras_to_canonical_path(path) == key
    module, rule = tf_map._torch_rule(key)
    assert rule.transform == transform
    assert is_blip_key(key)


def test_layouts():
    rng = np.random.default_rng(0)
    linear = rng.standard_normal((5, 3)).astype(np.float32)  # (out, in)
    path, kernel = tf_map.to_keras("text_proj.weight", linear)
    assert path == "text_proj/kernel" and kernel.shape == (3, 5)
    np.testing.assert_array_equal(kernel, linear.T)
    conv = rng.standard_normal((8, 3, 4, 2)).astype(np.float32)  # OIHW
    _, hwio = tf_map.to_keras("embeddings.patch_embedding.weight", conv)
    assert hwio.shape == (4, 2, 3, 8)
    assert hwio[1, 0, 2, 5] == conv[5, 2, 1, 0]
    assert tf_map.canonical_shape("embeddings/patch_embedding/kernel", (4, 2, 3, 8)) == (8, 3, 4, 2)
    assert tf_map.canonical_shape("logit_scale", ()) == ()


@pytest.mark.parametrize("name", sorted(tf_map.TRANSFORMS))
def test_each_transform_is_inverted_by_its_partner(name):
    forward, inverse = tf_map.TRANSFORMS[name]
    shape = {"identity": (3, 4), "linear": (5, 3), "conv2d": (6, 3, 2, 2)}[name]
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    np.testing.assert_array_equal(inverse(forward(x)), x)
    assert forward.__doc__ and inverse.__doc__  # both layouts are documented


def test_wrong_rank_is_reported_with_the_key():
    with pytest.raises(ValueError, match="itm_head.weight: a linear weight is 2-D"):
        tf_map.to_keras("itm_head.weight", np.zeros((2, 3, 4)))


def test_unknown_names_are_refused():
    with pytest.raises(KeyError):
        tf_map.canonical_to_keras_path("encoder.layers.0.self_attn.qkv.running_mean")
    with pytest.raises(KeyError):
        tf_map.keras_to_canonical_path("encoder/layers_._0/norm/moving_variance")
    assert not is_blip_key("bert.embeddings.token_type_embeddings.weight")


def test_weight_map_modules_import_no_framework():
    code = (
        "import sys; import blip_core.weights.tf_map, blip_core.weights.h5, "
        "blip_core.weights.schema, blip_core.weights.convert; "
        "bad = [m for m in ('torch', 'tensorflow', 'keras', 'transformers') if m in sys.modules]; "
        "assert not bad, bad"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
