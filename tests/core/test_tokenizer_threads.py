"""BlipTokenizer from many threads, and its padding/truncation against the ``tokenizers`` library's
own (issue 16: ``__call__`` used to set padding/truncation on the shared backend per call, so 8
threads got "RuntimeError: Already borrowed")."""

from __future__ import annotations

import itertools
import threading

import numpy as np
import pytest
from tokenizers import Tokenizer

from blip_core.tokenization import BlipTokenizer
from tests.core.core_helpers import SENTENCES, vocab_tokens

OPTION_SETS = [
    {},
    {"padding": True},
    {"padding": "longest", "padding_side": "left"},
    {"padding": "max_length", "max_length": 12, "truncation": True},
    {"padding": "max_length", "max_length": 40},
    {"max_length": 7},
    {"truncation": True, "max_length": 5, "padding": True},
    {"truncation": True},
    {"add_special_tokens": False, "padding": True, "max_length": 3, "truncation": True},
    {"padding": True, "pad_to_multiple_of": 8},
    {"padding": True, "return_tensors": "np"},
    {"padding": True, "return_token_type_ids": True, "return_attention_mask": False},
]


@pytest.fixture(scope="module")
def tok() -> BlipTokenizer:
    return BlipTokenizer.from_vocab(vocab_tokens(), model_max_length=16)


def _plain(encoding) -> dict:
    return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in encoding.items()}


def _work(index: int) -> tuple[list[str] | str, dict]:
    """Call ``index``'s text and options: batches of varying size, or one string."""
    options = OPTION_SETS[index % len(OPTION_SETS)]
    start = (index * 7) % len(SENTENCES)
    if index % 5 == 0:
        return SENTENCES[start], options
    return SENTENCES[start : start + 1 + index % 6], options


def test_many_threads_mixed_settings_equal_single_thread(tok) -> None:
    threads, calls = 8, 250
    expected = {}
    for i in range(threads * calls):
        text, options = _work(i)
        expected[i] = _plain(tok(text, **options))
    results: dict[int, dict] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads)

    def run(worker: int) -> None:
        barrier.wait()
        for j in range(calls):
            i = worker * calls + j
            try:
                text, options = _work(i)
                results[i] = _plain(tok(text, **options))
            except BaseException as exc:  # noqa: BLE001 -- collected and reported below
                errors.append(exc)

    pool = [threading.Thread(target=run, args=(w,)) for w in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert not errors, f"{len(errors)} calls failed, first: {errors[0]!r}"
    assert len(results) == threads * calls
    mismatched = [i for i in expected if results[i] != expected[i]]
    assert not mismatched, (
        f"{len(mismatched)} results differ from single-thread, e.g. {mismatched[:5]}"
    )
    # The backend is never configured for padding or truncation.
    assert tok.backend_tokenizer.padding is None
    assert tok.backend_tokenizer.truncation is None


# ---- identity with the tokenizers library's own padding and truncation --------------------------


def _reference(ref: Tokenizer, texts, *, add, pad, trunc, length, multiple, side, tside, pad_id):
    """What the old implementation did: configure a (private) backend, encode, read back."""
    ref.no_padding()
    ref.no_truncation()
    if trunc is not None:
        ref.enable_truncation(length, stride=0, strategy=trunc, direction=tside)
    if pad is not None:
        ref.enable_padding(
            direction=side,
            pad_id=pad_id,
            pad_type_id=0,
            pad_token="[PAD]",
            length=length if pad == "max_length" else None,
            pad_to_multiple_of=multiple,
        )
    encodings = ref.encode_batch(texts, add_special_tokens=add)
    return {
        "input_ids": [e.ids for e in encodings],
        "token_type_ids": [e.type_ids for e in encodings],
        "attention_mask": [e.attention_mask for e in encodings],
    }


@pytest.mark.parametrize("tside", ["right", "left"])
def test_padding_and_truncation_equal_the_tokenizers_library(tok, tside) -> None:
    from blip_core.tokenizer_encoding import encode_texts

    backend = tok.backend_tokenizer
    ref = Tokenizer.from_str(backend.to_str())  # a private copy to configure
    grid = itertools.product(
        [True, False],  # add_special_tokens
        [None, "longest", "max_length"],
        [None, "longest_first", "only_first"],
        [0, 1, 2, 3, 4, 7, 40],
        [None, 3, 8],
        ["right", "left"],
    )
    checked = 0
    for add, pad, trunc, length, multiple, side in grid:
        for texts in (SENTENCES, SENTENCES[:1], [""], ["a " * 300]):
            kwargs = dict(add=add, pad=pad, trunc=trunc, length=length, multiple=multiple)
            expected = _reference(
                ref, texts, side=side, tside=tside, pad_id=tok.pad_token_id, **kwargs
            )
            got = encode_texts(
                backend,
                texts,
                add_special_tokens=add,
                padding=pad,
                truncation=trunc,
                max_length=length,
                pad_to_multiple_of=multiple,
                pad_token_id=tok.pad_token_id,
                padding_side=side,
                truncation_side=tside,
            )
            assert got == expected, (kwargs, side, tside, texts[:2])
            checked += 1
    assert checked == 2 * 3 * 3 * 7 * 3 * 2 * 4


def test_only_second_needs_pairs(tok) -> None:
    # tokenizers: "Truncation error: Second sequence not provided", once truncation is needed.
    assert tok("a cat", truncation="only_second", max_length=30).input_ids == tok("a cat").input_ids
    with pytest.raises(ValueError, match="only_second"):
        tok("a cat on a table", truncation="only_second", max_length=3)


def test_bad_padding_arguments(tok) -> None:
    with pytest.raises(ValueError, match="padding_side must be 'right' or 'left', got 'up'"):
        tok("a cat", padding=True, padding_side="up")
    with pytest.raises(ValueError, match="pad_to_multiple_of must be >= 0, got -2"):
        tok("a cat", padding=True, pad_to_multiple_of=-2)
    with pytest.raises(TypeError, match="pad_to_multiple_of must be an int or None, got float"):
        tok("a cat", padding=True, pad_to_multiple_of=2.5)
    with pytest.raises(ValueError, match="max_length must be None or an int >= 0, got -1"):
        tok("a cat", max_length=-1)
    # 0 means no rounding, as in tokenizers (it used to divide by zero with truncation).
    assert tok("a cat", padding=True, truncation=True, max_length=4, pad_to_multiple_of=0) == tok(
        "a cat", padding=True, truncation=True, max_length=4
    )


def test_processor_from_threads_equals_single_thread(tok) -> None:
    from blip_core.image_processing import BlipImageProcessor
    from blip_core.processing import BlipProcessor

    processor = BlipProcessor(BlipImageProcessor(size=32), tok)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (20 + i, 30, 3), dtype=np.uint8) for i in range(6)]

    def call(i: int) -> dict:
        text, options = _work(i)
        options = {k: v for k, v in options.items() if k != "return_token_type_ids"}
        options["return_tensors"] = "np"
        options["padding"] = options.get("padding") or True
        if options["padding"] == "max_length":  # rows longer than max_length would not stack
            options["truncation"] = True
        texts = [text] if isinstance(text, str) else text
        out = processor(images=images[: len(texts)], text=texts, **options)
        return {k: v.tolist() for k, v in out.items()}

    n = 8 * 30
    expected = [call(i) for i in range(n)]
    results: list = [None] * n
    errors: list[BaseException] = []

    def run(worker: int) -> None:
        for i in range(worker, n, 8):
            try:
                results[i] = call(i)
            except BaseException as exc:  # noqa: BLE001 -- collected and reported below
                errors.append(exc)

    pool = [threading.Thread(target=run, args=(w,)) for w in range(8)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert not errors, repr(errors[0])
    assert results == expected
