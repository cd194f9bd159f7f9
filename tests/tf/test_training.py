"""Graph execution and training: XLA equals eager, ``compile`` + ``fit`` learn, the KV cache."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

import blip_tf  # noqa: E402
from blip_tf.outputs import BlipForConditionalGenerationModelOutput, BlipOutput  # noqa: E402
from tests.helpers import TINY_TEXT, TINY_VISION, compare_outputs, make_inputs  # noqa: E402
from tests.tf.cases import tiny_config  # noqa: E402
from tests.torch.cases import case_kwargs  # noqa: E402


def _perturbed(model, seed: int = 0, scale: float = 0.05):
    """Add noise to every weight (the vision embeddings start at ~1e-10)."""
    rng = np.random.default_rng(seed)
    state = {
        k: (v + rng.standard_normal(v.shape) * scale).astype(v.dtype)
        for k, v in model.get_weights_dict().items()
    }
    return model.load_weights_dict(state)


@pytest.mark.parametrize(
    "class_name, case, output_type",
    [
        ("BlipForConditionalGeneration", "caption", BlipForConditionalGenerationModelOutput),
        ("BlipModel", "blip_model", BlipOutput),
    ],
)
def test_xla_forward_equals_eager(class_name, case, output_type):
    model = _perturbed(getattr(blip_tf, class_name)(tiny_config()))
    kwargs = case_kwargs(case, TINY_TEXT, TINY_VISION)
    flags = {k: v for k, v in kwargs.items() if not isinstance(v, np.ndarray)}
    tensors = {k: tf.constant(v) for k, v in kwargs.items() if isinstance(v, np.ndarray)}
    eager = model(**kwargs)

    @tf.function(jit_compile=True)
    def forward(inputs):
        return model(**inputs, **flags)

    compiled = forward(tensors)
    assert isinstance(compiled, output_type)  # the output class survives tf.function
    # XLA fuses and reorders float reductions: equal up to float32 rounding.
    print(compare_outputs(compiled, eager, atol=1e-5))


def test_compile_and_fit_lowers_the_loss():
    keras.utils.set_random_seed(0)
    model = _perturbed(blip_tf.BlipForConditionalGeneration(tiny_config()))
    inputs = make_inputs(batch=4, length=7)
    # XLA-compiling the whole train step costs ~10 s on CPU; the XLA forward is tested above.
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=3e-3), jit_compile=False)
    history = model.fit(inputs, batch_size=4, epochs=6, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < 0.8 * losses[0], losses
    evaluated = model.evaluate(inputs, batch_size=4, verbose=0, return_dict=True)["loss"]
    np.testing.assert_allclose(evaluated, float(model(**inputs).loss), rtol=1e-4)


def test_predict_concatenates_batches():
    model = _perturbed(blip_tf.BlipForConditionalGeneration(tiny_config()))
    inputs = make_inputs(batch=4, length=7)
    del inputs["labels"]
    predicted = model.predict(inputs, batch_size=2, verbose=0)
    assert set(predicted) == {"logits", "image_embeds", "last_hidden_state"}
    np.testing.assert_allclose(predicted["logits"], model(**inputs).logits.numpy(), atol=1e-5)


def test_fit_with_labels_as_y():
    """``fit(x, y)`` with the labels outside the dict trains the LM head on them."""
    keras.utils.set_random_seed(0)
    config = tiny_config().text_config
    config.is_decoder = False  # no cross-attention weights (they would get no gradient)
    model = _perturbed(blip_tf.BlipTextLMHeadModel(config))
    inputs = make_inputs(batch=4, length=7)
    x = {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"]}
    # Eager: graph-mode training is covered above, tracing again would only cost time.
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=3e-3), run_eagerly=True)
    losses = model.fit(x, inputs["labels"], batch_size=4, epochs=5, verbose=0).history["loss"]
    assert losses[-1] < losses[0], losses


def test_fit_without_labels_is_a_clear_error():
    model = blip_tf.BlipForConditionalGeneration(tiny_config())
    inputs = make_inputs(batch=2, length=5)
    del inputs["labels"]
    model.compile(optimizer="adam", run_eagerly=True)
    with pytest.raises(ValueError, match="put `labels` in the input dict"):
        model.fit(inputs, epochs=1, verbose=0)


def test_dropout_follows_the_training_flag():
    config = tiny_config()
    config.text_config.hidden_dropout_prob = 0.3
    config.text_config.attention_probs_dropout_prob = 0.3
    model = _perturbed(blip_tf.BlipForConditionalGeneration(config))
    kwargs = case_kwargs("caption", TINY_TEXT, TINY_VISION)
    a, b = model(**kwargs).logits.numpy(), model(**kwargs).logits.numpy()
    np.testing.assert_array_equal(a, b)
    assert np.abs(model(**kwargs, training=True).logits.numpy() - a).max() > 1e-3


def test_kv_cache_steps_equal_the_full_forward():
    """Decoding token by token with past_key_values gives the logits of one full pass."""
    model = _perturbed(blip_tf.BlipTextLMHeadModel(tiny_config().text_config))
    rng = np.random.default_rng(0)
    ids = rng.integers(4, 90, size=(2, 6))
    states = rng.standard_normal((2, 5, 32)).astype(np.float32)
    states_mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    common = {"encoder_hidden_states": states, "encoder_attention_mask": states_mask}
    full = model(input_ids=ids, **common).logits.numpy()
    past, steps = None, []
    for t in range(ids.shape[1]):
        out = model(
            input_ids=ids[:, t : t + 1],
            attention_mask=np.ones((2, t + 1)),
            past_key_values=past,
            use_cache=True,
            **common,
        )
        past = out.past_key_values
        steps.append(out.logits.numpy())
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full, atol=1e-5)
    # Cached cross-attention keys/values are reused without the encoder states.
    again = model(
        input_ids=ids[:, -1:],
        attention_mask=np.ones((2, ids.shape[1])),
        past_key_values=tuple(p[:2] + p[2:] for p in _prefix_cache(model, ids, common)),
        use_cache=True,
        encoder_attention_mask=states_mask,
    )
    np.testing.assert_allclose(again.logits.numpy()[:, 0], full[:, -1], atol=1e-5)


def _prefix_cache(model, ids, common):
    return model(input_ids=ids[:, :-1], use_cache=True, **common).past_key_values


def test_mixed_precision_through_the_global_policy():
    """Under ``mixed_bfloat16`` the model computes in bfloat16, masks use bfloat16's finfo.min,
    and the loss stays float32 and close to the float32 model's."""
    reference = _perturbed(blip_tf.BlipForQuestionAnswering(tiny_config()))
    kwargs = case_kwargs("vqa", TINY_TEXT, TINY_VISION)
    expected = float(reference(**kwargs).loss)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = blip_tf.BlipForQuestionAnswering(tiny_config())
        model.load_weights_dict(reference.get_weights_dict())
        out = model(**kwargs)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert out.image_embeds.dtype == "bfloat16" and out.loss.dtype == "float32"
    assert abs(float(out.loss) - expected) < 0.05
