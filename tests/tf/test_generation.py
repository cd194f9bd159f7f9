"""blip_tf generate(): the same token ids as blip_torch for every option, one cross-attention
projection per layer per call, one trace of the XLA step for every batch size, and that step is
the text layers' own call (no second copy of the decoder).

XLA compiles the step once per shape (about a second each, even for the tiny model), so the
tests keep to a few shapes: batches of 3 images, beams 3 and 4.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("keras")

import blip_tf  # noqa: E402
import blip_torch  # noqa: E402
from blip_tf.generation import TFDecoderSession, decoder_step_function  # noqa: E402
from tests.helpers import TINY_TEXT, make_inputs  # noqa: E402

SEP, PAD, BOS = TINY_TEXT["sep_token_id"], TINY_TEXT["pad_token_id"], TINY_TEXT["bos_token_id"]


def boost_sep(model, prefix: str, amount: float) -> None:
    """Make [SEP] likely enough that sequences end at different steps (the amounts of
    tests/torch/test_generation.py, found by a scan there)."""
    with torch.no_grad():
        model.get_submodule(prefix + "cls.predictions").bias[SEP] += amount


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """blip_torch is only the oracle here; with 2 threads on a shared 2-core machine its tiny
    generate calls take seconds (OpenMP threads waiting for a busy core), with 1 milliseconds."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _pair(tmp_path_factory, class_name: str, seed: int, sep_boost: float):
    from tests.reference import build_reference

    ref = build_reference(class_name, seed=seed)
    boost_sep(ref, "text_decoder.", sep_boost)
    path = tmp_path_factory.mktemp(class_name)
    ref.save_pretrained(path)
    return (
        getattr(blip_torch, class_name).from_pretrained(path),
        getattr(blip_tf, class_name).from_pretrained(path),
    )


@pytest.fixture(scope="module")
def caption_pair(tmp_path_factory):
    return _pair(tmp_path_factory, "BlipForConditionalGeneration", seed=3, sep_boost=0.2)


@pytest.fixture(scope="module")
def vqa_pair(tmp_path_factory):
    return _pair(tmp_path_factory, "BlipForQuestionAnswering", seed=4, sep_boost=0.3)


def prompt_batch(lengths: list[int], seed: int = 0):
    """Processor-style prompts: [CLS] words [SEP], right-padded (numpy int64)."""
    rng = np.random.default_rng(seed)
    ids = np.zeros((len(lengths), max(lengths)), dtype=np.int64)
    mask = np.zeros_like(ids)
    for i, n in enumerate(lengths):
        ids[i, :n] = [2, *rng.integers(5, 90, n - 2), SEP]
        mask[i, :n] = 1
    return ids, mask


def torch_ids(model, *args, **kwargs) -> np.ndarray:
    def conv(x):
        return torch.from_numpy(x) if isinstance(x, np.ndarray) else x

    with torch.no_grad():
        out = model.generate(*(conv(a) for a in args), **{k: conv(v) for k, v in kwargs.items()})
    return out.numpy()


def tf_ids(model, *args, **kwargs) -> np.ndarray:
    out = model.generate(*args, **kwargs)
    assert out.dtype.name == "int64"
    return out.numpy()


SETTINGS = [
    {},
    {"num_beams": 3},
    {"num_beams": 4},
    {"num_beams": 3, "num_return_sequences": 2, "length_penalty": 0.6},
    {"num_beams": 3, "early_stopping": True, "max_length": 14},
    {"num_beams": 4, "early_stopping": False, "length_penalty": 1.3},
    {"num_beams": 4, "early_stopping": "never", "max_new_tokens": 9},
    {"repetition_penalty": 1.4, "min_length": 6},
    {"num_beams": 3, "min_new_tokens": 4, "repetition_penalty": 1.2},
]


@pytest.mark.parametrize(
    "settings", SETTINGS, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()) or "greedy"
)
@pytest.mark.parametrize("with_prompt", [False, True], ids=["no_prompt", "prompt"])
def test_caption_generate_equals_torch(caption_pair, settings, with_prompt):
    ours_torch, ours_tf = caption_pair
    pixels = make_inputs(batch=3, seed=11)["pixel_values"]
    kwargs = dict(settings)
    if with_prompt:
        kwargs["input_ids"], kwargs["attention_mask"] = prompt_batch([5, 4, 6])
    expected = torch_ids(ours_torch, pixels, **kwargs)
    got = tf_ids(ours_tf, pixels, **kwargs)
    np.testing.assert_array_equal(got, expected)
    assert len(got) == 3 * settings.get("num_return_sequences", 1)


def test_cases_cover_early_and_late_endings(caption_pair):
    _, ours_tf = caption_pair
    pixels = make_inputs(batch=3, seed=11)["pixel_values"]
    rows = tf_ids(ours_tf, pixels, num_beams=3).tolist() + tf_ids(ours_tf, pixels).tolist()
    ended = [SEP in r[1:] for r in rows]
    assert any(ended) and not all(ended), "the eos path is not exercised"


def test_generation_config_and_tensor_inputs(caption_pair):
    """A GenerationConfig object and tf tensors give the same ids as kwargs and numpy."""
    import tensorflow as tf

    from blip_core.generation import GenerationConfig

    ours_torch, ours_tf = caption_pair
    pixels = make_inputs(batch=3, seed=7)["pixel_values"]
    config = GenerationConfig(num_beams=3, max_new_tokens=7)
    a = tf_ids(ours_tf, tf.constant(pixels), generation_config=config)  # ids filled in
    np.testing.assert_array_equal(a, tf_ids(ours_tf, pixels, num_beams=3, max_new_tokens=7))
    ids = dict(bos_token_id=BOS, eos_token_id=SEP, pad_token_id=PAD)
    # (blip_torch uses a caller's config as is: it needs the special-token ids set)
    expected = torch_ids(ours_torch, pixels, generation_config=config.merged(**ids))
    np.testing.assert_array_equal(a, expected)
    assert config.pad_token_id is None  # the caller's config is not modified


@pytest.mark.parametrize(
    "settings", [{}, {"num_beams": 3}, {"num_beams": 4, "num_return_sequences": 2}]
)
def test_vqa_padded_questions_equal_torch(vqa_pair, settings):
    """Padded questions: the answer decoder masks the padding exactly as blip_torch (whose
    tests check that a padded batch equals each question alone)."""
    ours_torch, ours_tf = vqa_pair
    inp = make_inputs(batch=3, length=8, lengths=[8, 3, 5], seed=6)
    args = (inp["input_ids"], inp["pixel_values"])
    expected = torch_ids(ours_torch, *args, attention_mask=inp["attention_mask"], **settings)
    got = tf_ids(ours_tf, *args, attention_mask=inp["attention_mask"], **settings)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("settings", [{}, {"num_beams": 3, "max_length": 11}])
def test_mixed_length_prompts_batch_equals_each_alone(caption_pair, settings):
    ours_torch, ours_tf = caption_pair
    pixels = make_inputs(batch=3, seed=12)["pixel_values"]
    ids, mask = prompt_batch([3, 7, 5], seed=2)
    batched = tf_ids(ours_tf, pixels, input_ids=ids, attention_mask=mask, **settings)
    np.testing.assert_array_equal(
        batched, torch_ids(ours_torch, pixels, input_ids=ids, attention_mask=mask, **settings)
    )
    for row, n in enumerate([3, 7, 5]):
        alone = tf_ids(ours_tf, pixels[row : row + 1], input_ids=ids[row : row + 1, :n], **settings)
        real = alone[0][alone[0] != PAD].tolist()
        assert batched[row][: len(real)].tolist() == real
        assert (batched[row][len(real) :] == PAD).all()


def test_seeded_sampling(caption_pair):
    """Sampling draws from numpy's generator in blip_core: the same tokens run to run, and the
    same as blip_torch (the two backends' logits differ by ~1e-6, far from a draw boundary)."""
    ours_torch, ours_tf = caption_pair
    pixels = make_inputs(batch=3, seed=1)["pixel_values"]
    kw = dict(do_sample=True, top_k=20, top_p=0.9, temperature=1.3, num_return_sequences=3)
    a = tf_ids(ours_tf, pixels, seed=7, **kw)
    np.testing.assert_array_equal(a, tf_ids(ours_tf, pixels, seed=7, **kw))
    assert a.tolist() != tf_ids(ours_tf, pixels, seed=8, **kw).tolist()
    assert a.shape[0] == 9
    np.testing.assert_array_equal(a, torch_ids(ours_torch, pixels, seed=7, **kw))
    beam = tf_ids(ours_tf, pixels, seed=3, do_sample=True, num_beams=3)
    np.testing.assert_array_equal(
        beam, tf_ids(ours_tf, pixels, seed=3, do_sample=True, num_beams=3)
    )
    np.testing.assert_array_equal(
        beam, torch_ids(ours_torch, pixels, seed=3, do_sample=True, num_beams=3)
    )


def test_cross_attention_projected_once_per_generate(caption_pair, monkeypatch):
    """One projection call per generate, over one row per image (not per beam)."""
    import blip_tf.generation as generation

    _, ours_tf = caption_pair
    calls = []
    original = generation.project_cross_key_values

    def counting(text_model, states):
        calls.append(tuple(states.shape))
        return original(text_model, states)

    monkeypatch.setattr(generation, "project_cross_key_values", counting)
    pixels = make_inputs(batch=3, seed=1)["pixel_values"]
    for settings in ({}, {"num_beams": 4}):
        calls.clear()
        out = tf_ids(ours_tf, pixels, max_new_tokens=12, min_new_tokens=10, **settings)
        assert out.shape[1] > 8
        assert len(calls) == 1 and calls[0][0] == 3, calls


def test_compiled_projection_runs_each_key_value_layer_once(caption_pair, monkeypatch):
    """The compiled projection calls every layer's key and value Dense once (at its trace),
    and later calls reuse it without tracing again."""
    from blip_tf.generation import project_cross_key_values

    _, ours_tf = caption_pair
    text = ours_tf.text_decoder.bert
    layers = text.encoder.layer
    calls = []
    for layer in layers:
        for name in ("key", "value"):
            dense = getattr(layer.crossattention.self, name)

            def counting(*args, _original=dense.call, _name=name, **kwargs):
                calls.append(_name)
                return _original(*args, **kwargs)

            monkeypatch.setattr(dense, "call", counting)
    text.__dict__.pop("_blip_cross_key_values_xla", None)  # trace again, with the counters
    states = make_inputs(batch=2, seed=1)["pixel_values"][:, 0, :5, :]  # any (B, L, D) floats
    states = np.resize(states, (2, 5, layers[0].crossattention.self.kv_width)).astype(np.float32)
    try:
        first = project_cross_key_values(text, states)
        assert calls.count("key") == len(layers) and calls.count("value") == len(layers)
        second = project_cross_key_values(text, states)
        assert len(calls) == 2 * len(layers)  # not traced again
        for (k1, v1), (k2, v2) in zip(first, second):
            np.testing.assert_array_equal(k1.numpy(), k2.numpy())
            np.testing.assert_array_equal(v1.numpy(), v2.numpy())
    finally:
        text.__dict__.pop("_blip_cross_key_values_xla", None)


def test_compiled_step_never_reads_cross_key_value_weights(caption_pair):
    """The traced step captures no cross-attention key/value weight: it cannot re-project."""
    _, ours_tf = caption_pair
    decoder = ours_tf.text_decoder
    graph = decoder_step_function(decoder).get_concrete_function().graph
    captured = {id(t) for t in graph.external_captures}
    layers = decoder.bert.encoder.layer
    for layer in layers:
        cross = layer.crossattention.self
        for variable in (*cross.key.weights, *cross.value.weights):
            assert id(variable.value.handle) not in captured, variable.path
    query = layers[0].crossattention.self.query.kernel
    assert id(query.value.handle) in captured  # the check can see a captured weight


def test_step_is_traced_once_for_every_batch_size(caption_pair):
    _, ours_tf = caption_pair
    step = decoder_step_function(ours_tf.text_decoder)
    pixels = make_inputs(batch=3, seed=2)["pixel_values"]
    tf_ids(ours_tf, pixels[:1], max_new_tokens=3)
    traces = step.experimental_get_tracing_count()
    assert traces == 1
    for batch, settings in ((2, {}), (3, {}), (1, {"num_beams": 3}), (3, {"num_beams": 3})):
        tf_ids(ours_tf, pixels[:batch], max_new_tokens=3, **settings)
    assert step.experimental_get_tracing_count() == traces


def test_session_cache_grows_past_its_announced_capacity(caption_pair):
    """A session told a short capacity grows its cache and gives the same logits."""
    _, ours_tf = caption_pair
    states = ours_tf.vision_model(make_inputs(batch=3, seed=3)["pixel_values"]).last_hidden_state
    logits = {}
    for capacity in (1, 40):
        session = TFDecoderSession(ours_tf.text_decoder, states, None, 1, capacity)
        ids, mask, pos = np.full((3, 1), BOS), np.ones((3, 1), np.int64), np.zeros((3, 1))
        out = [session.prefill(ids, mask, pos.astype(np.int64))]
        for t in range(36):  # past the first 32 slots
            mask = np.ones((3, t + 2), np.int64)
            out.append(session.step(np.full(3, 5 + t % 80), mask, np.full(3, t + 1)))
        logits[capacity] = np.stack(out)
    np.testing.assert_allclose(logits[1], logits[40], atol=1e-5)


def test_compiled_vision_forward_matches_eager(caption_pair):
    _, ours_tf = caption_pair
    pixels = make_inputs(batch=3, seed=4)["pixel_values"]
    eager = ours_tf.vision_model(pixels)
    states, pooled = ours_tf.vision_model.compiled_forward(pixels)
    np.testing.assert_allclose(states.numpy(), eager.last_hidden_state.numpy(), atol=1e-5)
    np.testing.assert_allclose(pooled.numpy(), eager.pooler_output.numpy(), atol=1e-5)


def test_bad_generation_arguments(caption_pair):
    _, ours_tf = caption_pair
    pixels = make_inputs(batch=1)["pixel_values"]
    with pytest.raises(ValueError, match="num_return_sequences=3: cannot exceed num_beams"):
        ours_tf.generate(pixels, num_beams=2, num_return_sequences=3)
    with pytest.raises(TypeError, match="unknown generation argument"):
        ours_tf.generate(pixels, beams=2)


def _swap_compiled(owner, name: str, value=None):
    """Take the compiled function ``name`` off ``owner`` (so the next use traces again) and put
    ``value`` back instead; returns the one taken."""
    taken = owner.__dict__.pop(name, None)
    if value is not None:
        object.__setattr__(owner, name, value)
    return taken


def test_step_is_the_text_layers_own_call(caption_pair, monkeypatch):
    """The compiled step runs decoder.bert's call (every layer's self- and cross-attention
    call, in slot-cache mode) and the LM head: there is no hand-written decoder beside them,
    and generate uses that very function."""
    import blip_tf.generation as generation

    for name in ("_build_step", "_attend", "_attend_grouped", "_split_heads"):
        assert not hasattr(generation, name), name
    _, ours_tf = caption_pair
    decoder = ours_tf.text_decoder
    layers = decoder.bert.encoder.layer
    calls = []

    def count(layer, tag: str):
        original = layer.call

        def counting(*args, **kwargs):
            calls.append((tag, kwargs.get("cache") is not None))
            return original(*args, **kwargs)

        monkeypatch.setattr(layer, "call", counting)

    for layer in layers:
        count(layer, "layer")
        count(layer.attention.self, "self")
        count(layer.crossattention.self, "cross")
    count(decoder.bert, "model")
    count(decoder.cls, "head")
    saved = _swap_compiled(decoder, "_blip_decoder_step_xla")
    try:
        step = decoder_step_function(decoder)
        step.get_concrete_function()  # trace
        n = len(layers)
        expected = [("model", True), ("head", False)] + [("layer", True)] * n
        expected += [("self", True)] * n + [("cross", True)] * n
        assert sorted(calls) == sorted(expected)
        traced = len(calls)
        pixels = make_inputs(batch=3, seed=5)["pixel_values"]
        tf_ids(ours_tf, pixels, max_new_tokens=4, num_beams=3)
        assert decoder_step_function(decoder) is step
        assert step.experimental_get_tracing_count() == 1 and len(calls) == traced
    finally:
        _swap_compiled(decoder, "_blip_decoder_step_xla", saved)


@pytest.mark.parametrize("settings", [{}, {"num_beams": 3}], ids=["greedy", "beams"])
def test_generate_of_20_steps_traces_the_step_once(caption_pair, settings):
    _, ours_tf = caption_pair
    decoder = ours_tf.text_decoder
    saved = _swap_compiled(decoder, "_blip_decoder_step_xla")
    try:
        pixels = make_inputs(batch=3, seed=9)["pixel_values"]
        ids, mask = prompt_batch([5, 4, 6])
        out = tf_ids(
            ours_tf,
            pixels,
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=20,
            min_new_tokens=20,
            **settings,
        )
        assert out.shape[1] >= 20 + 3  # 20 new tokens after the shortest prompt
        assert decoder_step_function(decoder).experimental_get_tracing_count() == 1
    finally:
        _swap_compiled(decoder, "_blip_decoder_step_xla", saved)


def test_session_refuses_positions_past_the_table(caption_pair):
    """XLA clamps out-of-range position gathers (garbage, no error): the session refuses to
    decode at position >= max_position_embeddings, naming the limit and the way out."""
    _, ours_tf = caption_pair
    decoder = ours_tf.text_decoder
    limit = decoder.config.max_position_embeddings
    states = ours_tf.vision_model(make_inputs(batch=3, seed=3)["pixel_values"]).last_hidden_state
    session = TFDecoderSession(decoder, states, None, 1, limit + 8)
    width = limit - 3
    ids = np.full((3, width), 7)
    ids[:, 0] = BOS
    session.prefill(ids, np.ones((3, width), np.int64), np.tile(np.arange(width), (3, 1)))
    for position in range(width, limit):  # the last positions of the table still decode
        mask = np.ones((3, position + 1), np.int64)
        assert np.isfinite(session.step(np.full(3, 9), mask, np.full(3, position))).all()
    with pytest.raises(ValueError) as error:
        session.step(np.full(3, 9), np.ones((3, limit + 1), np.int64), np.full(3, limit))
    message = str(error.value)
    assert f"max_position_embeddings={limit}" in message
    assert f"{limit + 1} tokens" in message and f"prompt of {width}" in message
    assert "max_new_tokens" in message


def test_generate_past_the_position_table_never_returns_garbage(caption_pair):
    """generate asked for more tokens than positions exist either stops within the table or
    raises the clear error; it never decodes past it (blip_core may warn when it stops)."""
    import warnings

    _, ours_tf = caption_pair
    limit = ours_tf.text_decoder.config.max_position_embeddings
    pixels = make_inputs(batch=3, seed=2)["pixel_values"]
    try:
        with warnings.catch_warnings(record=True):
            warnings.simplefilter("always")
            out = tf_ids(ours_tf, pixels, max_new_tokens=limit + 10, min_new_tokens=limit + 10)
    except ValueError as error:
        assert "max_position_embeddings" in str(error)
    else:
        assert out.shape[1] <= limit


def test_compiled_vision_forward_is_the_models_call(caption_pair, monkeypatch):
    """compiled_forward traces BlipVisionModel.call itself (once per image size)."""
    _, ours_tf = caption_pair
    vision = ours_tf.vision_model
    calls = []
    original = vision.call

    def counting(*args, **kwargs):
        calls.append(kwargs.get("interpolate_pos_encoding"))
        return original(*args, **kwargs)

    monkeypatch.setattr(vision, "call", counting)
    saved = _swap_compiled(vision, "_blip_compiled")
    try:
        pixels = make_inputs(batch=2, seed=4)["pixel_values"]
        first = vision.compiled_forward(pixels)
        second = vision.compiled_forward(pixels[:1])
        assert calls == [False]  # traced through call once, reused for another batch size
        # (XLA may block the matrix products differently per batch size: equal to rounding)
        np.testing.assert_allclose(first[0].numpy()[:1], second[0].numpy(), atol=1e-5)
    finally:
        _swap_compiled(vision, "_blip_compiled", saved)
