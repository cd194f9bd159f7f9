"""Shared builders for the tests of blip_core's preprocessing: a small BERT vocabulary, its
reference tokenizer in transformers, and a varied set of test images."""

from __future__ import annotations

import os
import string
from pathlib import Path

import numpy as np

os.environ.setdefault("USE_TF", "0")

SPECIALS = ["[PAD]", "[unused0]", "[unused1]", "[unused2]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = """
a an the this that these those is are was were be been being have has had do does did not no
yes and or but if then else of in on at by for with from to into onto over under up down out
cat cats dog dogs man woman men women child children person people bird birds horse car cars
bus train plane boat bike street road city tree trees grass sky water sea beach mountain snow
red blue green yellow white black brown orange pink purple gray small big large little tall
sitting standing walking running riding playing eating holding looking wearing lying flying
table chair bed room kitchen window door wall floor picture photo image camera phone book
what where who how many much color there here front back side top bottom near next some two
one three four five group couple pair of very it its his her their they he she we you i
cafe naive resume elite fiance uber
""".split()
PIECES = ["##s", "##es", "##ed", "##ing", "##er", "##ly", "##est", "##y", "##n", "##'", "##t"]
CHARS = list(string.ascii_lowercase) + list(string.digits) + list(".,!?;:'\"()-[]/&%$#@*+=<>_")
CJK = ["中", "国", "猫", "狗", "日", "本"]


def vocab_tokens() -> list[str]:
    """About 330 unique tokens in bert-base-uncased layout: specials first, then pieces."""
    tokens: list[str] = []
    for group in (SPECIALS, CHARS, ["##" + c for c in string.ascii_lowercase], WORDS, PIECES, CJK):
        for token in group:
            if token not in tokens:
                tokens.append(token)
    return tokens


def write_vocab(directory: Path) -> Path:
    """Write ``vocab.txt`` into ``directory`` and return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "vocab.txt"
    path.write_text("".join(t + "\n" for t in vocab_tokens()), encoding="utf-8")
    return path


def reference_tokenizer(vocab_file: Path, model_max_length: int = 512, **kwargs):
    """transformers' BertTokenizerFast with BLIP's two extra special tokens ([DEC] as BOS, then
    [ENC]), added as the original BLIP ``init_tokenizer`` adds them."""
    from transformers import BertTokenizerFast

    tok = BertTokenizerFast(str(vocab_file), model_max_length=model_max_length, **kwargs)
    tok.add_special_tokens({"bos_token": "[DEC]"})
    tok.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    return tok


SENTENCES = [
    "A cat sitting on a table.",
    "two dogs playing in the snow",
    "What color is the car?",
    "How many people are there?",
    "The man's horse isn't running!",
    "  leading and trailing spaces   ",
    "",
    "UPPER CASE Words And MiXeD",
    "Café naïve résumé élite fiancé Über",
    "unknownword xyzzyq qqq",
    "punctuation!!! ... ,,, ??? (brackets) [square] {curly}",
    "numbers 12 345 6789 and 3.14",
    "中国 猫 狗 日本 mixed with english",
    "tabs\tand\nnewlines\r\nhere",
    "a [MASK] token and [ENC] and [DEC] and [SEP] and [mask] lowercase",
    "control\x00chars\x07here\u200b and zero width",
    "ümlauts and ñ and ç and ø",
    "a" * 150 + " very long word",
    " ".join(["cat"] * 40),
    "i don't think it's a dog , it 's a cat .",
]


def make_images(rng: np.random.Generator) -> dict[str, object]:
    """A varied set of inputs: Pillow modes, sizes and aspect ratios, numpy layouts and dtypes."""
    from PIL import Image

    def u8(h: int, w: int, c: int = 3) -> np.ndarray:
        return rng.integers(0, 256, (h, w, c), dtype=np.uint8)

    rgb = u8(50, 70)
    return {
        "pil_rgb_landscape": Image.fromarray(rgb),
        "pil_rgb_portrait": Image.fromarray(u8(97, 31)),
        "pil_rgb_large": Image.fromarray(u8(500, 420)),
        "pil_rgb_exact": Image.fromarray(u8(384, 384)),
        "pil_L": Image.fromarray(u8(40, 60, 1)[..., 0]),
        "pil_LA": Image.fromarray(u8(33, 44, 1)[..., 0]).convert("LA"),
        "pil_RGBA": Image.fromarray(u8(45, 25, 4)),
        "pil_P": Image.fromarray(u8(30, 30)).convert("P"),
        "pil_I16": Image.fromarray(rng.integers(0, 400, (36, 52)).astype(np.uint16)),
        "pil_CMYK": Image.fromarray(u8(20, 24)).convert("CMYK"),
        "np_hwc_uint8": u8(64, 48),
        "np_chw_uint8": u8(29, 83).transpose(2, 0, 1).copy(),
        "np_hwc_float01": rng.random((55, 65, 3)).astype(np.float32),
        "np_chw_float01": rng.random((3, 41, 37)).astype(np.float64),
        "np_hwc_float_intvalued": u8(22, 35).astype(np.float32),
        "np_batch_nhwc": rng.integers(0, 256, (2, 30, 40, 3), dtype=np.uint8),
    }
