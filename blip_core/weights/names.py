"""The canonical key space: the Hugging Face ``transformers`` PyTorch state-dict names.

Both backends name their weights after these keys (``blip_torch`` modules literally, ``blip_tf``
through :mod:`blip_core.weights.tf_map`).  Which keys each class has is
:mod:`blip_core.weights.schema`; this module knows the few keys that are special -- tied LM-head
weights and non-persistent buffers -- and the one rule for each:

* :func:`normalize_tied` -- a checkpoint dict in canonical form (tied copies dropped);
* :func:`fill_untied_lm_head` -- the opposite: ``cls.predictions.decoder.weight`` written out
  from the word embeddings, for readers that do not tie (transformers' TF BLIP, older loaders);
* :func:`select_submodel` -- the sub-tree a sub-model takes from a whole-task checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping

import numpy as np

from blip_core.weights.schema import LM_HEAD_PREFIXES, SUBMODEL_PREFIXES

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


def lm_head_prefixes(keys: Iterable[str]) -> list[str]:
    """Prefixes (``"text_decoder."`` or ``""``) under which ``keys`` hold an LM head."""
    keys = set(keys)
    return [
        p
        for p in LM_HEAD_PREFIXES
        if f"{p}{PREDICTION_BIAS}" in keys or f"{p}{DECODER_BIAS}" in keys
    ]


def fill_untied_lm_head(
    state: MutableMapping[str, np.ndarray], prefixes: Iterable[str] = LM_HEAD_PREFIXES
) -> MutableMapping[str, np.ndarray]:
    """Under every prefix of ``prefixes`` that holds an LM head (a prediction bias) and word
    embeddings but no ``cls.predictions.decoder.weight``, set that weight to the word-embedding
    array (the same object, no copy), in place; returns ``state``.

    This is what a tied head computes, written out for readers that keep the head untied.
    """
    heads = set(lm_head_prefixes(state))
    for prefix in prefixes:
        weight_key, emb_key = prefix + DECODER_WEIGHT, prefix + WORD_EMBEDDINGS
        if prefix in heads and emb_key in state and weight_key not in state:
            state[weight_key] = state[emb_key]
    return state


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
    fill_untied_lm_head(state, [p for p in LM_HEAD_PREFIXES if p not in tied_prefixes])
    for prefix in tied_prefixes:
        weight_key, emb_key = prefix + DECODER_WEIGHT, prefix + WORD_EMBEDDINGS
        if weight_key not in state:
            continue
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


def select_submodel(class_names, expected_keys, state: dict) -> dict:
    """``state`` itself if it holds any of ``expected_keys``; otherwise the sub-tree under the
    first :data:`~blip_core.weights.schema.SUBMODEL_PREFIXES` entry of ``class_names`` that
    does (prefix stripped)."""
    expected = set(expected_keys)
    if expected & set(state):
        return state
    for name in class_names:
        for prefix in SUBMODEL_PREFIXES.get(name, ()):
            sub = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            if sub and expected & set(sub):
                return sub
    return state


__all__ = [
    "DECODER_BIAS",
    "DECODER_WEIGHT",
    "IGNORED_SUFFIXES",
    "LM_HEAD_PREFIXES",
    "PREDICTION_BIAS",
    "SUBMODEL_PREFIXES",
    "WORD_EMBEDDINGS",
    "fill_untied_lm_head",
    "lm_head_prefixes",
    "normalize_tied",
    "select_submodel",
]
