"""Strict configs (issues 11 and 12): a config.json missing a field that changes shapes or
numerics warns, naming the file, the field and the default; a wrongly typed field raises a
ConfigError naming the file, the field and the expected type; files written by transformers load
without a warning."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from blip_core.config import (
    BlipConfig,
    BlipTextConfig,
    BlipVisionConfig,
    ConfigError,
    ConfigWarning,
    load_config,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
REFERENCE_CONFIGS = sorted(FIXTURES.glob("*/*/config.json"))


def _full_config() -> dict:
    """A complete composite config.json (written by this library)."""
    return BlipConfig(
        text_config=BlipTextConfig(num_attention_heads=12),
        vision_config=BlipVisionConfig(),
    ).to_dict()


def _write(tmp_path: Path, data) -> Path:
    (tmp_path / "config.json").write_text(json.dumps(data), encoding="utf-8")
    return tmp_path / "config.json"


def _load_quietly(loader):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return loader()


# ---- no warning for complete files ---------------------------------------------------------------


@pytest.mark.parametrize(
    "path", REFERENCE_CONFIGS, ids=lambda p: f"{p.parent.parent.name}/{p.parent.name}"
)
def test_transformers_fixture_configs_load_without_warning(path) -> None:
    config = _load_quietly(lambda: BlipConfig.from_pretrained(path.parent))
    data = json.loads(path.read_text())
    assert config.text_config.num_attention_heads == data["text_config"]["num_attention_heads"]
    _load_quietly(lambda: load_config(BlipTextConfig, path.parent))
    _load_quietly(lambda: load_config(BlipVisionConfig, path.parent))


def test_fresh_transformers_configs_load_without_warning(tmp_path) -> None:
    transformers = pytest.importorskip("transformers")
    transformers.BlipConfig().save_pretrained(tmp_path / "blip")
    transformers.BlipTextConfig(num_attention_heads=12).save_pretrained(tmp_path / "text")
    transformers.BlipVisionConfig().save_pretrained(tmp_path / "vision")
    _load_quietly(lambda: BlipConfig.from_pretrained(tmp_path / "blip"))
    text = _load_quietly(lambda: load_config(BlipTextConfig, tmp_path / "text"))
    assert text.num_attention_heads == 12
    _load_quietly(lambda: load_config(BlipVisionConfig, tmp_path / "vision"))


def test_our_saved_config_loads_without_warning(tmp_path) -> None:
    BlipConfig.from_dict(_full_config()).save_pretrained(tmp_path)
    _load_quietly(lambda: BlipConfig.from_pretrained(tmp_path))


def test_from_dict_without_a_file_does_not_warn() -> None:
    # Building a config in code from a partial dict is ordinary use, not a broken file.
    config = _load_quietly(lambda: BlipConfig.from_dict({"text_config": {"hidden_size": 96}}))
    assert config.text_config.num_attention_heads == 8


# ---- warnings for missing fields ---------------------------------------------------------------


def test_missing_text_heads_warns_with_file_field_and_default(tmp_path) -> None:
    data = _full_config()
    del data["text_config"]["num_attention_heads"]
    file = _write(tmp_path, data)
    with pytest.warns(ConfigWarning) as record:
        config = BlipConfig.from_pretrained(tmp_path)
    assert config.text_config.num_attention_heads == 8  # the reference API's default
    messages = [str(w.message) for w in record]
    assert len(messages) == 1, messages
    assert str(file) in messages[0]
    assert "text_config.num_attention_heads is missing; using the default 8" in messages[0]
    assert "12" in messages[0]
    assert issubclass(ConfigWarning, UserWarning)


STRICT = [
    *(("text_config", name) for name in BlipTextConfig.STRICT_FIELDS),
    *(("vision_config", name) for name in BlipVisionConfig.STRICT_FIELDS),
    *((None, name) for name in BlipConfig.STRICT_FIELDS),
]


@pytest.mark.parametrize("section, name", STRICT, ids=lambda v: str(v))
def test_every_strict_field_warns_when_missing(tmp_path, section, name) -> None:
    data = _full_config()
    holder = data if section is None else data[section]
    del holder[name]
    file = _write(tmp_path, data)
    owner = "config" if section is None else section
    if (section, name) == ("text_config", "encoder_hidden_size"):
        # The composite takes it from vision_config.hidden_size: nothing to warn about.
        _load_quietly(lambda: BlipConfig.from_pretrained(tmp_path))
        return
    with pytest.warns(ConfigWarning, match=f"{owner}.{name} is missing; using the default") as rec:
        BlipConfig.from_pretrained(tmp_path)
    assert all(str(file) in str(w.message) for w in rec)


def test_shape_fields_are_strict() -> None:
    # The fields the issue names: heads, sizes, layers, epsilons, vocabulary, image/patch size.
    assert {"num_attention_heads", "hidden_size", "intermediate_size", "num_hidden_layers"} <= set(
        BlipTextConfig.STRICT_FIELDS
    ) & set(BlipVisionConfig.STRICT_FIELDS)
    assert {"vocab_size", "layer_norm_eps", "max_position_embeddings"} <= set(
        BlipTextConfig.STRICT_FIELDS
    )
    assert {"image_size", "patch_size", "layer_norm_eps"} <= set(BlipVisionConfig.STRICT_FIELDS)
    assert {"projection_dim", "image_text_hidden_size"} <= set(BlipConfig.STRICT_FIELDS)


@pytest.mark.parametrize("section", ["text_config", "vision_config"])
def test_missing_sub_config_warns(tmp_path, section) -> None:
    data = _full_config()
    del data[section]
    file = _write(tmp_path, data)
    with pytest.warns(ConfigWarning, match=f"{section} is missing; using the Blip") as record:
        BlipConfig.from_pretrained(tmp_path)
    assert str(file) in str(record[0].message)


def test_standalone_text_config_warns(tmp_path) -> None:
    data = BlipTextConfig(num_attention_heads=12).to_dict()
    del data["num_attention_heads"]
    file = _write(tmp_path, data)
    with pytest.warns(ConfigWarning, match="text_config.num_attention_heads is missing") as rec:
        load_config(BlipTextConfig, tmp_path)
    assert str(file) in str(rec[0].message)


# ---- errors for wrong types ---------------------------------------------------------------------


def _set(data: dict, path: str, value) -> dict:
    *parents, leaf = path.split(".")
    holder = data
    for key in parents:
        holder = holder[key]
    holder[leaf] = value
    return data


WRONG_TYPES = [
    ("text_config", "bert", "text_config must be a JSON object (dict) or a BlipTextConfig"),
    ("vision_config", [1, 2], "vision_config must be a JSON object (dict) or a BlipVisionConfig"),
    ("text_config.hidden_size", "768", "text_config.hidden_size must be an integer (int), got '768' (a str)"),
    ("vision_config.hidden_size", 7.5, "vision_config.hidden_size must be an integer (int), got 7.5 (a float)"),
    ("vision_config.num_hidden_layers", True, "vision_config.num_hidden_layers must be an integer (int), got True (a bool)"),
    ("text_config.num_attention_heads", None, "text_config.num_attention_heads must be an integer (int), got None"),
    ("text_config.layer_norm_eps", "1e-12", "text_config.layer_norm_eps must be a number (float), got '1e-12' (a str)"),
    ("vision_config.layer_norm_eps", False, "vision_config.layer_norm_eps must be a number (float), got False (a bool)"),
    ("text_config.is_decoder", "yes", "text_config.is_decoder must be true or false (bool), got 'yes' (a str)"),
    ("text_config.hidden_act", 5, "text_config.hidden_act must be a string (str), got 5 (a int)"),
    ("projection_dim", "256", "config.projection_dim must be an integer (int), got '256' (a str)"),
]  # fmt: skip


@pytest.mark.parametrize("path, value, message", WRONG_TYPES, ids=[w[0] for w in WRONG_TYPES])
def test_wrong_types_raise_config_error_naming_file_and_field(tmp_path, path, value, message):
    file = _write(tmp_path, _set(_full_config(), path, value))
    with pytest.raises(ConfigError) as info:
        BlipConfig.from_pretrained(tmp_path)
    text = str(info.value)
    assert text.startswith(f"{file}: "), text
    assert message in text


@pytest.mark.parametrize("cls", [BlipTextConfig, BlipVisionConfig])
def test_wrong_types_in_sub_config_loads(tmp_path, cls) -> None:
    file = _write(tmp_path, _set(_full_config(), "vision_config.patch_size", "16"))
    with pytest.raises(ConfigError, match="vision_config.patch_size must be an integer") as info:
        load_config(cls, tmp_path)
    assert str(file) in str(info.value)
    standalone = cls().to_dict()
    standalone["hidden_size"] = [768]
    file = _write(tmp_path, standalone)
    with pytest.raises(ConfigError, match=f"{cls.owner}.hidden_size must be an integer") as info:
        load_config(cls, tmp_path)
    assert str(file) in str(info.value)


@pytest.mark.parametrize("data", [[1, 2], "blip", 3])
def test_top_level_not_an_object(tmp_path, data) -> None:
    file = _write(tmp_path, data)
    with pytest.raises(ConfigError, match="config must be a JSON object") as info:
        BlipConfig.from_pretrained(tmp_path)
    assert str(file) in str(info.value)
    with pytest.raises(ConfigError, match="text_config must be a JSON object") as info:
        load_config(BlipTextConfig, tmp_path)
    assert str(file) in str(info.value)


def test_constructor_checks_types_too() -> None:
    with pytest.raises(ConfigError, match="config.text_config must be a JSON object"):
        BlipConfig(text_config="bert")
    with pytest.raises(ConfigError, match="vision_config.image_size must be an integer"):
        BlipVisionConfig(image_size=384.0)
    assert BlipTextConfig(layer_norm_eps=0).layer_norm_eps == 0  # an int is a number
