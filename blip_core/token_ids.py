"""Token ids coming back from a model: any container of ids as plain int lists, and the
clean-up of decoded text (transformers' ``clean_up_tokenization``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from blip_core.feature import to_numpy

__all__ = ["as_id_list", "clean_up_tokenization"]


def clean_up_tokenization(text: str) -> str:
    """Remove the spaces that decoding leaves before punctuation and English contractions
    (transformers' ``clean_up_tokenization``)."""
    return (
        text.replace(" .", ".")
        .replace(" ?", "?")
        .replace(" !", "!")
        .replace(" ,", ",")
        .replace(" ' ", "'")
        .replace(" n't", "n't")
        .replace(" 'm", "'m")
        .replace(" 's", "'s")
        .replace(" 've", "'ve")
        .replace(" 're", "'re")
    )


def as_id_list(ids: Any) -> Any:
    """An int, a (nested) list, a numpy array or a framework tensor -> int or (nested) int lists."""
    ids = to_numpy(ids)
    if isinstance(ids, np.ndarray):
        if not np.issubdtype(ids.dtype, np.integer):
            raise TypeError(f"token ids must be integers, got an array of {ids.dtype}")
        return ids.tolist()
    if isinstance(ids, np.integer):
        return int(ids)
    if isinstance(ids, (list, tuple)):
        return [as_id_list(i) for i in ids]
    if isinstance(ids, int) and not isinstance(ids, bool):
        return ids
    raise TypeError(f"token ids must be ints, lists of ints, arrays or tensors, got {type(ids)}")
