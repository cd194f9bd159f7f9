"""The text model's heads (Keras 3): the pooler, the tied LM prediction head, the LM loss."""

from __future__ import annotations

import keras
from keras import ops

from blip_core.config import BlipTextConfig
from blip_core.constants import IGNORE_INDEX
from blip_tf.checkpoint import dense, layer_norm


class BlipTextPooler(keras.layers.Layer):
    def __init__(self, config: BlipTextConfig, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size = config.hidden_size
        self.dense = dense(config.hidden_size, config.initializer_range, "dense")

    def build(self, input_shape=None):
        self.dense.build((None, self.hidden_size))

    def call(self, hidden_states):
        return ops.tanh(self.dense(hidden_states[:, 0]))


class BlipTextPredictionHeadTransform(keras.layers.Layer):
    def __init__(self, config: BlipTextConfig, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size = config.hidden_size
        self.dense = dense(config.hidden_size, config.initializer_range, "dense")
        self.LayerNorm = layer_norm(config.layer_norm_eps, "LayerNorm")

    def build(self, input_shape=None):
        self.dense.build((None, None, self.hidden_size))
        self.LayerNorm.build((None, None, self.hidden_size))

    def call(self, hidden_states):
        return self.LayerNorm(ops.gelu(self.dense(hidden_states), approximate=False))


class BlipTextLMPredictionHead(keras.layers.Layer):
    """Transform, then the vocabulary projection.  The projection weight is the word-embedding
    matrix ``(vocab, D)``, passed in by the owning :class:`BlipTextLMHeadModel` (tied, so there
    is no separate ``decoder`` variable); ``bias`` is ``cls.predictions.bias``."""

    def __init__(self, config: BlipTextConfig, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size = config.vocab_size
        self.transform = BlipTextPredictionHeadTransform(config, name="transform")

    def build(self, input_shape=None):
        self.transform.build()
        self.bias = self.add_weight(shape=(self.vocab_size,), initializer="zeros", name="bias")

    def call(self, hidden_states, decoder_weight):
        """``(B, T, D)`` -> logits ``(B, T, vocab)``; ``(N, D)`` -> ``(N, vocab)`` (the decode
        step's last positions)."""
        hidden_states = self.transform(hidden_states)
        if len(hidden_states.shape) == 2:
            return ops.matmul(hidden_states, ops.transpose(decoder_weight)) + self.bias
        return ops.einsum("btd,vd->btv", hidden_states, decoder_weight) + self.bias


class BlipTextOnlyMLMHead(keras.layers.Layer):
    def __init__(self, config: BlipTextConfig, **kwargs):
        super().__init__(**kwargs)
        self.predictions = BlipTextLMPredictionHead(config, name="predictions")

    def build(self, input_shape=None):
        self.predictions.build()

    def call(self, sequence_output, decoder_weight):
        return self.predictions(sequence_output, decoder_weight)


def lm_loss(logits, labels, label_smoothing: float, reduction: str = "mean"):
    """Next-token cross-entropy: logits ``(B, T, V)`` at t predict labels at t+1; -100 ignored.

    Exactly ``torch.nn.CrossEntropyLoss(ignore_index=-100, label_smoothing=eps)``:
    ``(1 - eps) * nll + eps * mean_c(-log p_c)`` per token, ``mean`` divides by the number of
    non-ignored tokens (all ignored gives nan, as in torch); ``none`` sums each row.
    """
    shifted = ops.cast(logits[:, :-1, :], "float32")  # the loss in float32 under mixed precision
    targets = ops.cast(labels[:, 1:], "int32")
    log_probs = ops.log_softmax(shifted, axis=-1)  # (B, T-1, V)
    valid = targets != IGNORE_INDEX
    safe = ops.where(valid, targets, ops.zeros_like(targets))
    per_token = -ops.take_along_axis(log_probs, safe[..., None], axis=-1)[..., 0]
    if label_smoothing > 0:
        smooth = -ops.sum(log_probs, axis=-1) / log_probs.shape[-1]
        per_token = (1.0 - label_smoothing) * per_token + label_smoothing * smooth
    per_token = ops.where(valid, per_token, ops.zeros_like(per_token))
    if reduction == "mean":
        return ops.sum(per_token) / ops.sum(ops.cast(valid, per_token.dtype))
    if reduction == "sum":
        return ops.sum(per_token)
    if reduction == "none":
        return ops.sum(per_token, axis=1)
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


__all__ = [
    "BlipTextLMPredictionHead",
    "BlipTextOnlyMLMHead",
    "BlipTextPooler",
    "BlipTextPredictionHeadTransform",
    "lm_loss",
]
