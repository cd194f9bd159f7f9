"""The BLIP task models (Keras 3), with the API of the transformers BLIP classes."""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from blip_core.config import BlipConfig, enc_token_id
from blip_core.tasks import CaptioningTasks, QuestionAnsweringTasks, RetrievalTasks
from blip_tf.adapter import BACKEND, l2_normalize
from blip_tf.checkpoint import PreTrainedMixin, child_scope, dense, unpack_inputs
from blip_tf.outputs import (
    BlipForConditionalGenerationModelOutput,
    BlipImageTextMatchingModelOutput,
    BlipOutput,
    BlipTextVisionModelOutput,
)
from blip_tf.text import BlipTextLMHeadModel, BlipTextModel, lm_loss
from blip_tf.vision import BlipVisionModel


def _contrastive_loss(logits):
    """``F.cross_entropy(logits, arange(len(logits)))``: row i's target is column i."""
    log_probs = ops.log_softmax(ops.cast(logits, "float32"), axis=-1)
    rows = ops.arange(ops.shape(logits)[0])
    return -ops.mean(ops.take_along_axis(log_probs, rows[:, None], axis=1))


def blip_loss(similarity):
    """Symmetric InfoNCE over a ``(B_txt, B_img)`` similarity matrix."""
    return (_contrastive_loss(similarity) + _contrastive_loss(ops.transpose(similarity))) / 2.0


def _ones_mask(states):
    return ops.ones(ops.shape(states)[:2], dtype="int32")


def with_enc_token(input_ids, config: BlipConfig, use_enc_token: bool):
    """Image-grounded encoding as the original BLIP: ``[ENC]`` replaces ``[CLS]`` at position 0.
    Off by default (transformers' numbers).  The caller's ids are not modified."""
    if not use_enc_token:
        return input_ids
    input_ids = tf.convert_to_tensor(input_ids)
    first = tf.fill(tf.shape(input_ids[:, :1]), tf.cast(enc_token_id(config), input_ids.dtype))
    return tf.concat([first, input_ids[:, 1:]], axis=1)


class BlipPreTrainedModel(PreTrainedMixin, keras.Model):
    config_class = BlipConfig
    backend = BACKEND

    def __init__(self, config: BlipConfig, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(config, BlipConfig):
            raise TypeError(
                f"{type(self).__name__} expects a BlipConfig, got {type(config).__name__}"
            )
        self.config = config


@keras.saving.register_keras_serializable(package="blip_tf")
class BlipModel(BlipPreTrainedModel):
    """CLIP-style contrastive image-text model (``logits_per_image``/``logits_per_text``)."""

    def __init__(self, config: BlipConfig, **kwargs):
        super().__init__(config, **kwargs)
        with child_scope(self):
            self.text_model = BlipTextModel(config.text_config, name="text_model")
            self.vision_model = BlipVisionModel(config.vision_config, name="vision_model")
        self.visual_projection = dense(config.projection_dim, 0.02, "visual_projection", False)
        self.text_projection = dense(config.projection_dim, 0.02, "text_projection", False)
        self.build()

    def build(self, input_shape=None):
        self.visual_projection.build((None, self.config.vision_config.hidden_size))
        self.text_projection.build((None, self.config.text_config.hidden_size))
        self.logit_scale = self.add_weight(
            shape=(),
            initializer=keras.initializers.Constant(self.config.logit_scale_init_value),
            name="logit_scale",
        )

    def get_text_features(self, input_ids=None, attention_mask=None, position_ids=None):
        """Projected (not normalised) text features ``(B, projection_dim)``."""
        out = self.text_model(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids
        )
        return self.text_projection(out.pooler_output)

    def get_image_features(self, pixel_values=None, interpolate_pos_encoding: bool = False):
        """Projected (not normalised) image features ``(B, projection_dim)``."""
        out = self.vision_model(
            pixel_values=pixel_values, interpolate_pos_encoding=interpolate_pos_encoding
        )
        return self.visual_projection(out.pooler_output)

    def get_multimodal_features(
        self, input_ids=None, pixel_values=None, attention_mask=None, interpolate_pos_encoding=False
    ):
        image_embeds = self.vision_model(
            pixel_values=pixel_values, interpolate_pos_encoding=interpolate_pos_encoding
        ).last_hidden_state
        out = self.text_model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            encoder_hidden_states=image_embeds,
            encoder_attention_mask=_ones_mask(image_embeds),
        )
        return self.text_projection(out.pooler_output)

    @unpack_inputs
    def call(
        self,
        input_ids=None,
        pixel_values=None,
        attention_mask=None,
        position_ids=None,
        return_loss: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        interpolate_pos_encoding: bool = False,
        training=None,
    ) -> BlipOutput:
        vision_outputs = self.vision_model(
            pixel_values=pixel_values,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            interpolate_pos_encoding=interpolate_pos_encoding,
            training=training,
        )
        text_outputs = self.text_model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            training=training,
        )
        image_embeds = l2_normalize(self.visual_projection(vision_outputs.pooler_output))
        text_embeds = l2_normalize(self.text_projection(text_outputs.pooler_output))
        logits_per_text = ops.matmul(text_embeds, ops.transpose(image_embeds)) * ops.exp(
            self.logit_scale
        )
        loss = blip_loss(logits_per_text) if return_loss else None
        out = BlipOutput(
            loss=loss,
            logits_per_image=ops.transpose(logits_per_text),
            logits_per_text=logits_per_text,
            text_embeds=text_embeds,
            image_embeds=image_embeds,
            text_model_output=text_outputs,
            vision_model_output=vision_outputs,
        )
        return out if return_dict is not False else out.to_tuple()


@keras.saving.register_keras_serializable(package="blip_tf")
class BlipForConditionalGeneration(CaptioningTasks, BlipPreTrainedModel):
    """Image captioning: ViT encoder + causal text decoder cross-attending to the image."""

    main_input_name = "pixel_values"

    def __init__(self, config: BlipConfig, **kwargs):
        super().__init__(config, **kwargs)
        with child_scope(self):
            self.vision_model = BlipVisionModel(config.vision_config, name="vision_model")
            self.text_decoder = BlipTextLMHeadModel(config.text_config, name="text_decoder")
        self.decoder_input_ids = config.text_config.bos_token_id
        self.decoder_pad_token_id = config.text_config.pad_token_id
        self.build()

    def build(self, input_shape=None):
        pass  # every weight belongs to the two child models, built above

    def get_input_embeddings(self) -> keras.layers.Embedding:
        return self.text_decoder.get_input_embeddings()

    def loss_from_labels(self, outputs, labels):
        return lm_loss(outputs.logits, labels, self.text_decoder.label_smoothing)

    @unpack_inputs
    def call(
        self,
        pixel_values=None,
        input_ids=None,
        attention_mask=None,
        labels=None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        interpolate_pos_encoding: bool = False,
        training=None,
    ) -> BlipForConditionalGenerationModelOutput:
        vision_outputs = self.vision_model(
            pixel_values=pixel_values,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            interpolate_pos_encoding=interpolate_pos_encoding,
            training=training,
        )
        image_embeds = vision_outputs.last_hidden_state
        outputs = self.text_decoder(
            input_ids=input_ids,
            attention_mask=attention_mask,
            encoder_hidden_states=image_embeds,
            labels=labels,
            reduction="mean",
            training=training,
        )
        out = BlipForConditionalGenerationModelOutput(
            loss=outputs.loss,
            logits=outputs.logits,
            image_embeds=image_embeds,
            last_hidden_state=vision_outputs.last_hidden_state,
            hidden_states=vision_outputs.hidden_states,
            attentions=vision_outputs.attentions,
        )
        return out if return_dict is not False else out.to_tuple()


@keras.saving.register_keras_serializable(package="blip_tf")
class BlipForQuestionAnswering(QuestionAnsweringTasks, BlipPreTrainedModel):
    """VQA: the question is encoded against the image, the answer decoded against the question."""

    def __init__(self, config: BlipConfig, **kwargs):
        super().__init__(config, **kwargs)
        with child_scope(self):
            self.vision_model = BlipVisionModel(config.vision_config, name="vision_model")
            self.text_encoder = BlipTextModel(
                config.text_config, add_pooling_layer=False, name="text_encoder"
            )
            self.text_decoder = BlipTextLMHeadModel(config.text_config, name="text_decoder")
        self.decoder_pad_token_id = config.text_config.pad_token_id
        self.decoder_start_token_id = config.text_config.bos_token_id
        self.build()

    def build(self, input_shape=None):
        pass  # every weight belongs to the three child models, built above

    def get_input_embeddings(self) -> keras.layers.Embedding:
        return self.text_encoder.get_input_embeddings()

    @unpack_inputs
    def call(
        self,
        input_ids=None,
        pixel_values=None,
        decoder_input_ids=None,
        decoder_attention_mask=None,
        attention_mask=None,
        labels=None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        interpolate_pos_encoding: bool = False,
        use_enc_token: bool = False,
        training=None,
    ) -> BlipTextVisionModelOutput:
        if labels is None and decoder_input_ids is None:
            raise ValueError(
                "Either `decoder_input_ids` or `labels` should be passed when calling forward on "
                "BlipForQuestionAnswering (labels for training, decoder_input_ids for scoring; use "
                "generate() to answer)"
            )
        vision_outputs = self.vision_model(
            pixel_values=pixel_values,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            interpolate_pos_encoding=interpolate_pos_encoding,
            training=training,
        )
        image_embeds = vision_outputs.last_hidden_state
        question_embeds = self.text_encoder(
            input_ids=with_enc_token(input_ids, self.config, use_enc_token),
            attention_mask=attention_mask,
            encoder_hidden_states=image_embeds,
            encoder_attention_mask=_ones_mask(image_embeds),
            training=training,
        ).last_hidden_state
        if labels is not None and decoder_input_ids is None:
            decoder_input_ids = labels  # labels are already shifted right, as in the reference
        answer_output = self.text_decoder(
            input_ids=decoder_input_ids,
            attention_mask=decoder_attention_mask,
            encoder_hidden_states=question_embeds,
            encoder_attention_mask=attention_mask,
            labels=labels,
            reduction="mean",
            training=training,
        )
        loss = ops.mean(answer_output.loss) if labels is not None else None
        out = BlipTextVisionModelOutput(
            loss=loss,
            image_embeds=image_embeds,
            last_hidden_state=vision_outputs.last_hidden_state,
            hidden_states=vision_outputs.hidden_states,
            attentions=vision_outputs.attentions,
        )
        return out if return_dict is not False else out.to_tuple()


@keras.saving.register_keras_serializable(package="blip_tf")
class BlipForImageTextRetrieval(RetrievalTasks, BlipPreTrainedModel):
    """Image-text matching (ITM head) and contrastive similarity (ITC projections)."""

    def __init__(self, config: BlipConfig, **kwargs):
        super().__init__(config, **kwargs)
        with child_scope(self):
            self.vision_model = BlipVisionModel(config.vision_config, name="vision_model")
            self.text_encoder = BlipTextModel(
                config.text_config, add_pooling_layer=False, name="text_encoder"
            )
        std = config.text_config.initializer_range
        self.vision_proj = dense(config.image_text_hidden_size, std, "vision_proj")
        self.text_proj = dense(config.image_text_hidden_size, std, "text_proj")
        self.itm_head = dense(2, std, "itm_head")
        self.decoder_pad_token_id = config.text_config.pad_token_id
        self.decoder_start_token_id = config.text_config.bos_token_id
        self.build()

    def build(self, input_shape=None):
        self.vision_proj.build((None, self.config.vision_config.hidden_size))
        self.text_proj.build((None, self.config.text_config.hidden_size))
        self.itm_head.build((None, self.config.text_config.hidden_size))

    def get_input_embeddings(self) -> keras.layers.Embedding:
        return self.text_encoder.get_input_embeddings()

    @unpack_inputs
    def call(
        self,
        input_ids=None,
        pixel_values=None,
        use_itm_head: bool = True,
        attention_mask=None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        interpolate_pos_encoding: bool = False,
        use_enc_token: bool = False,
        training=None,
    ) -> BlipImageTextMatchingModelOutput:
        vision_outputs = self.vision_model(
            pixel_values=pixel_values,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            interpolate_pos_encoding=interpolate_pos_encoding,
            training=training,
        )
        image_embeds = vision_outputs.last_hidden_state
        if use_itm_head:
            question_embeds = self.text_encoder(
                input_ids=with_enc_token(input_ids, self.config, use_enc_token),
                attention_mask=attention_mask,
                encoder_hidden_states=image_embeds,
                encoder_attention_mask=_ones_mask(image_embeds),
                training=training,
            ).last_hidden_state
            output = self.itm_head(question_embeds[:, 0, :])  # (B, 2)
        else:
            question_embeds = self.text_encoder(
                input_ids=input_ids, attention_mask=attention_mask, training=training
            ).last_hidden_state
            image_feat = l2_normalize(self.vision_proj(image_embeds[:, 0, :]), eps=1e-12)
            text_feat = l2_normalize(self.text_proj(question_embeds[:, 0, :]), eps=1e-12)
            output = ops.matmul(image_feat, ops.transpose(text_feat))  # (B_img, B_txt) cosine
        out = BlipImageTextMatchingModelOutput(
            itm_score=output,
            last_hidden_state=vision_outputs.last_hidden_state,
            hidden_states=vision_outputs.hidden_states,
            attentions=vision_outputs.attentions,
            question_embeds=question_embeds,
        )
        return out if return_dict is not False else out.to_tuple()


# Aliases for people coming from transformers' TF classes.
TFBlipModel = BlipModel
TFBlipForConditionalGeneration = BlipForConditionalGeneration
TFBlipForQuestionAnswering = BlipForQuestionAnswering
TFBlipForImageTextRetrieval = BlipForImageTextRetrieval
TFBlipVisionModel = BlipVisionModel
TFBlipTextModel = BlipTextModel
TFBlipTextLMHeadModel = BlipTextLMHeadModel

__all__ = [
    "BlipForConditionalGeneration",
    "BlipForImageTextRetrieval",
    "BlipForQuestionAnswering",
    "BlipModel",
    "BlipPreTrainedModel",
    "BlipTextLMHeadModel",
    "BlipTextModel",
    "BlipVisionModel",
    "TFBlipForConditionalGeneration",
    "TFBlipForImageTextRetrieval",
    "TFBlipForQuestionAnswering",
    "TFBlipModel",
    "TFBlipTextLMHeadModel",
    "TFBlipTextModel",
    "TFBlipVisionModel",
    "blip_loss",
    "enc_token_id",
    "with_enc_token",
]
