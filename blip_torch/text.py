"""The BLIP BERT-style text encoder/decoder with cross-attention (PyTorch).

Parameter names equal the transformers state-dict keys.  The key/value cache is a tuple with one
entry per layer, ``(self_key, self_value, cross_key, cross_value)``, each ``(B, heads, T, head_dim)``;
cross-attention keys/values are computed once (on the first call) and reused afterwards.
``past_key_values`` may instead be a :class:`blip_torch.cache.SlotCache` (fixed-size slot
buffers: static shapes for compiled / exported decode steps).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from blip_core.config import BlipTextConfig
from blip_core.outputs import (
    BaseModelOutputWithPoolingAndCrossAttentions,
    CausalLMOutputWithCrossAttentions,
)
from blip_torch.cache import SlotCache
from blip_torch.masks import cross_attention_mask, self_attention_mask, slot_attention_mask
from blip_torch.text_attention import BlipTextSelfAttention
from blip_torch.text_embeddings import BlipTextEmbeddings
from blip_torch.text_heads import (
    BlipTextOnlyMLMHead,
    BlipTextPooler,
    lm_loss,
)

LayerCache = tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]


class BlipTextSelfOutput(nn.Module):
    def __init__(self, config: BlipTextConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(hidden_states)) + input_tensor)


class BlipTextAttention(nn.Module):
    def __init__(self, config: BlipTextConfig, is_cross_attention: bool = False):
        super().__init__()
        self.self = BlipTextSelfAttention(config, is_cross_attention)
        self.output = BlipTextSelfOutput(config)

    def forward(self, hidden_states, attention_mask=None, encoder_hidden_states=None,
                past_key_value=None, output_attentions=False):  # fmt: skip
        context, probs, present = self.self(
            hidden_states, attention_mask, encoder_hidden_states, past_key_value, output_attentions
        )
        return self.output(context, hidden_states), probs, present


class BlipTextIntermediate(nn.Module):
    def __init__(self, config: BlipTextConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.dense(hidden_states))  # exact erf GELU


class BlipTextOutput(nn.Module):
    def __init__(self, config: BlipTextConfig):
        super().__init__()
        self.dense = nn.Linear(config.intermediate_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(hidden_states)) + input_tensor)


class BlipTextLayer(nn.Module):
    """Post-LN BERT layer: self-attention, cross-attention (when given states), feed-forward."""

    def __init__(self, config: BlipTextConfig):
        super().__init__()
        self.attention = BlipTextAttention(config)
        # As in the reference: every layer owns cross-attention when config.is_decoder is true.
        self.crossattention = (
            BlipTextAttention(config, is_cross_attention=True) if config.is_decoder else None
        )
        self.intermediate = BlipTextIntermediate(config)
        self.output = BlipTextOutput(config)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        past_key_value: LayerCache | None = None,
        output_attentions: bool = False,
    ):
        self_past = past_key_value[:2] if past_key_value is not None else None
        hidden, self_probs, self_present = self.attention(
            hidden_states, attention_mask, None, self_past, output_attentions
        )
        cross_probs, cross_present = None, (None, None)
        if encoder_hidden_states is not None or (
            past_key_value is not None and past_key_value[2] is not None
        ):
            if self.crossattention is None:
                raise ValueError(
                    "encoder_hidden_states given, but this text model has no cross-attention "
                    "(config.is_decoder is False)"
                )
            cross_past = (
                past_key_value[2:]
                if past_key_value is not None and past_key_value[2] is not None
                else None
            )
            hidden, cross_probs, cross_present = self.crossattention(
                hidden, encoder_attention_mask, encoder_hidden_states, cross_past, output_attentions
            )
        layer_output = self.output(self.intermediate(hidden), hidden)
        return layer_output, self_probs, cross_probs, (*self_present, *cross_present)


class BlipTextEncoder(nn.Module):
    def __init__(self, config: BlipTextConfig):
        super().__init__()
        self.layer = nn.ModuleList([BlipTextLayer(config) for _ in range(config.num_hidden_layers)])

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        past_key_values: tuple[LayerCache, ...] | None = None,
        use_cache: bool = False,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ):
        all_hidden = (hidden_states,) if output_hidden_states else None
        all_self = () if output_attentions else None
        all_cross = () if output_attentions and encoder_hidden_states is not None else None
        presents = () if use_cache else None
        for i, layer in enumerate(self.layer):
            past = past_key_values[i] if past_key_values is not None else None
            hidden_states, self_probs, cross_probs, present = layer(
                hidden_states,
                attention_mask,
                encoder_hidden_states,
                encoder_attention_mask,
                past,
                output_attentions,
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


class BlipTextModel(nn.Module):
    """BERT encoder; a decoder (causal self-attention) when called with ``is_decoder=True``."""

    config_class = BlipTextConfig

    def __init__(self, config: BlipTextConfig, add_pooling_layer: bool = True):
        super().__init__()
        self.config = config
        self.embeddings = BlipTextEmbeddings(config)
        self.encoder = BlipTextEncoder(config)
        self.pooler = BlipTextPooler(config) if add_pooling_layer else None
        # Set by blip_torch.quantize on x86 CPUs for towers whose cross-attention reads image
        # states: the int8 graph of every layer's key/value projections
        # (blip_torch.quantization.Int8CrossKeyValues); not a submodule.
        self.int8_cross_kv = None

    def cross_key_values(self, states: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Every layer's cross-attention keys and values ``(B, heads, N, head_dim)`` for the
        encoder states ``(B, N, D_kv)`` (projected once, before decoding or ranking)."""
        graph = self.int8_cross_kv
        if graph is not None and graph.accepts(states):
            return graph(states)
        return [layer.crossattention.self.project_key_value(states) for layer in self.encoder.layer]

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings.word_embeddings = value

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        head_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        encoder_embeds: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        past_key_values: tuple[LayerCache, ...] | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        is_decoder: bool = False,
    ) -> BaseModelOutputWithPoolingAndCrossAttentions:
        """``input_ids`` ``(B, T)``; ``encoder_hidden_states`` ``(B, N, D_enc)`` for cross-attention."""
        if head_mask is not None:
            raise NotImplementedError("head_mask is not supported")
        if input_ids is not None and inputs_embeds is not None:
            raise ValueError("You cannot specify both input_ids and inputs_embeds at the same time")
        if input_ids is not None:
            batch, length = input_ids.shape
            device = input_ids.device
        elif inputs_embeds is not None:
            batch, length = inputs_embeds.shape[:2]
            device = inputs_embeds.device
        elif encoder_embeds is not None:
            batch, length = encoder_embeds.shape[:2]
            device = encoder_embeds.device
        else:
            raise ValueError(
                "You have to specify either input_ids or inputs_embeds or encoder_embeds"
            )
        use_cache = bool(use_cache) and is_decoder
        dtype = self.embeddings.word_embeddings.weight.dtype
        if isinstance(past_key_values, SlotCache):
            if attention_mask is None or position_ids is None or not is_decoder:
                raise ValueError(
                    "a SlotCache needs is_decoder=True, attention_mask (N, C) over its slots "
                    "and position_ids"
                )
            extended_mask = slot_attention_mask(attention_mask, past_key_values.slots, dtype)
            past_key_values, past_length = past_key_values.layer_caches(), 0
        else:
            past_length = past_key_values[0][0].shape[2] if past_key_values is not None else 0
            if attention_mask is None:
                attention_mask = torch.ones((batch, past_length + length), device=device)
            extended_mask = self_attention_mask(attention_mask, length, is_decoder, dtype)
        encoder_mask = None
        if encoder_hidden_states is not None or (
            past_key_values is not None and past_key_values[0][2] is not None
        ):
            if encoder_attention_mask is None:
                enc_len = (
                    encoder_hidden_states.shape[1]
                    if encoder_hidden_states is not None
                    else past_key_values[0][2].shape[2]
                )
                encoder_attention_mask = torch.ones((batch, enc_len), device=device)
            if not self.config.ignore_encoder_attention_mask:
                encoder_mask = cross_attention_mask(encoder_attention_mask, dtype)
        if encoder_embeds is None:
            embedding_output = self.embeddings(input_ids, position_ids, inputs_embeds, past_length)
        else:
            embedding_output = encoder_embeds
        sequence_output, presents, all_hidden, all_self, all_cross = self.encoder(
            embedding_output,
            extended_mask,
            encoder_hidden_states,
            encoder_mask,
            past_key_values,
            use_cache,
            bool(output_attentions),
            bool(output_hidden_states),
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


class BlipTextLMHeadModel(nn.Module):
    """Causal text decoder with an LM head whose weight is the word-embedding matrix (tied)."""

    config_class = BlipTextConfig

    def __init__(self, config: BlipTextConfig, tie_word_embeddings: bool = True):
        super().__init__()
        self.config = config
        self.bert = BlipTextModel(config, add_pooling_layer=False)
        self.cls = BlipTextOnlyMLMHead(config)
        self.label_smoothing = config.label_smoothing
        if tie_word_embeddings:
            self.tie_weights()

    def tie_weights(self) -> None:
        self.cls.predictions.decoder.weight = self.bert.embeddings.word_embeddings.weight

    def get_input_embeddings(self) -> nn.Embedding:
        return self.bert.get_input_embeddings()

    def get_output_embeddings(self) -> nn.Linear:
        return self.cls.predictions.decoder

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        head_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        past_key_values: tuple[LayerCache, ...] | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        return_logits: bool = False,
        is_decoder: bool = True,
        reduction: str = "mean",
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
        )
        logits = self.cls(outputs.last_hidden_state)  # (B, T, vocab)
        if return_logits:
            return logits[:, :-1, :].contiguous()
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
