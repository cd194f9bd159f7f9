"""BlipTokenizer: behaviour, errors, hub files, identity with transformers' BertTokenizerFast."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, normalizers, pre_tokenizers, trainers
from tokenizers.models import WordPiece

from blip_core.tokenization import BatchEncoding, BlipTokenizer
from tests.core.core_helpers import (
    CJK,
    PIECES,
    SENTENCES,
    WORDS,
    reference_tokenizer,
    vocab_tokens,
    write_vocab,
)

os.environ.setdefault("USE_TF", "0")


@pytest.fixture(scope="module")
def vocab_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("vocab")
    write_vocab(directory)
    return directory


@pytest.fixture(scope="module")
def ours(vocab_dir) -> BlipTokenizer:
    return BlipTokenizer.from_vocab(vocab_dir / "vocab.txt")


def _ids(tok: BlipTokenizer, *tokens: str) -> list[int]:
    return [tok.convert_tokens_to_ids(t) for t in tokens]


# ---- behaviour without the reference ---------------------------------------------------------


def test_special_tokens_and_sizes(ours) -> None:
    n = len(vocab_tokens())
    assert ours.vocab_size == n
    assert len(ours) == n + 2
    assert ours.bos_token_id == n and ours.enc_token_id == n + 1  # [DEC], then [ENC]
    assert (ours.pad_token_id, ours.unk_token_id, ours.cls_token_id, ours.sep_token_id) == (
        0,
        4,
        5,
        6,
    )
    assert ours.mask_token_id == 7
    assert ours.model_max_length == 512 and ours.padding_side == "right"
    assert ours.convert_tokens_to_ids("no-such-token") == ours.unk_token_id
    assert ours.convert_ids_to_tokens([5, n, n + 1]) == ["[CLS]", "[DEC]", "[ENC]"]


def test_encode_known_sentence(ours) -> None:
    out = ours("The Cats sat!")
    assert isinstance(out, BatchEncoding)
    assert set(out) == {"input_ids", "attention_mask"}
    expected = _ids(ours, "[CLS]", "the", "cats", "s", "##a", "##t", "!", "[SEP]")
    assert out.input_ids == expected
    assert out.attention_mask == [1] * len(expected)
    assert ours.encode("The Cats sat!") == expected
    assert ours.tokenize("café") == ["cafe"]  # lowercased, accent stripped
    assert ours.decode(expected) == "[CLS] the cats sat! [SEP]"
    assert ours.decode(expected, skip_special_tokens=True) == "the cats sat!"


def test_padding_truncation_and_tensors(ours) -> None:
    texts = ["a cat", "two dogs playing in the snow"]
    padded = ours(texts, padding=True, return_tensors="np")
    assert padded.input_ids.shape == (2, 8) and padded.input_ids.dtype == np.int64
    assert padded.attention_mask[0].tolist() == [1, 1, 1, 1, 0, 0, 0, 0]
    assert padded.input_ids[0, 4:].tolist() == [ours.pad_token_id] * 4
    left = ours(texts, padding=True, padding_side="left")
    assert left.attention_mask[0] == [0, 0, 0, 0, 1, 1, 1, 1]
    fixed = ours(texts, padding="max_length", max_length=10, truncation=True)
    assert [len(x) for x in fixed.input_ids] == [10, 10]
    cut = ours(texts, max_length=5)  # a bare max_length truncates, as in transformers
    assert [len(x) for x in cut.input_ids] == [4, 5]
    assert cut.input_ids[1][-1] == ours.sep_token_id
    assert ours("a", padding="max_length").input_ids.__len__() == 512
    with pytest.raises(ValueError, match="different lengths"):
        ours(texts, return_tensors="np")
    no_mask = ours(texts, return_attention_mask=False)
    assert set(no_mask) == {"input_ids"}


def test_return_tensors_pt(ours) -> None:
    torch = pytest.importorskip("torch")
    out = ours(["a cat", "a dog on the road"], padding=True, return_tensors="pt")
    assert out.input_ids.dtype == torch.int64
    assert ours.batch_decode(out.input_ids, skip_special_tokens=True) == [
        "a cat",
        "a dog on the road",
    ]
    assert ours.decode(out.input_ids[0]) == ours.decode(out.input_ids[0].tolist())


def test_decode_inputs(ours) -> None:
    ids = ours(["a cat", "a dog"], padding=True, return_tensors="np").input_ids
    assert ours.batch_decode(ids) == ours.batch_decode(ids.tolist())
    assert ours.decode(np.int64(ours.cls_token_id)) == "[CLS]"
    with pytest.raises(TypeError, match="batch_decode"):
        ours.decode(ids)
    with pytest.raises(TypeError, match="integers"):
        ours.decode(np.array([1.5, 2.0]))


def test_bad_inputs(ours) -> None:
    with pytest.raises(TypeError, match="str or a list of str"):
        ours(3)
    with pytest.raises(TypeError, match="list containing int"):
        ours(["a", 3])
    with pytest.raises(ValueError, match="padding"):
        ours("a", padding="sideways")
    with pytest.raises(ValueError, match="truncation"):
        ours("a", truncation="middle")
    with pytest.raises(TypeError, match="does not support"):
        ours("a", return_offsets_mapping=True)


def test_constructor_options(ours) -> None:
    cased = BlipTokenizer(ours.backend_tokenizer, do_lower_case=False, strip_accents=False)
    assert cased.tokenize("Cat") != ours.tokenize("Cat") == ["cat"]
    assert ours.tokenize("Cat") == ["cat"]  # the source tokenizer is not changed
    with pytest.raises(ValueError, match="padding_side"):
        BlipTokenizer(ours.backend_tokenizer, padding_side="up")
    with pytest.raises(TypeError, match="tokenizers.Tokenizer"):
        BlipTokenizer("vocab.txt")


def test_vocab_errors(tmp_path) -> None:
    with pytest.raises(ValueError, match="twice"):
        BlipTokenizer.from_vocab(["[PAD]", "a", "a"])
    with pytest.raises(FileNotFoundError, match="vocab"):
        BlipTokenizer.from_vocab(tmp_path / "vocab.txt")
    with pytest.raises(FileNotFoundError, match="tokenizer.json or vocab.txt"):
        BlipTokenizer.from_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="not a directory"):
        BlipTokenizer.from_pretrained(tmp_path / "missing")
    (tmp_path / "tokenizer.json").write_text("{}")
    with pytest.raises(ValueError, match="tokenizer.json"):
        BlipTokenizer.from_pretrained(tmp_path)


def test_save_load_round_trip(ours, tmp_path) -> None:
    ours.save_pretrained(tmp_path)
    names = sorted(os.listdir(tmp_path))
    assert names == [
        "added_tokens.json",
        "special_tokens_map.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.txt",
    ]
    assert (tmp_path / "vocab.txt").read_text().split("\n")[:-1] == vocab_tokens()
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert config["bos_token"] == "[DEC]" and config["additional_special_tokens"] == ["[ENC]"]
    assert config["tokenizer_class"] == "BertTokenizer" and config["model_max_length"] == 512
    back = BlipTokenizer.from_pretrained(tmp_path)
    assert back.get_vocab() == ours.get_vocab()
    assert back(SENTENCES, padding=True) == ours(SENTENCES, padding=True)
    (tmp_path / "tokenizer.json").unlink()  # vocab.txt + added_tokens.json still give the same
    from_vocab = BlipTokenizer.from_pretrained(tmp_path)
    assert from_vocab.get_vocab() == ours.get_vocab()
    assert from_vocab(SENTENCES) == ours(SENTENCES)


def test_unknown_config_keys_survive(ours, tmp_path) -> None:
    ours.save_pretrained(tmp_path)
    path = tmp_path / "tokenizer_config.json"
    config = json.loads(path.read_text())
    config.update(processor_class="BlipProcessor", something_new={"x": 1}, model_max_length=77)
    path.write_text(json.dumps(config))
    tok = BlipTokenizer.from_pretrained(tmp_path)
    assert tok.model_max_length == 77
    tok.save_pretrained(tmp_path / "again")
    again = json.loads((tmp_path / "again" / "tokenizer_config.json").read_text())
    assert again["something_new"] == {"x": 1} and again["processor_class"] == "BlipProcessor"


def _train_wordpiece() -> Tokenizer:
    rng = np.random.default_rng(0)
    corpus = [" ".join(rng.choice(WORDS, size=8)) for _ in range(300)]
    backend = Tokenizer(WordPiece(unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(
        vocab_size=200, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    )
    backend.train_from_iterator(corpus, trainer=trainer)
    return backend


def test_wrap_trained_tokenizer(tmp_path) -> None:
    backend = _train_wordpiece()
    tok = BlipTokenizer(backend)
    assert tok.backend_tokenizer is not backend  # copied, not shared
    assert backend.post_processor is None
    n = backend.get_vocab_size()
    assert (tok.bos_token_id, tok.enc_token_id) == (n, n + 1)
    ids = tok("a dog riding a horse").input_ids
    assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id  # template added
    assert tok.decode(ids, skip_special_tokens=True) == "a dog riding a horse"
    tok.save_pretrained(tmp_path)
    back = BlipTokenizer.from_pretrained(tmp_path)
    assert back("a dog riding a horse").input_ids == ids
    backend.save(str(tmp_path / "raw.json"))
    assert (
        BlipTokenizer.from_file(tmp_path / "raw.json")("a dog").input_ids == tok("a dog").input_ids
    )


def test_no_blip_tokens_option(tmp_path) -> None:
    write_vocab(tmp_path)
    tok = BlipTokenizer.from_pretrained(tmp_path, add_blip_tokens=False)
    assert len(tok) == tok.vocab_size
    assert tok.bos_token_id is None and tok.enc_token_id is None


# ---- identity with transformers -----------------------------------------------------------------


@pytest.fixture(scope="module")
def reference(vocab_dir):
    pytest.importorskip("transformers")
    return reference_tokenizer(vocab_dir / "vocab.txt")


def _call(tok, text, **kwargs):
    if not isinstance(tok, BlipTokenizer):
        kwargs["return_token_type_ids"] = False
    out = tok(text, **kwargs)
    return {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in out.items()}


OPTION_SETS = [
    {},
    {"padding": True},
    {"padding": "longest", "padding_side": "left"},
    {"padding": "max_length", "max_length": 12, "truncation": True},
    {"padding": "max_length", "max_length": 40},
    {"max_length": 7},
    {"truncation": True, "max_length": 5, "padding": True},
    {"truncation": True},
    {"add_special_tokens": False},
    {"add_special_tokens": False, "padding": True, "max_length": 3, "truncation": True},
    {"padding": True, "pad_to_multiple_of": 8},
    {"padding": True, "return_tensors": "np"},
    {"padding": True, "return_tensors": "pt"},
]


@pytest.mark.parametrize("options", OPTION_SETS, ids=str)
def test_identical_encodings(reference, ours, options) -> None:
    if options.get("return_tensors") == "pt":
        pytest.importorskip("torch")
    assert _call(ours, SENTENCES, **options) == _call(reference, SENTENCES, **options)
    if "return_tensors" not in options:
        for text in SENTENCES:
            assert _call(ours, text, **options) == _call(reference, text, **options), text


def test_identical_truncation_side_left(vocab_dir) -> None:
    pytest.importorskip("transformers")
    ref = reference_tokenizer(vocab_dir / "vocab.txt", truncation_side="left")
    tok = BlipTokenizer.from_vocab(vocab_dir / "vocab.txt", truncation_side="left")
    options = {"max_length": 6, "padding": True, "truncation": True}
    assert _call(tok, SENTENCES, **options) == _call(ref, SENTENCES, **options)
    kept = tok("one two three four", max_length=4).input_ids
    assert kept == _ids(tok, "[CLS]", "three", "four", "[SEP]")


@pytest.mark.parametrize("skip", [False, True])
def test_identical_decoding(reference, ours, skip) -> None:
    ids = reference(SENTENCES, padding=True)["input_ids"]
    assert ours.batch_decode(ids, skip_special_tokens=skip) == reference.batch_decode(
        ids, skip_special_tokens=skip
    )
    for row in ids:
        assert ours.decode(row, skip_special_tokens=skip) == reference.decode(
            row, skip_special_tokens=skip
        )
        assert ours.convert_ids_to_tokens(row, skip_special_tokens=skip) == (
            reference.convert_ids_to_tokens(row, skip_special_tokens=skip)
        )
    assert ours.decode(ids[4], clean_up_tokenization_spaces=False) == reference.decode(
        ids[4], clean_up_tokenization_spaces=False
    )


def test_identical_vocabulary_and_ids(reference, ours) -> None:
    assert ours.get_vocab() == reference.get_vocab()
    assert (len(ours), ours.vocab_size) == (len(reference), reference.vocab_size)
    for name in ("pad", "cls", "sep", "unk", "mask", "bos"):
        assert getattr(ours, f"{name}_token_id") == getattr(reference, f"{name}_token_id"), name
    assert ours.enc_token_id == reference.convert_tokens_to_ids("[ENC]")
    assert ours.all_special_ids == reference.all_special_ids
    tokens = ["the", "##ing", "nonsense", "[DEC]", "[ENC]"]
    assert ours.convert_tokens_to_ids(tokens) == reference.convert_tokens_to_ids(tokens)


_PIECES = [*WORDS, *CJK, *(p[2:] for p in PIECES), "Ü", "é", "ñ", "ﬁ", "☃", "🙂", "x" * 120]
_SEPARATORS = [" ", "  ", "\t", "\n", ",", ".", "!", "?", "'", "-", "", "\u00a0", "\u3000"]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    parts=st.lists(
        st.tuples(st.sampled_from(_PIECES), st.sampled_from(_SEPARATORS), st.booleans()),
        max_size=20,
    ),
    noise=st.text(max_size=12),
)
def test_random_sentences_identical(reference, ours, parts, noise) -> None:
    text = "".join((w.upper() if up else w) + sep for w, sep, up in parts) + noise
    expected = reference(text, return_token_type_ids=False)["input_ids"]
    assert ours.encode(text) == expected
    assert ours.decode(expected) == reference.decode(expected)
    assert ours.decode(expected, skip_special_tokens=True) == reference.decode(
        expected, skip_special_tokens=True
    )


def test_transformers_saved_directory_loads(reference, tmp_path) -> None:
    reference.save_pretrained(tmp_path)
    tok = BlipTokenizer.from_pretrained(tmp_path)
    assert tok.get_vocab() == reference.get_vocab()
    assert tok.clean_up_tokenization_spaces == reference.clean_up_tokenization_spaces
    for options in OPTION_SETS[:6]:
        assert _call(tok, SENTENCES, **options) == _call(reference, SENTENCES, **options)
    ids = reference(SENTENCES)["input_ids"]
    assert tok.batch_decode(ids, skip_special_tokens=True) == reference.batch_decode(
        ids, skip_special_tokens=True
    )


@pytest.mark.parametrize("loader", ["BertTokenizerFast", "AutoTokenizer"])
def test_our_directory_loads_in_transformers(ours, reference, tmp_path, loader) -> None:
    import transformers

    ours.save_pretrained(tmp_path)
    loaded = getattr(transformers, loader).from_pretrained(tmp_path)
    assert type(loaded).__name__ == "BertTokenizerFast"
    assert loaded.get_vocab() == ours.get_vocab()
    assert loaded.bos_token == "[DEC]" and loaded.additional_special_tokens == ["[ENC]"]
    assert loaded.model_max_length == ours.model_max_length
    for options in OPTION_SETS[:6]:
        assert _call(loaded, SENTENCES, **options) == _call(ours, SENTENCES, **options)
    ids = ours(SENTENCES, padding=True).input_ids
    for skip in (False, True):
        assert loaded.batch_decode(ids, skip_special_tokens=skip) == ours.batch_decode(
            ids, skip_special_tokens=skip
        )


def test_hub_style_directories(reference, vocab_dir, tmp_path) -> None:
    """A bert-base-uncased-style directory (vocab.txt + tokenizer_config.json, no [DEC]/[ENC])
    gets [DEC] and [ENC] appended, as BLIP's tokenizer setup adds them; the same files as a
    vocab.txt-only directory and as a tokenizer.json-only directory agree with transformers."""
    from transformers import BertTokenizerFast

    bert = tmp_path / "bert"
    bert.mkdir()
    shutil.copy(vocab_dir / "vocab.txt", bert)
    (bert / "tokenizer_config.json").write_text(
        json.dumps({"do_lower_case": True, "model_max_length": 512})
    )
    tok = BlipTokenizer.from_pretrained(bert)
    ref = BertTokenizerFast.from_pretrained(bert)
    ref.add_special_tokens({"bos_token": "[DEC]", "additional_special_tokens": ["[ENC]"]})
    assert tok.get_vocab() == ref.get_vocab() == reference.get_vocab()
    assert _call(tok, SENTENCES, padding=True) == _call(ref, SENTENCES, padding=True)
    ids = ref(SENTENCES)["input_ids"]
    assert tok.batch_decode(ids) == ref.batch_decode(ids)

    only_json = tmp_path / "only_json"
    only_json.mkdir()
    reference.backend_tokenizer.save(str(only_json / "tokenizer.json"))
    tok = BlipTokenizer.from_pretrained(only_json)
    ref = BertTokenizerFast.from_pretrained(only_json, model_max_length=512)
    assert tok.clean_up_tokenization_spaces == ref.clean_up_tokenization_spaces
    assert _call(tok, SENTENCES, padding=True) == _call(ref, SENTENCES, padding=True)
    assert tok.batch_decode(ids) == ref.batch_decode(ids)


def test_cased_config_rebuilds_the_normalizer(reference, tmp_path) -> None:
    """A tokenizer_config.json that disagrees with tokenizer.json's normalizer wins, as in
    BertTokenizerFast."""
    from transformers import BertTokenizerFast

    reference.save_pretrained(tmp_path)
    path = tmp_path / "tokenizer_config.json"
    config = json.loads(path.read_text())
    config.update(do_lower_case=False, strip_accents=False, model_max_length=512)
    path.write_text(json.dumps(config))
    tok = BlipTokenizer.from_pretrained(tmp_path)
    ref = BertTokenizerFast.from_pretrained(tmp_path)
    assert _call(tok, SENTENCES) == _call(ref, SENTENCES)
    assert tok.encode("Cat") != reference.encode("Cat")
