"""BlipImageProcessor: behaviour, errors, file round trips, and parity with transformers."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from blip_core.image_processing import (
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
    BatchFeature,
    BlipImageProcessor,
    ImageLoadError,
)
from tests.core.core_helpers import make_images

os.environ.setdefault("USE_TF", "0")


@pytest.fixture(scope="module")
def images() -> dict[str, object]:
    return make_images(np.random.default_rng(0))


def _expected_constant(value: int) -> np.ndarray:
    """Pixel values of a uniform image of ``value`` (resizing keeps it uniform), per channel."""
    scaled = np.float32(np.float64(value) * (1 / 255))
    mean = np.array(OPENAI_CLIP_MEAN, dtype=np.float32)
    std = np.array(OPENAI_CLIP_STD, dtype=np.float32)
    return (scaled - mean) / std


# ---- behaviour without the reference ---------------------------------------------------------


def test_defaults_and_to_dict() -> None:
    proc = BlipImageProcessor()
    config = proc.to_dict()
    assert config == {
        "do_resize": True,
        "size": {"height": 384, "width": 384},
        "resample": 3,
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": OPENAI_CLIP_MEAN,
        "image_std": OPENAI_CLIP_STD,
        "do_convert_rgb": True,
        "image_processor_type": "BlipImageProcessor",
    }


def test_constant_image_values_and_shape() -> None:
    proc = BlipImageProcessor(size={"height": 32, "width": 24})
    image = Image.new("RGB", (50, 40), (128, 128, 128))
    out = proc(image)
    assert isinstance(out, BatchFeature)
    assert out.pixel_values is out["pixel_values"]
    assert out.pixel_values.shape == (1, 3, 32, 24)
    assert out.pixel_values.dtype == np.float32
    expected = _expected_constant(128)[None, :, None, None]
    np.testing.assert_allclose(
        out.pixel_values, np.broadcast_to(expected, (1, 3, 32, 24)), atol=1e-6
    )


@pytest.mark.parametrize(
    "make",
    [
        lambda a: Image.fromarray(a),
        lambda a: a,
        lambda a: a.transpose(2, 0, 1).copy(),
        lambda a: a.astype(np.float64),
        lambda a: a.astype(np.int64).transpose(2, 0, 1),
    ],
    ids=["pil", "hwc_uint8", "chw_uint8", "hwc_float_intvalued", "chw_int64"],
)
def test_layouts_and_dtypes_agree(make) -> None:
    rng = np.random.default_rng(1)
    array = rng.integers(0, 256, (30, 45, 3), dtype=np.uint8)
    proc = BlipImageProcessor(size=16)
    expected = proc(Image.fromarray(array)).pixel_values
    np.testing.assert_array_equal(proc(make(array)).pixel_values, expected)


def test_float01_inputs_are_truncated_to_uint8_for_resizing() -> None:
    rng = np.random.default_rng(1)
    array = rng.integers(0, 255, (30, 45, 3), dtype=np.uint8)
    # x 255 gives a + 0.25, which the reference truncates back to a before resizing.
    floats = ((array.astype(np.float64) + 0.25) / 255).astype(np.float32)
    proc = BlipImageProcessor(size=16)
    expected = proc(array).pixel_values
    np.testing.assert_allclose(proc(floats, do_rescale=False).pixel_values, expected, atol=1e-5)
    # With the default do_rescale=True the [0, 1] values are divided by 255 once more.
    twice = proc(floats).pixel_values
    no_norm = proc(floats, do_normalize=False).pixel_values
    assert no_norm.max() <= 1 / 255 + 1e-7
    assert not np.allclose(twice, expected, atol=1e-2)


def test_batches_lists_and_4d() -> None:
    rng = np.random.default_rng(2)
    batch = rng.integers(0, 256, (3, 20, 30, 3), dtype=np.uint8)
    proc = BlipImageProcessor(size=8)
    from_4d = proc(batch).pixel_values
    from_list = proc([Image.fromarray(b) for b in batch]).pixel_values
    from_nested = proc([[batch[0]], [batch[1], batch[2]]]).pixel_values
    assert from_4d.shape == (3, 3, 8, 8)
    np.testing.assert_array_equal(from_4d, from_list)
    np.testing.assert_array_equal(from_4d, from_nested)


def test_mixed_layouts_in_one_batch() -> None:
    """Each image's layout is inferred on its own (the reference infers it from the first image
    and applies it to all, which fails on such a batch)."""
    rng = np.random.default_rng(6)
    a = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (3, 25, 15), dtype=np.uint8)
    proc = BlipImageProcessor(size=8)
    out = proc([Image.fromarray(a), b]).pixel_values
    np.testing.assert_array_equal(out[0], proc(a).pixel_values[0])
    np.testing.assert_array_equal(out[1], proc(b.transpose(1, 2, 0)).pixel_values[0])


def test_grayscale_arrays_become_rgb() -> None:
    rng = np.random.default_rng(3)
    gray = rng.integers(0, 256, (20, 30), dtype=np.uint8)
    proc = BlipImageProcessor(size=8)
    expected = proc(Image.fromarray(gray)).pixel_values
    for variant in (gray, gray[..., None], gray[None], np.dstack([gray, gray, gray, gray])):
        np.testing.assert_array_equal(proc(variant).pixel_values, expected)


def test_channels_last_output_and_no_resize_list() -> None:
    rng = np.random.default_rng(4)
    a = rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (14, 9, 3), dtype=np.uint8)
    proc = BlipImageProcessor()
    out = proc(a, data_format="channels_last", do_resize=False).pixel_values
    assert out.shape == (1, 10, 12, 3)
    ragged = proc([a, b], do_resize=False).pixel_values
    assert [x.shape for x in ragged] == [(3, 10, 12), (3, 14, 9)]
    with pytest.raises(ValueError, match="different shapes"):
        proc([a, b], do_resize=False, return_tensors="np")


def test_return_tensors_pt() -> None:
    torch = pytest.importorskip("torch")
    image = Image.new("RGB", (20, 20), (10, 200, 30))
    proc = BlipImageProcessor(size=16)
    out = proc(image, return_tensors="pt")
    assert isinstance(out.pixel_values, torch.Tensor)
    assert out.pixel_values.dtype == torch.float32
    np.testing.assert_array_equal(out.pixel_values.numpy(), proc(image).pixel_values)
    tensor_in = proc(torch.from_numpy(np.array(image)).permute(2, 0, 1)).pixel_values
    np.testing.assert_array_equal(tensor_in, proc(image).pixel_values)


def test_bad_return_tensors() -> None:
    with pytest.raises(ValueError, match="return_tensors"):
        BlipImageProcessor()(Image.new("RGB", (4, 4)), return_tensors="jax-ish")


def test_missing_file_names_the_path(tmp_path) -> None:
    missing = tmp_path / "nope.png"
    with pytest.raises(ImageLoadError, match="nope.png") as info:
        BlipImageProcessor()(str(missing))
    assert isinstance(info.value, ValueError) and isinstance(info.value, OSError)
    assert info.value.path == str(missing)


def test_not_an_image_file_names_the_path(tmp_path) -> None:
    fake = tmp_path / "notes.png"
    fake.write_text("this is not a png")
    with pytest.raises(ImageLoadError, match="notes.png"):
        BlipImageProcessor()(fake)
    with pytest.raises(ImageLoadError, match="not a regular file"):
        BlipImageProcessor()(tmp_path)


def test_path_inputs(tmp_path) -> None:
    rng = np.random.default_rng(5)
    array = rng.integers(0, 256, (25, 35, 3), dtype=np.uint8)
    Image.fromarray(array).save(tmp_path / "x.png")
    proc = BlipImageProcessor(size=8)
    expected = proc(array).pixel_values
    np.testing.assert_array_equal(proc(tmp_path / "x.png").pixel_values, expected)
    np.testing.assert_array_equal(proc([str(tmp_path / "x.png")]).pixel_values, expected)


@pytest.mark.parametrize("bad", [3.5, None, {"a": 1}, [Image.new("RGB", (4, 4)), 7], b"bytes"])
def test_bad_types_raise_type_error(bad) -> None:
    with pytest.raises(TypeError, match="unsupported image type"):
        BlipImageProcessor()(bad)


def test_bad_shapes_and_values() -> None:
    proc = BlipImageProcessor()
    with pytest.raises(ValueError, match="no images"):
        proc([])
    with pytest.raises(ValueError, match="dimensions"):
        proc(np.zeros((2, 2, 2, 2, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="outside"):
        proc(np.full((8, 8, 3), 1.5, dtype=np.float32))
    with pytest.raises(ValueError, match="channel axis"):
        proc(np.zeros((8, 8, 5), dtype=np.uint8))
    with pytest.raises(ValueError, match="height"):
        BlipImageProcessor(size={"shortest_edge": 224})
    with pytest.raises(ValueError, match="image_mean"):
        proc(np.zeros((8, 8, 3), dtype=np.uint8), image_mean=[0.5, 0.5])


def test_save_load_round_trip_keeps_unknown_keys(tmp_path) -> None:
    config = BlipImageProcessor(size={"height": 224, "width": 224}).to_dict()
    config.update(processor_class="BlipProcessor", feature_extractor_type="X", custom=[1, 2])
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(config))
    proc = BlipImageProcessor.from_pretrained(tmp_path)
    assert proc.size == {"height": 224, "width": 224}
    out_dir = tmp_path / "saved"
    proc.save_pretrained(out_dir)
    saved = json.loads((out_dir / "preprocessor_config.json").read_text())
    assert saved == config
    assert BlipImageProcessor.from_pretrained(out_dir) == proc


def test_from_pretrained_errors(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="no such"):
        BlipImageProcessor.from_pretrained(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="preprocessor_config.json"):
        BlipImageProcessor.from_pretrained(tmp_path)
    (tmp_path / "preprocessor_config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        BlipImageProcessor.from_pretrained(tmp_path)


def test_legacy_int_size() -> None:
    assert BlipImageProcessor.from_dict({"size": 224}).size == {"height": 224, "width": 224}


# ---- parity with transformers -------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference():
    transformers = pytest.importorskip("transformers")
    return transformers.BlipImageProcessor()


def _compare(reference, ours, image, **kwargs) -> None:
    expected = reference(image, return_tensors="np", **kwargs)["pixel_values"]
    got = ours(image, return_tensors="np", **kwargs)["pixel_values"]
    assert got.shape == expected.shape
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", list(make_images(np.random.default_rng(0))))
def test_parity_default_settings(reference, images, name) -> None:
    # 16-bit images are scaled by default (the reference clips them): use the faithful switch.
    ours = BlipImageProcessor(scale_16bit=False) if name == "pil_I16" else BlipImageProcessor()
    _compare(reference, ours, images[name])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"do_resize": False},
        {"do_rescale": False},
        {"do_normalize": False},
        {"size": {"height": 40, "width": 72}},
        {"resample": 2},
        {"resample": 0, "size": {"height": 17, "width": 23}},
        {"image_mean": 0.5, "image_std": 0.25},
        {"do_resize": False, "do_rescale": False},
        {"rescale_factor": 1 / 127.5},
    ],
    ids=str,
)
@pytest.mark.parametrize("name", ["pil_rgb_portrait", "np_chw_uint8", "np_hwc_float01"])
def test_parity_overrides(reference, images, name, kwargs) -> None:
    _compare(reference, BlipImageProcessor(), images[name], **kwargs)


def test_parity_batch_and_paths(reference, images, tmp_path) -> None:
    batch = [images["pil_rgb_landscape"], images["pil_L"], images["pil_RGBA"]]
    _compare(reference, BlipImageProcessor(), batch)
    for name in ("pil_rgb_portrait", "pil_L", "pil_I16", "pil_P"):
        images[name].save(tmp_path / f"{name}.png")
    paths = [str(tmp_path / f"{n}.png") for n in ("pil_rgb_portrait", "pil_L", "pil_I16", "pil_P")]
    _compare(reference, BlipImageProcessor(scale_16bit=False), paths)  # the reference clips 16-bit
    _compare(reference, BlipImageProcessor(scale_16bit=False), paths[2])
    _compare(reference, BlipImageProcessor(), paths[:2] + paths[3:])


def test_parity_torch_tensor(reference, images) -> None:
    torch = pytest.importorskip("torch")
    chw = torch.from_numpy(images["np_chw_float01"].astype(np.float32))
    _compare(reference, BlipImageProcessor(), chw, do_rescale=False)
    nchw = torch.from_numpy(images["np_batch_nhwc"]).permute(0, 3, 1, 2)
    _compare(reference, BlipImageProcessor(), nchw)


def test_config_files_interchange(reference, images, tmp_path) -> None:
    from transformers import BlipImageProcessor as RefProcessor

    custom = RefProcessor(size={"height": 64, "width": 48}, resample=2, image_mean=[0.5] * 3)
    custom.save_pretrained(tmp_path / "ref")
    ours = BlipImageProcessor.from_pretrained(tmp_path / "ref")
    _compare(custom, ours, images["pil_rgb_large"])
    ours.save_pretrained(tmp_path / "ours")
    back = RefProcessor.from_pretrained(tmp_path / "ours")
    assert back.to_dict() == custom.to_dict()
    ref_json = json.loads((tmp_path / "ref" / "preprocessor_config.json").read_text())
    our_json = json.loads((tmp_path / "ours" / "preprocessor_config.json").read_text())
    assert our_json == ref_json
