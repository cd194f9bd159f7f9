"""BLIP configurations: the fields and defaults of the hub ``config.json`` files.

The three classes mirror ``transformers``' ``BlipTextConfig``, ``BlipVisionConfig`` and
``BlipConfig``.  Keys in a ``config.json`` that these classes do not model (``architectures``,
``transformers_version``, the generic ``PretrainedConfig`` fields, ...) are kept in ``extra`` and
written back unchanged, so a load/save round trip loses nothing.

Configs are strict:

* every field has the type its annotation says (an ``int`` field takes an integer, not ``"768"``,
  ``7.5`` or ``true``; a ``float`` field takes an int or a float; ``text_config`` and
  ``vision_config`` are JSON objects); anything else is a :class:`ConfigError` that names the
  field (and, from :meth:`BlipConfig.from_pretrained` / :func:`load_config`, the file);
* a ``config.json`` read from disk that lacks a field changing shapes or numerics (the
  ``STRICT_FIELDS`` of each class: sizes, head and layer counts, epsilons, vocabulary, image and
  patch size, projection widths, the activation) gives a
  :class:`ConfigWarning` naming the file, the field and the default used -- notably a
  ``text_config`` without ``num_attention_heads``, whose default (8) differs from every released
  checkpoint (12).  Files written by ``transformers`` or by this library state all of them.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import numbers
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

CONFIG_NAME = "config.json"


class ConfigError(ValueError):
    """An invalid configuration value or an unreadable configuration file."""


class ConfigWarning(UserWarning):
    """A ``config.json`` lacks a field that changes shapes or numerics; its default was used."""


_TYPE_NAMES = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string"}


def _type_ok(kind: str, value: Any) -> bool:
    if kind == "int":
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "str":
        return isinstance(value, str)
    return True


def _check_types(owner: str, config: Any) -> None:
    """Each simple field (``int``, ``float``, ``bool``, ``str``) holds a value of its type."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if isinstance(f.type, str) and f.type in _TYPE_NAMES and not _type_ok(f.type, value):
            raise ConfigError(
                f"{owner}.{f.name} must be {_TYPE_NAMES[f.type]} ({f.type}), got {value!r} "
                f"(a {type(value).__name__})"
            )


def _warn_missing(
    source: str, owner: str, cls: type, data: dict[str, Any], ignore: tuple[str, ...] = ()
) -> None:
    """A :class:`ConfigWarning` for each of ``cls.STRICT_FIELDS`` that ``data`` (read from
    ``source``) lacks, naming the file, the field and the default used."""
    defaults = {f.name: f for f in dataclasses.fields(cls)}
    for name in cls.STRICT_FIELDS:
        if name in data or name in ignore:
            continue
        f = defaults[name]
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        note = cls.MISSING_NOTES.get(name, "")
        warnings.warn(
            f"{source}: {owner}.{name} is missing; using the default {default!r}{note}",
            ConfigWarning,
            stacklevel=3,
        )


_MISSING_SUB_CONFIG_NOTES = {
    "text_config": " (8 attention heads; the released BLIP checkpoints use 12)",
    "vision_config": "",
}


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
    owner: ClassVar[str] = "config"  # how messages name this config
    STRICT_FIELDS: ClassVar[tuple[str, ...]] = ()  # missing from a file -> ConfigWarning
    MISSING_NOTES: ClassVar[dict[str, str]] = {}  # extra words for some missing fields
    extra: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_types(self.owner, self)
        self.validate()

    def validate(self) -> None:  # pragma: no cover - overridden
        pass

    @classmethod
    def _field_names(cls) -> set[str]:
        return {f.name for f in dataclasses.fields(cls) if f.name != "extra"}

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str | None = None):
        """Build from a ``config.json`` mapping.  ``source`` (the file it was read from) turns
        on the :class:`ConfigWarning` for missing :attr:`STRICT_FIELDS`."""
        if not isinstance(data, dict):
            raise ConfigError(
                f"{cls.owner} must be a JSON object (dict), got {data!r} (a {type(data).__name__})"
            )
        if source is not None:
            _warn_missing(source, cls.owner, cls, data)
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
    owner: ClassVar[str] = "text_config"
    STRICT_FIELDS: ClassVar[tuple[str, ...]] = (
        "vocab_size",
        "hidden_size",
        "encoder_hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "max_position_embeddings",
        "hidden_act",
        "layer_norm_eps",
    )
    MISSING_NOTES: ClassVar[dict[str, str]] = {
        "num_attention_heads": " (the released BLIP checkpoints use 12; with the wrong count the "
        "weights load and the numbers are wrong)",
    }

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
    owner: ClassVar[str] = "vision_config"
    STRICT_FIELDS: ClassVar[tuple[str, ...]] = (
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "image_size",
        "patch_size",
        "hidden_act",
        "layer_norm_eps",
    )

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
    owner: ClassVar[str] = "config"
    STRICT_FIELDS: ClassVar[tuple[str, ...]] = (
        "projection_dim",
        "image_text_hidden_size",
    )

    text_config: BlipTextConfig = field(default_factory=BlipTextConfig)
    vision_config: BlipVisionConfig = field(default_factory=BlipVisionConfig)
    projection_dim: int = 512
    logit_scale_init_value: float = 2.6592
    image_text_hidden_size: int = 256
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        for name, sub_cls in (("text_config", BlipTextConfig), ("vision_config", BlipVisionConfig)):
            value = getattr(self, name)
            if value is None:
                value = sub_cls()
            elif isinstance(value, dict):
                value = sub_cls.from_dict(value)
            elif not isinstance(value, sub_cls):
                raise ConfigError(
                    f"config.{name} must be a JSON object (dict) or a {sub_cls.__name__}, got "
                    f"{value!r} (a {type(value).__name__})"
                )
            setattr(self, name, value)
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
    def from_dict(cls, data: dict[str, Any], *, source: str | None = None) -> BlipConfig:
        """Build from a composite ``config.json`` mapping (``text_config`` and ``vision_config``
        as nested objects); ``source`` turns on the missing-field warnings, for the nested
        configs too."""
        if not isinstance(data, dict):
            raise ConfigError(
                f"config must be a JSON object (dict), got {data!r} (a {type(data).__name__})"
            )
        model_type = data.get("model_type", "blip")
        if model_type != "blip":
            raise ConfigError(f"config model_type is {model_type!r}, expected 'blip'")
        data = dict(data)
        for name, sub_cls in (("text_config", BlipTextConfig), ("vision_config", BlipVisionConfig)):
            value = data.get(name)
            if source is not None and value is None:
                warnings.warn(
                    f"{source}: {name} is missing; using the {sub_cls.__name__} defaults"
                    f"{_MISSING_SUB_CONFIG_NOTES[name]}",
                    ConfigWarning,
                    stacklevel=2,
                )
            elif isinstance(value, dict):
                if source is not None:
                    # encoder_hidden_size is set from the vision width here, never read.
                    _warn_missing(source, name, sub_cls, value, ignore=("encoder_hidden_size",))
                data[name] = sub_cls.from_dict(value)
        return super().from_dict(data, source=source)

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
        return _from_file(cls, file)

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        out = directory / CONFIG_NAME
        tmp = out.with_suffix(".json.tmp")
        tmp.write_text(self.to_json_string(), encoding="utf-8")
        os.replace(tmp, out)
        return out


def _from_file(config_cls, file: Path):
    """Parse ``file`` and build ``config_cls`` from it (with the missing-field warnings); every
    error is a :class:`ConfigError` that starts with the file's path."""
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: not valid JSON ({exc})") from exc
    try:
        if config_cls is not BlipConfig and isinstance(data, dict):
            if data.get("model_type") == "blip":  # a sub-config out of a composite file
                composite = BlipConfig.from_dict(data, source=str(file))
                if config_cls is BlipVisionConfig:
                    return composite.vision_config
                return composite.text_config
        return config_cls.from_dict(data, source=str(file))
    except (ConfigError, TypeError) as exc:
        raise ConfigError(f"{file}: {exc}") from exc


def load_config(config_cls, directory: str | os.PathLike):
    """The config of ``config_cls`` from a directory's ``config.json``: a composite BlipConfig,
    or a text/vision sub-config (taken out of a composite file when the file is one).  Strict as
    :meth:`BlipConfig.from_pretrained`: wrong types raise, missing fields warn."""
    if config_cls is BlipConfig:
        return BlipConfig.from_pretrained(directory)
    file = Path(directory) / CONFIG_NAME
    if not file.is_file():
        raise FileNotFoundError(f"{directory}: no {CONFIG_NAME} in this directory")
    return _from_file(config_cls, file)


def enc_token_id(config: BlipConfig) -> int:
    """The ``[ENC]`` id: ``text_config.enc_token_id`` if a config sets it, else the id after
    ``[DEC]`` (30523 in the released vocabularies)."""
    text = config.text_config
    return int(text.extra.get("enc_token_id", text.bos_token_id + 1))
