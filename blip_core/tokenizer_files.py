"""The tokenizer's file formats: reading and writing a hub tokenizer directory.

A directory holds ``tokenizer.json`` (the ``tokenizers`` library's serialisation) or
``vocab.txt`` (one WordPiece token a line, id = line number), plus ``tokenizer_config.json``,
``special_tokens_map.json`` (wins over the config's special tokens, as in transformers) and
``added_tokens.json``.  :func:`read_tokenizer_dir` turns such a directory into a backend
``tokenizers.Tokenizer`` and the constructor arguments of
:class:`~blip_core.tokenization.BlipTokenizer`; :func:`write_tokenizer_dir` writes the files that
``transformers`` and this library both load.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tokenizers import AddedToken, Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import WordPiece

TOKENIZER_FILE = "tokenizer.json"
VOCAB_FILE = "vocab.txt"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_MAP_FILE = "special_tokens_map.json"
ADDED_TOKENS_FILE = "added_tokens.json"

DEFAULT_MODEL_MAX_LENGTH = 512

# The order in which transformers adds special tokens missing from the vocabulary (it decides the
# ids new tokens get): bos, eos, unk, sep, pad, cls, mask, then the additional ones.
SPECIAL_ATTRS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token")
SPECIAL_ATTRS = (*SPECIAL_ATTRS, "mask_token")


def token_content(value: Any) -> str | None:
    """A special token given as a string, an ``AddedToken`` or its JSON dict -> its text."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict):
        return value["content"]
    if isinstance(value, AddedToken):
        return value.content
    raise TypeError(f"a special token must be a str or an AddedToken, got {type(value).__name__}")


def read_json(path: Path) -> Any:
    """Parse a JSON file; a ``ValueError`` naming the file when it is not valid JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as sorted, indented JSON through a temporary file (atomic replace)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n", "utf-8")
    os.replace(tmp, path)


def read_vocab(vocab: str | os.PathLike | Iterable[str]) -> dict[str, int]:
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


def bert_post_processor(cls_token: str, cls_id: int, sep_token: str, sep_id: int):
    """``[CLS] $A [SEP]`` (and ``[CLS] $A [SEP] $B [SEP]`` for pairs), as BertTokenizerFast."""
    return processors.TemplateProcessing(
        single=f"{cls_token}:0 $A:0 {sep_token}:0",
        pair=f"{cls_token}:0 $A:0 {sep_token}:0 $B:1 {sep_token}:1",
        special_tokens=[(cls_token, cls_id), (sep_token, sep_id)],
    )


def wordpiece_backend(
    table: dict[str, int],
    *,
    unk_token: str | None,
    cls_token: str | None,
    sep_token: str | None,
    do_lower_case: bool = True,
    strip_accents: bool | None = None,
    tokenize_chinese_chars: bool = True,
    max_input_chars_per_word: int = 100,
) -> Tokenizer:
    """A BERT WordPiece ``tokenizers.Tokenizer`` over ``table`` (bert-base-uncased's pipeline:
    ``BertNormalizer``, ``BertPreTokenizer``, ``##`` continuations, ``[CLS] $A [SEP]`` when both
    tokens are in the vocabulary)."""
    backend = Tokenizer(
        WordPiece(table, unk_token=unk_token, max_input_chars_per_word=max_input_chars_per_word)
    )
    backend.normalizer = normalizers.BertNormalizer(
        clean_text=True,
        handle_chinese_chars=tokenize_chinese_chars,
        strip_accents=strip_accents,
        lowercase=do_lower_case,
    )
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece(prefix="##")
    if cls_token in table and sep_token in table:
        backend.post_processor = bert_post_processor(
            cls_token, table[cls_token], sep_token, table[sep_token]
        )
    return backend


def normalizer_state(backend: Tokenizer) -> dict[str, Any] | None:
    """The backend normalizer's JSON state (``None`` without a normalizer)."""
    if backend.normalizer is None:
        return None
    return json.loads(backend.normalizer.__getstate__())


def apply_bert_options(
    backend: Tokenizer, do_lower_case: bool, strip_accents: bool | None, chinese: bool
) -> None:
    """What ``BertTokenizerFast.__init__`` does: rebuild a ``BertNormalizer`` whose options
    disagree with the tokenizer_config.json ones (the config wins)."""
    state = normalizer_state(backend)
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


def normalizer_options(backend: Tokenizer) -> dict[str, Any]:
    """The ``tokenizer_config.json`` keys a ``BertNormalizer`` stands for (else ``{}``)."""
    state = normalizer_state(backend) or {}
    if state.get("type") != "BertNormalizer":
        return {}
    return {
        "do_lower_case": state.get("lowercase", True),
        "strip_accents": state.get("strip_accents"),
        "tokenize_chinese_chars": state.get("handle_chinese_chars", True),
    }


def load_backend_file(path: Path) -> Tokenizer:
    """Read a ``tokenizer.json``; a ``ValueError`` naming the file when it is not one."""
    try:
        return Tokenizer.from_file(str(path))
    except Exception as exc:  # the Rust side raises a bare Exception
        raise ValueError(f"{path}: not a tokenizers JSON file ({exc})") from exc


def _added_token(spec: dict[str, Any]) -> AddedToken:
    return AddedToken(
        spec["content"],
        single_word=spec.get("single_word", False),
        lstrip=spec.get("lstrip", False),
        rstrip=spec.get("rstrip", False),
        normalized=spec.get("normalized", True),
        special=spec.get("special", False),
    )


def read_tokenizer_dir(
    path: Path, *, add_blip_tokens: bool, overrides: dict[str, Any]
) -> tuple[Tokenizer, dict[str, Any]]:
    """Read a hub tokenizer directory -> (backend, keyword arguments for ``BlipTokenizer``).

    ``tokenizer.json`` wins over ``vocab.txt``; ``special_tokens_map.json`` wins over
    ``tokenizer_config.json``; ``overrides`` win over both.  With ``add_blip_tokens``, ``[DEC]``
    becomes the BOS token and ``[ENC]`` an additional special token unless the files say
    otherwise.
    """
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: not a directory (expected a tokenizer directory)")
    config: dict[str, Any] = {}
    if (path / TOKENIZER_CONFIG_FILE).is_file():
        config = read_json(path / TOKENIZER_CONFIG_FILE)
    if (path / SPECIAL_TOKENS_MAP_FILE).is_file():
        # As in transformers, special_tokens_map.json wins over tokenizer_config.json.
        config.update(read_json(path / SPECIAL_TOKENS_MAP_FILE))
    config.update(overrides)

    decoder = {
        int(i): _added_token(spec)
        for i, spec in (config.pop("added_tokens_decoder", None) or {}).items()
    }
    kwargs: dict[str, Any] = {}
    for attr in SPECIAL_ATTRS:
        if attr in config:
            kwargs[attr] = token_content(config.pop(attr))
    extras = [token_content(t) for t in config.pop("additional_special_tokens", None) or []]
    kwargs["additional_special_tokens"] = extras
    if "enc_token" in config:
        kwargs["enc_token"] = token_content(config.pop("enc_token"))
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
        backend = load_backend_file(path / TOKENIZER_FILE)
        clean_default = False  # what PreTrainedTokenizerFast assumes without a config key
        if backend.truncation is not None:
            config.setdefault("truncation_side", backend.truncation["direction"])
        if backend.padding is not None:
            config.setdefault("padding_side", backend.padding["direction"])
    elif (path / VOCAB_FILE).is_file():
        backend = wordpiece_backend(
            read_vocab(path / VOCAB_FILE),
            unk_token=kwargs.get("unk_token", "[UNK]"),
            cls_token=kwargs.get("cls_token", "[CLS]"),
            sep_token=kwargs.get("sep_token", "[SEP]"),
            do_lower_case=do_lower_case,
            strip_accents=strip_accents,
            tokenize_chinese_chars=chinese,
        )
        clean_default = True  # BertTokenizer's default
        if not decoder and (path / ADDED_TOKENS_FILE).is_file():
            specials = {kwargs.get(a) for a in SPECIAL_ATTRS} | set(extras)
            specials |= {kwargs.get("enc_token")}
            for content, index in read_json(path / ADDED_TOKENS_FILE).items():
                special = content in specials
                decoder[int(index)] = AddedToken(content, special=special, normalized=not special)
    else:
        raise FileNotFoundError(f"{path}: no {TOKENIZER_FILE} or {VOCAB_FILE} in this directory")
    config.setdefault("clean_up_tokenization_spaces", clean_default)
    config.setdefault("model_max_length", DEFAULT_MODEL_MAX_LENGTH)
    kwargs.update(
        added_tokens_decoder=decoder,
        do_lower_case=do_lower_case,
        strip_accents=strip_accents,
        tokenize_chinese_chars=chinese,
    )
    return backend, {**kwargs, **config}


def added_tokens_decoder_json(backend: Tokenizer) -> dict[str, dict[str, Any]]:
    """The ``added_tokens_decoder`` entry of ``tokenizer_config.json``, keyed by id."""
    return {
        str(index): {
            "content": token.content,
            "lstrip": token.lstrip,
            "normalized": token.normalized,
            "rstrip": token.rstrip,
            "single_word": token.single_word,
            "special": token.special,
        }
        for index, token in sorted(backend.get_added_tokens_decoder().items())
    }


def write_tokenizer_dir(
    backend: Tokenizer,
    directory: Path,
    *,
    config: dict[str, Any],
    special_tokens_map: dict[str, Any],
) -> tuple[Path, ...]:
    """Write ``tokenizer.json``, ``vocab.txt`` (WordPiece models), ``tokenizer_config.json``,
    ``special_tokens_map.json`` and ``added_tokens.json`` (when tokens follow the vocabulary);
    returns the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    path = directory / TOKENIZER_FILE
    backend.save(str(path))
    written.append(path)
    if isinstance(backend.model, WordPiece):
        vocab = backend.get_vocab(with_added_tokens=False)
        ordered = sorted(vocab.items(), key=lambda kv: kv[1])
        if [i for _, i in ordered] != list(range(len(ordered))):
            raise ValueError("the vocabulary ids are not 0..N-1; cannot write vocab.txt")
        path = directory / VOCAB_FILE
        path.write_text("".join(t + "\n" for t, _ in ordered), encoding="utf-8")
        written.append(path)
    base = backend.get_vocab_size(with_added_tokens=False)
    added = {t.content: i for i, t in backend.get_added_tokens_decoder().items() if i >= base}
    for name, data in (
        (TOKENIZER_CONFIG_FILE, config),
        (SPECIAL_TOKENS_MAP_FILE, special_tokens_map),
        (ADDED_TOKENS_FILE, added),
    ):
        if name == ADDED_TOKENS_FILE and not data:
            continue
        write_json(directory / name, data)
        written.append(directory / name)
    return tuple(written)


def add_tokens_from_decoder(backend: Tokenizer, decoder: dict[int, AddedToken]) -> None:
    """Add the ``added_tokens_decoder`` entries ``backend`` lacks, checking their ids (a
    ``ValueError`` when an entry's id is not the one the vocabulary gives it)."""
    known = backend.get_added_tokens_decoder()
    for index, token in sorted((int(i), t) for i, t in decoder.items()):
        if index in known and known[index].content == token.content:
            continue
        existing = backend.token_to_id(token.content)
        if existing is None:
            if token.special:
                backend.add_special_tokens([token])
            else:
                backend.add_tokens([token])
            existing = backend.token_to_id(token.content)
        elif existing not in known:
            if token.special:
                backend.add_special_tokens([token])
            else:
                backend.add_tokens([token])
        if existing != index:
            raise ValueError(
                f"added token {token.content!r} should have id {index} but the vocabulary "
                f"gives it {existing}; the added tokens must follow the vocabulary in order"
            )


def add_missing_special_tokens(backend: Tokenizer, tokens: Iterable[str]) -> None:
    """Add each of ``tokens`` that ``backend`` has not added yet, as a special token (new ids
    after the vocabulary, in the order given)."""
    added = {t.content for t in backend.get_added_tokens_decoder().values()}
    for token in tokens:
        if token not in added:
            backend.add_special_tokens([AddedToken(token, special=True, normalized=False)])
            added.add(token)


def tokenizer_config_json(
    backend: Tokenizer,
    *,
    extra: dict[str, Any],
    special_tokens_map: dict[str, Any],
    clean_up_tokenization_spaces: bool,
    model_max_length: int,
    padding_side: str,
    truncation_side: str,
) -> dict[str, Any]:
    """The ``tokenizer_config.json`` content, in the keys transformers writes (``extra``: the
    keys this library does not model, written back unchanged)."""
    out: dict[str, Any] = copy.deepcopy(extra)
    out.update(special_tokens_map)
    out.update(
        added_tokens_decoder=added_tokens_decoder_json(backend),
        clean_up_tokenization_spaces=clean_up_tokenization_spaces,
        do_basic_tokenize=out.get("do_basic_tokenize", True),
        model_max_length=model_max_length,
        padding_side=padding_side,
        truncation_side=truncation_side,
        tokenizer_class="BertTokenizer",
    )
    out.setdefault("never_split", None)
    out.setdefault("extra_special_tokens", {})
    out.update(normalizer_options(backend))
    return out
