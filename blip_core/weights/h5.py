"""``tf_model.h5`` files as written and read by ``transformers``' TF BLIP (Keras 2 HDF5 layout).

Layout (what ``TFBlip*.save_pretrained`` writes through Keras 2's ``save_weights``)::

    attrs: layer_names = [top-level layer names], backend, keras_version
    <layer>/                       one group per top-level layer of the model
        attrs: weight_names = ["<model scope>/<layer>/.../<variable>:0", ...]
                 (split into weight_names0, weight_names1, ... past 64 KB of names)
        <model scope>/<layer>/.../<variable>:0     one dataset per variable
    top_level_model_weights/       variables owned by the model itself (none for BLIP)

``<model scope>`` is the Keras name of the model (``tf_blip_for_conditional_generation``, with a
``_1`` suffix when a process built two), so readers drop the first component of every weight
name.  ``TFBlipModel`` nests everything in one main layer named ``blip``.  Below those prefixes the
variable paths are exactly the Keras paths of :mod:`blip_core.weights.tf_map`.

transformers' TF BLIP keeps an *untied* LM-head kernel ``cls/predictions/decoder/kernel``.  A TF
model that transformers cross-loaded from a 4.57 PyTorch checkpoint (which no longer stores the
tied ``decoder.weight``) saves a randomly initialised kernel there; BLIP ties that weight to the
word embeddings, so the reader drops it (with a warning when it differs) unless asked to keep it,
and the writer stores the word embeddings there so that transformers' TF BLIP computes the right
logits from our files.

Which layers each class writes comes from :mod:`blip_core.weights.schema`
(:data:`~blip_core.weights.schema.TF_MODEL_LAYOUTS`, re-exported here).
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from blip_core.weights import tf_map
from blip_core.weights.io import WeightLoadError, atomic_write
from blip_core.weights.names import (
    DECODER_BIAS,
    DECODER_WEIGHT,
    LM_HEAD_PREFIXES,
    PREDICTION_BIAS,
    WORD_EMBEDDINGS,
    fill_untied_lm_head,
)
from blip_core.weights.schema import BLIP_KEY, TF_MODEL_LAYOUTS, is_blip_key, schema

# Keras 2's limit on the bytes of one HDF5 attribute (larger name lists are chunked).
HDF5_OBJECT_HEADER_LIMIT = 64512


def _decode(names) -> list[str]:
    return [n.decode("utf8") if isinstance(n, (bytes, np.bytes_)) else str(n) for n in names]


def _read_name_list(group, name: str) -> list[str] | None:
    """A (possibly chunked) list-of-names attribute, as Keras 2 writes it; None if absent."""
    if name in group.attrs:
        return _decode(group.attrs[name])
    chunks, chunk_id = [], 0
    while f"{name}{chunk_id}" in group.attrs:
        chunks.extend(_decode(group.attrs[f"{name}{chunk_id}"]))
        chunk_id += 1
    return chunks if chunk_id else None


def _write_name_list(group, name: str, names: list[str]) -> None:
    data = np.array([n.encode("utf8") for n in names])
    if data.nbytes <= HDF5_OBJECT_HEADER_LIMIT:
        group.attrs[name] = data
        return
    num_chunks = 1
    chunks = [data]
    while any(c.nbytes > HDF5_OBJECT_HEADER_LIMIT for c in chunks):
        num_chunks += 1
        chunks = np.array_split(data, num_chunks)
    for i, chunk in enumerate(chunks):
        group.attrs[f"{name}{i}"] = chunk


# --------------------------------------------------------------------------------------------
# Reading.


def read_tf_h5_variables(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """All variables of a Keras 2 ``tf_model.h5`` as ``{path below the model scope: array}``
    (``":0"`` dropped; the ``blip/`` main layer of ``TFBlipModel`` kept)."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        file = h5py.File(path, "r")
    except OSError as exc:
        raise WeightLoadError(f"{path}: not a readable HDF5 file ({exc})") from exc
    out: dict[str, np.ndarray] = {}
    with file:
        layer_names = _read_name_list(file, "layer_names")
        if layer_names is None:
            raise WeightLoadError(
                f"{path}: not a Keras 2 / transformers tf_model.h5 (no 'layer_names' attribute); "
                "a Keras 3 '.weights.h5' file is loaded with model.load_weights instead"
            )
        for layer in layer_names:
            if layer not in file:
                raise WeightLoadError(f"{path}: layer group {layer!r} listed but missing")
            group = file[layer]
            for weight_name in _read_name_list(group, "weight_names") or []:
                if weight_name not in group:
                    raise WeightLoadError(f"{path}: dataset {layer}/{weight_name} is missing")
                name = weight_name.split("/", 1)[1] if "/" in weight_name else weight_name
                name = re.sub(r":\d+$", "", name)
                out[name] = np.asarray(group[weight_name])
    return out


def read_tf_h5(
    path: str | os.PathLike, *, keep_decoder_weight: bool = False
) -> dict[str, np.ndarray]:
    """Read a ``transformers`` TF BLIP ``tf_model.h5`` into canonical keys and layouts.

    The untied LM-head kernel of transformers' TF BLIP is dropped (BLIP ties it to the word
    embeddings; a warning says when the file's copy differs) unless ``keep_decoder_weight``.
    Raises :class:`WeightLoadError` naming the file when it is not a BLIP checkpoint.
    """
    path = Path(path)
    variables = read_tf_h5_variables(path)
    if variables and all(name.startswith("blip/") for name in variables):
        variables = {name[len("blip/") :]: value for name, value in variables.items()}
    state: dict[str, np.ndarray] = {}
    unknown: list[str] = []
    for name, value in variables.items():
        try:
            key, array = tf_map.to_canonical(name, value)
        except (KeyError, ValueError):
            unknown.append(name)
            continue
        if not is_blip_key(key):
            unknown.append(name)
            continue
        state[key] = np.array(array, order="C")  # (np.ascontiguousarray would make 0-d 1-d)
    if not state:
        shown = ", ".join(sorted(variables)[:4]) or "no variables"
        raise WeightLoadError(
            f"{path}: not a BLIP checkpoint (no BLIP weight names; found {shown})"
        )
    if unknown:
        shown = ", ".join(sorted(unknown)[:8])
        more = f", ... ({len(unknown) - 8} more)" if len(unknown) > 8 else ""
        raise WeightLoadError(
            f"{path}: {len(unknown)} variables are not BLIP weights: {shown}{more}"
        )
    if not keep_decoder_weight:
        _drop_untied_decoder(state, path)
    return state


def _drop_untied_decoder(state: dict[str, np.ndarray], path: Path) -> None:
    for prefix in LM_HEAD_PREFIXES:
        weight = state.pop(prefix + DECODER_WEIGHT, None)
        if weight is None:
            continue
        embeddings = state.get(prefix + WORD_EMBEDDINGS)
        if embeddings is not None and not np.array_equal(weight, embeddings):
            warnings.warn(
                f"{path}: the file's LM-head kernel {prefix}{DECODER_WEIGHT} differs from the "
                f"word embeddings; BLIP ties the two, so the word embeddings are used (transformers' "
                "TF BLIP loses the tied kernel when it converts a PyTorch checkpoint)",
                stacklevel=3,
            )


# --------------------------------------------------------------------------------------------
# Writing.


def write_tf_h5(
    state: Mapping[str, np.ndarray], path: str | os.PathLike, model_class_name: str
) -> Path:
    """Write a canonical state dict as the ``tf_model.h5`` that ``transformers``' ``TF<class>``
    loads (``model_class_name``: ``BlipForConditionalGeneration`` or ``TFBlip...``).

    The LM-head kernel that transformers' TF BLIP keeps untied is written as the word embeddings
    (transposed), which is what the tied PyTorch model computes.
    """
    import h5py

    scope, main_layer, layer_names = schema(model_class_name).tf_layout
    state = {k: np.asarray(v) for k, v in state.items() if not k.endswith("position_ids")}
    for prefix in LM_HEAD_PREFIXES:
        bias = state.pop(prefix + DECODER_BIAS, None)
        if bias is not None:
            state.setdefault(prefix + PREDICTION_BIAS, bias)
    fill_untied_lm_head(state)
    bad = sorted(k for k in state if not is_blip_key(k))
    if bad:
        raise ValueError(f"not BLIP keys: {', '.join(bad[:8])}")

    # (dataset name, canonical key) per layer; each tensor is laid out when it is written, so
    # at most one transposed copy exists at a time.
    groups: dict[str, list[tuple[str, str]]] = {name: [] for name in layer_names}
    for key in sorted(state):
        # The layout check on a zero-cost placeholder, so a bad shape fails before writing.
        placeholder = np.broadcast_to(np.zeros((), np.float32), np.shape(state[key]))
        keras_path, _ = tf_map.to_keras(key, placeholder)
        full = f"{main_layer}/{keras_path}" if main_layer else keras_path
        group = full.split("/", 1)[0]
        if group not in groups:
            raise ValueError(
                f"{key}: belongs to layer {group!r}, which a TF {model_class_name} does not have "
                f"(its layers: {', '.join(layer_names)})"
            )
        groups[group].append((f"{scope}/{full}:0", key))

    def write(tmp: str) -> None:
        with h5py.File(tmp, "w") as file:
            _write_name_list(file, "layer_names", list(layer_names))
            file.attrs["backend"] = b"tensorflow"
            file.attrs["keras_version"] = b"2.21.0"
            for layer in sorted(layer_names):
                group = file.create_group(layer)
                _write_name_list(group, "weight_names", [name for name, _ in groups[layer]])
                for name, key in groups[layer]:
                    _, array = tf_map.to_keras(key, state[key])
                    group.create_dataset(name, data=np.array(array, order="C"))
            top = file.create_group("top_level_model_weights")
            top.attrs["weight_names"] = np.array([], dtype="S1")

    path = Path(path)
    atomic_write(path, write)
    return path


__all__ = [
    "BLIP_KEY",
    "TF_MODEL_LAYOUTS",
    "is_blip_key",
    "read_tf_h5",
    "read_tf_h5_variables",
    "write_tf_h5",
]
