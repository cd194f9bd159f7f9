"""Configs: defaults of the reference API, JSON round trips, validation errors."""

from __future__ import annotations

import json

import pytest

from blip_core import BlipConfig, BlipTextConfig, BlipVisionConfig, ConfigError

TEXT_DEFAULTS = dict(
    vocab_size=30524, hidden_size=768, encoder_hidden_size=768, intermediate_size=3072,
    projection_dim=768, num_hidden_layers=12, num_attention_heads=8, max_position_embeddings=512,
    hidden_act="gelu", layer_norm_eps=1e-12, hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0, initializer_range=0.02, bos_token_id=30522, eos_token_id=2,
    pad_token_id=0, sep_token_id=102, is_decoder=True, use_cache=True, label_smoothing=0.0,
)  # fmt: skip
VISION_DEFAULTS = dict(
    hidden_size=768, intermediate_size=3072, projection_dim=512, num_hidden_layers=12,
    num_attention_heads=12, image_size=384, patch_size=16, hidden_act="gelu", layer_norm_eps=1e-5,
    attention_dropout=0.0, initializer_range=1e-10,
)  # fmt: skip


def test_defaults_are_the_reference_api():
    text, vision, config = BlipTextConfig(), BlipVisionConfig(), BlipConfig()
    for k, v in TEXT_DEFAULTS.items():
        assert getattr(text, k) == v, k
    for k, v in VISION_DEFAULTS.items():
        assert getattr(vision, k) == v, k
    assert config.projection_dim == 512
    assert config.logit_scale_init_value == 2.6592
    assert config.image_text_hidden_size == 256


def test_defaults_match_transformers():
    transformers = pytest.importorskip("transformers")
    ref = transformers.BlipConfig().to_dict()
    ours = BlipConfig().to_dict()
    for section in ("text_config", "vision_config"):
        for key, value in ours[section].items():
            if key in ref[section] and key != "model_type":
                assert ref[section][key] == value, (section, key)
    for key in ("projection_dim", "logit_scale_init_value", "image_text_hidden_size"):
        assert ref[key] == ours[key]


def test_encoder_hidden_size_follows_vision_width():
    config = BlipConfig(
        text_config=BlipTextConfig(encoder_hidden_size=1),
        vision_config=BlipVisionConfig(hidden_size=1024, num_attention_heads=16),
    )
    assert config.text_config.encoder_hidden_size == 1024
    config = BlipConfig.from_text_vision_configs(
        BlipTextConfig(), BlipVisionConfig(hidden_size=64, num_attention_heads=4)
    )
    assert config.text_config.encoder_hidden_size == 64


def test_json_round_trip_keeps_unknown_keys(tmp_path):
    data = BlipConfig().to_dict()
    data["architectures"] = ["BlipForConditionalGeneration"]
    data["text_config"]["some_future_key"] = [1, 2]
    data["torch_dtype"] = "float32"
    (tmp_path / "config.json").write_text(json.dumps(data))
    config = BlipConfig.from_pretrained(tmp_path)
    config.save_pretrained(tmp_path / "out")
    again = json.loads((tmp_path / "out" / "config.json").read_text())
    assert again == data
    assert BlipConfig.from_pretrained(tmp_path / "out") == config


def test_transformers_written_config_reads(tmp_path):
    transformers = pytest.importorskip("transformers")
    ref = transformers.BlipConfig(text_config={"num_attention_heads": 12, "vocab_size": 1000})
    ref.save_pretrained(tmp_path)
    config = BlipConfig.from_pretrained(tmp_path)
    assert config.text_config.num_attention_heads == 12
    assert config.text_config.vocab_size == 1000
    assert config.text_config.bos_token_id == 30522  # omitted by 4.57 when default


@pytest.mark.parametrize(
    "factory, message",
    [
        (
            lambda: BlipTextConfig(hidden_size=100, num_attention_heads=12),
            "text_config.hidden_size (100)",
        ),
        (lambda: BlipVisionConfig(image_size=385), "vision_config.image_size (385)"),
        (
            lambda: BlipVisionConfig(patch_size=0),
            "vision_config.patch_size must be a positive integer, got 0",
        ),
        (
            lambda: BlipTextConfig(vocab_size=-5),
            "text_config.vocab_size must be a positive integer, got -5",
        ),
        (lambda: BlipTextConfig(layer_norm_eps=-1.0), "text_config.layer_norm_eps must be >= 0"),
        (lambda: BlipTextConfig(hidden_act="relu"), "hidden_act must be 'gelu'"),
        (lambda: BlipConfig(projection_dim=0), "config.projection_dim"),
        (lambda: BlipConfig.from_dict({"model_type": "clip"}), "model_type is 'clip'"),
    ],
)
def test_invalid_values_name_the_field(factory, message):
    with pytest.raises(ConfigError) as info:
        factory()
    assert message in str(info.value)


def test_unreadable_config_file(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        BlipConfig.from_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such file"):
        BlipConfig.from_pretrained(tmp_path / "missing")
