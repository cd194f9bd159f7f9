"""BLIP configurations: the fields and defaults of the hub ``config.json`` files.

The three classes mirror ``transformers``' ``BlipTextConfig``, ``BlipVisionConfig`` and
``BlipConfig``.  Keys in a ``config.json`` that these classes do not model (``architectures``,
``transformers_version``, the generic ``PretrainedConfig`` fields, ...) are kept in ``extra`` and
written back unchanged, so a load/save round trip loses nothing.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

CONFIG_NAME = "config.json"


class ConfigError(ValueError):
    """An invalid configuration value or an unreadable configuration file."""


def _check_positive(owner: str, **values: Any) -> None:
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ConfigError(f"{owner}.{name} must be a positive integer, got {value!r}")


def _check_non_negative(owner: str, **values: Any) -> None:
    for name, value in values.items():
        if not isinstance(value, (int, float)) or value < 0:
            raise ConfigError(f"{owner}.{name} must be >= 0, got {value!r}")


def _check_divisible(owner: str, num_name: str, num: int, den_name: str, den: int) -> None:
    if num % den != 0:
        raise ConfigError(
            f"{owner}.{num_name} ({num}) must be divisible by {owner}.{den_name} ({den})"
        )


@dataclass
class _ConfigBase:
    """Shared JSON plumbing: known fields are dataclass fields, the rest lives in ``extra``."""

    model_type: ClassVar[str] = ""
    extra: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:  # pragma: no cover - overridden
        pass

    @classmethod
    def _field_names(cls) -> set[str]:
        return {f.name for f in dataclasses.fields(cls) if f.name != "extra"}

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        if not isinstance(data, dict):
            raise ConfigError(f"{cls.__name__}.from_dict expects a dict, got {type(data).__name__}")
        data = copy.deepcopy(data)
        known = {k: data.pop(k) for k in list(data) if k in cls._field_names()}
        data.pop("model_type", None)
        return cls(**known, extra=data)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = copy.deepcopy(self.extra)
        for name in sorted(self._field_names()):
            out[name] = copy.deepcopy(getattr(self, name))
        out["model_type"] = self.model_type
        return out

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def copy(self):
        return self.from_dict(self.to_dict())


@dataclass
class BlipTextConfig(_ConfigBase):
    """The BERT-style text encoder/decoder (defaults of ``transformers.BlipTextConfig``).

    Note the default ``num_attention_heads`` is 8 as in the reference API, while every released
    BLIP checkpoint uses 12: hub ``config.json`` files state it explicitly.
    """

    model_type: ClassVar[str] = "blip_text_model"

    vocab_size: int = 30524
    hidden_size: int = 768
    encoder_hidden_size: int = 768  # width of the states cross-attention reads (the image)
    intermediate_size: int = 3072
    projection_dim: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 8
    max_position_embeddings: int = 512
    hidden_act: str = "gelu"  # exact erf GELU
    layer_norm_eps: float = 1e-12
    hidden_dropout_prob: float = 0.0
    attention_probs_dropout_prob: float = 0.0
    initializer_range: float = 0.02
    bos_token_id: int = 30522  # [DEC]
    eos_token_id: int = 2
    pad_token_id: int = 0
    sep_token_id: int = 102  # [SEP] ends generation
    is_decoder: bool = True  # every layer owns cross-attention weights when true
    use_cache: bool = True
    label_smoothing: float = 0.0
    # transformers 4.57 drops ``encoder_attention_mask`` inside cross-attention (BlipTextAttention
    # never passes it on), so padded encoder states (batched VQA questions) are attended to.  The
    # original BLIP masks them; so do we by default.  True reproduces the reference exactly.
    ignore_encoder_attention_mask: bool = False

    def validate(self) -> None:
        owner = "text_config"
        _check_positive(
            owner,
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            encoder_hidden_size=self.encoder_hidden_size,
            intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            max_position_embeddings=self.max_position_embeddings,
        )
        _check_divisible(
            owner, "hidden_size", self.hidden_size, "num_attention_heads", self.num_attention_heads
        )
        _check_non_negative(
            owner,
            layer_norm_eps=self.layer_norm_eps,
            hidden_dropout_prob=self.hidden_dropout_prob,
            attention_probs_dropout_prob=self.attention_probs_dropout_prob,
            label_smoothing=self.label_smoothing,
        )
        if self.hidden_act not in ("gelu",):
            raise ConfigError(f"{owner}.hidden_act must be 'gelu', got {self.hidden_act!r}")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads


@dataclass
class BlipVisionConfig(_ConfigBase):
    """The ViT image encoder (defaults of ``transformers.BlipVisionConfig``)."""

    model_type: ClassVar[str] = "blip_vision_model"

    hidden_size: int = 768
    intermediate_size: int = 3072
    projection_dim: int = 512
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    image_size: int = 384
    patch_size: int = 16
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-5  # transformers' configs; the original ViT used 1e-6
    attention_dropout: float = 0.0
    initializer_range: float = 1e-10

    def validate(self) -> None:
        owner = "vision_config"
        _check_positive(
            owner,
            hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            image_size=self.image_size,
            patch_size=self.patch_size,
        )
        _check_divisible(
            owner, "hidden_size", self.hidden_size, "num_attention_heads", self.num_attention_heads
        )
        _check_divisible(owner, "image_size", self.image_size, "patch_size", self.patch_size)
        _check_non_negative(
            owner, layer_norm_eps=self.layer_norm_eps, attention_dropout=self.attention_dropout
        )
        if self.hidden_act not in ("gelu",):
            raise ConfigError(f"{owner}.hidden_act must be 'gelu', got {self.hidden_act!r}")

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    @property
    def num_positions(self) -> int:
        return self.num_patches + 1


@dataclass
class BlipConfig(_ConfigBase):
    """The composite configuration of every BLIP task model."""

    model_type: ClassVar[str] = "blip"

    text_config: BlipTextConfig = field(default_factory=BlipTextConfig)
    vision_config: BlipVisionConfig = field(default_factory=BlipVisionConfig)
    projection_dim: int = 512
    logit_scale_init_value: float = 2.6592
    image_text_hidden_size: int = 256
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.text_config, dict):
            self.text_config = BlipTextConfig.from_dict(self.text_config)
        if isinstance(self.vision_config, dict):
            self.vision_config = BlipVisionConfig.from_dict(self.vision_config)
        if self.text_config is None:
            self.text_config = BlipTextConfig()
        if self.vision_config is None:
            self.vision_config = BlipVisionConfig()
        # As in transformers: cross-attention reads the image states, so its width follows them.
        self.text_config.encoder_hidden_size = self.vision_config.hidden_size
        super().__post_init__()

    def validate(self) -> None:
        _check_positive(
            "config",
            projection_dim=self.projection_dim,
            image_text_hidden_size=self.image_text_hidden_size,
        )

    @classmethod
    def from_text_vision_configs(
        cls, text_config: BlipTextConfig, vision_config: BlipVisionConfig, **kwargs: Any
    ) -> BlipConfig:
        return cls(text_config=text_config.copy(), vision_config=vision_config.copy(), **kwargs)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BlipConfig:
        if not isinstance(data, dict):
            raise ConfigError(f"BlipConfig.from_dict expects a dict, got {type(data).__name__}")
        model_type = data.get("model_type", "blip")
        if model_type != "blip":
            raise ConfigError(f"config model_type is {model_type!r}, expected 'blip'")
        return super().from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["text_config"] = self.text_config.to_dict()
        out["vision_config"] = self.vision_config.to_dict()
        return out

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike) -> BlipConfig:
        """Read ``config.json`` from a hub-layout directory (or a path to the file itself)."""
        path = Path(path)
        file = path / CONFIG_NAME if path.is_dir() else path
        if not file.exists():
            if not path.exists():
                raise FileNotFoundError(f"{path}: no such file or directory")
            raise FileNotFoundError(f"{path}: no {CONFIG_NAME} in this directory")
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{file}: not valid JSON ({exc})") from exc
        try:
            return cls.from_dict(data)
        except (ConfigError, TypeError) as exc:
            raise ConfigError(f"{file}: {exc}") from exc

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        out = directory / CONFIG_NAME
        tmp = out.with_suffix(".json.tmp")
        tmp.write_text(self.to_json_string(), encoding="utf-8")
        os.replace(tmp, out)
        return out


def load_config(config_cls, directory: str | os.PathLike):
    """The config of ``config_cls`` from a directory's ``config.json``: a composite BlipConfig,
    or a text/vision sub-config (taken out of a composite file when the file is one)."""
    if config_cls is BlipConfig:
        return BlipConfig.from_pretrained(directory)
    file = Path(directory) / CONFIG_NAME
    if not file.is_file():
        raise FileNotFoundError(f"{directory}: no {CONFIG_NAME} in this directory")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: not valid JSON ({exc})") from exc
    if data.get("model_type") == "blip":
        composite = BlipConfig.from_dict(data)
        return composite.vision_config if config_cls is BlipVisionConfig else composite.text_config
    return config_cls.from_dict(data)


def enc_token_id(config: BlipConfig) -> int:
    """The ``[ENC]`` id: ``text_config.enc_token_id`` if a config sets it, else the id after
    ``[DEC]`` (30523 in the released vocabularies)."""
    text = config.text_config
    return int(text.extra.get("enc_token_id", text.bos_token_id + 1))
