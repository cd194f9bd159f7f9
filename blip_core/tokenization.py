"""BLIP's BERT WordPiece tokenizer, on the Rust ``tokenizers`` library.

Gives the token ids and decoded strings of ``transformers``' ``BertTokenizerFast`` set up the way
BLIP uses it: bert-base-uncased rules (``BertNormalizer`` -- clean text, CJK splitting, lowercase,
accent stripping -- then ``BertPreTokenizer``, WordPiece with ``##`` continuations and at most 100
characters a word, ``[CLS] $A [SEP]`` around every sequence), plus two special tokens: ``[DEC]``
(the decoder's BOS, id 30522 in the released checkpoints) and ``[ENC]`` (30523).

The hub files (``tokenizer.json``, ``vocab.txt``, ``tokenizer_config.json``, ...) are read and
written by :mod:`blip_core.tokenizer_files`, so that ``transformers`` and this class load each
other's directories; padding and truncation follow :mod:`blip_core.tokenizer_padding`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from tokenizers import AddedToken, Tokenizer, decoders
from tokenizers.models import WordPiece

from blip_core.feature import BatchFeature
from blip_core.token_ids import as_id_list, clean_up_tokenization
from blip_core.tokenizer_encoding import (
    LARGE_INTEGER,  # noqa: F401
    VERY_LARGE_INTEGER,
    check_texts,
    encode_texts,
    resolve_strategies,
)
from blip_core.tokenizer_files import (  # the file-name constants are re-exported
    ADDED_TOKENS_FILE,  # noqa: F401
    DEFAULT_MODEL_MAX_LENGTH,
    SPECIAL_ATTRS,
    SPECIAL_TOKENS_MAP_FILE,  # noqa: F401
    TOKENIZER_CONFIG_FILE,  # noqa: F401
    TOKENIZER_FILE,  # noqa: F401
    VOCAB_FILE,  # noqa: F401
    add_tokens_from_decoder,
    apply_bert_options,
    bert_post_processor,
    load_backend_file,
    read_tokenizer_dir,
    read_vocab,
    token_content,
    tokenizer_config_json,
    wordpiece_backend,
    write_tokenizer_dir,
)
from blip_core.tokenizer_files import (
    add_missing_special_tokens as add_missing_specials,
)

__all__ = ["BatchEncoding", "BlipTokenizer", "clean_up_tokenization"]


class BatchEncoding(BatchFeature):
    """Tokenizer output: ``input_ids`` and ``attention_mask`` with attribute access."""


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
        # Own a copy, never given padding or truncation: encoding reads it only, so one
        # tokenizer serves many threads (blip_core.tokenizer_encoding pads and truncates).
        backend = Tokenizer.from_str(tokenizer_object.to_str())
        backend.no_padding()
        backend.no_truncation()
        self._tokenizer = backend

        self.unk_token = token_content(unk_token)
        self.sep_token = token_content(sep_token)
        self.pad_token = token_content(pad_token)
        self.cls_token = token_content(cls_token)
        self.mask_token = token_content(mask_token)
        self.bos_token = token_content(bos_token)
        self.eos_token = token_content(eos_token)
        self.enc_token = token_content(enc_token)
        extras = [token_content(t) for t in (additional_special_tokens or [])]
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
            apply_bert_options(
                backend,
                bert_options.get("do_lower_case", True),
                bert_options.get("strip_accents"),
                bert_options.get("tokenize_chinese_chars", True),
            )
        self.extra: dict[str, Any] = extra

        add_tokens_from_decoder(backend, added_tokens_decoder or {})
        if add_missing_special_tokens:
            add_missing_specials(backend, self.all_special_tokens)
        if backend.post_processor is None and self.cls_token_id is not None:
            if self.sep_token_id is not None:
                backend.post_processor = bert_post_processor(
                    self.cls_token, self.cls_token_id, self.sep_token, self.sep_token_id
                )
        if backend.decoder is None and isinstance(backend.model, WordPiece):
            backend.decoder = decoders.WordPiece(prefix=backend.model.continuing_subword_prefix)

    # ---- construction ---------------------------------------------------------------------

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
        backend = wordpiece_backend(
            read_vocab(vocab),
            unk_token=token_content(kwargs.get("unk_token", "[UNK]")),
            cls_token=token_content(kwargs.get("cls_token", "[CLS]")),
            sep_token=token_content(kwargs.get("sep_token", "[SEP]")),
            do_lower_case=do_lower_case,
            strip_accents=strip_accents,
            tokenize_chinese_chars=tokenize_chinese_chars,
            max_input_chars_per_word=max_input_chars_per_word,
        )
        return cls(backend, **kwargs)

    @classmethod
    def from_file(cls, path: str | os.PathLike, **kwargs: Any) -> BlipTokenizer:
        """Wrap a ``tokenizer.json`` file written by the ``tokenizers`` library."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such tokenizer file")
        return cls(load_backend_file(path), **kwargs)

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
        backend, kwargs = read_tokenizer_dir(
            Path(path), add_blip_tokens=add_blip_tokens, overrides=overrides
        )
        return cls(backend, **kwargs)

    @property
    def backend_tokenizer(self) -> Tokenizer:
        """The ``tokenizers.Tokenizer`` doing the work (it never has padding or truncation set)."""
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
        for attr in SPECIAL_ATTRS:
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
            attr: getattr(self, attr) for attr in SPECIAL_ATTRS if getattr(self, attr)
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
        ids = as_id_list(ids)
        if isinstance(ids, int):
            return self._tokenizer.id_to_token(ids)
        special = set(self.all_special_ids) if skip_special_tokens else set()
        return [self._tokenizer.id_to_token(i) for i in ids if i not in special]

    def tokenize(self, text: str, add_special_tokens: bool = False) -> list[str]:
        """The word pieces of ``text`` (no ``[CLS]``/``[SEP]`` unless asked)."""
        check_texts(text)
        return self._tokenizer.encode(text, add_special_tokens=add_special_tokens).tokens

    # ---- encoding -------------------------------------------------------------------------

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
        batch, single = check_texts(text)
        pad, trunc, length = resolve_strategies(
            padding,
            truncation,
            max_length,
            pad_to_multiple_of,
            model_max_length=self.model_max_length,
            pad_token=self.pad_token,
            pad_token_id=self.pad_token_id,
        )
        encoded = encode_texts(
            self._tokenizer,
            batch,
            add_special_tokens=add_special_tokens,
            padding=pad,
            truncation=trunc,
            max_length=length,
            pad_to_multiple_of=pad_to_multiple_of,
            pad_token_id=self.pad_token_id,
            padding_side=padding_side or self.padding_side,
            truncation_side=self.truncation_side,
        )
        out: dict[str, Any] = {"input_ids": encoded["input_ids"]}
        if return_token_type_ids:
            out["token_type_ids"] = encoded["token_type_ids"]
        if return_attention_mask or return_attention_mask is None:
            out["attention_mask"] = encoded["attention_mask"]
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
        ids = as_id_list(token_ids)
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
        rows = as_id_list(sequences)
        if isinstance(rows, int):
            raise TypeError("batch_decode expects a batch of sequences, got one int")
        return [self.decode(row, skip_special_tokens, clean_up_tokenization_spaces) for row in rows]

    # ---- (de)serialisation ----------------------------------------------------------------

    def to_config(self) -> dict[str, Any]:
        """The ``tokenizer_config.json`` content, in the keys transformers writes."""
        return tokenizer_config_json(
            self._tokenizer,
            extra=self.extra,
            special_tokens_map=self.special_tokens_map,
            clean_up_tokenization_spaces=self.clean_up_tokenization_spaces,
            model_max_length=self.model_max_length,
            padding_side=self.padding_side,
            truncation_side=self.truncation_side,
        )

    def save_pretrained(self, directory: str | os.PathLike) -> tuple[Path, ...]:
        """Write ``tokenizer.json``, ``tokenizer_config.json``, ``special_tokens_map.json``,
        ``added_tokens.json`` and (for WordPiece models) ``vocab.txt``; returns the paths."""
        return write_tokenizer_dir(
            self._tokenizer,
            Path(directory),
            config=self.to_config(),
            special_tokens_map=self.special_tokens_map,
        )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(vocab_size={self.vocab_size}, len={len(self)}, "
            f"model_max_length={self.model_max_length}, padding_side={self.padding_side!r}, "
            f"special_tokens={self.special_tokens_map})"
        )
