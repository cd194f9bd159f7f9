"""blip_tf against transformers 4.57.6 PyTorch BLIP: same files, same inputs, same outputs."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("transformers")
torch = pytest.importorskip("torch")
tf = pytest.importorskip("tensorflow")

import blip_tf  # noqa: E402
from tests.helpers import (  # noqa: E402
    BASE_TEXT,
    BASE_VISION,
    TINY_TEXT,
    TINY_VISION,
    compare_outputs,
    make_inputs,
)
from tests.reference import reference_config  # noqa: E402
from tests.tf.cases import save_reference, set_faithful_masks  # noqa: E402
from tests.torch.cases import CASES, case_kwargs, to_torch  # noqa: E402


def _pair(tmp_path, class_name: str, config=None, faithful: bool = True, seed: int = 0):
    reference = save_reference(class_name, tmp_path, config, seed=seed)
    ours = getattr(blip_tf, class_name).from_pretrained(tmp_path)
    if faithful:
        set_faithful_masks(ours)
    return reference, ours


@pytest.mark.parametrize("case", sorted(CASES))
def test_tiny_parity(tmp_path, case):
    reference, ours = _pair(tmp_path, CASES[case])
    kwargs = case_kwargs(case, TINY_TEXT, TINY_VISION)
    with torch.no_grad():
        expected = reference(**to_torch(kwargs))
    table = compare_outputs(ours(**kwargs), expected, atol=1e-5)
    print(f"\n{case}\n{table}")


def test_tf_tensor_inputs_match_numpy_inputs(tmp_path):
    _, ours = _pair(tmp_path, "BlipForConditionalGeneration")
    kwargs = case_kwargs("caption", TINY_TEXT, TINY_VISION)
    as_tf = {k: tf.constant(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
    compare_outputs(ours(**as_tf), ours(**kwargs), atol=0.0)


def test_encoder_padding_is_masked_by_default(tmp_path):
    """Our default masks padded encoder states (the reference attends to them): rows without
    padding agree with the reference, and padded positions have no influence."""
    reference, ours = _pair(tmp_path, "BlipTextModel", faithful=False)
    kwargs = case_kwargs("text_cross", TINY_TEXT, TINY_VISION)
    padded_rows = np.where(kwargs["encoder_attention_mask"].min(axis=1) == 0)[0]
    full_rows = np.where(kwargs["encoder_attention_mask"].min(axis=1) == 1)[0]
    assert len(padded_rows) and len(full_rows)
    with torch.no_grad():
        expected = reference(**to_torch(kwargs)).last_hidden_state.numpy()
    got = ours(**kwargs).last_hidden_state.numpy()
    np.testing.assert_allclose(got[full_rows], expected[full_rows], atol=1e-5)
    assert np.abs(got[padded_rows] - expected[padded_rows]).max() > 1e-3
    changed = dict(kwargs)
    states = kwargs["encoder_hidden_states"].copy()
    states[kwargs["encoder_attention_mask"] == 0] = 123.0
    changed["encoder_hidden_states"] = states
    np.testing.assert_array_equal(ours(**changed).last_hidden_state.numpy(), got)


def test_gradients_match_reference(tmp_path):
    """Loss gradients w.r.t. every weight agree with torch (the tied embedding included)."""
    reference, ours = _pair(tmp_path, "BlipForConditionalGeneration")
    kwargs = case_kwargs("caption", TINY_TEXT, TINY_VISION)
    reference(**to_torch(kwargs)).loss.backward()
    ref_grads = {k: p.grad.numpy() for k, p in reference.named_parameters() if p.grad is not None}
    from blip_core.weights.tf_map import keras_to_canonical_path, to_canonical
    from blip_tf.checkpoint import keras_variables

    variables = keras_variables(ours)
    with tf.GradientTape() as tape:
        loss = ours(**kwargs, training=True).loss
    grads = tape.gradient(loss, list(variables.values()))
    compared = 0
    for (path, _), grad in zip(variables.items(), grads):
        key, ours_grad = to_canonical(path, tf.convert_to_tensor(grad).numpy())
        assert key == keras_to_canonical_path(path)
        np.testing.assert_allclose(ours_grad, ref_grads[key], atol=1e-4, err_msg=key)
        compared += 1
    assert compared == len(variables) == len(ref_grads)


def test_label_smoothing_and_per_row_loss(tmp_path):
    config = reference_config(text={**TINY_TEXT, "label_smoothing": 0.1})
    reference, ours = _pair(tmp_path, "BlipTextLMHeadModel", config=config)
    assert ours.label_smoothing == 0.1
    kwargs = case_kwargs("lm_head", TINY_TEXT, TINY_VISION)
    for reduction in ("mean", "none"):
        with torch.no_grad():
            expected = reference(**to_torch(kwargs), reduction=reduction).loss.numpy()
        got = ours(**kwargs, reduction=reduction).loss.numpy()
        np.testing.assert_allclose(got, expected, atol=1e-5, err_msg=reduction)


def test_all_labels_ignored_gives_nan_like_torch(tmp_path):
    reference, ours = _pair(tmp_path, "BlipTextLMHeadModel")
    kwargs = case_kwargs("lm_head", TINY_TEXT, TINY_VISION)
    kwargs["labels"] = np.full_like(kwargs["labels"], -100)
    with torch.no_grad():
        assert np.isnan(reference(**to_torch(kwargs)).loss.item())
    assert np.isnan(ours(**kwargs).loss.numpy())


def test_interpolated_position_embeddings(tmp_path):
    """A 48x48 image on a 32x32 model: bicubic resize of the position grid, as in PyTorch."""
    reference, ours = _pair(tmp_path, "BlipVisionModel")
    pixels = make_inputs(batch=2, image_size=48)["pixel_values"]
    with torch.no_grad():
        expected = reference(torch.from_numpy(pixels), interpolate_pos_encoding=True)
    got = ours(pixels, interpolate_pos_encoding=True)
    compare_outputs(got, expected, atol=1e-5)
    with pytest.raises(ValueError, match="interpolate_pos_encoding"):
        ours(pixels)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["caption", "vqa", "itm", "blip_model"])
def test_base_size_parity(tmp_path, case):
    """768 hidden, 12 layers, 12 text heads, 384 images: within 1e-4 of the reference."""
    text = {**BASE_TEXT, "vocab_size": 30524}
    vision = {**BASE_VISION, "image_size": 384, "hidden_size": 768}
    config = reference_config(text=BASE_TEXT, vision=BASE_VISION, composite={})
    reference, ours = _pair(tmp_path, CASES[case], config=config)
    kwargs = case_kwargs(case, text, vision, batch=2)
    with torch.no_grad():
        expected = reference(**to_torch(kwargs))
    print(compare_outputs(ours(**kwargs), expected, atol=1e-4))
