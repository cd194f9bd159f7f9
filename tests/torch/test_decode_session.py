"""The decoder session: the fixed-size slot cache gives the concat cache's logits (prefill, steps,
beam reorders, left-padded prompts of mixed lengths); on-device argmax equals numpy's argmax of
the same logits; a too-small capacity grows; the compiled step gives the eager ids."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import blip_torch  # noqa: E402
from blip_core.generation import left_align  # noqa: E402
from blip_torch.cache import SlotCache  # noqa: E402
from blip_torch.generation import TorchDecoderSession  # noqa: E402
from blip_torch.text_attention import BlipTextSelfAttention  # noqa: E402
from tests.helpers import make_inputs  # noqa: E402

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "reference"
HAS_COMPILER = shutil.which("g++") is not None or shutil.which("c++") is not None


def load_caption():
    """A fresh caption model and its vision states for two images."""
    model = blip_torch.BlipForConditionalGeneration.from_pretrained(FIXTURES / "caption")
    pixels = torch.from_numpy(make_inputs(batch=2, seed=5)["pixel_values"])
    with torch.no_grad():
        states = model.vision_model(pixels).last_hidden_state
    return model, states


@pytest.fixture(scope="module")
def caption():
    return load_caption()


def drive(session, prompts, steps, beams=1, seed=0):
    """Prefill, then ``steps`` steps feeding fixed pseudo-random tokens (reordering rows as a
    beam search would); every logits array returned."""
    rng = np.random.default_rng(seed)
    ids, mask, positions, _ = left_align(prompts, 0)
    out = [session.prefill(ids, mask, positions)]
    next_positions = positions[:, -1] + 1
    rows = len(prompts)
    for _ in range(steps):
        if beams > 1:  # row i takes a random row of its own image
            base = np.arange(rows) // beams * beams
            session.reorder(base + rng.integers(0, beams, rows))
        tokens = rng.integers(4, 90, rows)
        mask = np.concatenate([mask, np.ones((rows, 1), dtype=np.int64)], axis=1)
        out.append(session.step(tokens, mask, next_positions))
        next_positions = next_positions + 1
    return out


@pytest.mark.parametrize("beams", [1, 3])
def test_slot_cache_gives_the_concat_cache_logits(caption, beams):
    model, states = caption
    prompts = [[30, 41, 52], [30, 7, 8, 9, 10, 11], [30]][:2] * beams
    prompts = [p for p in prompts[:2] for _ in range(beams)]
    width = max(map(len, prompts))
    concat = TorchDecoderSession(model.text_decoder, states, None, beams)
    slots = TorchDecoderSession(model.text_decoder, states, None, beams, capacity=width + 6)
    assert concat.cache is None and slots.cache.capacity == width + 6
    for want, got in zip(drive(concat, prompts, 6, beams), drive(slots, prompts, 6, beams)):
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, atol=2e-6, rtol=0)


@pytest.mark.parametrize("length", [1, 4])
def test_rows_of_one_image_share_its_cross_keys_values(caption, length):
    """Beams/samples of an image attend to its one copy of the cross keys/values: the same
    outputs as keys/values repeated per row, for every mask shape and with probabilities."""
    model, states = caption
    attention = model.text_decoder.bert.encoder.layer[0].crossattention.self
    torch.manual_seed(0)
    with torch.no_grad():
        key, value = attention.project_key_value(states)  # 2 images
        hidden = torch.randn(6, length, states.shape[-1])  # 3 rows per image
        mask = torch.zeros(2, 1, 1, states.shape[1])
        mask[1, ..., -5:] = -10000.0  # image 1's last positions masked out
        repeated = (key.repeat_interleave(3, 0), value.repeat_interleave(3, 0))
        for m, want_mask in ((None, None), (mask, mask.repeat_interleave(3, 0)),
                             (mask.repeat_interleave(3, 0), mask.repeat_interleave(3, 0))):  # fmt: skip
            for probs in (False, True):
                want = attention(hidden, want_mask, past_key_value=repeated,
                                 output_attentions=probs)  # fmt: skip
                got = attention(hidden, m, past_key_value=(key, value), output_attentions=probs)
                torch.testing.assert_close(got[0], want[0], atol=1e-6, rtol=0)
                if probs:
                    torch.testing.assert_close(got[1], want[1], atol=1e-7, rtol=0)
    session = TorchDecoderSession(model.text_decoder, states, None, 3, capacity=16)
    assert [k.shape[0] for k, _ in session.cross] == [2] * len(session.cross)  # not copied
    assert session.cache.keys[0].shape[0] == 6


def test_too_small_capacity_grows(caption):
    model, states = caption
    prompts = [[30, 41], [30, 7, 8, 9]]
    concat = TorchDecoderSession(model.text_decoder, states, None, 1)
    small = TorchDecoderSession(model.text_decoder, states, None, 1, capacity=5)
    for want, got in zip(drive(concat, prompts, 8), drive(small, prompts, 8)):
        np.testing.assert_allclose(got, want, atol=2e-6, rtol=0)
    assert small.cache.capacity >= 4 + 8


def test_device_argmax_is_numpy_argmax_of_the_same_logits(caption):
    model, states = caption
    prompts = [[30, 41, 52], [30, 7]]
    ids, mask, positions, _ = left_align(prompts, 0)
    a = TorchDecoderSession(model.text_decoder, states, None, 1, capacity=8)
    b = TorchDecoderSession(model.text_decoder, states, None, 1, capacity=8)
    logits, tokens = a.prefill(ids, mask, positions), b.prefill_tokens(ids, mask, positions)
    assert tokens.dtype == np.int64 and tokens.tolist() == np.argmax(logits, -1).tolist()
    step_ids = np.array([5, 6])
    mask = np.concatenate([mask, np.ones((2, 1), dtype=np.int64)], axis=1)
    logits = a.step(step_ids, mask, positions[:, -1] + 1)
    tokens = b.step_tokens(step_ids, mask, positions[:, -1] + 1)
    assert tokens.tolist() == np.argmax(logits, -1).tolist()


def test_device_topk_and_suppression_match_numpy(caption):
    """step_topk: the k largest float32 log-softmax values per row and their ids, as numpy
    computes them from the same logits (within float32 rounding), eos suppressed in the rows
    asked; the argmax path suppresses the same way; last_logits are the raw logits."""
    from blip_core.generation import log_softmax

    model, states = caption
    prompts = [[30, 41, 52], [30, 7]]
    ids, mask, positions, _ = left_align(prompts, 0)
    a = TorchDecoderSession(model.text_decoder, states, None, 1, capacity=8)
    b = TorchDecoderSession(model.text_decoder, states, None, 1, capacity=8)
    logits = a.prefill(ids, mask, positions)
    eos = [int(np.argmax(logits[0])), 3]  # suppress row 0's favourite, so the choice moves
    suppress = np.array([True, False])
    values, top = b.prefill_topk(ids, mask, positions, 5, suppress, eos)
    np.testing.assert_array_equal(b.last_logits(), logits)
    want = log_softmax(logits)
    want[0, eos] = -np.inf
    order = np.argsort(-want, axis=-1, kind="stable")[:, :5]
    assert top.tolist() == order.tolist()
    np.testing.assert_allclose(values, np.take_along_axis(want, order, -1), atol=1e-6)
    c = TorchDecoderSession(model.text_decoder, states, None, 1, capacity=8)
    tokens = c.prefill_tokens(ids, mask, positions, suppress, eos)
    assert tokens.tolist() == np.argmax(np.where(np.isinf(want), -np.inf, logits), -1).tolist()
    assert tokens[0] != eos[0]


@pytest.mark.parametrize(
    "settings",
    [
        dict(max_new_tokens=8, min_new_tokens=8),
        dict(max_new_tokens=8, num_beams=3),
        dict(max_new_tokens=8, num_beams=3, min_new_tokens=6, num_return_sequences=2),
        dict(max_length=12, num_beams=4, length_penalty=0.5, early_stopping=True),
    ],
)
def test_generate_ids_equal_with_and_without_the_device_fast_paths(monkeypatch, settings):
    """The same generate call with the session's fast paths and with full logits every step."""
    from blip_core.generation import search

    model = blip_torch.BlipForConditionalGeneration.from_pretrained(FIXTURES / "caption")
    pixels = torch.from_numpy(make_inputs(batch=2, seed=11)["pixel_values"])
    calls = []
    real = search._on_device
    monkeypatch.setattr(
        search, "_on_device", lambda s, c, m: calls.append(real(s, c, m)) or calls[-1]
    )
    fast = model.generate(pixels, **settings)
    assert calls and all(calls)  # the fast path was taken
    monkeypatch.setattr(search, "_on_device", lambda session, config, method: False)
    assert fast.tolist() == model.generate(pixels, **settings).tolist()


def test_text_model_slot_cache_matches_concat_past(caption):
    """BlipTextModel itself: a SlotCache forward equals the concat-past forward."""
    model, states = caption
    bert, layers = model.text_decoder.bert, model.text_decoder.bert.encoder.layer
    cross = [layer.crossattention.self.project_key_value(states) for layer in layers]
    ids = torch.tensor([[30, 41, 52], [30, 7, 8]])
    mask = torch.tensor([[0, 1, 1], [1, 1, 1]])
    positions = torch.tensor([[0, 0, 1], [0, 1, 2]])
    heads = model.config.text_config.num_attention_heads
    head_dim = model.config.text_config.hidden_size // heads
    cache = SlotCache.allocate(2, 7, heads, head_dim, len(layers), states, cross=cross)
    key_mask = torch.zeros(2, 7, dtype=torch.long)
    key_mask[:, :3] = mask
    with torch.no_grad():
        empty = cross[0][0][:, :, :0]
        want = bert(
            input_ids=ids, attention_mask=mask, position_ids=positions, is_decoder=True,
            past_key_values=tuple((empty, empty, k, v) for k, v in cross), use_cache=True,
        )  # fmt: skip
        got = bert(
            input_ids=ids, attention_mask=key_mask, position_ids=positions, is_decoder=True,
            past_key_values=cache.at(torch.arange(3)),
        )  # fmt: skip
    # Real positions agree; a padding query attends nothing, so its (unused) state is a uniform
    # average over every masked key -- 3 keys in the concat cache, 7 slots here.
    real = mask.bool()
    torch.testing.assert_close(
        got.last_hidden_state[real], want.last_hidden_state[real], atol=2e-6, rtol=0
    )
    for (k, v), layer_past in zip(zip(cache.keys, cache.values), want.past_key_values):
        torch.testing.assert_close(
            k[:, :, :3].transpose(1, 2)[real], layer_past[0].transpose(1, 2)[real],
            atol=2e-6, rtol=0,
        )  # fmt: skip
        assert not k[:, :, 3:].any() and not v[:, :, 3:].any()  # unwritten slots stay zero
    with pytest.raises(ValueError, match="SlotCache needs is_decoder=True"):
        bert(input_ids=ids, attention_mask=key_mask, past_key_values=cache, is_decoder=True)


@pytest.mark.skipif(not HAS_COMPILER, reason="torch.compile (inductor) needs a C++ compiler")
@pytest.mark.parametrize("mode", [None, "reduce-overhead"])  # the latter: CUDA graphs on a GPU
def test_compile_decoder_gives_the_eager_ids(mode):
    eager = blip_torch.BlipForConditionalGeneration.from_pretrained(FIXTURES / "caption")
    model = blip_torch.BlipForConditionalGeneration.from_pretrained(FIXTURES / "caption")
    pixels = torch.from_numpy(make_inputs(batch=2, seed=5)["pixel_values"])
    try:
        assert blip_torch.compile_decoder(model, mode=mode) is model
        assert set(model.state_dict()) == set(eager.state_dict())  # keys unchanged
        for settings in ({"max_new_tokens": 7}, {"num_beams": 3, "max_new_tokens": 5}):
            with torch.no_grad():
                want = eager.generate(pixels, **settings).tolist()
                assert model.generate(pixels, **settings).tolist() == want
    finally:
        torch._dynamo.reset()


@pytest.mark.skipif(not HAS_COMPILER, reason="torch.compile (inductor) needs a C++ compiler")
def test_compiled_step_follows_weights_replaced_after_compiling():
    """The compiled step skips dynamo's guards on the modules, so a ``.to()`` (new storage and
    dtype) or a weight assignment after compiling must compile afresh, not reuse the old
    graph: the ids then equal an eager model's with the same weights."""
    from blip_torch.generation import _COMPILED_STEP

    eager = blip_torch.BlipForConditionalGeneration.from_pretrained(FIXTURES / "caption")
    model = blip_torch.BlipForConditionalGeneration.from_pretrained(FIXTURES / "caption")
    pixels = torch.from_numpy(make_inputs(batch=2, seed=5)["pixel_values"])
    settings = {"max_new_tokens": 6}
    try:
        blip_torch.compile_decoder(model)
        with torch.no_grad():
            model.to(torch.bfloat16)
            eager.to(torch.bfloat16)
            first = getattr(model.text_decoder, _COMPILED_STEP)[0]
            assert (
                model.generate(pixels, **settings).tolist()
                == eager.generate(pixels, **settings).tolist()
            )
            model.to(torch.float32)  # new storage, new dtype: the old graph must not run
            eager.to(torch.float32)
            assert (
                model.generate(pixels, **settings).tolist()
                == eager.generate(pixels, **settings).tolist()
            )
            second = getattr(model.text_decoder, _COMPILED_STEP)[0]
            assert second is not first
            head = model.text_decoder.cls.predictions.decoder  # a new LM-head weight tensor
            changed = head.weight.detach().flip(0).clone()
            head.weight = torch.nn.Parameter(changed)
            eager.text_decoder.cls.predictions.decoder.weight = torch.nn.Parameter(changed.clone())
            assert (
                model.generate(pixels, **settings).tolist()
                == eager.generate(pixels, **settings).tolist()
            )
            third = getattr(model.text_decoder, _COMPILED_STEP)[0]
            assert third is not second
            model.generate(pixels, **settings)  # unchanged weights: the same compiled step
            assert getattr(model.text_decoder, _COMPILED_STEP)[0] is third
    finally:
        torch._dynamo.reset()


def test_compile_decoder_needs_a_decoder():
    with pytest.raises(TypeError, match="BlipVisionModel has no BLIP text decoder"):
        blip_torch.compile_decoder(blip_torch.BlipVisionModel(blip_torch.BlipVisionConfig()))


# -- fused query/key/value projections ---------------------------------------------------------


def self_attentions(model):
    return [layer.attention.self for layer in model.text_decoder.bert.encoder.layer]


def step_logits(model, states, tokens=(30, 41, 52)):
    """Prefill + two steps through a slot-cache session, as one float32 array."""
    session = TorchDecoderSession(model.text_decoder, states, None, 1, capacity=8)
    return np.concatenate(drive(session, [list(tokens)] * states.shape[0], steps=2))


def unfused_logits(model, states, monkeypatch):
    """:func:`step_logits` with fusion switched off (three products per self-attention)."""
    with monkeypatch.context() as patch:
        patch.setattr(BlipTextSelfAttention, "fuse_projections", lambda self: False)
        return step_logits(model, states)


def test_decoder_session_fuses_qkv_without_changing_keys_or_logits(monkeypatch):
    """Opening a session stores each self-attention's q/k/v weights as row blocks of one
    tensor: the parameters view it (no copy), the state-dict keys and values are unchanged,
    and the logits equal the three-product path's (float rounding of one larger product)."""
    model, states = load_caption()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    unfused = unfused_logits(model, states, monkeypatch)
    assert all(module._qkv is None for module in self_attentions(model))
    fused = step_logits(model, states)
    for module in self_attentions(model):
        weight, bias, _ = module._qkv
        rows = module.all_head_size
        assert weight.shape == (3 * rows, module.query.in_features)
        assert module.query.weight.data_ptr() == weight.data_ptr()
        assert module.value.weight.data_ptr() == weight[2 * rows].data_ptr()
        assert module.key.bias.data_ptr() == bias[rows].data_ptr()
    after = model.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], before[k]) for k in before)
    np.testing.assert_allclose(fused, unfused, atol=2e-5, rtol=0)
    assert (fused.argmax(-1) == unfused.argmax(-1)).all()


def test_fused_projections_follow_weight_changes(monkeypatch):
    """An in-place update of a fused weight is seen by the fused product (same storage); a
    replaced weight (``.to(dtype)``) unfuses the layer instead of using stale numbers."""
    model, states = load_caption()
    step_logits(model, states)  # fuses
    with torch.no_grad():
        for module in self_attentions(model):
            module.query.weight.mul_(0.5)
            module.key.bias.add_(0.25)
    after_update = step_logits(model, states)
    assert all(module._fused() is not None for module in self_attentions(model))
    np.testing.assert_allclose(
        after_update, unfused_logits(model, states, monkeypatch), atol=2e-5, rtol=0
    )
    model.to(torch.bfloat16)  # every parameter replaced: the fused storage is stale now
    for module in self_attentions(model):
        assert module._fused() is None and module._qkv is None


def test_training_forward_keeps_separate_products_and_gradients():
    """With gradients on, the fused product is not used, so every projection gets its grad."""
    model, states = load_caption()
    step_logits(model, states)  # fuses
    raw = make_inputs(batch=2, seed=3)
    inputs = {k: torch.from_numpy(raw[k]) for k in ("pixel_values", "input_ids", "attention_mask")}
    model.train()
    out = model(**inputs, labels=inputs["input_ids"])
    out.loss.backward()
    for module in self_attentions(model):
        for linear in (module.query, module.key, module.value):
            assert linear.weight.grad is not None and linear.weight.grad.abs().sum() > 0
