"""The BLIP BERT-style text encoder/decoder with cross-attention (Keras 3).

Layer names equal the transformers attribute names, except that Keras reserves the attribute
``output`` (it is skipped by ``.keras`` saving), so the ``output`` sub-layers of
:class:`BlipTextAttention` and :class:`BlipTextLayer` live in ``self_output`` while their Keras
*name*, and so their weight path, stays ``output``.  The embeddings live in
:mod:`blip_tf.text_embeddings`, the attention layers in :mod:`blip_tf.attention`, the pooler
and LM head in :mod:`blip_tf.text_heads` (all re-exported here).

Two caches, one forward:

* ``past_key_values`` (as in transformers and blip_torch): a tuple with one entry per layer,
  ``(self_key, self_value, cross_key, cross_value)``, each ``(B, heads, T, head_dim)``; the new
  self-attention keys/values are concatenated after the past ones, cross-attention keys/values
  are computed once and reused when passed back;
* ``cache=`` a :class:`blip_tf.cache.SlotCache` (decoding): a fixed-size self-attention cache
  written in place at given slots and per-image cross-attention keys/values, so that every
  decoding step has the same shapes and XLA compiles the decoder once
  (:mod:`blip_tf.generation` compiles exactly this call).
"""

from __future__ import annotations

import keras
from keras import ops

from blip_core.config import BlipTextConfig
from blip_tf.attention import (
    BlipTextAttention,
    BlipTextSelfAttention,
    BlipTextSelfOutput,
    cross_attention_mask,
    self_attention_mask,
    softmax,
)
from blip_tf.cache import SlotCache
from blip_tf.checkpoint import (
    PreTrainedMixin,
    child_scope,
    dense,
    layer_norm,
    unpack_inputs,
)
from blip_tf.outputs import (
    BaseModelOutputWithPoolingAndCrossAttentions,
    CausalLMOutputWithCrossAttentions,
)
from blip_tf.text_embeddings import BlipTextEmbeddings
from blip_tf.text_heads import (
    BlipTextLMPredictionHead,
    BlipTextOnlyMLMHead,
    BlipTextPooler,
    BlipTextPredictionHeadTransform,
    lm_loss,
)


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
        cache=None,
    ):
        """``cache``: this layer's ``(SelfSlots, SharedKeyValues)`` when decoding over a slot
        cache (``hidden_states`` then ``(N * T, D)``; see :mod:`blip_tf.cache`), or None."""
        self_cache, cross_cache = cache if cache is not None else (None, None)
        self_past = past_key_value[:2] if past_key_value is not None else None
        hidden, self_probs, self_present = self.attention(
            hidden_states,
            attention_mask=attention_mask,
            past_key_value=self_past,
            output_attentions=output_attentions,
            training=training,
            cache=self_cache,
        )
        cross_probs, cross_present = None, (None, None)
        cached_cross = past_key_value is not None and past_key_value[2] is not None
        if encoder_hidden_states is not None or cached_cross or cross_cache is not None:
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
                cache=cross_cache,
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
        cache=None,
    ):
        """``cache``: a :class:`blip_tf.cache.BoundSlotCache` (decoding), or None."""
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
                cache=cache.layer(i) if cache is not None else None,
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
        cache: SlotCache | None = None,
    ) -> BaseModelOutputWithPoolingAndCrossAttentions:
        """``input_ids`` ``(B, T)``; ``encoder_hidden_states`` ``(B, N, D_enc)`` for cross-attention.

        With ``cache`` (a :class:`blip_tf.cache.SlotCache`): one decoding call (causal) of
        ``input_ids``/``position_ids`` ``(N, T)`` over the slot cache, the cross-attention
        keys/values and mask taken from the cache; ``past_key_values`` of the output is the
        updated slot cache, one ``(key, value)`` ``(N, heads, C, head_dim)`` pair per layer.
        """
        if cache is not None:
            return self._call_with_cache(input_ids, position_ids, cache, return_dict, training)
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

    def _call_with_cache(self, input_ids, position_ids, cache: SlotCache, return_dict, training):
        if input_ids is None or position_ids is None:
            raise ValueError(
                "BlipTextModel(cache=...) decodes token ids at given positions: pass input_ids "
                "and position_ids (N, T)"
            )
        rows, length = ops.shape(input_ids)[0], ops.shape(input_ids)[1]
        width = self.config.hidden_size
        hidden = self.embeddings(input_ids=input_ids, position_ids=position_ids, training=training)
        hidden = ops.reshape(hidden, (rows * length, width))  # 2-D: every dense is one matmul
        bound = cache.bind(rows, length, self.compute_dtype)
        hidden, presents, _, _, _ = self.encoder(
            hidden,
            attention_mask=bound.self_mask,
            encoder_attention_mask=bound.cross_mask,
            use_cache=True,
            training=training,
            cache=bound,
        )
        sequence_output = ops.reshape(hidden, (rows, length, width))
        out = BaseModelOutputWithPoolingAndCrossAttentions(
            last_hidden_state=sequence_output,
            pooler_output=self.pooler(sequence_output) if self.pooler is not None else None,
            past_key_values=tuple((present[0], present[1]) for present in presents),
        )
        return out if return_dict is not False else out.to_tuple()


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
    "SlotCache",
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
