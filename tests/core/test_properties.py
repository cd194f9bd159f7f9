"""Property tests (issue 12): whatever images, texts and config files come in, preprocessing
either gives the documented shapes and dtypes or raises one of the documented exception types --
``ImageLoadError`` / ``ValueError`` for bad values, ``TypeError`` for arguments of the wrong type,
``ConfigError`` for bad configs -- never an IndexError, an AttributeError, a Rust panic..."""

from __future__ import annotations

import warnings

import numpy as np
import PIL.Image
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from blip_core.config import BlipConfig, BlipTextConfig, BlipVisionConfig, ConfigError
from blip_core.image_processing import BlipImageProcessor, ImageLoadError
from blip_core.processing import BlipProcessor
from blip_core.tokenization import BlipTokenizer
from tests.core.core_helpers import vocab_tokens

SIZE = 16
PROPERTY_SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
DOCUMENTED = (ImageLoadError, ValueError, TypeError)  # ConfigError is a ValueError too

TOKENIZER = BlipTokenizer.from_vocab(vocab_tokens(), model_max_length=64)
IMAGES = BlipImageProcessor(size=SIZE)
PROCESSOR = BlipProcessor(IMAGES, TOKENIZER)

# ---- images -------------------------------------------------------------------------------------

DIM = st.one_of(st.sampled_from([0, 1, 2, 3, 4]), st.integers(1, 40), st.sampled_from([700, 2000]))
DTYPES = ["uint8", "uint16", "float32", "float64", "bool", "int64"]


@st.composite
def image_arrays(draw) -> np.ndarray:
    ndim = draw(st.sampled_from([2, 3, 3, 3, 4]))
    h, w = draw(DIM), draw(DIM)
    if h * w > 4000:  # a huge aspect ratio, kept small in area
        h, w = (1, w) if draw(st.booleans()) else (h, 1)
    channels = draw(st.sampled_from([0, 1, 2, 3, 3, 4, 5]))
    if ndim == 2:
        shape: tuple[int, ...] = (h, w)
    else:
        shape = (channels, h, w) if draw(st.booleans()) else (h, w, channels)
        if ndim == 4:
            shape = (draw(st.integers(0, 2)), *shape)
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["unit", "byte", "wide", "negative"]))
    if dtype == np.bool_:
        return rng.integers(0, 2, shape).astype(bool)
    if kind == "unit" and dtype.kind == "f":
        return rng.random(shape).astype(dtype)
    high = {"byte": 256, "wide": 65536, "negative": 300}.get(kind, 256)
    values = rng.integers(0, high, shape)
    if kind == "negative":
        values = values - 150
    if dtype.kind == "u":
        values = np.abs(values)
    return values.astype(dtype)


MODES = ["L", "LA", "RGB", "RGBA", "P", "I;16", "I", "F", "1", "CMYK", "I;16B"]


@st.composite
def pil_images(draw) -> PIL.Image.Image:
    mode = draw(st.sampled_from(MODES))
    w, h = draw(DIM), draw(DIM)
    if w * h > 4000:
        w, h = (1, w) if draw(st.booleans()) else (h, 1)
    if w == 0 or h == 0:
        return PIL.Image.new(mode, (w, h))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if mode in ("I;16", "I;16B"):
        data = rng.integers(0, 65536, (h, w)).astype(">u2" if mode == "I;16B" else np.uint16)
        return PIL.Image.frombytes(mode, (w, h), data.tobytes())
    if mode == "I":
        return PIL.Image.fromarray(rng.integers(-(2**20), 2**20, (h, w)).astype(np.int32))
    if mode == "F":
        return PIL.Image.fromarray((rng.standard_normal((h, w)) * 300).astype(np.float32))
    return PIL.Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).convert(mode)


def _check_pixels(out, count: int) -> None:
    pixels = out["pixel_values"]
    assert isinstance(pixels, np.ndarray)
    assert pixels.dtype == np.float32
    assert pixels.shape == (count, 3, SIZE, SIZE)
    assert np.isfinite(pixels).all()


@PROPERTY_SETTINGS
@given(image_arrays())
def test_image_arrays_give_pixels_or_a_documented_error(array) -> None:
    try:
        out = IMAGES(array)
    except DOCUMENTED as exc:
        assert str(exc)  # every error says what is wrong
        if 0 in array.shape:
            assert "empty" in str(exc) or "no images" in str(exc), exc
        return
    assert 0 not in array.shape
    _check_pixels(out, array.shape[0] if array.ndim == 4 else 1)


@PROPERTY_SETTINGS
@given(pil_images())
def test_pil_images_of_every_mode_give_pixels(image) -> None:
    if image.width == 0 or image.height == 0:
        with pytest.raises(ValueError, match="has no pixels"):
            IMAGES(image)
        return
    _check_pixels(IMAGES(image), 1)  # every non-empty Pillow image is valid input
    _check_pixels(IMAGES(image, scale_16bit=False), 1)


@PROPERTY_SETTINGS
@given(st.lists(pil_images().filter(lambda i: i.width and i.height), min_size=1, max_size=3))
def test_saved_image_files_load(tmp_path_factory, images) -> None:
    folder = tmp_path_factory.mktemp("images")
    paths = []
    for index, image in enumerate(images):
        # Pillow writes modes I, F, I;16B and CMYK as TIFF, not PNG.
        suffix = "tiff" if image.mode in ("I", "F", "I;16B", "CMYK") else "png"
        path = folder / f"{index}.{suffix}"
        image.save(path)
        paths.append(str(path))
    if paths:
        _check_pixels(IMAGES(paths), len(paths))


@PROPERTY_SETTINGS
@given(st.one_of(st.integers(), st.floats(), st.none(), st.binary(max_size=8), st.just({})))
def test_wrong_image_types_are_type_errors(value) -> None:
    with pytest.raises(TypeError, match="unsupported image type"):
        IMAGES(value)


# ---- texts --------------------------------------------------------------------------------------

CHARS = st.one_of(
    st.integers(0, 0x10FFFF).map(chr),  # surrogates included
    st.sampled_from(["\x00", "\x07", "\u200b", "\n", "\t", " ", "\ud800", "\udfff", "é", "中"]),
    st.sampled_from(["cat", " dog", "[SEP]", "[DEC]", "[PAD]", "##s", "?", "."]),
)
TEXTS = st.one_of(
    st.lists(CHARS, max_size=40).map("".join),
    st.integers(0, 1500).map(lambda n: "a cat " * n),  # around and past the position table
    st.just(""),
)
OPTIONS = st.fixed_dictionaries(
    {
        "padding": st.sampled_from([False, True, "longest", "max_length"]),
        "truncation": st.sampled_from([None, False, True]),
        "max_length": st.one_of(st.none(), st.integers(0, 600)),
        "add_special_tokens": st.booleans(),
        "return_tensors": st.sampled_from([None, "np"]),
        "padding_side": st.sampled_from([None, "left", "right"]),
    }
)


def _valid(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@PROPERTY_SETTINGS
@given(st.lists(TEXTS, min_size=1, max_size=4), OPTIONS)
def test_texts_give_ids_or_a_value_error(texts, options) -> None:
    try:
        out = TOKENIZER(texts, **options)
    except ValueError as exc:
        message = str(exc)
        if not all(_valid(t) for t in texts):
            assert "is not valid Unicode" in message, message
        else:
            # The only other ValueError: rows of different lengths asked for as one array.
            assert "cannot stack" in message, message
            assert options["return_tensors"] == "np"
            lists = TOKENIZER(texts, **{**options, "return_tensors": None})["input_ids"]
            assert len({len(r) for r in lists}) > 1
        return
    assert all(_valid(t) for t in texts)
    ids, mask = out["input_ids"], out["attention_mask"]
    rows = ids.tolist() if isinstance(ids, np.ndarray) else ids
    if isinstance(ids, np.ndarray):
        assert ids.dtype == np.int64 and mask.dtype == np.int64 and ids.shape == mask.shape
        assert ids.shape[0] == len(texts)
    assert len(rows) == len(texts)
    for row, row_mask in zip(rows, mask.tolist() if isinstance(mask, np.ndarray) else mask):
        assert len(row) == len(row_mask)
        assert all(0 <= i < len(TOKENIZER) for i in row)
        assert set(row_mask) <= {0, 1}
    truncating = options["truncation"] is True or (
        options["max_length"] is not None
        and options["truncation"] is None
        and options["padding"] is False
    )
    limit = options["max_length"] if options["max_length"] is not None else 64
    fits = limit >= 2 or not options["add_special_tokens"]  # room for [CLS] ... [SEP]
    if truncating and fits:
        assert max(len(r) for r in rows) <= limit
    if options["padding"] in (True, "longest"):
        assert len({len(r) for r in rows}) == 1
    if options["padding"] == "max_length" and truncating and fits:
        assert {len(r) for r in rows} == {limit}


@PROPERTY_SETTINGS
@given(TEXTS, image_arrays())
def test_processor_with_text_and_image(text, array) -> None:
    try:
        out = PROCESSOR(images=array, text=text, padding=True, return_tensors="np")
    except DOCUMENTED as exc:
        assert (not _valid(text)) or 0 in array.shape or isinstance(exc, ValueError), exc
        return
    assert _valid(text)
    assert out["input_ids"].dtype == np.int64 and out["input_ids"].shape[0] == 1
    _check_pixels(out, array.shape[0] if array.ndim == 4 else 1)


@PROPERTY_SETTINGS
@given(st.one_of(st.integers(), st.floats(), st.none(), st.lists(st.integers(), min_size=1)))
def test_wrong_text_types_are_type_errors(value) -> None:
    if value is None:
        with pytest.raises(TypeError):
            TOKENIZER(value)
        return
    with pytest.raises(TypeError, match="text must be a str or a list of str"):
        TOKENIZER(value)


# ---- configs ------------------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(10**6), 10**6),
        st.floats(allow_nan=False),
        st.text(max_size=5),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=5,
)
FIELDS = [
    *((None, f) for f in ("text_config", "vision_config", "projection_dim", "logit_scale_init_value")),
    *(("text_config", f) for f in BlipTextConfig._field_names()),
    *(("vision_config", f) for f in BlipVisionConfig._field_names()),
]  # fmt: skip


@PROPERTY_SETTINGS
@given(st.lists(st.tuples(st.sampled_from(FIELDS), JSON_VALUES), min_size=1, max_size=3))
def test_config_files_load_or_raise_config_error(tmp_path_factory, edits) -> None:
    import json

    data = BlipConfig(text_config=BlipTextConfig(num_attention_heads=12)).to_dict()
    for (section, name), value in edits:
        holder = data if section is None else data[section]
        if isinstance(holder, dict):
            holder[name] = value
    folder = tmp_path_factory.mktemp("config")
    (folder / "config.json").write_text(json.dumps(data))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            config = BlipConfig.from_pretrained(folder)
        except ConfigError as exc:
            assert str(exc).startswith(str(folder / "config.json")), exc
            return
    assert isinstance(config.text_config, BlipTextConfig)
    assert isinstance(config.vision_config, BlipVisionConfig)
    assert isinstance(config.text_config.num_attention_heads, int)
    assert config.text_config.hidden_size % config.text_config.num_attention_heads == 0
