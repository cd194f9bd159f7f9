"""Bad input in preprocessing (issue 12): decompression bombs, images without pixels, 16-bit
images, text that is not valid Unicode, masks that do not fit their ids."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest

from blip_core.generation import answer_prompts, caption_prompts
from blip_core.image_processing import BlipImageProcessor, ImageLoadError, load_image
from blip_core.processing import BlipProcessor
from blip_core.tokenization import BlipTokenizer
from tests.core.core_helpers import vocab_tokens


@pytest.fixture(scope="module")
def tok() -> BlipTokenizer:
    return BlipTokenizer.from_vocab(vocab_tokens())


@pytest.fixture(scope="module")
def small() -> BlipImageProcessor:
    return BlipImageProcessor(size=24)


# ---- decompression bombs ------------------------------------------------------------------------


def test_decompression_bomb_is_an_image_load_error_naming_the_file(tmp_path, monkeypatch, small):
    path = tmp_path / "bomb.png"
    PIL.Image.new("RGB", (60, 50), "red").save(path)
    # Pillow refuses images over 2 * MAX_IMAGE_PIXELS with DecompressionBombError, which is an
    # Exception, not an OSError.  monkeypatch restores the limit after the test.
    monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", 1000)
    assert not issubclass(PIL.Image.DecompressionBombError, OSError)
    with pytest.raises(ImageLoadError, match="decompression bomb") as info:
        load_image(path)
    assert str(path) in str(info.value) and info.value.path == str(path)
    with pytest.raises(ImageLoadError, match="bomb.png"):
        small(str(path))
    monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", 10_000)
    assert load_image(path).size == (60, 50)


# ---- images without pixels ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape",
    [(0, 0), (0, 0, 3), (0, 7, 3), (5, 0), (3, 0, 9), (5, 6, 0), (0, 4, 4, 3), (2, 0, 4, 3)],
)
def test_zero_sized_arrays_name_the_shape(small, shape) -> None:
    with pytest.raises(ValueError, match=r"image array of shape .* is empty") as info:
        small(np.zeros(shape, dtype=np.uint8))
    assert str(shape).replace(",)", ")") in str(info.value) or "0" in str(info.value)


def test_zero_sized_pil_image(small) -> None:
    with pytest.raises(ValueError, match="a 0x0 'RGB' Pillow image has no pixels"):
        small(PIL.Image.new("RGB", (0, 0)))
    with pytest.raises(ValueError, match="a 5x0 'L' Pillow image has no pixels"):
        small([PIL.Image.new("RGB", (4, 4)), PIL.Image.new("L", (5, 0))])


def test_one_pixel_image_works(small) -> None:
    out = small(np.full((1, 1, 3), 200, dtype=np.uint8))["pixel_values"]
    assert out.shape == (1, 3, 24, 24) and out.dtype == np.float32


# ---- 16-bit images ------------------------------------------------------------------------------


def _gradient16(h: int = 20, w: int = 30) -> np.ndarray:
    return np.linspace(0, 65535, h * w).round().astype(np.uint16).reshape(h, w)


def test_16bit_scaling_is_value_shifted_by_8() -> None:
    from blip_core.image_io import scale_16bit_array, to_rgb

    values = np.array([[0, 255, 256, 32767, 65280, 65535]], dtype=np.uint16)
    assert scale_16bit_array(values).tolist() == [[0, 0, 1, 127, 255, 255]]
    rgb = np.asarray(to_rgb(PIL.Image.fromarray(values)))
    assert rgb.shape == (1, 6, 3)
    assert rgb[..., 0].tolist() == [[0, 0, 1, 127, 255, 255]]
    assert (rgb[..., 0] == rgb[..., 2]).all()
    # Pillow's own conversion (the reference's) clips instead.
    clipped = np.asarray(to_rgb(PIL.Image.fromarray(values), scale_16bit=False))
    assert clipped[..., 0].tolist() == [[0, 255, 255, 255, 255, 255]]


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I"])
def test_16bit_pil_modes_are_scaled(small, mode) -> None:
    data = _gradient16()
    if mode == "I;16B":  # Pillow's convert("I;16B") clips to 255 itself: build it from bytes
        image = PIL.Image.frombytes(mode, data.shape[::-1], data.astype(">u2").tobytes())
    else:
        image = PIL.Image.fromarray(data).convert(mode)
    assert image.mode == mode
    assert np.asarray(image).max() == 65535
    expected = small(PIL.Image.fromarray((data >> 8).astype(np.uint8)))["pixel_values"]
    np.testing.assert_array_equal(small(image)["pixel_values"], expected)
    # The faithful switch reproduces Pillow's clipping (a mostly white image).
    faithful = small(image, scale_16bit=False)["pixel_values"]
    clipped = small(PIL.Image.fromarray(np.minimum(data, 255).astype(np.uint8)))["pixel_values"]
    np.testing.assert_array_equal(faithful, clipped)


def test_16bit_png_file_is_scaled(tmp_path, small) -> None:
    data = _gradient16()
    path = tmp_path / "sixteen.png"
    PIL.Image.fromarray(data).save(path)
    assert PIL.Image.open(path).mode in ("I;16", "I")  # what Pillow gives a 16-bit PNG
    loaded = np.asarray(load_image(path))
    np.testing.assert_array_equal(loaded[..., 1], (data >> 8).astype(np.uint8))
    assert np.asarray(load_image(path, scale_16bit=False)).max() == 255
    assert loaded.mean() < 140  # a mid-grey gradient, not almost white
    expected = small(PIL.Image.fromarray((data >> 8).astype(np.uint8)))["pixel_values"]
    np.testing.assert_array_equal(small(str(path))["pixel_values"], expected)


def test_16bit_png_matches_transformers_with_the_faithful_switch(tmp_path) -> None:
    transformers = pytest.importorskip("transformers")
    path = tmp_path / "sixteen.png"
    PIL.Image.fromarray(_gradient16(40, 50)).save(path)
    expected = transformers.BlipImageProcessor()(str(path), return_tensors="np")["pixel_values"]
    got = BlipImageProcessor(scale_16bit=False)(str(path))["pixel_values"]
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    assert np.abs(BlipImageProcessor()(str(path))["pixel_values"] - expected).max() > 0.5


@pytest.mark.parametrize("shape", [(20, 30), (20, 30, 3), (3, 20, 30)])
def test_uint16_arrays_are_scaled(small, shape) -> None:
    rng = np.random.default_rng(1)
    data = rng.integers(0, 65536, shape).astype(np.uint16)
    expected = small((data >> 8).astype(np.uint8))["pixel_values"]
    np.testing.assert_array_equal(small(data)["pixel_values"], expected)
    big_endian = data.astype(">u2")
    np.testing.assert_array_equal(small(big_endian)["pixel_values"], expected)
    # The faithful switch keeps the reference's rule: integers above 255 are an error.
    with pytest.raises(ValueError, match=r"integer values outside \[0, 255\]"):
        small(data, scale_16bit=False)


def test_scale_16bit_setting_round_trips(tmp_path) -> None:
    BlipImageProcessor().save_pretrained(tmp_path / "default")
    assert "scale_16bit" not in (tmp_path / "default" / "preprocessor_config.json").read_text()
    BlipImageProcessor(scale_16bit=False).save_pretrained(tmp_path / "faithful")
    again = BlipImageProcessor.from_pretrained(tmp_path / "faithful")
    assert again.scale_16bit is False and again == BlipImageProcessor(scale_16bit=False)


# ---- text that is not valid Unicode --------------------------------------------------------------


@pytest.mark.parametrize("text", ["\ud800", "a cat \udfff on a mat", "ok \ud83d"])
def test_lone_surrogate_is_a_value_error_naming_the_argument(tok, text) -> None:
    with pytest.raises(ValueError, match=r"^text is not valid Unicode: .* lone surrogate"):
        tok(text)
    with pytest.raises(ValueError, match=r"^text\[1\] is not valid Unicode"):
        tok(["fine", text], padding=True)
    with pytest.raises(ValueError, match="not valid Unicode"):
        tok.encode(text)
    with pytest.raises(ValueError, match="not valid Unicode"):
        tok.tokenize(text)
    processor = BlipProcessor(BlipImageProcessor(size=24), tok)
    with pytest.raises(ValueError, match=r"text\[0\] is not valid Unicode"):
        processor(images=np.zeros((8, 8, 3), np.uint8), text=[text])


def test_surrogate_pairs_written_properly_are_fine(tok) -> None:
    assert tok("a cat \U0001f600").input_ids[0] == tok.cls_token_id


# ---- masks that do not fit their ids ------------------------------------------------------------


def test_caption_prompt_mask_shorter_than_ids() -> None:
    ids = np.array([[5, 8, 9, 6], [5, 8, 6, 0]])
    with pytest.raises(
        ValueError, match=r"attention_mask has shape \(2, 3\) but input_ids has shape \(2, 4\)"
    ):
        caption_prompts(ids, np.ones((2, 3), np.int64), 2, 30522, 6)
    with pytest.raises(ValueError, match=r"attention_mask has shape \(1, 2\)"):
        caption_prompts(ids[0], np.ones(2, np.int64), 1, 30522, 6)
    # A 1-D mask for 1-D ids is fine, as before.
    assert caption_prompts(ids[1], np.array([1, 1, 1, 0]), 1, 30522, 6) == [[30522, 8]]


def test_answer_mask_shorter_than_ids() -> None:
    with pytest.raises(ValueError, match=r"answer_mask has shape \(2, 1\) but answer_ids"):
        answer_prompts(np.ones((2, 3), np.int64), np.ones((2, 1), np.int64), 30522)
