"""bf16 and int8 inference on the tiny fixtures: dtype arguments, what stays float32, outputs close
to float32 within stated tolerances, greedy/beam ids equal to float32's on the test inputs.

Tolerances (absolute, on the tiny fixtures, whose outputs are O(1) - O(5)):
* bf16 vision states within 0.05 (measured 0.021), caption logits within 0.04 (measured 0.013);
* int8 weight-only (bf16 activations) caption logits within 0.05 (measured 0.016);
* the int8 vision graph's states within 0.08 (measured 0.040; its bf16 float path 0.028);
* the int8 cross-attention key/value graph within 0.05 (measured 0.012; bf16 0.007), ITM
  probabilities within 0.01 (measured 0.0007).
"""

from __future__ import annotations

import builtins
import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import blip_torch  # noqa: E402
from blip_core import hardware  # noqa: E402
from blip_torch import precision  # noqa: E402
from tests.helpers import make_inputs  # noqa: E402

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "reference"
HAS_COMPILER = shutil.which("g++") is not None or shutil.which("c++") is not None
Caption = blip_torch.BlipForConditionalGeneration


@pytest.fixture(scope="module")
def inputs():
    raw = make_inputs(batch=3, seed=5)
    return {k: torch.from_numpy(raw[k]) for k in ("pixel_values", "input_ids", "attention_mask")}


@pytest.fixture(scope="module")
def fp32():
    return Caption.from_pretrained(FIXTURES / "caption")


def outputs(model, inputs):
    with torch.no_grad():
        out = model(**inputs)
        vision = model.vision_model(inputs["pixel_values"]).last_hidden_state
    return out.logits.float(), vision.float()


# -- what PyTorch keeps in float32 (the claims of blip_torch.precision's docstring) -------------


def test_bf16_layer_norm_and_softmax_compute_in_fp32():
    gen = torch.Generator().manual_seed(0)
    x = (torch.randn(4, 768, generator=gen) * 3 + 1).bfloat16()
    weight = torch.rand(768, generator=gen).bfloat16() + 0.5
    bias = torch.randn(768, generator=gen).bfloat16()
    low = torch.nn.functional.layer_norm(x, (768,), weight, bias)
    high = torch.nn.functional.layer_norm(x.float(), (768,), weight.float(), bias.float())
    assert torch.equal(low, high.bfloat16())  # fp32 statistics, one rounding at the end
    scores = (torch.randn(3, 577, generator=gen) * 4).bfloat16()
    assert torch.equal(torch.softmax(scores, -1), torch.softmax(scores.float(), -1).bfloat16())
    q, k, v = (torch.randn(1, 12, n, 64, generator=gen).bfloat16() for n in (1, 577, 577))
    low = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    high = torch.nn.functional.scaled_dot_product_attention(q.float(), k.float(), v.float())
    torch.testing.assert_close(low.float(), high, atol=2**-8, rtol=2**-7)  # ~one bf16 rounding


# -- dtype arguments ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs", [{"torch_dtype": torch.bfloat16}, {"dtype": "bfloat16"}, {"torch_dtype": "bf16"}]
)
def test_dtype_arguments(kwargs):
    model = Caption.from_pretrained(FIXTURES / "caption", **kwargs)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}


def test_default_stays_float32(fp32):
    assert {p.dtype for p in fp32.parameters()} == {torch.float32}


@pytest.mark.parametrize(
    "flags, speedup, want",
    [
        ({"avx2", "amx_bf16", "avx512_bf16"}, None, torch.bfloat16),  # known: not measured
        ({"avx2", "avx512_bf16"}, 2.0, torch.bfloat16),  # measured faster (an AMD EPYC here)
        ({"avx2", "avx512_bf16"}, 0.55, torch.float32),  # measured slower (seen on a Xeon)
        ({"avx2"}, None, torch.float32),
    ],
)
def test_auto_follows_the_core_rule(monkeypatch, flags, speedup, want):
    monkeypatch.setattr(hardware, "cpu_flags", lambda cpuinfo=None: frozenset(flags))
    calls = []

    def measured():
        calls.append(1)
        return speedup

    monkeypatch.setattr(precision, "bf16_speedup", measured)
    assert precision.auto_dtype("cpu") == want
    assert len(calls) == (speedup is not None)  # the probe runs only where the rule needs it
    report = precision.hardware_report("cpu")
    assert report["auto_dtype"] == str(want).removeprefix("torch.")
    assert report["bf16_speedup"] == speedup
    model = Caption.from_pretrained(FIXTURES / "caption", torch_dtype="auto")
    assert {p.dtype for p in model.parameters()} == {want}


def test_bf16_probe_measures_this_machine():
    """The probe times real products: a positive ratio, cached for the process; what auto
    picks from it is the core rule's verdict for this CPU."""
    speedup = precision.bf16_speedup()
    assert speedup > 0 and precision.bf16_speedup() is speedup
    flags = hardware.cpu_flags()
    measured = speedup if hardware.needs_bf16_probe("cpu", flags, "torch") else None
    want = hardware.choose_dtype("cpu", flags, framework="torch", bf16_speedup=measured)
    assert str(precision.auto_dtype("cpu")) == f"torch.{want}"


def test_bad_dtype_arguments_are_named():
    with pytest.raises(ValueError, match=r"torch_dtype='int4' is not understood"):
        Caption.from_pretrained(FIXTURES / "caption", torch_dtype="int4")
    with pytest.raises(ValueError, match=r"dtype=torch.int8 is not a floating dtype"):
        Caption.from_pretrained(FIXTURES / "caption", dtype=torch.int8)
    with pytest.raises(ValueError, match=r"got torch_dtype=.* and dtype=.*; give one"):
        Caption.from_pretrained(FIXTURES / "caption", torch_dtype="float32", dtype="bfloat16")


# -- bf16 outputs ---------------------------------------------------------------------------------


def test_bf16_outputs_close_to_fp32(fp32, inputs):
    bf16 = Caption.from_pretrained(FIXTURES / "caption", dtype="bfloat16")
    (logits, vision), (want_logits, want_vision) = outputs(bf16, inputs), outputs(fp32, inputs)
    torch.testing.assert_close(vision, want_vision, atol=0.05, rtol=0)
    torch.testing.assert_close(logits, want_logits, atol=0.04, rtol=0)


def agreement(model, fp32, pixels, new_tokens=10):
    """(rows whose greedy ids equal fp32's, teacher-forced argmax agreement on fp32's sequences,
    fp32's top-2 logit margin at every disagreement)."""
    with torch.no_grad():
        want = fp32.generate(pixels, max_new_tokens=new_tokens)
        got = model.generate(pixels, max_new_tokens=new_tokens)
        rows = (got == want).all(1).float().mean().item() if got.shape == want.shape else 0.0
        ref = fp32(pixel_values=pixels, input_ids=want).logits.float()[:, 1:-1]
        low = model(pixel_values=pixels, input_ids=want).logits.float()[:, 1:-1]
    same = ref.argmax(-1) == low.argmax(-1)
    top = ref.topk(2, dim=-1).values
    return rows, same.float().mean().item(), (top[..., 0] - top[..., 1])[~same]


@pytest.fixture(scope="module")
def many_pixels():
    import numpy as np

    raw = [make_inputs(batch=4, seed=s)["pixel_values"] for s in range(5)]
    return torch.from_numpy(np.concatenate(raw))  # 20 images


def test_bf16_greedy_agreement_with_fp32(fp32, many_pixels):
    """The tiny random model's logits are nearly flat (top-2 margins of 1e-3 occur), so bf16
    flips near-ties: measured 75 % of 20 greedy captions identical, 97 % teacher-forced token
    agreement, every flip at a fp32 margin below 0.007 (twice the logit error)."""
    bf16 = Caption.from_pretrained(FIXTURES / "caption", dtype="bfloat16")
    rows, tokens, margins = agreement(bf16, fp32, many_pixels)
    assert rows >= 0.7 and tokens >= 0.95
    assert (margins < 0.08).all()  # flips only where fp32 itself is within 2x the tolerance


def test_bf16_vqa_and_retrieval_run_and_agree():
    vqa32 = blip_torch.BlipForQuestionAnswering.from_pretrained(FIXTURES / "vqa")
    vqa16 = blip_torch.BlipForQuestionAnswering.from_pretrained(FIXTURES / "vqa", dtype="bfloat16")
    raw = make_inputs(batch=2, seed=7)
    pixels, ids = torch.from_numpy(raw["pixel_values"]), torch.from_numpy(raw["input_ids"])
    with torch.no_grad():
        want = vqa32.generate(input_ids=ids, pixel_values=pixels, max_new_tokens=5).tolist()
        assert vqa16.generate(input_ids=ids, pixel_values=pixels, max_new_tokens=5).tolist() == want
    itm32 = blip_torch.BlipForImageTextRetrieval.from_pretrained(FIXTURES / "itm")
    itm16 = blip_torch.BlipForImageTextRetrieval.from_pretrained(FIXTURES / "itm", dtype="bf16")
    mask = torch.from_numpy(raw["attention_mask"])
    with torch.no_grad():
        for use_itm in (True, False):
            want = itm32(ids, pixels, attention_mask=mask, use_itm_head=use_itm)[0].float()
            got = itm16(ids, pixels, attention_mask=mask, use_itm_head=use_itm)[0].float()
            torch.testing.assert_close(got, want, atol=0.05, rtol=0)


# -- int8 -----------------------------------------------------------------------------------------


def test_int8_outputs_close_to_fp32(fp32, inputs):
    pytest.importorskip("torchao")
    int8 = Caption.from_pretrained(FIXTURES / "caption")
    assert blip_torch.quantize(int8, "int8", compile=False) is int8
    layer = int8.text_decoder.bert.encoder.layer[0]
    assert type(layer.attention.self.query.weight).__name__ == "Int8Tensor"  # torchao int8
    assert type(int8.text_decoder.cls.predictions.decoder.weight).__name__ == "Int8Tensor"
    # in_features 37 (the fixture's intermediate size) is not a multiple of 8: stays bf16
    assert layer.output.dense.weight.dtype == torch.bfloat16
    assert int8.text_decoder.bert.embeddings.word_embeddings.weight.dtype == torch.bfloat16
    logits, _ = outputs(int8, inputs)
    torch.testing.assert_close(logits, outputs(fp32, inputs)[0], atol=0.05, rtol=0)


def test_int8_greedy_agreement_with_fp32(fp32, many_pixels):
    """Measured: 85 % of 20 greedy captions identical, 97 % teacher-forced token agreement,
    every flip at a fp32 top-2 margin below 0.013."""
    pytest.importorskip("torchao")
    int8 = blip_torch.quantize(Caption.from_pretrained(FIXTURES / "caption"), compile=False)
    rows, tokens, margins = agreement(int8, fp32, many_pixels)
    assert rows >= 0.7 and tokens >= 0.95
    assert (margins < 0.1).all()


@pytest.mark.skipif(not HAS_COMPILER, reason="torch.compile (inductor) needs a C++ compiler")
def test_int8_from_pretrained_compiled_gives_fp32_ids(fp32, inputs):
    pytest.importorskip("torchao")
    int8 = Caption.from_pretrained(FIXTURES / "caption", quantization="int8")
    assert int8.text_decoder.bert.embeddings.word_embeddings.weight.dtype == torch.bfloat16
    try:
        rows, tokens, _ = agreement(int8, fp32, inputs["pixel_values"], new_tokens=8)
        assert rows >= 2 / 3 and tokens >= 0.9
    finally:
        torch._dynamo.reset()


def spy_on(int8_graph) -> list:
    """Wrap an int8 graph's compiled callable; returns the list of input shapes it is called with."""
    calls = []
    graph_call = int8_graph.graph

    def spy(*args):
        calls.append(args[0].shape)
        return graph_call(*args)

    int8_graph.graph = spy
    return calls


@pytest.mark.skipif(not HAS_COMPILER, reason="torch.compile (inductor) needs a C++ compiler")
def test_int8_vision_graph_close_to_fp32_and_float_path_kept(fp32, inputs):
    """quantization_parts=("text", "vision"): plain vision calls run the PT2E int8 graph (states
    within 0.08 of float32: measured 0.040, bf16 alone 0.028); calls asking for hidden states
    run the tower's float (bf16) weights, which stay, as do the state-dict keys."""
    pytest.importorskip("torchao")
    from blip_core.hardware import is_x86

    if not is_x86():
        pytest.skip("the PT2E int8 vision graph is built on x86 CPUs only")
    int8 = Caption.from_pretrained(
        FIXTURES / "caption", quantization="int8", quantization_parts=("text", "vision")
    )
    vision = int8.vision_model
    try:
        assert vision.int8_graph is not None
        assert list(int8.state_dict()) == list(fp32.state_dict())
        calls = spy_on(vision.int8_graph)
        pixels = inputs["pixel_values"]
        with torch.no_grad():
            want = fp32.vision_model(pixels)
            got = vision(pixels.bfloat16())
            assert calls == [pixels.shape] and got.last_hidden_state.dtype == torch.bfloat16
            for name in ("last_hidden_state", "pooler_output"):
                torch.testing.assert_close(
                    getattr(got, name).float(), getattr(want, name), atol=0.08, rtol=0
                )
            float_path = vision(pixels.bfloat16(), output_hidden_states=True)
            assert len(calls) == 1 and len(float_path.hidden_states) == 3
            torch.testing.assert_close(
                float_path.last_hidden_state.float(), want.last_hidden_state, atol=0.05, rtol=0
            )
            assert not torch.equal(float_path.last_hidden_state, got.last_hidden_state)
        blip_torch.compile_vision(int8)  # leaves the int8 tower as it is
        assert vision._compiled_call_impl is None
        rows, tokens, _ = agreement(int8, fp32, inputs["pixel_values"], new_tokens=8)
        assert rows >= 2 / 3 and tokens >= 0.9
    finally:
        torch._dynamo.reset()


@pytest.mark.skipif(not HAS_COMPILER, reason="torch.compile (inductor) needs a C++ compiler")
def test_int8_cross_key_values_graph_close_to_fp32(fp32, inputs):
    """quantization="int8" (compiled): the caption decoder's and the retrieval text encoder's
    cross-attention key/value projections of the image states run as one PT2E int8 graph
    (within 0.05 of float32: measured 0.012, bf16 0.007; ITM probabilities 0.0007); other
    encoder lengths and VQA's decoder (question states) keep the float projections."""
    pytest.importorskip("torchao")
    from blip_core.hardware import is_x86

    if not is_x86():
        pytest.skip("the PT2E int8 graphs are built on x86 CPUs only")
    int8 = Caption.from_pretrained(FIXTURES / "caption", quantization="int8")
    bert = int8.text_decoder.bert
    pixels = inputs["pixel_values"]
    try:
        assert bert.int8_cross_kv is not None
        calls = spy_on(bert.int8_cross_kv)
        with torch.no_grad():
            states = fp32.vision_model(pixels).last_hidden_state
            layers = fp32.text_decoder.bert.encoder.layer
            want = [layer.crossattention.self.project_key_value(states) for layer in layers]
            got = bert.cross_key_values(states.bfloat16())
            assert calls == [states.shape] and len(got) == len(want)
            for pair, want_pair in zip(got, want):
                for tensor, expected in zip(pair, want_pair):
                    assert tensor.dtype == torch.bfloat16 and tensor.shape == expected.shape
                    torch.testing.assert_close(tensor.float(), expected, atol=0.05, rtol=0)
            int8.generate(pixels, max_new_tokens=3)  # decoding projects through the graph
            assert len(calls) == 2
            short = bert.cross_key_values(states[:, :5].bfloat16())  # not the exported length
            assert len(calls) == 2 and short[0][0].shape[2] == 5
        vqa = blip_torch.BlipForQuestionAnswering.from_pretrained(
            FIXTURES / "vqa", quantization="int8"
        )
        assert (
            vqa.text_decoder.bert.int8_cross_kv is None and vqa.text_encoder.int8_cross_kv is None
        )
        itm32 = blip_torch.BlipForImageTextRetrieval.from_pretrained(FIXTURES / "itm")
        itm8 = blip_torch.BlipForImageTextRetrieval.from_pretrained(
            FIXTURES / "itm", quantization="int8"
        )
        assert itm8.text_encoder.int8_cross_kv is not None
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        with torch.no_grad():
            want = itm32.itm_probability(itm32.encode_images(pixels)[1], ids, mask)
            got = itm8.itm_probability(itm8.encode_images(pixels.bfloat16())[1], ids, mask)
        torch.testing.assert_close(got.float(), want, atol=0.01, rtol=0)
    finally:
        torch._dynamo.reset()


def test_int8_errors_are_named(monkeypatch):
    model = Caption.from_pretrained(FIXTURES / "caption")
    with pytest.raises(ValueError, match=r"quantization='int4' is not supported; allowed"):
        blip_torch.quantize(model, "int4")
    with pytest.raises(ValueError, match=r"'audio' is not one of"):
        blip_torch.quantize(model, "int8", parts=("audio",))
    real_import = builtins.__import__

    def no_torchao(name, *args, **kwargs):
        if name.startswith("torchao"):
            raise ImportError("No module named 'torchao'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torchao)
    with pytest.raises(ImportError, match=r"quantization='int8' needs torchao"):
        Caption.from_pretrained(FIXTURES / "caption", quantization="int8")
