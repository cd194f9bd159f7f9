"""The one map between canonical BLIP keys and Keras variable paths, in both directions.

Canonical keys are the ``transformers`` PyTorch state-dict keys
(``vision_model.encoder.layers.0.self_attn.qkv.weight``).  A Keras variable path is the path of a
``blip_tf`` variable relative to its model, which is also the path ``transformers``' own TF BLIP
writes into ``tf_model.h5`` (after the model-name prefix):
``vision_model/encoder/layers_._0/self_attn/qkv/kernel``.

The mapping is a rule:

* module path: dots become slashes, and a list index is glued to its list with ``_._``
  (``layers.0`` <-> ``layers_._0``, the Keras 2 / transformers-TF spelling, because a Keras layer
  name cannot be a bare number);
* the parameter name and layout follow the first row of :data:`RULES` whose module pattern matches
  the last module name (``LayerNorm.weight`` <-> ``LayerNorm/gamma``, ``dense.weight`` <->
  ``dense/kernel`` transposed, ...).

Both directions are derived from :data:`RULES`; each layout transform is a named numpy function
registered in :data:`TRANSFORMS` together with its inverse.  This module imports neither torch nor
tensorflow.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

# --------------------------------------------------------------------------------------------
# Layout transforms: canonical (PyTorch) layout -> Keras layout, and back.


def identity(array: np.ndarray) -> np.ndarray:
    """Same layout on both sides (biases, LayerNorm gamma/beta, embedding tables, raw params)."""
    return array


def linear_weight_to_kernel(weight: np.ndarray) -> np.ndarray:
    """``nn.Linear.weight`` ``(out, in)`` -> ``keras.layers.Dense.kernel`` ``(in, out)``."""
    if weight.ndim != 2:
        raise ValueError(f"a linear weight is 2-D (out, in), got shape {weight.shape}")
    return weight.T


def kernel_to_linear_weight(kernel: np.ndarray) -> np.ndarray:
    """``keras.layers.Dense.kernel`` ``(in, out)`` -> ``nn.Linear.weight`` ``(out, in)``."""
    if kernel.ndim != 2:
        raise ValueError(f"a Dense kernel is 2-D (in, out), got shape {kernel.shape}")
    return kernel.T


def conv_oihw_to_hwio(weight: np.ndarray) -> np.ndarray:
    """``nn.Conv2d.weight`` ``(out, in, kh, kw)`` -> ``keras.layers.Conv2D.kernel`` ``(kh, kw, in, out)``."""
    if weight.ndim != 4:
        raise ValueError(f"a conv weight is 4-D (out, in, kh, kw), got shape {weight.shape}")
    return weight.transpose(2, 3, 1, 0)


def conv_hwio_to_oihw(kernel: np.ndarray) -> np.ndarray:
    """``keras.layers.Conv2D.kernel`` ``(kh, kw, in, out)`` -> ``nn.Conv2d.weight`` ``(out, in, kh, kw)``."""
    if kernel.ndim != 4:
        raise ValueError(f"a Conv2D kernel is 4-D (kh, kw, in, out), got shape {kernel.shape}")
    return kernel.transpose(3, 2, 0, 1)


Transform = Callable[[np.ndarray], np.ndarray]

# name -> (canonical -> keras, keras -> canonical)
TRANSFORMS: dict[str, tuple[Transform, Transform]] = {
    "identity": (identity, identity),
    "linear": (linear_weight_to_kernel, kernel_to_linear_weight),
    "conv2d": (conv_oihw_to_hwio, conv_hwio_to_oihw),
}


# --------------------------------------------------------------------------------------------
# The table.


@dataclass(frozen=True)
class Rule:
    """Parameter ``torch_name`` of a module whose last name matches ``module`` (a full-match
    regex) is the Keras variable ``keras_name`` of the layer of the same name, laid out by
    ``transform``."""

    module: str
    torch_name: str
    keras_name: str
    transform: str

    def matches_torch(self, module_name: str, param: str) -> bool:
        return param == self.torch_name and re.fullmatch(self.module, module_name) is not None

    def matches_keras(self, module_name: str, variable: str) -> bool:
        return variable == self.keras_name and re.fullmatch(self.module, module_name) is not None


_LAYER_NORMS = r"LayerNorm|layer_norm\d|post_layernorm"
_EMBEDDING_TABLES = r"word_embeddings|position_embeddings"

# First match wins, in both directions.  ``module`` is the last component of the module path
# ("" for parameters owned by the model itself, like ``logit_scale``).
RULES: tuple[Rule, ...] = (
    Rule(_LAYER_NORMS, "weight", "gamma", "identity"),
    Rule(_LAYER_NORMS, "bias", "beta", "identity"),
    Rule(_EMBEDDING_TABLES, "weight", "embeddings", "identity"),
    Rule("patch_embedding", "weight", "kernel", "conv2d"),
    # Raw parameters (nn.Parameter in PyTorch, add_weight in Keras), same name and layout:
    # vision class token (1, 1, D) and position table (1, 1 + N, D), the CLIP-style temperature
    # (a scalar), and the LM-head output bias (vocab,).
    Rule("embeddings", "class_embedding", "class_embedding", "identity"),
    Rule("embeddings", "position_embedding", "position_embedding", "identity"),
    Rule("", "logit_scale", "logit_scale", "identity"),
    Rule("predictions", "bias", "bias", "identity"),
    # Everything else is a linear layer (the LM-head decoder included, when a file stores it).
    Rule(r".+", "weight", "kernel", "linear"),
    Rule(r".+", "bias", "bias", "identity"),
)

_INDEX_SUFFIX = re.compile(r"^(.+)_\._(\d+)$")


def _module_to_keras(parts: list[str]) -> list[str]:
    out: list[str] = []
    for part in parts:
        if part.isdigit():
            if not out:
                raise KeyError(f"list index {part!r} without a list name")
            out[-1] = f"{out[-1]}_._{part}"
        else:
            out.append(part)
    return out


def _module_to_torch(parts: list[str]) -> list[str]:
    out: list[str] = []
    for part in parts:
        match = _INDEX_SUFFIX.match(part)
        out.extend(match.groups() if match else (part,))
    return out


def _torch_rule(key: str) -> tuple[list[str], Rule]:
    *module, param = key.split(".")
    last = module[-1] if module else ""
    for rule in RULES:
        if rule.matches_torch(last, param):
            return module, rule
    raise KeyError(f"{key!r}: no rule maps this canonical key to a Keras variable")


def _keras_rule(path: str) -> tuple[list[str], Rule]:
    *module, variable = path.split("/")
    torch_module = _module_to_torch(module)
    last = torch_module[-1] if torch_module else ""
    for rule in RULES:
        if rule.matches_keras(last, variable):
            return torch_module, rule
    raise KeyError(f"{path!r}: no rule maps this Keras variable path to a canonical key")


def canonical_to_keras_path(key: str) -> str:
    """``text_decoder.bert.encoder.layer.0.output.LayerNorm.weight`` ->
    ``text_decoder/bert/encoder/layer_._0/output/LayerNorm/gamma``."""
    module, rule = _torch_rule(key)
    return "/".join([*_module_to_keras(module), rule.keras_name])


def keras_to_canonical_path(path: str) -> str:
    """The inverse of :func:`canonical_to_keras_path`."""
    module, rule = _keras_rule(path)
    return ".".join([*module, rule.torch_name])


def to_keras(key: str, value: np.ndarray) -> tuple[str, np.ndarray]:
    """``(keras_path, array in Keras layout)`` for a canonical ``(key, array)``."""
    module, rule = _torch_rule(key)
    forward, _ = TRANSFORMS[rule.transform]
    try:
        array = forward(np.asarray(value))
    except ValueError as exc:
        raise ValueError(f"{key}: {exc}") from None
    return "/".join([*_module_to_keras(module), rule.keras_name]), array


def to_canonical(path: str, value: np.ndarray) -> tuple[str, np.ndarray]:
    """``(canonical_key, array in PyTorch layout)`` for a Keras ``(path, array)``."""
    module, rule = _keras_rule(path)
    _, inverse = TRANSFORMS[rule.transform]
    try:
        array = inverse(np.asarray(value))
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    return ".".join([*module, rule.torch_name]), array


def canonical_shape(path: str, keras_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The canonical shape of the Keras variable at ``path`` (no data is touched)."""
    placeholder = np.broadcast_to(np.zeros((), np.float32), tuple(keras_shape))
    return tuple(to_canonical(path, placeholder)[1].shape)


def state_to_keras(state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A whole canonical dict in Keras paths and layouts."""
    return dict(to_keras(key, value) for key, value in state.items())


def state_to_canonical(variables: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A whole ``{keras_path: array}`` dict in canonical keys and layouts."""
    return dict(to_canonical(path, value) for path, value in variables.items())
