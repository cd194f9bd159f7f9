"""Generation settings: transformers' ``GenerationConfig`` fields and how one ``generate`` call
resolves them (the model's ``generation_config.json``, a caller's config, keyword arguments).

Also the original BLIP captioning presets (:data:`ORIGINAL_BLIP_PROMPT`,
:data:`ORIGINAL_BLIP_CAPTION`).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

GENERATION_CONFIG_NAME = "generation_config.json"

# The original BLIP captioning settings (BLIP's demo and evaluation): 3 beams, max_length 20,
# min_length 5, and the prompt "a picture of " which is stripped from the returned caption.
ORIGINAL_BLIP_PROMPT = "a picture of "
ORIGINAL_BLIP_CAPTION = {"num_beams": 3, "max_length": 20, "min_length": 5}


@dataclass
class GenerationConfig:
    """Decoding settings (the fields and defaults of transformers' ``GenerationConfig``)."""

    max_length: int = 20  # total length, prompt included
    max_new_tokens: int | None = None  # overrides max_length when set
    min_length: int = 0  # total length, prompt included
    min_new_tokens: int | None = None
    do_sample: bool = False
    num_beams: int = 1
    num_return_sequences: int = 1
    temperature: float = 1.0
    top_k: int | None = 50
    top_p: float | None = 1.0
    repetition_penalty: float = 1.0
    length_penalty: float = 1.0
    early_stopping: bool | str = False
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    pad_token_id: int | None = None
    seed: int | None = None  # numpy seed for sampling; None draws fresh entropy
    extra: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        def bad(name: str, why: str) -> ValueError:
            return ValueError(f"generation setting {name}={getattr(self, name)!r}: {why}")

        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise bad("max_new_tokens", "must be >= 1")
        if self.max_length < 1:
            raise bad("max_length", "must be >= 1")
        if self.num_beams < 1:
            raise bad("num_beams", "must be >= 1")
        if self.num_return_sequences < 1:
            raise bad("num_return_sequences", "must be >= 1")
        if self.num_beams > 1 and self.num_return_sequences > self.num_beams:
            raise bad("num_return_sequences", f"cannot exceed num_beams ({self.num_beams})")
        if self.num_beams == 1 and not self.do_sample and self.num_return_sequences > 1:
            raise bad("num_return_sequences", "greedy search returns one sequence per input")
        if not self.temperature > 0:
            raise bad("temperature", "must be > 0")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise bad("top_p", "must be in (0, 1]")
        if self.top_k is not None and self.top_k < 0:
            raise bad("top_k", "must be >= 0")
        if not self.repetition_penalty > 0:
            raise bad("repetition_penalty", "must be > 0")
        if self.early_stopping not in (True, False, "never"):
            raise bad("early_stopping", "must be True, False or 'never'")

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenerationConfig:
        data = copy.deepcopy(data)
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: data.pop(k) for k in list(data) if k in names}
        return cls(**known, extra=data)

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in copy.deepcopy(self.extra).items() if not k.startswith("_")}
        for f in dataclasses.fields(self):
            if f.name != "extra":
                out[f.name] = copy.deepcopy(getattr(self, f.name))
        return out

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> GenerationConfig:
        path = Path(directory)
        file = path / GENERATION_CONFIG_NAME if path.is_dir() else path
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FileNotFoundError(f"{file}: no such file") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"{file}: not valid JSON ({exc})") from exc
        return cls.from_dict(data)

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        path = Path(directory) / GENERATION_CONFIG_NAME
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n", "utf-8")
        return path

    def merged(self, **overrides: Any) -> GenerationConfig:
        """A validated copy with ``overrides`` applied (unknown names are an error)."""
        names = {f.name for f in dataclasses.fields(self)} - {"extra"}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise TypeError(f"unknown generation argument(s): {', '.join(unknown)}")
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["extra"] = copy.deepcopy(self.extra)
        data.update({k: v for k, v in overrides.items() if v is not None or k == "seed"})
        return GenerationConfig(**data)

    @property
    def eos_ids(self) -> list[int]:
        if self.eos_token_id is None:
            return []
        if isinstance(self.eos_token_id, int):
            return [self.eos_token_id]
        return list(self.eos_token_id)


def resolve_generation_config(
    base: GenerationConfig | None,
    generation_config: GenerationConfig | None,
    kwargs: dict,
    max_positions: int | None = None,
) -> GenerationConfig:
    """The settings for one call: ``generation_config`` (or the model's) updated by kwargs.

    When no ``max_length`` was asked for and it has its default (20), it counts *new* tokens, as
    in transformers (``max_length = 20 + prompt length``, capped at ``max_positions``).
    """
    config = (generation_config or base or GenerationConfig()).merged(**kwargs)
    default = kwargs.get("max_length") is None and config.max_length == 20
    config.extra["_max_length_is_default"] = default
    config.extra["_max_positions"] = max_positions
    return config


def blip_generation_config(
    model_config: GenerationConfig | None,
    text_config,
    generation_config: GenerationConfig | None,
    kwargs: dict,
) -> GenerationConfig:
    """Settings for a BLIP ``generate`` call, as the reference builds them: the model's settings
    (``generation_config.json``) with BLIP's ids (``[DEC]`` starts, ``[SEP]`` ends, ``[PAD]``
    pads); a caller's ``generation_config`` gets the ids it leaves unset; kwargs win."""
    ids = dict(
        bos_token_id=text_config.bos_token_id,
        eos_token_id=text_config.sep_token_id,
        pad_token_id=text_config.pad_token_id,
    )
    base = (model_config or GenerationConfig()).merged(**ids)
    if generation_config is not None:
        unset = {k: v for k, v in ids.items() if getattr(generation_config, k) is None}
        generation_config = generation_config.merged(**unset)
    return resolve_generation_config(
        base, generation_config, kwargs, text_config.max_position_embeddings
    )
