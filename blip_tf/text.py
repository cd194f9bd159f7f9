"""The BLIP BERT-style text encoder/decoder with cross-attention (Keras 3).

Layer names equal the transformers attribute names, except that Keras reserves the attribute
``output`` (it is skipped by ``.keras`` saving), so the ``output`` sub-layers of
:class:`BlipTextAttention` and :class:`BlipTextLayer` live in ``self_output`` while their Keras
*name*, and so their weight path, stays ``output``.

The key/value cache is a tuple with one entry per layer, ``(self_key, self_value, cross_key,
cross_value)``, each ``(B, heads, T, head_dim)``; cross-attention keys/values are computed once
and reused when passed back, exactly as in blip_torch.
"""

from __future__ import annotations

import math

import keras
from keras import ops

from blip_core.config import BlipTextConfig
from blip_core.constants import (
    CROSS_ATTENTION_MASK_VALUE_FP32,
    IGNORE_INDEX,
    SELF_ATTENTION_MASK_VALUE,
)
from blip_tf.checkpoint import (
    PreTrainedMixin,
    child_scope,
    dense,
    layer_norm,
    unpack_inputs,
    weight_init,
)
from blip_tf.outputs import (
    BaseModelOutputWithPoolingAndCrossAttentions,
    CausalLMOutputWithCrossAttentions,
)


def self_attention_mask(attention_mask, query_length: int, is_decoder: bool, dtype: str):
    """Additive mask ``(B, 1, Tq, Tk)`` (or ``(B, 1, 1, Tk)``): BERT's ``(1 - m) * -10000``.

    ``attention_mask`` is ``(B, Tk)`` over past + current tokens (1 = attend).  In decoder mode a
    query at position ``past + i`` sees keys ``0 .. past + i``.
    """
    attention_mask = ops.cast(attention_mask, dtype)
    if len(attention_mask.shape) == 3:
        mask = attention_mask[:, None, :, :]
    elif is_decoder:
        key_length = ops.shape(attention_mask)[1]
        past = key_length - query_length
        q_pos = ops.arange(query_length)[:, None] + past
        k_pos = ops.arange(key_length)[None, :]
        causal = ops.cast(k_pos <= q_pos, dtype)  # (Tq, Tk)
        mask = causal[None, None] * attention_mask[:, None, None, :]
    else:
        mask = attention_mask[:, None, None, :]
    return (1.0 - mask) * SELF_ATTENTION_MASK_VALUE


def softmax(scores):
    """Softmax over keys; a single key (the first decoding step) gives exactly 1 without
    tripping Keras' size-1 softmax warning (``exp(x - x)`` keeps nan/inf propagation)."""
    if scores.shape[-1] == 1:
        return ops.exp(scores - scores)
    return ops.softmax(scores, axis=-1)


def cross_attention_mask(encoder_attention_mask, dtype: str):
    """Additive ``(B, 1, 1, Tk)`` mask ``(1 - m) * finfo(dtype).min`` (transformers'
    ``invert_attention_mask``)."""
    if dtype == "float32":
        fill = CROSS_ATTENTION_MASK_VALUE_FP32
    else:  # mixed precision: float16 / bfloat16 (ml_dtypes, a Keras dependency, knows both)
        import ml_dtypes

        fill = float(ml_dtypes.finfo(dtype).min)
    mask = ops.cast(encoder_attention_mask, dtype)
    if len(mask.shape) == 3:
        mask = mask[:, None, :, :]
    else:
        mask = mask[:, None, None, :]
    return (1.0 - mask) * fill


class BlipTextEmbeddings(keras.layers.Layer):
    """Word + absolute position embeddings, then LayerNorm (BLIP has no token types)."""

    def __init__(self, config: BlipTextConfig, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        init = weight_init(keras.initializers.RandomNormal(stddev=config.initializer_range))
        self.word_embeddings = keras.layers.Embedding(
            config.vocab_size,
            config.hidden_size,
            embeddings_initializer=init,
            name="word_embeddings",
        )
        self.position_embeddings = keras.layers.Embedding(
            config.max_position_embeddings,
            config.hidden_size,
            embeddings_initializer=init,
            name="position_embeddings",
        )
        self.LayerNorm = layer_norm(config.layer_norm_eps, "LayerNorm")
        self.dropout = keras.layers.Dropout(config.hidden_dropout_prob, name="dropout")
        self.max_positions = config.max_position_embeddings
        self.pad_token_id = config.pad_token_id

    def build(self, input_shape=None):
        self.word_embeddings.build((None, None))
        self.position_embeddings.build((None, None))
        self.LayerNorm.build((None, None, self.config.hidden_size))

    def call(
        self,
        input_ids=None,
        position_ids=None,
        inputs_embeds=None,
        past_key_values_length=0,
        training=None,
    ):
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)
            # nn.Embedding(padding_idx=pad) gives the padding row no gradient from lookups.
            is_pad = ops.equal(input_ids, self.pad_token_id)[..., None]
            inputs_embeds = ops.where(is_pad, ops.stop_gradient(inputs_embeds), inputs_embeds)
        length = inputs_embeds.shape[1]
        if position_ids is None:
            if isinstance(length, int) and isinstance(past_key_values_length, int):
                if past_key_values_length + length > self.max_positions:
                    raise ValueError(
                        f"sequence of {past_key_values_length + length} tokens exceeds "
                        f"max_position_embeddings={self.max_positions}"
                    )
            else:
                length = ops.shape(inputs_embeds)[1]
            position_ids = ops.arange(past_key_values_length, past_key_values_length + length)[None]
        embeddings = inputs_embeds + self.position_embeddings(position_ids)
        return self.dropout(self.LayerNorm(embeddings), training=training)


class BlipTextSelfAttention(keras.layers.Layer):
    def __init__(self, config: BlipTextConfig, is_cross_attention: bool, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size = config.hidden_size
        self.num_attention_heads = config.num_attention_heads
        self.attention_head_size = config.hidden_size // config.num_attention_heads
        self.all_head_size = config.hidden_size
        self.kv_width = config.encoder_hidden_size if is_cross_attention else config.hidden_size
        self.is_cross_attention = is_cross_attention
        std = config.initializer_range
        self.query = dense(self.all_head_size, std, "query")
        self.key = dense(self.all_head_size, std, "key")
        self.value = dense(self.all_head_size, std, "value")
        self.dropout = keras.layers.Dropout(config.attention_probs_dropout_prob, name="dropout")

    def build(self, input_shape=None):
        self.query.build((None, None, self.hidden_size))
        self.key.build((None, None, self.kv_width))
        self.value.build((None, None, self.kv_width))

    def _heads(self, x):
        batch = ops.shape(x)[0]  # (B, T, D) -> (B, heads, T, head_dim)
        x = ops.reshape(x, (batch, -1, self.num_attention_heads, self.attention_head_size))
        return ops.transpose(x, (0, 2, 1, 3))

    def project_key_value(self, states):
        """Keys and values ``(B, heads, T, head_dim)`` for ``states`` ``(B, T, D_kv)``."""
        return self._heads(self.key(states)), self._heads(self.value(states))

    def call(
        self,
        hidden_states,
        attention_mask=None,
        encoder_hidden_states=None,
        past_key_value=None,
        output_attentions: bool = False,
        training=None,
    ):
        query = self._heads(self.query(hidden_states))
        if self.is_cross_attention:
            if past_key_value is not None:  # computed once per generate call
                key, value = past_key_value
            else:
                key, value = self.project_key_value(encoder_hidden_states)
        else:
            key, value = self.project_key_value(hidden_states)
            if past_key_value is not None:
                key = ops.concatenate([past_key_value[0], key], axis=2)
                value = ops.concatenate([past_key_value[1], value], axis=2)
        scores = ops.matmul(query, ops.swapaxes(key, -1, -2)) / math.sqrt(self.attention_head_size)
        if attention_mask is not None:
            scores = scores + attention_mask
        probs = softmax(scores)
        context = ops.matmul(self.dropout(probs, training=training), value)
        batch = ops.shape(context)[0]
        context = ops.reshape(ops.transpose(context, (0, 2, 1, 3)), (batch, -1, self.all_head_size))
        return context, (probs if output_attentions else None), (key, value)


class BlipTextSelfOutput(keras.layers.Layer):
    def __init__(self, config: BlipTextConfig, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size = config.hidden_size
        self.dense = dense(config.hidden_size, config.initializer_range, "dense")
        self.LayerNorm = layer_norm(config.layer_norm_eps, "LayerNorm")
        self.dropout = keras.layers.Dropout(config.hidden_dropout_prob, name="dropout")

    def build(self, input_shape=None):
        self.dense.build((None, None, self.hidden_size))
        self.LayerNorm.build((None, None, self.hidden_size))

    def call(self, hidden_states, input_tensor, training=None):
        return self.LayerNorm(
            self.dropout(self.dense(hidden_states), training=training) + input_tensor
        )


class BlipTextAttention(keras.layers.Layer):
    def __init__(self, config: BlipTextConfig, is_cross_attention: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.self = BlipTextSelfAttention(config, is_cross_attention, name="self")
        self.self_output = BlipTextSelfOutput(config, name="output")

    def build(self, input_shape=None):
        self.self.build()
        self.self_output.build()

    def call(
        self,
        hidden_states,
        attention_mask=None,
        encoder_hidden_states=None,
        past_key_value=None,
        output_attentions: bool = False,
        training=None,
    ):
        context, probs, present = self.self(
            hidden_states,
            attention_mask=attention_mask,
            encoder_hidden_states=encoder_hidden_states,
            past_key_value=past_key_value,
            output_attentions=output_attentions,
            training=training,
        )
        return self.self_output(context, hidden_states, training=training), probs, present


class BlipTextIntermediate(keras.layers.Layer):
    def __init__(self, config: BlipTextConfig, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size = config.hidden_size
        self.dense = dense(config.intermediate_size, config.initializer_range, "dense")

    def build(self, input_shape=None):
        self.dense.build((None, None, self.hidden_size))

    def call(self, hidden_states):
        return ops.gelu(self.dense(hidden_states), approximate=False)  # exact erf GELU


class BlipTextOutput(keras.layers.Layer):
    def __init__(self, config: BlipTextConfig, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size = config.hidden_size
        self.intermediate_size = config.intermediate_size
        self.dense = dense(config.hidden_size, config.initializer_range, "dense")
        self.LayerNorm = layer_norm(config.layer_norm_eps, "LayerNorm")
        self.dropout = keras.layers.Dropout(config.hidden_dropout_prob, name="dropout")

    def build(self, input_shape=None):
        self.dense.build((None, None, self.intermediate_size))
        self.LayerNorm.build((None, None, self.hidden_size))

    def call(self, hidden_states, input_tensor, training=None):
        return self.LayerNorm(
            self.dropout(self.dense(hidden_states), training=training) + input_tensor
        )


class BlipTextLayer(keras.layers.Layer):
    """Post-LN BERT layer: self-attention, cross-attention (when given states), feed-forward."""

    def __init__(self, config: BlipTextConfig, **kwargs):
        super().__init__(**kwargs)
        self.attention = BlipTextAttention(config, name="attention")
        # As in the reference: every layer owns cross-attention when config.is_decoder is true.
        self.crossattention = (
            BlipTextAttention(config, is_cross_attention=True, name="crossattention")
            if config.is_decoder
            else None
        )
        self.intermediate = BlipTextIntermediate(config, name="intermediate")
        self.self_output = BlipTextOutput(config, name="output")

    def build(self, input_shape=None):
        self.attention.build()
        if self.crossattention is not None:
            self.crossattention.build()
        self.intermediate.build()
        self.self_output.build()

    def call(
        self,
        hidden_states,
        attention_mask=None,
        encoder_hidden_states=None,
        encoder_attention_mask=None,
        past_key_value=None,
        output_attentions: bool = False,
        training=None,
    ):
        self_past = past_key_value[:2] if past_key_value is not None else None
        hidden, self_probs, self_present = self.attention(
            hidden_states,
            attention_mask=attention_mask,
            past_key_value=self_past,
            output_attentions=output_attentions,
            training=training,
        )
        cross_probs, cross_present = None, (None, None)
        cached_cross = past_key_value is not None and past_key_value[2] is not None
        if encoder_hidden_states is not None or cached_cross:
            if self.crossattention is None:
                raise ValueError(
                    "encoder_hidden_states given, but this text model has no cross-attention "
                    "(config.is_decoder is False)"
                )
            hidden, cross_probs, cross_present = self.crossattention(
                hidden,
                attention_mask=encoder_attention_mask,
                encoder_hidden_states=encoder_hidden_states,
                past_key_value=past_key_value[2:] if cached_cross else None,
                output_attentions=output_attentions,
                training=training,
            )
        layer_output = self.self_output(self.intermediate(hidden), hidden, training=training)
        return layer_output, self_probs, cross_probs, (*self_present, *cross_present)


class BlipTextEncoder(keras.layers.Layer):
    def __init__(self, config: BlipTextConfig, **kwargs):
        super().__init__(**kwargs)
        self.layer = [
            BlipTextLayer(config, name=f"layer_._{i}") for i in range(config.num_hidden_layers)
        ]

    def build(self, input_shape=None):
        for layer in self.layer:
            layer.build()

    def call(
        self,
        hidden_states,
        attention_mask=None,
        encoder_hidden_states=None,
        encoder_attention_mask=None,
        past_key_values=None,
        use_cache: bool = False,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        training=None,
    ):
        all_hidden = (hidden_states,) if output_hidden_states else None
        all_self = () if output_attentions else None
        all_cross = () if output_attentions and encoder_hidden_states is not None else None
        presents = () if use_cache else None
        for i, layer in enumerate(self.layer):
            hidden_states, self_probs, cross_probs, present = layer(
                hidden_states,
                attention_mask=attention_mask,
                encoder_hidden_states=encoder_hidden_states,
                encoder_attention_mask=encoder_attention_mask,
                past_key_value=past_key_values[i] if past_key_values is not None else None,
                output_attentions=output_attentions,
                training=training,
            )
            if use_cache:
                presents = presents + (present,)
            if output_hidden_states:
                all_hidden = all_hidden + (hidden_states,)
            if output_attentions:
                all_self = all_self + (self_probs,)
                if all_cross is not None:
                    all_cross = all_cross + (cross_probs,)
        return hidden_states, presents, all_hidden, all_self, all_cross


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
        hidden_states = self.transform(hidden_states)
        return ops.einsum("btd,vd->btv", hidden_states, decoder_weight) + self.bias


class BlipTextOnlyMLMHead(keras.layers.Layer):
    def __init__(self, config: BlipTextConfig, **kwargs):
        super().__init__(**kwargs)
        self.predictions = BlipTextLMPredictionHead(config, name="predictions")

    def build(self, input_shape=None):
        self.predictions.build()

    def call(self, sequence_output, decoder_weight):
        return self.predictions(sequence_output, decoder_weight)


@keras.saving.register_keras_serializable(package="blip_tf")
class BlipTextModel(PreTrainedMixin, keras.Model):
    """BERT encoder; a decoder (causal self-attention) when called with ``is_decoder=True``."""

    config_class = BlipTextConfig
    _extra_init_args = ("add_pooling_layer",)

    def __init__(self, config: BlipTextConfig, add_pooling_layer: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        self.add_pooling_layer = add_pooling_layer
        self.embeddings = BlipTextEmbeddings(config, name="embeddings")
        self.encoder = BlipTextEncoder(config, name="encoder")
        self.pooler = BlipTextPooler(config, name="pooler") if add_pooling_layer else None
        self.build()

    def build(self, input_shape=None):
        self.embeddings.build()
        self.encoder.build()
        if self.pooler is not None:
            self.pooler.build()

    def get_input_embeddings(self) -> keras.layers.Embedding:
        return self.embeddings.word_embeddings

    @unpack_inputs
    def call(
        self,
        input_ids=None,
        attention_mask=None,
        position_ids=None,
        head_mask=None,
        inputs_embeds=None,
        encoder_embeds=None,
        encoder_hidden_states=None,
        encoder_attention_mask=None,
        past_key_values=None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        is_decoder: bool = False,
        training=None,
    ) -> BaseModelOutputWithPoolingAndCrossAttentions:
        """``input_ids`` ``(B, T)``; ``encoder_hidden_states`` ``(B, N, D_enc)`` for cross-attention."""
        if head_mask is not None:
            raise NotImplementedError("head_mask is not supported")
        if input_ids is not None and inputs_embeds is not None:
            raise ValueError("You cannot specify both input_ids and inputs_embeds at the same time")
        if input_ids is not None:
            reference = input_ids
        elif inputs_embeds is not None:
            reference = inputs_embeds
        elif encoder_embeds is not None:
            reference = encoder_embeds
        else:
            raise ValueError(
                "You have to specify either input_ids or inputs_embeds or encoder_embeds"
            )
        batch, length = ops.shape(reference)[0], ops.shape(reference)[1]
        use_cache = bool(use_cache) and is_decoder
        past_length = ops.shape(past_key_values[0][0])[2] if past_key_values is not None else 0
        dtype = self.compute_dtype
        if attention_mask is None:
            attention_mask = ops.ones((batch, past_length + length), dtype=dtype)
        extended_mask = self_attention_mask(attention_mask, length, is_decoder, dtype)
        encoder_mask = None
        cached_cross = past_key_values is not None and past_key_values[0][2] is not None
        if encoder_hidden_states is not None or cached_cross:
            if encoder_attention_mask is None:
                enc_len = (
                    ops.shape(encoder_hidden_states)[1]
                    if encoder_hidden_states is not None
                    else ops.shape(past_key_values[0][2])[2]
                )
                encoder_attention_mask = ops.ones((batch, enc_len), dtype=dtype)
            if not self.config.ignore_encoder_attention_mask:
                encoder_mask = cross_attention_mask(encoder_attention_mask, dtype)
        if encoder_embeds is None:
            embedding_output = self.embeddings(
                input_ids=input_ids,
                position_ids=position_ids,
                inputs_embeds=inputs_embeds,
                past_key_values_length=past_length,
                training=training,
            )
        else:
            embedding_output = encoder_embeds
        sequence_output, presents, all_hidden, all_self, all_cross = self.encoder(
            embedding_output,
            attention_mask=extended_mask,
            encoder_hidden_states=encoder_hidden_states,
            encoder_attention_mask=encoder_mask,
            past_key_values=past_key_values,
            use_cache=use_cache,
            output_attentions=bool(output_attentions),
            output_hidden_states=bool(output_hidden_states),
            training=training,
        )
        pooled = self.pooler(sequence_output) if self.pooler is not None else None
        out = BaseModelOutputWithPoolingAndCrossAttentions(
            last_hidden_state=sequence_output,
            pooler_output=pooled,
            past_key_values=presents,
            hidden_states=all_hidden,
            attentions=all_self,
            cross_attentions=all_cross,
        )
        return out if return_dict is not False else out.to_tuple()


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


@keras.saving.register_keras_serializable(package="blip_tf")
class BlipTextLMHeadModel(PreTrainedMixin, keras.Model):
    """Causal text decoder with an LM head whose weight is the word-embedding matrix (tied)."""

    config_class = BlipTextConfig

    def __init__(self, config: BlipTextConfig, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        with child_scope(self):
            self.bert = BlipTextModel(config, add_pooling_layer=False, name="bert")
        self.cls = BlipTextOnlyMLMHead(config, name="cls")
        self.label_smoothing = config.label_smoothing
        self.build()

    def build(self, input_shape=None):
        self.cls.build()

    def get_input_embeddings(self) -> keras.layers.Embedding:
        return self.bert.get_input_embeddings()

    def get_output_embeddings(self):
        """The ``(vocab, D)`` LM-head weight: the word-embedding variable itself."""
        return self.bert.embeddings.word_embeddings.embeddings

    def loss_from_labels(self, outputs, labels):
        return lm_loss(outputs.logits, labels, self.label_smoothing)

    @unpack_inputs
    def call(
        self,
        input_ids=None,
        attention_mask=None,
        position_ids=None,
        head_mask=None,
        inputs_embeds=None,
        encoder_hidden_states=None,
        encoder_attention_mask=None,
        labels=None,
        past_key_values=None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        return_logits: bool = False,
        is_decoder: bool = True,
        reduction: str = "mean",
        training=None,
    ) -> CausalLMOutputWithCrossAttentions:
        if labels is not None:
            use_cache = False
        outputs = self.bert(
            input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            head_mask=head_mask,
            inputs_embeds=inputs_embeds,
            encoder_hidden_states=encoder_hidden_states,
            encoder_attention_mask=encoder_attention_mask,
            past_key_values=past_key_values,
            use_cache=use_cache,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
            is_decoder=is_decoder,
            training=training,
        )
        logits = self.cls(outputs.last_hidden_state, self.get_output_embeddings())  # (B, T, V)
        if return_logits:
            return logits[:, :-1, :]
        loss = None
        if labels is not None:
            loss = lm_loss(logits, labels, self.label_smoothing, reduction)
        out = CausalLMOutputWithCrossAttentions(
            loss=loss,
            logits=logits,
            past_key_values=outputs.past_key_values,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            cross_attentions=outputs.cross_attentions,
        )
        return out if return_dict is not False else out.to_tuple()


__all__ = [
    "BlipTextAttention",
    "BlipTextEmbeddings",
    "BlipTextEncoder",
    "BlipTextIntermediate",
    "BlipTextLMHeadModel",
    "BlipTextLMPredictionHead",
    "BlipTextLayer",
    "BlipTextModel",
    "BlipTextOnlyMLMHead",
    "BlipTextOutput",
    "BlipTextPooler",
    "BlipTextPredictionHeadTransform",
    "BlipTextSelfAttention",
    "BlipTextSelfOutput",
    "cross_attention_mask",
    "lm_loss",
    "self_attention_mask",
    "softmax",
]
