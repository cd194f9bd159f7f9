"""BLIP's BERT WordPiece tokenizer, on the Rust ``tokenizers`` library.

Gives the token ids and decoded strings of ``transformers``' ``BertTokenizerFast`` set up the way
BLIP uses it: bert-base-uncased rules (``BertNormalizer`` -- clean text, CJK splitting, lowercase,
accent stripping -- then ``BertPreTokenizer``, WordPiece with ``##`` continuations and at most 100
characters a word, ``[CLS] $A [SEP]`` around every sequence), plus two special tokens: ``[DEC]``
(the decoder's BOS, id 30522 in the released checkpoints) and ``[ENC]`` (30523).

Reads and writes the hub files (``tokenizer.json``, ``vocab.txt``, ``tokenizer_config.json``,
``special_tokens_map.json``, ``added_tokens.json``) so that ``transformers`` and this class load
each other's directories.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import AddedToken, Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import WordPiece

from blip_core.image_processing import BatchFeature, to_numpy

TOKENIZER_FILE = "tokenizer.json"
VOCAB_FILE = "vocab.txt"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_MAP_FILE = "special_tokens_map.json"
ADDED_TOKENS_FILE = "added_tokens.json"

DEFAULT_MODEL_MAX_LENGTH = 512
# transformers' "no limit" value (int(1e30)) and the threshold above which it means "no limit".
VERY_LARGE_INTEGER = int(1e30)
LARGE_INTEGER = int(1e20)

# The order in which transformers adds special tokens missing from the vocabulary (it decides the
# ids new tokens get): bos, eos, unk, sep, pad, cls, mask, then the additional ones.
_SPECIAL_ATTRS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token")
_SPECIAL_ATTRS = (*_SPECIAL_ATTRS, "mask_token")

# tokenizer_config.json keys this class models; the rest is kept in ``extra`` and written back.
_CONFIG_KEYS = (
    *_SPECIAL_ATTRS,
    "additional_special_tokens",
    "added_tokens_decoder",
    "model_max_length",
    "padding_side",
    "truncation_side",
    "clean_up_tokenization_spaces",
    "do_lower_case",
    "strip_accents",
    "tokenize_chinese_chars",
    "tokenizer_class",
    "tokenizer_file",
    "vocab_file",
    "name_or_path",
)

__all__ = ["BatchEncoding", "BlipTokenizer", "clean_up_tokenization"]


class BatchEncoding(BatchFeature):
    """Tokenizer output: ``input_ids`` and ``attention_mask`` with attribute access."""


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


def _token_content(value: Any) -> str | None:
    """A special token given as a string, an ``AddedToken`` or its JSON dict -> its text."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict):
        return value["content"]
    if isinstance(value, AddedToken):
        return value.content
    raise TypeError(f"a special token must be a str or an AddedToken, got {type(value).__name__}")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n", "utf-8")
    os.replace(tmp, path)


def _read_vocab(vocab: str | os.PathLike | Iterable[str]) -> dict[str, int]:
    """``vocab.txt`` (one token a line, id = line number) or a token list -> {token: id}."""
    if isinstance(vocab, (str, os.PathLike)):
        path = Path(vocab)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such vocabulary file")
        tokens = path.read_text(encoding="utf-8").split("\n")
        if tokens and tokens[-1] == "":
            tokens.pop()
        tokens = [t.rstrip("\r") for t in tokens]
    else:
        tokens = list(vocab)
    table: dict[str, int] = {}
    for index, token in enumerate(tokens):
        if not isinstance(token, str):
            raise TypeError(f"vocabulary entries must be str, got {type(token).__name__}")
        if token in table:
            raise ValueError(
                f"the vocabulary lists {token!r} twice (ids {table[token]} and {index}); "
                "each token must appear once"
            )
        table[token] = index
    if not table:
        raise ValueError("the vocabulary is empty")
    return table


def _bert_post_processor(cls_token: str, cls_id: int, sep_token: str, sep_id: int):
    return processors.TemplateProcessing(
        single=f"{cls_token}:0 $A:0 {sep_token}:0",
        pair=f"{cls_token}:0 $A:0 {sep_token}:0 $B:1 {sep_token}:1",
        special_tokens=[(cls_token, cls_id), (sep_token, sep_id)],
    )


def _normalizer_state(backend: Tokenizer) -> dict[str, Any] | None:
    if backend.normalizer is None:
        return None
    return json.loads(backend.normalizer.__getstate__())


def _apply_bert_options(
    backend: Tokenizer, do_lower_case: bool, strip_accents: bool | None, chinese: bool
) -> None:
    """What ``BertTokenizerFast.__init__`` does: rebuild a ``BertNormalizer`` whose options
    disagree with the tokenizer_config.json ones (the config wins)."""
    state = _normalizer_state(backend)
    if state is None or state.get("type") != "BertNormalizer":
        return
    if (
        state.get("lowercase", do_lower_case) != do_lower_case
        or state.get("strip_accents", strip_accents) != strip_accents
        or state.get("handle_chinese_chars", chinese) != chinese
    ):
        backend.normalizer = normalizers.BertNormalizer(
            clean_text=state.get("clean_text", True),
            handle_chinese_chars=chinese,
            strip_accents=strip_accents,
            lowercase=do_lower_case,
        )


class BlipTokenizer:
    """BERT WordPiece tokenizer with BLIP's ``[DEC]`` / ``[ENC]`` tokens.

    Build it with :meth:`from_pretrained` (a hub directory), :meth:`from_vocab` (a ``vocab.txt``
    or a token list) or directly from a ``tokenizers.Tokenizer`` (copied, not shared).

    Args:
        tokenizer_object: the backend ``tokenizers.Tokenizer``.  A missing post-processor becomes
            ``[CLS] $A [SEP]`` and a missing decoder the WordPiece one.
        unk_token, sep_token, pad_token, cls_token, mask_token: BERT's special tokens.
        bos_token: the decoder's start token, ``[DEC]``.
        enc_token: the image-grounded encoding marker, ``[ENC]``; kept in
            ``additional_special_tokens``.
        additional_special_tokens: further special tokens (``[ENC]`` is added to them).
        add_missing_special_tokens: add special tokens the vocabulary lacks (new ids after the
            vocabulary, in transformers' order: bos, unk, sep, pad, cls, mask, additional).
        model_max_length: the length ``truncation=True`` / ``padding="max_length"`` use.
        padding_side, truncation_side: ``"right"`` (default) or ``"left"``.
        clean_up_tokenization_spaces: remove spaces before punctuation when decoding.
        **extra: other ``tokenizer_config.json`` keys, written back unchanged.
    """

    model_input_names = ["input_ids", "attention_mask"]

    def __init__(
        self,
        tokenizer_object: Tokenizer,
        *,
        unk_token: str | None = "[UNK]",
        sep_token: str | None = "[SEP]",
        pad_token: str | None = "[PAD]",
        cls_token: str | None = "[CLS]",
        mask_token: str | None = "[MASK]",
        bos_token: str | None = "[DEC]",
        eos_token: str | None = None,
        enc_token: str | None = "[ENC]",
        additional_special_tokens: Sequence[str] | None = None,
        add_missing_special_tokens: bool = True,
        added_tokens_decoder: dict[int, AddedToken] | None = None,
        model_max_length: int | None = DEFAULT_MODEL_MAX_LENGTH,
        padding_side: str = "right",
        truncation_side: str = "right",
        clean_up_tokenization_spaces: bool = True,
        **extra: Any,
    ) -> None:
        if not isinstance(tokenizer_object, Tokenizer):
            raise TypeError(
                f"tokenizer_object must be a tokenizers.Tokenizer, got {type(tokenizer_object)}"
            )
        # Own a copy: padding/truncation are set per call on the backend.
        backend = Tokenizer.from_str(tokenizer_object.to_str())
        backend.no_padding()
        backend.no_truncation()
        self._tokenizer = backend

        self.unk_token = _token_content(unk_token)
        self.sep_token = _token_content(sep_token)
        self.pad_token = _token_content(pad_token)
        self.cls_token = _token_content(cls_token)
        self.mask_token = _token_content(mask_token)
        self.bos_token = _token_content(bos_token)
        self.eos_token = _token_content(eos_token)
        self.enc_token = _token_content(enc_token)
        extras = [_token_content(t) for t in (additional_special_tokens or [])]
        if self.enc_token is not None and self.enc_token not in extras:
            extras.append(self.enc_token)
        self.additional_special_tokens: list[str] = extras

        self.model_max_length = (
            VERY_LARGE_INTEGER if model_max_length is None else int(model_max_length)
        )
        for name, side in (("padding_side", padding_side), ("truncation_side", truncation_side)):
            if side not in ("right", "left"):
                raise ValueError(f"{name} must be 'right' or 'left', got {side!r}")
        self.padding_side = padding_side
        self.truncation_side = truncation_side
        self.clean_up_tokenization_spaces = bool(clean_up_tokenization_spaces)
        # BERT normalizer options (tokenizer_config.json keys): applied to a BertNormalizer as
        # BertTokenizerFast does, and read back from the normalizer when saving.
        bert_options = {
            key: extra.pop(key)
            for key in ("do_lower_case", "strip_accents", "tokenize_chinese_chars")
            if key in extra
        }
        if bert_options:
            _apply_bert_options(
                backend,
                bert_options.get("do_lower_case", True),
                bert_options.get("strip_accents"),
                bert_options.get("tokenize_chinese_chars", True),
            )
        self.extra: dict[str, Any] = extra

        self._add_tokens_from_decoder(added_tokens_decoder or {})
        if add_missing_special_tokens:
            self._add_missing_special_tokens()
        if backend.post_processor is None and self.cls_token_id is not None:
            if self.sep_token_id is not None:
                backend.post_processor = _bert_post_processor(
                    self.cls_token, self.cls_token_id, self.sep_token, self.sep_token_id
                )
        if backend.decoder is None and isinstance(backend.model, WordPiece):
            backend.decoder = decoders.WordPiece(prefix=backend.model.continuing_subword_prefix)

    # ---- construction ---------------------------------------------------------------------

    def _add_tokens_from_decoder(self, decoder: dict[int, AddedToken]) -> None:
        """Add the ``added_tokens_decoder`` entries the backend lacks, checking their ids."""
        known = self._tokenizer.get_added_tokens_decoder()
        for index, token in sorted((int(i), t) for i, t in decoder.items()):
            if index in known and known[index].content == token.content:
                continue
            existing = self._tokenizer.token_to_id(token.content)
            if existing is None:
                if token.special:
                    self._tokenizer.add_special_tokens([token])
                else:
                    self._tokenizer.add_tokens([token])
                existing = self._tokenizer.token_to_id(token.content)
            elif existing not in known:
                if token.special:
                    self._tokenizer.add_special_tokens([token])
                else:
                    self._tokenizer.add_tokens([token])
            if existing != index:
                raise ValueError(
                    f"added token {token.content!r} should have id {index} but the vocabulary "
                    f"gives it {existing}; the added tokens must follow the vocabulary in order"
                )

    def _add_missing_special_tokens(self) -> None:
        added = {t.content for t in self._tokenizer.get_added_tokens_decoder().values()}
        for token in self.all_special_tokens:
            if token not in added:
                self._tokenizer.add_special_tokens(
                    [AddedToken(token, special=True, normalized=False)]
                )
                added.add(token)

    @classmethod
    def from_vocab(
        cls,
        vocab: str | os.PathLike | Iterable[str],
        *,
        do_lower_case: bool = True,
        strip_accents: bool | None = None,
        tokenize_chinese_chars: bool = True,
        max_input_chars_per_word: int = 100,
        **kwargs: Any,
    ) -> BlipTokenizer:
        """A BERT tokenizer over ``vocab`` (a ``vocab.txt`` path or a list of tokens, id = index).

        ``strip_accents=None`` strips accents exactly when lowercasing, as BERT does.  Other
        keyword arguments go to the constructor (special tokens, ``model_max_length``, ...).
        """
        table = _read_vocab(vocab)
        unk = _token_content(kwargs.get("unk_token", "[UNK]"))
        backend = Tokenizer(
            WordPiece(table, unk_token=unk, max_input_chars_per_word=max_input_chars_per_word)
        )
        backend.normalizer = normalizers.BertNormalizer(
            clean_text=True,
            handle_chinese_chars=tokenize_chinese_chars,
            strip_accents=strip_accents,
            lowercase=do_lower_case,
        )
        backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        backend.decoder = decoders.WordPiece(prefix="##")
        cls_token = _token_content(kwargs.get("cls_token", "[CLS]"))
        sep_token = _token_content(kwargs.get("sep_token", "[SEP]"))
        if cls_token in table and sep_token in table:
            backend.post_processor = _bert_post_processor(
                cls_token, table[cls_token], sep_token, table[sep_token]
            )
        return cls(backend, **kwargs)

    @classmethod
    def from_file(cls, path: str | os.PathLike, **kwargs: Any) -> BlipTokenizer:
        """Wrap a ``tokenizer.json`` file written by the ``tokenizers`` library."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such tokenizer file")
        try:
            backend = Tokenizer.from_file(str(path))
        except Exception as exc:  # the Rust side raises a bare Exception
            raise ValueError(f"{path}: not a tokenizers JSON file ({exc})") from exc
        return cls(backend, **kwargs)

    @classmethod
    def from_pretrained(
        cls, path: str | os.PathLike, *, add_blip_tokens: bool = True, **overrides: Any
    ) -> BlipTokenizer:
        """Load a hub-layout directory: ``tokenizer.json`` or ``vocab.txt``, with
        ``tokenizer_config.json``, ``special_tokens_map.json`` and ``added_tokens.json`` if present.

        With ``add_blip_tokens`` (default) ``[DEC]`` becomes the BOS token and ``[ENC]`` an
        additional special token when the files do not say otherwise, and they are appended to the
        vocabulary when it lacks them (bert-base-uncased: 30522 and 30523, as in BLIP).
        ``overrides`` replace configuration keys (e.g. ``model_max_length=64``).
        """
        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(f"{path}: not a directory (expected a tokenizer directory)")
        config: dict[str, Any] = {}
        if (path / TOKENIZER_CONFIG_FILE).is_file():
            config = _read_json(path / TOKENIZER_CONFIG_FILE)
        if (path / SPECIAL_TOKENS_MAP_FILE).is_file():
            # As in transformers, special_tokens_map.json wins over tokenizer_config.json.
            config.update(_read_json(path / SPECIAL_TOKENS_MAP_FILE))
        config.update(overrides)

        decoder = {
            int(i): AddedToken(
                spec["content"],
                single_word=spec.get("single_word", False),
                lstrip=spec.get("lstrip", False),
                rstrip=spec.get("rstrip", False),
                normalized=spec.get("normalized", True),
                special=spec.get("special", False),
            )
            for i, spec in (config.pop("added_tokens_decoder", None) or {}).items()
        }

        kwargs: dict[str, Any] = {}
        for attr in _SPECIAL_ATTRS:
            if attr in config:
                kwargs[attr] = _token_content(config.pop(attr))
        extras = [_token_content(t) for t in config.pop("additional_special_tokens", None) or []]
        kwargs["additional_special_tokens"] = extras
        if "enc_token" in config:
            kwargs["enc_token"] = _token_content(config.pop("enc_token"))
        if add_blip_tokens:
            kwargs.setdefault("bos_token", "[DEC]")
            kwargs.setdefault("enc_token", "[ENC]")
        else:
            kwargs.setdefault("bos_token", None)
            kwargs.setdefault("enc_token", "[ENC]" if "[ENC]" in extras else None)
        do_lower_case = config.pop("do_lower_case", True)
        strip_accents = config.pop("strip_accents", None)
        chinese = config.pop("tokenize_chinese_chars", True)
        for key in ("tokenizer_file", "vocab_file", "name_or_path", "tokenizer_class"):
            config.pop(key, None)

        if (path / TOKENIZER_FILE).is_file():
            try:
                backend = Tokenizer.from_file(str(path / TOKENIZER_FILE))
            except Exception as exc:  # the Rust side raises a bare Exception
                raise ValueError(
                    f"{path / TOKENIZER_FILE}: not a tokenizers JSON file ({exc})"
                ) from exc
            clean_default = False  # what PreTrainedTokenizerFast assumes without a config key
            if backend.truncation is not None:
                config.setdefault("truncation_side", backend.truncation["direction"])
            if backend.padding is not None:
                config.setdefault("padding_side", backend.padding["direction"])
        elif (path / VOCAB_FILE).is_file():
            table = _read_vocab(path / VOCAB_FILE)
            unk = kwargs.get("unk_token", "[UNK]")
            backend = Tokenizer(WordPiece(table, unk_token=unk))
            backend.normalizer = normalizers.BertNormalizer(
                clean_text=True,
                handle_chinese_chars=chinese,
                strip_accents=strip_accents,
                lowercase=do_lower_case,
            )
            backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
            backend.decoder = decoders.WordPiece(prefix="##")
            cls_token = kwargs.get("cls_token", "[CLS]")
            sep_token = kwargs.get("sep_token", "[SEP]")
            if cls_token in table and sep_token in table:
                backend.post_processor = _bert_post_processor(
                    cls_token, table[cls_token], sep_token, table[sep_token]
                )
            clean_default = True  # BertTokenizer's default
            if not decoder and (path / ADDED_TOKENS_FILE).is_file():
                specials = {kwargs.get(a) for a in _SPECIAL_ATTRS} | set(extras)
                specials |= {kwargs.get("enc_token")}
                for content, index in _read_json(path / ADDED_TOKENS_FILE).items():
                    special = content in specials
                    decoder[int(index)] = AddedToken(
                        content, special=special, normalized=not special
                    )
        else:
            raise FileNotFoundError(
                f"{path}: no {TOKENIZER_FILE} or {VOCAB_FILE} in this directory"
            )
        config.setdefault("clean_up_tokenization_spaces", clean_default)
        config.setdefault("model_max_length", DEFAULT_MODEL_MAX_LENGTH)
        return cls(
            backend,
            added_tokens_decoder=decoder,
            do_lower_case=do_lower_case,
            strip_accents=strip_accents,
            tokenize_chinese_chars=chinese,
            **kwargs,
            **config,
        )

    # ---- vocabulary -----------------------------------------------------------------------

    @property
    def backend_tokenizer(self) -> Tokenizer:
        """The ``tokenizers.Tokenizer`` doing the work (padding/truncation are set per call)."""
        return self._tokenizer

    @property
    def vocab_size(self) -> int:
        """Size of the base vocabulary, without added tokens (30522 for BLIP), as transformers."""
        return self._tokenizer.get_vocab_size(with_added_tokens=False)

    def __len__(self) -> int:
        """Size of the full vocabulary, added tokens included (30524 for BLIP)."""
        return self._tokenizer.get_vocab_size(with_added_tokens=True)

    def get_vocab(self) -> dict[str, int]:
        """``{token: id}`` including the added tokens."""
        return self._tokenizer.get_vocab(with_added_tokens=True)

    def _id(self, token: str | None) -> int | None:
        return None if token is None else self._tokenizer.token_to_id(token)

    @property
    def pad_token_id(self) -> int | None:
        return self._id(self.pad_token)

    @property
    def cls_token_id(self) -> int | None:
        return self._id(self.cls_token)

    @property
    def sep_token_id(self) -> int | None:
        return self._id(self.sep_token)

    @property
    def unk_token_id(self) -> int | None:
        return self._id(self.unk_token)

    @property
    def mask_token_id(self) -> int | None:
        return self._id(self.mask_token)

    @property
    def bos_token_id(self) -> int | None:
        """Id of ``[DEC]``, the decoder's start token."""
        return self._id(self.bos_token)

    @property
    def eos_token_id(self) -> int | None:
        return self._id(self.eos_token)

    @property
    def enc_token_id(self) -> int | None:
        """Id of ``[ENC]``, the image-grounded encoding marker of the original BLIP code."""
        return self._id(self.enc_token)

    @property
    def all_special_tokens(self) -> list[str]:
        """Special tokens in transformers' order (bos, eos, unk, sep, pad, cls, mask, extras)."""
        out: list[str] = []
        for attr in _SPECIAL_ATTRS:
            token = getattr(self, attr)
            if token is not None and token not in out:
                out.append(token)
        out.extend(t for t in self.additional_special_tokens if t not in out)
        return out

    @property
    def all_special_ids(self) -> list[int]:
        ids = (self._tokenizer.token_to_id(t) for t in self.all_special_tokens)
        return [i for i in ids if i is not None]

    @property
    def special_tokens_map(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            attr: getattr(self, attr) for attr in _SPECIAL_ATTRS if getattr(self, attr)
        }
        if self.additional_special_tokens:
            out["additional_special_tokens"] = list(self.additional_special_tokens)
        return out

    def convert_tokens_to_ids(self, tokens: str | Sequence[str]) -> int | list[int]:
        """Token(s) -> id(s); unknown tokens give ``unk_token_id``."""
        if isinstance(tokens, str):
            index = self._tokenizer.token_to_id(tokens)
            return self.unk_token_id if index is None else index
        return [self.convert_tokens_to_ids(t) for t in tokens]

    def convert_ids_to_tokens(
        self, ids: int | Sequence[int], skip_special_tokens: bool = False
    ) -> str | list[str]:
        """Id(s) -> token(s) (``None`` for ids outside the vocabulary)."""
        ids = _as_id_list(ids)
        if isinstance(ids, int):
            return self._tokenizer.id_to_token(ids)
        special = set(self.all_special_ids) if skip_special_tokens else set()
        return [self._tokenizer.id_to_token(i) for i in ids if i not in special]

    def tokenize(self, text: str, add_special_tokens: bool = False) -> list[str]:
        """The word pieces of ``text`` (no ``[CLS]``/``[SEP]`` unless asked)."""
        return self._tokenizer.encode(text, add_special_tokens=add_special_tokens).tokens

    # ---- encoding -------------------------------------------------------------------------

    def _strategies(
        self, padding: Any, truncation: Any, max_length: int | None, pad_to_multiple_of: int | None
    ) -> tuple[str | None, str | None, int | None]:
        """transformers' ``_get_padding_truncation_strategies`` -> (padding, truncation, length),
        padding in {None, "longest", "max_length"}, truncation in {None, "longest_first", ...}."""
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
                f"padding must be True, False, 'longest', 'max_length' or 'do_not_pad', "
                f"got {padding!r}"
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
            unlimited = self.model_max_length > LARGE_INTEGER
            if pad == "max_length":
                if unlimited:
                    pad = None
                else:
                    max_length = self.model_max_length
            if trunc is not None:
                if unlimited:
                    trunc = None
                else:
                    max_length = self.model_max_length
        if pad is not None and self.pad_token_id is None:
            raise ValueError(
                f"cannot pad: the pad token {self.pad_token!r} is not in the vocabulary"
            )
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

    def __call__(
        self,
        text: str | Sequence[str],
        padding: bool | str = False,
        truncation: bool | str | None = None,
        max_length: int | None = None,
        add_special_tokens: bool = True,
        return_tensors: str | None = None,
        return_attention_mask: bool | None = True,
        return_token_type_ids: bool | None = False,
        pad_to_multiple_of: int | None = None,
        padding_side: str | None = None,
        **unused: Any,
    ) -> BatchEncoding:
        """Tokenize one string or a batch.

        ``padding``: ``False`` / ``True`` (= ``"longest"``) / ``"max_length"``; ``truncation``:
        ``True`` truncates to ``max_length`` (default ``model_max_length``); a ``max_length``
        without ``padding`` or ``truncation`` truncates, as in transformers.

        Returns:
            BatchEncoding with ``input_ids`` and ``attention_mask`` (plus ``token_type_ids`` when
            asked): lists of ints for one string, lists of lists for a batch, or ``(B, T)`` int
            tensors with ``return_tensors`` ("np" / "pt": int64, "tf": int32).
        """
        for key, value in unused.items():
            if key != "verbose" and value not in (False, None, 0):
                raise TypeError(
                    f"{type(self).__name__}.__call__() does not support {key}={value!r}"
                )
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
            raise TypeError(f"text must be a str or a list of str, got {kind}")
        pad, trunc, length = self._strategies(padding, truncation, max_length, pad_to_multiple_of)
        side = padding_side or self.padding_side
        if side not in ("right", "left"):
            raise ValueError(f"padding_side must be 'right' or 'left', got {side!r}")
        if self.truncation_side not in ("right", "left"):
            raise ValueError(
                f"truncation_side must be 'right' or 'left', got {self.truncation_side!r}"
            )

        backend = self._tokenizer
        try:
            if trunc is not None:
                backend.enable_truncation(
                    length, stride=0, strategy=trunc, direction=self.truncation_side
                )
            if pad is not None:
                backend.enable_padding(
                    direction=side,
                    pad_id=self.pad_token_id,
                    pad_type_id=0,
                    pad_token=self.pad_token,
                    length=length if pad == "max_length" else None,
                    pad_to_multiple_of=pad_to_multiple_of,
                )
            encodings = backend.encode_batch(batch, add_special_tokens=add_special_tokens)
        except Exception as exc:
            if type(exc) is Exception:  # the Rust side raises bare Exceptions
                raise ValueError(f"tokenization failed: {exc}") from exc
            raise
        finally:
            backend.no_padding()
            backend.no_truncation()

        out: dict[str, Any] = {"input_ids": [e.ids for e in encodings]}
        if return_token_type_ids:
            out["token_type_ids"] = [e.type_ids for e in encodings]
        if return_attention_mask or return_attention_mask is None:
            out["attention_mask"] = [e.attention_mask for e in encodings]
        if single and return_tensors is None:
            out = {k: v[0] for k, v in out.items()}
        return BatchEncoding(out).convert_to_tensors(return_tensors)

    def encode(self, text: str, add_special_tokens: bool = True, **kwargs: Any) -> list[int]:
        """Token ids of one string (``[CLS] ... [SEP]`` unless ``add_special_tokens=False``)."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        return self(text, add_special_tokens=add_special_tokens, **kwargs)["input_ids"]

    # ---- decoding -------------------------------------------------------------------------

    def decode(
        self,
        token_ids: Any,
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
    ) -> str:
        """Ids (a list, 1-D array or tensor, or one int) -> text."""
        ids = _as_id_list(token_ids)
        if isinstance(ids, int):
            ids = [ids]
        if ids and not all(isinstance(i, int) for i in ids):
            raise TypeError("decode expects one sequence of ids; use batch_decode for a batch")
        text = self._tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)
        clean = (
            self.clean_up_tokenization_spaces
            if clean_up_tokenization_spaces is None
            else clean_up_tokenization_spaces
        )
        return clean_up_tokenization(text) if clean else text

    def batch_decode(
        self,
        sequences: Any,
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
    ) -> list[str]:
        """A batch of id sequences (list of lists, or a (B, T) array / tensor) -> list of texts."""
        rows = _as_id_list(sequences)
        if isinstance(rows, int):
            raise TypeError("batch_decode expects a batch of sequences, got one int")
        return [self.decode(row, skip_special_tokens, clean_up_tokenization_spaces) for row in rows]

    # ---- (de)serialisation ----------------------------------------------------------------

    def _normalizer_options(self) -> dict[str, Any]:
        state = _normalizer_state(self._tokenizer) or {}
        if state.get("type") != "BertNormalizer":
            return {}
        return {
            "do_lower_case": state.get("lowercase", True),
            "strip_accents": state.get("strip_accents"),
            "tokenize_chinese_chars": state.get("handle_chinese_chars", True),
        }

    def to_config(self) -> dict[str, Any]:
        """The ``tokenizer_config.json`` content, in the keys transformers writes."""
        decoder = {
            str(index): {
                "content": token.content,
                "lstrip": token.lstrip,
                "normalized": token.normalized,
                "rstrip": token.rstrip,
                "single_word": token.single_word,
                "special": token.special,
            }
            for index, token in sorted(self._tokenizer.get_added_tokens_decoder().items())
        }
        out: dict[str, Any] = copy.deepcopy(self.extra)
        out.update(self.special_tokens_map)
        out.update(
            added_tokens_decoder=decoder,
            clean_up_tokenization_spaces=self.clean_up_tokenization_spaces,
            do_basic_tokenize=out.get("do_basic_tokenize", True),
            model_max_length=self.model_max_length,
            padding_side=self.padding_side,
            truncation_side=self.truncation_side,
            tokenizer_class="BertTokenizer",
        )
        out.setdefault("never_split", None)
        out.setdefault("extra_special_tokens", {})
        out.update(self._normalizer_options())
        return out

    def save_pretrained(self, directory: str | os.PathLike) -> tuple[Path, ...]:
        """Write ``tokenizer.json``, ``tokenizer_config.json``, ``special_tokens_map.json``,
        ``added_tokens.json`` and (for WordPiece models) ``vocab.txt``; returns the paths."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        written = []
        path = directory / TOKENIZER_FILE
        self._tokenizer.save(str(path))
        written.append(path)
        model = self._tokenizer.model
        if isinstance(model, WordPiece):
            vocab = self._tokenizer.get_vocab(with_added_tokens=False)
            ordered = sorted(vocab.items(), key=lambda kv: kv[1])
            if [i for _, i in ordered] != list(range(len(ordered))):
                raise ValueError("the vocabulary ids are not 0..N-1; cannot write vocab.txt")
            path = directory / VOCAB_FILE
            path.write_text("".join(t + "\n" for t, _ in ordered), encoding="utf-8")
            written.append(path)
        base = self.vocab_size
        added = {
            t.content: i for i, t in self._tokenizer.get_added_tokens_decoder().items() if i >= base
        }
        for name, data in (
            (TOKENIZER_CONFIG_FILE, self.to_config()),
            (SPECIAL_TOKENS_MAP_FILE, self.special_tokens_map),
            (ADDED_TOKENS_FILE, added),
        ):
            if name == ADDED_TOKENS_FILE and not data:
                continue
            _write_json(directory / name, data)
            written.append(directory / name)
        return tuple(written)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(vocab_size={self.vocab_size}, len={len(self)}, "
            f"model_max_length={self.model_max_length}, padding_side={self.padding_side!r}, "
            f"special_tokens={self.special_tokens_map})"
        )


def _as_id_list(ids: Any) -> Any:
    """An int, a (nested) list, a numpy array or a framework tensor -> int or (nested) int lists."""
    ids = to_numpy(ids)
    if isinstance(ids, np.ndarray):
        if not np.issubdtype(ids.dtype, np.integer):
            raise TypeError(f"token ids must be integers, got an array of {ids.dtype}")
        return ids.tolist()
    if isinstance(ids, np.integer):
        return int(ids)
    if isinstance(ids, (list, tuple)):
        return [_as_id_list(i) for i in ids]
    if isinstance(ids, int) and not isinstance(ids, bool):
        return ids
    raise TypeError(f"token ids must be ints, lists of ints, arrays or tensors, got {type(ids)}")
