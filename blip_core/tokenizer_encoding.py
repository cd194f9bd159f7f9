"""Padding and truncation of token sequences, as ``transformers`` fast tokenizers do them.

:func:`resolve_strategies` turns the ``padding`` / ``truncation`` / ``max_length`` arguments into
one decision, by transformers' ``_get_padding_truncation_strategies`` rules.
"""

from __future__ import annotations

from typing import Any

# transformers' "no limit" value (int(1e30)) and the threshold above which it means "no limit".
VERY_LARGE_INTEGER = int(1e30)
LARGE_INTEGER = int(1e20)


def resolve_strategies(
    padding: Any,
    truncation: Any,
    max_length: int | None,
    pad_to_multiple_of: int | None,
    *,
    model_max_length: int,
    pad_token: str | None,
    pad_token_id: int | None,
) -> tuple[str | None, str | None, int | None]:
    """transformers' ``_get_padding_truncation_strategies`` -> (padding, truncation, length),
    padding in {None, "longest", "max_length"}, truncation in {None, "longest_first", ...}.

    A bare ``max_length`` (no padding, no truncation) truncates; ``max_length=None`` means
    ``model_max_length`` for ``padding="max_length"`` and for truncation, unless that is
    transformers' "no limit" value (then neither happens).
    """
    if max_length is not None and padding is False and truncation is None:
        truncation = "longest_first"  # a bare max_length truncates
    padding = getattr(padding, "value", padding)
    truncation = getattr(truncation, "value", truncation)
    if padding is True or padding == "longest":
        pad: str | None = "longest"
    elif padding is False or padding is None or padding == "do_not_pad":
        pad = None
    elif padding == "max_length":
        pad = "max_length"
    else:
        raise ValueError(
            f"padding must be True, False, 'longest', 'max_length' or 'do_not_pad', got {padding!r}"
        )
    if truncation is True:
        trunc: str | None = "longest_first"
    elif truncation is False or truncation is None or truncation == "do_not_truncate":
        trunc = None
    elif truncation in ("longest_first", "only_first", "only_second"):
        trunc = truncation
    else:
        raise ValueError(
            f"truncation must be True, False, 'longest_first', 'only_first' or "
            f"'do_not_truncate', got {truncation!r}"
        )
    if max_length is None:
        unlimited = model_max_length > LARGE_INTEGER
        if pad == "max_length":
            if unlimited:
                pad = None
            else:
                max_length = model_max_length
        if trunc is not None:
            if unlimited:
                trunc = None
            else:
                max_length = model_max_length
    if pad is not None and pad_token_id is None:
        raise ValueError(f"cannot pad: the pad token {pad_token!r} is not in the vocabulary")
    if (
        trunc is not None
        and pad is not None
        and pad_to_multiple_of is not None
        and max_length is not None
        and max_length % pad_to_multiple_of != 0
    ):
        raise ValueError(
            f"truncation length ({max_length}) is not a multiple of pad_to_multiple_of "
            f"({pad_to_multiple_of})"
        )
    return pad, trunc, max_length
