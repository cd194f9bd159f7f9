"""BlipProcessor: both halves behind one call, hub directories, parity with transformers."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from blip_core.image_processing import BatchFeature, BlipImageProcessor
from blip_core.processing import BlipProcessor
from blip_core.tokenization import BatchEncoding, BlipTokenizer
from tests.core.core_helpers import SENTENCES, make_images, reference_tokenizer, write_vocab

os.environ.setdefault("USE_TF", "0")


@pytest.fixture(scope="module")
def vocab_file(tmp_path_factory):
    return write_vocab(tmp_path_factory.mktemp("vocab"))


@pytest.fixture(scope="module")
def processor(vocab_file) -> BlipProcessor:
    return BlipProcessor(
        BlipImageProcessor(size={"height": 48, "width": 40}), BlipTokenizer.from_vocab(vocab_file)
    )


@pytest.fixture(scope="module")
def images() -> list[object]:
    found = make_images(np.random.default_rng(7))
    return [found["pil_rgb_portrait"], found["pil_RGBA"], found["np_hwc_uint8"]]


# ---- behaviour without the reference ---------------------------------------------------------


def test_images_and_text(processor, images) -> None:
    out = processor(images=images, text=SENTENCES[:3], padding=True, return_tensors="np")
    assert isinstance(out, BatchFeature)
    assert set(out) == {"pixel_values", "input_ids", "attention_mask"}
    assert out.pixel_values.shape == (3, 3, 48, 40)
    assert out.input_ids.shape == out.attention_mask.shape
    assert out.input_ids.shape[0] == 3


def test_text_only_and_images_only(processor, images) -> None:
    text = processor(text="a cat on a mat")
    assert isinstance(text, BatchEncoding) and set(text) == {"input_ids", "attention_mask"}
    pixels = processor(images=images[0])
    assert set(pixels) == {"pixel_values"} and pixels.pixel_values.shape == (1, 3, 48, 40)
    overridden = processor(images=images[0], size={"height": 8, "width": 8}, do_normalize=False)
    assert overridden.pixel_values.shape == (1, 3, 8, 8)
    assert overridden.pixel_values.min() >= 0


def test_errors(processor, images) -> None:
    with pytest.raises(ValueError, match="neither"):
        processor()
    with pytest.raises(TypeError, match="without images"):
        processor(text="a", do_resize=False)
    with pytest.raises(TypeError, match="BlipTokenizer"):
        BlipProcessor(BlipImageProcessor(), object())
    with pytest.raises(TypeError, match="BlipImageProcessor"):
        BlipProcessor(object(), processor.tokenizer)
    with pytest.raises(FileNotFoundError):
        BlipProcessor.from_pretrained("/nonexistent/blip/dir")


def test_decode(processor) -> None:
    ids = processor(text=["a cat", "a big cat"], padding=True).input_ids
    assert processor.batch_decode(ids, skip_special_tokens=True) == ["a cat", "a big cat"]
    assert processor.decode(ids[0]) == "[CLS] a cat [SEP] [PAD]"


def test_save_load_round_trip(processor, images, tmp_path) -> None:
    files = processor.save_pretrained(tmp_path)
    assert {p.name for p in files} >= {"preprocessor_config.json", "tokenizer.json", "vocab.txt"}
    pre = json.loads((tmp_path / "preprocessor_config.json").read_text())
    tok = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert pre["processor_class"] == tok["processor_class"] == "BlipProcessor"
    assert pre["image_processor_type"] == "BlipImageProcessor"
    assert processor.image_processor.processor_class is None  # saving does not change the object
    back = BlipProcessor.from_pretrained(tmp_path)
    a = processor(images=images, text=SENTENCES[:3], padding=True, return_tensors="np")
    b = back(images=images, text=SENTENCES[:3], padding=True, return_tensors="np")
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


# ---- parity with transformers -------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference(vocab_file):
    transformers = pytest.importorskip("transformers")
    return transformers.BlipProcessor(
        transformers.BlipImageProcessor(size={"height": 48, "width": 40}),
        reference_tokenizer(vocab_file),
    )


def _assert_same(ours, theirs) -> None:
    assert set(ours) == set(theirs)
    for key in theirs:
        expected = np.asarray(theirs[key])
        got = np.asarray(ours[key])
        assert got.shape == expected.shape, key
        if key == "pixel_values":
            np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
        else:
            np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize(
    "options",
    [
        {"padding": True},
        {"padding": "max_length", "max_length": 16, "truncation": True},
        {"max_length": 6},
        {"padding": True, "add_special_tokens": False},
    ],
    ids=str,
)
@pytest.mark.filterwarnings("ignore:`max_length` is ignored")
def test_parity_with_transformers(processor, reference, images, options) -> None:
    texts = SENTENCES[:3]
    theirs = reference(images=images, text=texts, return_tensors="np", **options)
    ours = processor(images=images, text=texts, return_tensors="np", **options)
    _assert_same(ours, theirs)
    theirs_text = reference(text=SENTENCES, return_tensors="np", **{**options, "padding": True})
    ours_text = processor(text=SENTENCES, return_tensors="np", **{**options, "padding": True})
    _assert_same(ours_text, theirs_text)
    single = reference(text=SENTENCES[0], **options)
    _assert_same(processor(text=SENTENCES[0], **options), single)


def test_parity_pt_tensors(processor, reference, images) -> None:
    torch = pytest.importorskip("torch")
    theirs = reference(images=images, text=SENTENCES[:3], padding=True, return_tensors="pt")
    ours = processor(images=images, text=SENTENCES[:3], padding=True, return_tensors="pt")
    for key in theirs:
        assert isinstance(ours[key], torch.Tensor) and ours[key].dtype == theirs[key].dtype
    _assert_same({k: v.numpy() for k, v in ours.items()}, {k: v.numpy() for k, v in theirs.items()})


def test_directories_interchange(processor, reference, images, tmp_path) -> None:
    from transformers import BlipProcessor as RefProcessor

    reference.save_pretrained(tmp_path / "ref")
    ours = BlipProcessor.from_pretrained(tmp_path / "ref")
    _assert_same(
        ours(images=images, text=SENTENCES[:3], padding=True, return_tensors="np"),
        reference(images=images, text=SENTENCES[:3], padding=True, return_tensors="np"),
    )
    processor.save_pretrained(tmp_path / "ours")
    theirs = RefProcessor.from_pretrained(tmp_path / "ours")
    assert type(theirs.tokenizer).__name__ == "BertTokenizerFast"
    _assert_same(
        processor(images=images, text=SENTENCES, padding=True, return_tensors="np"),
        theirs(images=images, text=SENTENCES, padding=True, return_tensors="np"),
    )
    ids = theirs(text=SENTENCES, padding=True)["input_ids"]
    assert processor.batch_decode(ids, skip_special_tokens=True) == theirs.batch_decode(
        ids, skip_special_tokens=True
    )


def test_path_and_grayscale_images(processor, reference, tmp_path) -> None:
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 256, (33, 21), dtype=np.uint8)).save(tmp_path / "g.png")
    path = str(tmp_path / "g.png")
    _assert_same(
        processor(images=[path], text="a photo", return_tensors="np"),
        reference(images=[path], text="a photo", return_tensors="np"),
    )


def test_batch_to_keeps_integer_ids(processor, images) -> None:
    torch = pytest.importorskip("torch")
    out = processor(images=images, text=SENTENCES[:3], padding=True, return_tensors="pt")
    moved = out.to(torch.float64)
    assert moved.pixel_values.dtype == torch.float64
    assert moved.input_ids.dtype == torch.int64
    assert out.to("cpu").input_ids.dtype == torch.int64


def test_return_tensors_tf_in_subprocess(vocab_file) -> None:
    """TensorFlow outputs (run in a subprocess: the test process keeps TensorFlow out)."""
    import importlib.util
    import subprocess
    import sys
    from pathlib import Path

    if importlib.util.find_spec("tensorflow") is None:
        pytest.skip("tensorflow is not installed")
    code = (
        "import sys; from PIL import Image; "
        "from blip_core.processing import BlipProcessor; "
        "from blip_core.image_processing import BlipImageProcessor; "
        "from blip_core.tokenization import BlipTokenizer; "
        f"tok = BlipTokenizer.from_vocab({str(vocab_file)!r}); "
        "p = BlipProcessor(BlipImageProcessor(size=8), tok); "
        "out = p(images=[Image.new('RGB', (9, 9))] * 2, text=['a cat', 'a'], padding=True, "
        "return_tensors='tf'); "
        "import tensorflow as tf; "
        "assert isinstance(out['pixel_values'], tf.Tensor), type(out['pixel_values']); "
        "pv = out['pixel_values']; "
        "assert pv.dtype == tf.float32 and pv.shape == (2, 3, 8, 8); "
        "assert out['input_ids'].dtype == tf.int32 and out['input_ids'].shape == (2, 4); "
        "assert p.batch_decode(out['input_ids'], skip_special_tokens=True) == ['a cat', 'a']"
    )
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
