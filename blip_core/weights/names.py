"""The canonical key space: the Hugging Face ``transformers`` PyTorch state-dict names.

Both backends name their weights after these keys (``blip_torch`` modules literally, ``blip_tf``
through :mod:`blip_core.weights.tf_map`).  This module knows the few keys that are special:
tied LM-head weights and non-persistent buffers.
"""

from __future__ import annotations

from collections.abc import MutableMapping

import numpy as np

# Prefixes under which a BLIP text decoder (``BlipTextLMHeadModel``) lives in each task model.
LM_HEAD_PREFIXES = ("text_decoder.", "")

# ``cls.predictions.decoder.bias`` is the same tensor as ``cls.predictions.bias`` (transformers
# ties them); transformers 4.57 writes only the latter, older hub files write both.
DECODER_BIAS = "cls.predictions.decoder.bias"
PREDICTION_BIAS = "cls.predictions.bias"
# ``cls.predictions.decoder.weight`` is tied to the word embeddings; transformers 4.57 omits it
# from the task-model files it writes, older hub files (and original checkpoints) contain it.
# (A freshly constructed transformers ``BlipTextLMHeadModel`` is untied, but its from_pretrained
# ties it again, embeddings winning; both our backends always tie.)
DECODER_WEIGHT = "cls.predictions.decoder.weight"
WORD_EMBEDDINGS = "bert.embeddings.word_embeddings.weight"

# Keys that may appear in checkpoints and carry no information (non-persistent buffers).
IGNORED_SUFFIXES = ("position_ids",)


def lm_head_prefixes(keys) -> list[str]:
    """Prefixes (``"text_decoder."`` or ``""``) under which ``keys`` hold an LM head."""
    keys = set(keys)
    return [
        p
        for p in LM_HEAD_PREFIXES
        if f"{p}{PREDICTION_BIAS}" in keys or f"{p}{DECODER_BIAS}" in keys
    ]


def normalize_tied(
    state: MutableMapping[str, np.ndarray], tied_prefixes: tuple[str, ...] = LM_HEAD_PREFIXES
) -> MutableMapping[str, np.ndarray]:
    """Bring a checkpoint dict to the canonical form, in place, and return it.

    Canonical form: no ``position_ids`` buffers; ``cls.predictions.bias`` present and
    ``cls.predictions.decoder.bias`` absent (always the same tensor); under a prefix in
    ``tied_prefixes``, ``cls.predictions.decoder.weight`` absent (it is the word-embedding matrix);
    under an untied prefix, ``cls.predictions.decoder.weight`` present (filled from the word
    embeddings when a file omitted it, which is what tying meant when it was written).
    Raises ``ValueError`` if two tied copies disagree.
    """
    for key in [k for k in state if k.endswith(IGNORED_SUFFIXES)]:
        del state[key]
    for prefix in LM_HEAD_PREFIXES:
        bias_key, dec_bias_key = prefix + PREDICTION_BIAS, prefix + DECODER_BIAS
        if dec_bias_key in state:
            dec_bias = state.pop(dec_bias_key)
            if bias_key not in state:
                state[bias_key] = dec_bias
        weight_key, emb_key = prefix + DECODER_WEIGHT, prefix + WORD_EMBEDDINGS
        if prefix not in tied_prefixes:
            if weight_key not in state and emb_key in state and bias_key in state:
                state[weight_key] = state[emb_key]
            continue
        if weight_key in state:
            weight = state.pop(weight_key)
            if emb_key not in state:
                state[emb_key] = weight
            elif np.shape(weight) == np.shape(state[emb_key]) and not np.array_equal(
                np.asarray(weight), np.asarray(state[emb_key])
            ):
                raise ValueError(
                    f"{weight_key} differs from {emb_key}; BLIP ties the LM-head weight to the "
                    "word embeddings, so a checkpoint with different values cannot be loaded exactly"
                )
    return state


# When a whole-task checkpoint is loaded into a sub-model, take the sub-tree under one of these.
SUBMODEL_PREFIXES = {
    "BlipVisionModel": ("vision_model.",),
    "BlipTextModel": ("text_encoder.", "text_model."),
    "BlipTextLMHeadModel": ("text_decoder.",),
}


def select_submodel(class_names, expected_keys, state: dict) -> dict:
    """``state`` itself if it holds any of ``expected_keys``; otherwise the sub-tree under the
    first :data:`SUBMODEL_PREFIXES` entry of ``class_names`` that does (prefix stripped)."""
    expected = set(expected_keys)
    if expected & set(state):
        return state
    for name in class_names:
        for prefix in SUBMODEL_PREFIXES.get(name, ()):
            sub = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            if sub and expected & set(sub):
                return sub
    return state
