"""Encoding a batch of texts: argument checks, truncation and padding, as ``transformers``' fast
tokenizers do them -- without touching shared state.

transformers (and ``tokenizers``) set padding and truncation *on the backend tokenizer* before
each call, which makes one tokenizer unusable from several threads ("Already borrowed").  Here
the backend never has padding or truncation enabled: :func:`encode_texts` encodes, truncates each
fresh ``Encoding`` and pads the id lists in Python, with the ``tokenizers`` library's rules:

* truncation removes tokens from the text's own tokens (``truncation_side``) so that, with the
  special tokens added afterwards, at most ``max_length`` remain; a ``max_length`` below the
  number of special tokens truncates nothing (as ``tokenizers``, whose unsigned subtraction wraps);
* padding extends every row to the longest row (``"longest"``) or to ``max_length``
  (``"max_length"``), rounded up to a multiple of ``pad_to_multiple_of``; rows already longer stay
  as they are; pad positions get ``pad_token_id``, type id 0 and attention 0.

:func:`resolve_strategies` turns the ``padding`` / ``truncation`` / ``max_length`` arguments into
one decision, by transformers' ``_get_padding_truncation_strategies`` rules.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tokenizers import Encoding, Tokenizer

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
    pad_to_multiple_of = _check_multiple(pad_to_multiple_of)
    if max_length is not None and (
        not isinstance(max_length, int) or isinstance(max_length, bool) or max_length < 0
    ):
        raise ValueError(f"max_length must be None or an int >= 0, got {max_length!r}")
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


def check_texts(text: Any, name: str = "text") -> tuple[list[str], bool]:
    """``text`` (a str or a list/tuple of str) -> (list of texts, whether one str was given).

    Raises:
        TypeError: ``text`` is neither a str nor a list of str (the message names the types).
        ValueError: a text is not valid Unicode (it holds a lone surrogate such as ``"\\ud800"``,
            which cannot be encoded as UTF-8); the message names ``text[i]`` and the position.
    """
    if isinstance(text, str):
        batch, single = [text], True
    elif isinstance(text, (list, tuple)) and all(isinstance(t, str) for t in text):
        batch, single = list(text), False
    else:
        kind = (
            type(text).__name__
            if not isinstance(text, (list, tuple))
            else ("a list containing " + ", ".join(sorted({type(t).__name__ for t in text})))
        )
        raise TypeError(f"{name} must be a str or a list of str, got {kind}")
    for index, item in enumerate(batch):
        try:
            item.encode("utf-8")
        except UnicodeEncodeError as exc:
            where = name if single else f"{name}[{index}]"
            raise ValueError(
                f"{where} is not valid Unicode: {item[exc.start : exc.end]!r} at position "
                f"{exc.start} is a lone surrogate; decode the text with errors='replace' or "
                "remove it"
            ) from None
    return batch, single


def _check_multiple(pad_to_multiple_of: Any) -> int | None:
    if pad_to_multiple_of is None:
        return None
    if not isinstance(pad_to_multiple_of, int) or isinstance(pad_to_multiple_of, bool):
        raise TypeError(
            f"pad_to_multiple_of must be an int or None, got {type(pad_to_multiple_of).__name__}"
        )
    if pad_to_multiple_of < 0:
        raise ValueError(f"pad_to_multiple_of must be >= 0, got {pad_to_multiple_of}")
    return pad_to_multiple_of or None  # 0 means "no rounding", as in tokenizers


def _truncate(
    backend: Tokenizer,
    encodings: list[Encoding],
    strategy: str,
    max_length: int,
    direction: str,
    add_special_tokens: bool,
) -> list[Encoding]:
    """Truncate freshly encoded texts (encoded *without* special tokens), then add the special
    tokens with the backend's post-processor -- what ``tokenizers`` does inside ``encode``."""
    added = backend.num_special_tokens_to_add(False) if add_special_tokens else 0
    limit = max_length - added
    out = []
    for encoding in encodings:
        if limit >= 0 and len(encoding.ids) > limit:
            if strategy == "only_second":
                raise ValueError(
                    "truncation='only_second' needs text pairs; this tokenizer encodes single "
                    "texts (use truncation=True)"
                )
            encoding.truncate(limit, stride=0, direction=direction)
        if add_special_tokens:
            encoding = backend.post_process(encoding, None, True)
        out.append(encoding)
    return out


def _pad_rows(rows: list[list[int]], length: int, value: int, side: str) -> list[list[int]]:
    if side == "right":
        return [row + [value] * (length - len(row)) for row in rows]
    return [[value] * (length - len(row)) + row for row in rows]


def encode_texts(
    backend: Tokenizer,
    texts: Sequence[str],
    *,
    add_special_tokens: bool,
    padding: str | None,
    truncation: str | None,
    max_length: int | None,
    pad_to_multiple_of: int | None,
    pad_token_id: int | None,
    padding_side: str,
    truncation_side: str,
) -> dict[str, list[list[int]]]:
    """Encode ``texts`` with ``backend`` (which must have no padding or truncation enabled) and
    truncate / pad as decided by :func:`resolve_strategies`.

    Returns ``{"input_ids", "token_type_ids", "attention_mask"}``, one int list per text.  Reads
    ``backend`` only, so one backend serves any number of threads.
    """
    for name, side in (("padding_side", padding_side), ("truncation_side", truncation_side)):
        if side not in ("right", "left"):
            raise ValueError(f"{name} must be 'right' or 'left', got {side!r}")
    multiple = _check_multiple(pad_to_multiple_of)
    try:
        if truncation is not None and max_length is not None:
            encodings = backend.encode_batch(list(texts), add_special_tokens=False)
            encodings = _truncate(
                backend, encodings, truncation, max_length, truncation_side, add_special_tokens
            )
        else:
            encodings = backend.encode_batch(list(texts), add_special_tokens=add_special_tokens)
    except Exception as exc:
        if type(exc) is Exception:  # the Rust side raises bare Exceptions
            raise ValueError(f"tokenization failed: {exc}") from exc
        raise
    out = {
        "input_ids": [e.ids for e in encodings],
        "token_type_ids": [e.type_ids for e in encodings],
        "attention_mask": [e.attention_mask for e in encodings],
    }
    if padding is None or not encodings:
        return out
    if padding == "max_length" and max_length is not None:
        length = max_length
    else:
        length = max(len(ids) for ids in out["input_ids"])
    if multiple and length % multiple:
        length += multiple - length % multiple
    for key, value in (("input_ids", pad_token_id), ("token_type_ids", 0), ("attention_mask", 0)):
        out[key] = _pad_rows(out[key], length, value, padding_side)
    return out
