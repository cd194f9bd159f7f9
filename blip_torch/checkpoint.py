"""from_pretrained / save_pretrained glue: torch modules <-> canonical numpy dicts, nothing else."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from blip_core.config import BlipConfig, BlipTextConfig, BlipVisionConfig, load_config
from blip_core.weights import check_keys, normalize_tied, read_checkpoint, write_safetensors
from blip_core.weights.io import SAFE_WEIGHTS_NAME
from blip_core.weights.names import select_submodel
from blip_torch.text import BlipTextLMHeadModel


def tied_aliases(model: nn.Module) -> dict[str, str]:
    """``{alias_key: canonical_key}`` for parameters shared under two names (the LM-head weight)."""
    seen: dict[int, str] = {}
    aliases: dict[str, str] = {}
    for key, tensor in model.state_dict(keep_vars=True).items():
        if id(tensor) in seen:
            aliases[key] = seen[id(tensor)]
        else:
            seen[id(tensor)] = key
    return aliases


def expected_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    aliases = tied_aliases(model)
    return {k: tuple(v.shape) for k, v in model.state_dict().items() if k not in aliases}


def state_to_numpy(model: nn.Module) -> dict[str, np.ndarray]:
    """Canonical numpy state (float32 copies; tied aliases dropped)."""
    aliases = tied_aliases(model)
    return {
        k: v.detach().cpu().float().numpy().copy()
        if v.is_floating_point()
        else v.detach().cpu().numpy().copy()
        for k, v in model.state_dict().items()
        if k not in aliases
    }


def load_numpy_state(
    model: nn.Module, state: dict[str, np.ndarray], source: str = "state", assign: bool = False
) -> None:
    """Strictly load a canonical numpy dict: one error listing missing/unexpected/mis-shaped keys.

    ``assign=True`` (a model built on the meta device) adopts the arrays' memory instead of
    copying into freshly initialised parameters: with memory-mapped files, one copy in all.
    """
    state = select_submodel([type(model).__name__], expected_shapes(model), dict(state))
    state = normalize_tied(state)
    expected = expected_shapes(model)
    check_keys(expected, {k: tuple(np.shape(v)) for k, v in state.items()}, source=source)
    params = model.state_dict()
    aliases = tied_aliases(model)
    tensors = {}
    for key, value in state.items():
        tensors[key] = torch.from_numpy(np.ascontiguousarray(value)).to(params[key].dtype)
    for alias, canonical in aliases.items():
        tensors[alias] = tensors[canonical]
    model.load_state_dict(tensors, strict=True, assign=assign)
    if assign:  # assign=True gives each key its own Parameter: tie the shared ones again
        for module in model.modules():
            if isinstance(module, BlipTextLMHeadModel):
                module.tie_weights()
        tied = tied_aliases(model)
        if set(tied) != set(aliases):
            raise RuntimeError(f"tied weights not restored after loading: {sorted(aliases)}")


_INIT_FUNCTIONS = (
    "uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "xavier_uniform_",
    "xavier_normal_", "kaiming_uniform_", "kaiming_normal_",
)  # fmt: skip


@contextlib.contextmanager
def skip_init():
    """Make ``torch.nn.init``'s fill functions no-ops while a model is built on the meta
    device: the values would be discarded, and the first random fill of a meta tensor imports
    torch._dynamo (measured: 1.6 s of a 1.8 s BLIP-base ``from_pretrained``)."""
    saved = {name: getattr(nn.init, name) for name in _INIT_FUNCTIONS}
    try:
        for name in _INIT_FUNCTIONS:
            setattr(nn.init, name, lambda tensor, *args, **kwargs: tensor)
        yield
    finally:
        for name, function in saved.items():
            setattr(nn.init, name, function)


class PreTrainedMixin:
    """``from_pretrained`` / ``save_pretrained`` for the blip_torch models."""

    config_class = BlipConfig

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        config=None,
        torch_dtype: torch.dtype | None = None,
        device: str | torch.device | None = None,
    ):
        from blip_core.hub import resolve_model_dir

        directory = resolve_model_dir(pretrained_model_name_or_path)
        if config is None:
            config = load_config(cls.config_class, directory)
        with torch.device("meta"), skip_init():  # every weight comes from the file
            model = cls(config)
        model.eval()
        weights = read_checkpoint(directory)
        load_numpy_state(model, weights, source=str(directory), assign=True)
        if (directory / "generation_config.json").is_file():
            from blip_core.generation import GenerationConfig

            model.generation_config = GenerationConfig.from_pretrained(directory)
        if torch_dtype is not None:
            model.to(torch_dtype)
        if device is not None:
            model.to(device)
        return model

    def save_pretrained(self, save_directory: str | os.PathLike) -> Path:
        directory = Path(save_directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = self.config
        if isinstance(config, (BlipTextConfig, BlipVisionConfig)):
            data = config.to_dict()
            data.setdefault("architectures", [type(self).__name__])
            (directory / "config.json").write_text(
                __import__("json").dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8"
            )
        else:
            config.extra["architectures"] = [type(self).__name__]
            config.save_pretrained(directory)
        write_safetensors(state_to_numpy(self), directory / SAFE_WEIGHTS_NAME)
        return directory
