"""blip_tf under bfloat16 / mixed_bfloat16 Keras dtype policies on the tiny fixtures: the
``dtype`` argument and ``"auto"``, what stays float32, outputs close to float32 and to
blip_torch's bfloat16 within stated tolerances, the XLA decode step and its cache in bfloat16,
greedy ids against float32's.

Tolerances (absolute).  bfloat16 keeps 8 significant bits: one rounding moves a value by up to
2**-9 of itself, so a value of magnitude 2-4 (the tiny fixtures' hidden states reach 3.2) by up
to 2**-7 = 0.0078.  Between the pixels and an output lie some 10-20 rounding points (every
dense, the GELU, each residual add, the LayerNorm outputs), whose errors partly cancel;
measured against float32 on these fixtures: vision states 0.025 (bf16) / 0.035 (mixed), caption
logits (magnitude <= 1.1) 0.016 / 0.012, question states 0.042 / 0.036, ITM logits 0.0035.  The
bounds below are about 1.5-2x the measured figures, i.e. a handful of bfloat16 roundings of an
O(3) value, and far below the O(1) errors a wrong op in bfloat16 (an un-upcast softmax over a
-10000 mask, a LayerNorm with bf16 statistics on real checkpoints) would give.  blip_torch and
blip_tf in bfloat16 on the same weights differ by the same order (measured 0.023 / 0.010 /
0.031), so they share the bounds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

import keras  # noqa: E402
import ml_dtypes  # noqa: E402

import blip_tf  # noqa: E402
from blip_core import hardware  # noqa: E402
from blip_core.weights import read_checkpoint  # noqa: E402
from blip_tf import precision  # noqa: E402
from blip_tf.attention import attend  # noqa: E402
from blip_tf.generation import TFDecoderSession, project_cross_key_values  # noqa: E402
from tests.helpers import make_inputs  # noqa: E402
from tests.tf.cases import load_fixture_inputs  # noqa: E402

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "reference"
Caption = blip_tf.BlipForConditionalGeneration
CLASSES = {
    "caption": blip_tf.BlipForConditionalGeneration,
    "vqa": blip_tf.BlipForQuestionAnswering,
    "itm": blip_tf.BlipForImageTextRetrieval,
}
STATE_ATOL = 0.05  # vision / question hidden states of magnitude <= 3.2 (measured <= 0.042)
QUESTION_ATOL = 0.08  # the question states pass the vision tower and a text encoder
LOGITS_ATOL = 0.04  # caption logits of magnitude <= 1.1 (measured 0.016)
ITM_ATOL = 0.01  # ITM logits of magnitude <= 0.25 (measured 0.0035)
TOLERANCE = {
    "logits": LOGITS_ATOL,
    "image_embeds": STATE_ATOL,
    "last_hidden_state": STATE_ATOL,
    "question_embeds": QUESTION_ATOL,
    "itm_score": ITM_ATOL,
}
LOW = ("bfloat16", "mixed_bfloat16")


def as_f32(x) -> np.ndarray:
    return tf.cast(x, tf.float32).numpy()


def forward(model, kwargs) -> dict[str, np.ndarray]:
    out = model(**kwargs, training=False)
    return {k: as_f32(out[k]) for k in TOLERANCE if k in out.keys() and out[k] is not None}


def fixture_kwargs(name: str) -> dict:
    kwargs, _ = load_fixture_inputs(FIXTURES / name)
    kwargs.pop("labels", None)
    return kwargs


@pytest.fixture(scope="module")
def fp32_models():
    return {name: cls.from_pretrained(FIXTURES / name) for name, cls in CLASSES.items()}


@pytest.fixture(scope="module")
def bf16_caption():
    return Caption.from_pretrained(FIXTURES / "caption", dtype="bfloat16")


def all_layers(model):
    return [layer for layer in model._flatten_layers(include_self=True, recursive=True)]


# -- what Keras / blip_tf keep in float32 (the claims of blip_tf.precision's docstring) --------


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_keras_layer_norm_statistics_are_float32(dtype):
    """Keras 3's LayerNormalization upcasts: a low-precision LayerNorm equals the float32
    LayerNorm of the same values rounded once, bit for bit."""
    rng = np.random.default_rng(0)
    x = tf.cast(rng.standard_normal((4, 768)) * 3 + 1, dtype)
    gamma = tf.cast(rng.uniform(0.5, 1.5, 768), dtype)
    beta = tf.cast(rng.standard_normal(768), dtype)
    low = keras.layers.LayerNormalization(epsilon=1e-12, dtype=dtype)
    high = keras.layers.LayerNormalization(epsilon=1e-12, dtype="float32")
    for layer, cast in ((low, dtype), (high, "float32")):
        layer.build((None, 768))
        layer.set_weights([tf.cast(gamma, cast).numpy(), tf.cast(beta, cast).numpy()])
    got = low(x)
    assert got.dtype == dtype
    want = tf.cast(high(tf.cast(x, "float32")), dtype)
    np.testing.assert_array_equal(as_f32(got), as_f32(want))


def test_attention_softmax_is_float32():
    """``attend`` on bfloat16 q/k/v: the scores of the bf16 product are scaled, masked and
    normalised in float32; the probabilities are that float32 softmax rounded once.  (Scaling
    by 1/sqrt(12) in bf16 instead rounds scores of magnitude ~10 by up to 0.03: probabilities
    5 % off, which this check catches.)"""
    rng = np.random.default_rng(1)
    q, k, v = (tf.cast(rng.standard_normal((2, 4, n, 12)) * 2, "bfloat16") for n in (3, 40, 40))
    mask = np.zeros((2, 1, 1, 40), np.float32)
    mask[0, ..., 30:] = -10000.0  # padding in row 0
    context, probs = attend(q, k, v, tf.cast(mask, "bfloat16"), 12)
    assert context.dtype == probs.dtype == tf.bfloat16
    # the scores of the bf16 product, then everything in float32
    scores = as_f32(tf.matmul(q, k, transpose_b=True)) / np.sqrt(12.0) + mask
    scores = scores - scores.max(-1, keepdims=True)
    want = np.exp(scores) / np.exp(scores).sum(-1, keepdims=True)
    # one bfloat16 rounding of the float32 softmax (half an ulp: 2**-9 relative)
    np.testing.assert_allclose(as_f32(probs), want, rtol=2**-8, atol=1e-30)
    assert not as_f32(probs)[0, ..., 30:].any()  # masked keys get exactly zero weight


# -- the dtype argument --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "dtype, variables, compute",
    [
        ("bfloat16", "bfloat16", "bfloat16"),
        ("bf16", "bfloat16", "bfloat16"),
        ("mixed_bfloat16", "float32", "bfloat16"),
        ("float16", "float16", "float16"),
        ("float32", "float32", "float32"),
    ],
)
def test_dtype_policy_reaches_every_layer(dtype, variables, compute):
    model = Caption.from_pretrained(FIXTURES / "caption", dtype=dtype)
    assert {v.dtype for v in model.weights} == {variables}
    layers = all_layers(model)
    assert len(layers) > 50  # the walk reaches the leaves (dense, layer norms, embeddings)
    assert {layer.dtype_policy.variable_dtype for layer in layers} == {variables}
    assert {layer.compute_dtype for layer in layers} == {compute}


def test_default_stays_float32(fp32_models):
    model = fp32_models["caption"]
    assert model.dtype_policy.name == "float32"
    assert {v.dtype for v in model.weights} == {"float32"}
    assert keras.config.dtype_policy().name == "float32"  # the scope did not leak


def test_weights_are_the_checkpoint_rounded_to_nearest_even(bf16_caption):
    state = read_checkpoint(FIXTURES / "caption")
    key = "text_decoder.bert.encoder.layer.0.attention.self.query.weight"
    variable = bf16_caption.text_decoder.bert.encoder.layer[0].attention.self.query.kernel
    want = state[key].T.astype(ml_dtypes.bfloat16)  # numpy's round-to-nearest-even
    got = variable.numpy()
    assert got.dtype == ml_dtypes.bfloat16
    np.testing.assert_array_equal(got.view(np.uint16), want.view(np.uint16))
    # the canonical state of a bf16 model is float32 (exactly the bf16 values), as blip_torch's
    canonical = bf16_caption.get_weights_dict()
    assert canonical[key].dtype == np.float32
    np.testing.assert_array_equal(canonical[key], want.T.astype(np.float32))
    mixed = Caption.from_pretrained(FIXTURES / "caption", dtype="mixed_bfloat16")
    np.testing.assert_array_equal(mixed.get_weights_dict()[key], state[key])  # fp32 kept


def test_constructor_and_keras_config_keep_the_policy(bf16_caption):
    config = bf16_caption.config
    direct = Caption(config, dtype="bf16")
    assert {v.dtype for v in direct.weights} == {"bfloat16"}
    rebuilt = Caption.from_config(bf16_caption.get_config())  # what .keras loading does
    assert rebuilt.dtype_policy.name == "bfloat16"
    assert {v.dtype for v in rebuilt.weights} == {"bfloat16"}


@pytest.mark.parametrize(
    "flags", [{"avx2", "amx_bf16"}, {"avx512_bf16"}, {"avx2", "avx512f"}]
)  # fmt: skip
def test_auto_follows_the_core_rule_on_cpu(monkeypatch, flags):
    """On CPUs the rule keeps TF in float32 whatever the flags (XLA:CPU's bf16 decode is
    slower, measured), while torch takes bf16 where the CPU has it."""
    monkeypatch.setattr(precision, "device_kind", lambda: "cpu")
    monkeypatch.setattr(hardware, "cpu_flags", lambda cpuinfo=None: frozenset(flags))
    want = hardware.choose_dtype("cpu", flags, framework="tf")
    assert precision.auto_dtype() == want == "float32"
    model = Caption.from_pretrained(FIXTURES / "caption", dtype="auto")
    assert model.dtype_policy.name == want
    assert {v.dtype for v in model.weights} == {want}


@pytest.mark.parametrize(
    "supported, want", [(True, "bfloat16"), (False, "float32"), (None, "float32")]
)
def test_auto_follows_the_core_rule_on_gpu(monkeypatch, supported, want):
    monkeypatch.setattr(precision, "device_kind", lambda: "gpu")
    monkeypatch.setattr(precision, "gpu_supports_bf16", lambda: supported)
    monkeypatch.setattr(hardware, "cpu_flags", lambda cpuinfo=None: frozenset({"amx_bf16"}))
    assert precision.auto_dtype() == want == hardware.choose_dtype("gpu", (), supported, "tf")


def test_hardware_report_says_what_auto_picks():
    report = precision.hardware_report()
    assert report["auto_dtype"] == precision.auto_dtype()
    assert report["tensorflow"] == tf.__version__ and report["device"] in ("cpu", "gpu")


def test_bad_dtype_is_named():
    with pytest.raises(ValueError, match=r"dtype='int4' is not understood; allowed: 'auto'"):
        Caption.from_pretrained(FIXTURES / "caption", dtype="int4")
    with pytest.raises(ValueError, match=r"dtype='int8' is not understood"):
        Caption(Caption.from_pretrained(FIXTURES / "caption").config, dtype="int8")


# -- outputs -------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", LOW)
@pytest.mark.parametrize("name", list(CLASSES))
def test_low_precision_outputs_close_to_fp32(fp32_models, name, dtype):
    kwargs = fixture_kwargs(name)
    want = forward(fp32_models[name], kwargs)
    model = CLASSES[name].from_pretrained(FIXTURES / name, dtype=dtype)
    out = model(**kwargs, training=False)
    got = forward(model, kwargs)
    assert set(got) == set(want) and got
    for key in got:
        assert out[key].dtype == tf.bfloat16  # computed in bf16, not silently in fp32
        np.testing.assert_allclose(got[key], want[key], atol=TOLERANCE[key], rtol=0, err_msg=key)


@pytest.mark.parametrize("name", list(CLASSES))
def test_bf16_close_to_blip_torch_bf16(name):
    torch = pytest.importorskip("torch")
    import blip_torch

    kwargs = fixture_kwargs(name)
    ours = forward(CLASSES[name].from_pretrained(FIXTURES / name, dtype="bfloat16"), kwargs)
    reference = getattr(blip_torch, CLASSES[name].__name__).from_pretrained(
        FIXTURES / name, dtype="bfloat16"
    )
    with torch.no_grad():
        theirs = reference(
            **{
                k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v
                for k, v in kwargs.items()
            }
        )
    assert ours
    for key, value in ours.items():
        expected = theirs[key]
        assert expected.dtype == torch.bfloat16
        np.testing.assert_allclose(
            value, expected.float().numpy(), atol=TOLERANCE[key], rtol=0, err_msg=key
        )


# -- decoding ------------------------------------------------------------------------------------


def test_xla_decode_step_and_cache_run_in_bf16(bf16_caption):
    """The slot cache and the cross keys/values are bfloat16; the compiled step returns float32
    logits equal (within bf16 tolerance) to the eager bf16 forward of the same tokens."""
    kwargs = fixture_kwargs("caption")
    pixels, ids = kwargs["pixel_values"], kwargs["input_ids"][:, :4]
    states = bf16_caption.vision_model.compiled_forward(pixels)[0]
    assert states.dtype == tf.bfloat16
    cross = project_cross_key_values(bf16_caption.text_decoder.bert, states)
    assert {t.dtype for pair in cross for t in pair} == {tf.bfloat16}
    session = TFDecoderSession(bf16_caption.text_decoder, states, None, 1, capacity=8)
    mask = np.ones_like(ids[:, :3])
    first = session.prefill(ids[:, :3], mask, np.broadcast_to(np.arange(3), (3, 3)))
    assert {t.dtype for t in session.self_k + session.self_v} == {tf.bfloat16}
    second = session.step(ids[:, 3], np.ones_like(ids), np.full((3,), 3))
    assert first.dtype == second.dtype == np.float32
    eager = as_f32(
        bf16_caption(pixel_values=pixels, input_ids=ids, attention_mask=np.ones_like(ids)).logits
    )
    # both bf16; XLA fuses and rounds at other points than the eager ops
    np.testing.assert_allclose(first, eager[:, 2], atol=LOGITS_ATOL, rtol=0)
    np.testing.assert_allclose(second, eager[:, 3], atol=LOGITS_ATOL, rtol=0)


def greedy_agreement(model, fp32, pixels, new_tokens=10):
    """(fraction of rows whose greedy ids equal fp32's, teacher-forced argmax agreement on
    fp32's sequences, fp32's top-2 logit margin at every disagreement)."""
    want = fp32.generate(pixel_values=pixels, max_new_tokens=new_tokens).numpy()
    got = model.generate(pixel_values=pixels, max_new_tokens=new_tokens).numpy()
    rows = (got == want).all(1).mean() if got.shape == want.shape else 0.0
    ref = fp32(pixel_values=pixels, input_ids=want).logits.numpy()[:, 1:-1]
    low = as_f32(model(pixel_values=pixels, input_ids=want).logits)[:, 1:-1]
    same = ref.argmax(-1) == low.argmax(-1)
    top = np.sort(ref, axis=-1)[..., -2:]
    return rows, same.mean(), (top[..., 1] - top[..., 0])[~same]


@pytest.mark.parametrize("dtype", LOW)
def test_greedy_ids_agree_with_fp32(fp32_models, dtype):
    """The tiny random model's logits are nearly flat (top-2 margins of 1e-3 occur), so
    bfloat16 flips near-ties and the continuation then differs.  Measured on these 20 images
    (10 new tokens): bf16 75 % / mixed 85 % of the captions identical (blip_torch bf16: 75 %),
    97-98 % teacher-forced token agreement, every flip at a fp32 top-2 margin below 0.0065; on
    the caption fixture's own 3 images, 8 new tokens: 2 of 3 captions identical (the flip at a
    fp32 margin of 0.0002), 95 % teacher-forced agreement (at 10 new tokens: 1 of 3, a second
    flip at margin 0.0034)."""
    model = Caption.from_pretrained(FIXTURES / "caption", dtype=dtype)
    pixels = np.concatenate([make_inputs(batch=4, seed=s)["pixel_values"] for s in range(5)])
    rows, tokens, margins = greedy_agreement(model, fp32_models["caption"], pixels)
    assert rows >= 0.7 and tokens >= 0.95
    assert (margins < 2 * LOGITS_ATOL).all()  # flips only where fp32 itself is a near-tie
    fixture_pixels = fixture_kwargs("caption")["pixel_values"]
    rows, tokens, margins = greedy_agreement(model, fp32_models["caption"], fixture_pixels, 8)
    assert rows >= 0.6 and tokens >= 0.9 and (margins < 2 * LOGITS_ATOL).all()


def test_bf16_beam_and_vqa_ids_equal_fp32(fp32_models, bf16_caption):
    pixels = make_inputs(batch=4, seed=0)["pixel_values"]
    want = fp32_models["caption"].generate(pixel_values=pixels, max_new_tokens=8, num_beams=3)
    got = bf16_caption.generate(pixel_values=pixels, max_new_tokens=8, num_beams=3)
    np.testing.assert_array_equal(got.numpy(), want.numpy())
    raw = make_inputs(batch=2, seed=7)
    vqa = CLASSES["vqa"].from_pretrained(FIXTURES / "vqa", dtype="bfloat16")
    question = dict(input_ids=raw["input_ids"], pixel_values=raw["pixel_values"], max_new_tokens=5)
    np.testing.assert_array_equal(
        vqa.generate(**question).numpy(), fp32_models["vqa"].generate(**question).numpy()
    )


def test_bf16_retrieval_takes_float32_or_bf16_states(fp32_models):
    """A bf16 model's image states given back as float32 (numpy, or a float32 tensor) are cast
    to the compute dtype (exact: they are bf16 values); ITM probabilities close to fp32's."""
    itm = CLASSES["itm"].from_pretrained(FIXTURES / "itm", dtype="bfloat16")
    kwargs = fixture_kwargs("itm")
    embeds, states = itm.encode_images(kwargs["pixel_values"])
    assert embeds.dtype == states.dtype == tf.bfloat16
    ids, mask = kwargs["input_ids"], kwargs["attention_mask"]
    low = itm.itm_probability(states, ids, mask).numpy()
    for given in (as_f32(states), tf.cast(states, tf.float32)):
        np.testing.assert_array_equal(itm.itm_probability(given, ids, mask).numpy(), low)
    _, fp32_states = fp32_models["itm"].encode_images(kwargs["pixel_values"])
    want = fp32_models["itm"].itm_probability(fp32_states, ids, mask).numpy()
    # probabilities = softmax of the ITM logits (ITM_ATOL); a probability moves at most half as much
    np.testing.assert_allclose(low, want, atol=ITM_ATOL, rtol=0)
