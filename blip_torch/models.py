"""The BLIP task models (PyTorch), with the API of the transformers BLIP classes."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from blip_core.config import BlipConfig, BlipTextConfig, BlipVisionConfig, enc_token_id
from blip_core.outputs import (
    BlipForConditionalGenerationModelOutput,
    BlipImageTextMatchingModelOutput,
    BlipOutput,
    BlipTextVisionModelOutput,
)
from blip_core.tasks import CaptioningTasks, QuestionAnsweringTasks, RetrievalTasks
from blip_torch.adapter import BACKEND
from blip_torch.checkpoint import PreTrainedMixin
from blip_torch.text import BlipTextLMHeadModel as _TextLMHead
from blip_torch.text import BlipTextModel as _TextModel
from blip_torch.vision import BlipVisionModel as _VisionModel


class BlipVisionModel(PreTrainedMixin, _VisionModel):
    config_class = BlipVisionConfig


class BlipTextModel(PreTrainedMixin, _TextModel):
    config_class = BlipTextConfig


class BlipTextLMHeadModel(PreTrainedMixin, _TextLMHead):
    config_class = BlipTextConfig


def _contrastive_loss(logits: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, torch.arange(len(logits), device=logits.device))


def blip_loss(similarity: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE over a ``(B_txt, B_img)`` similarity matrix."""
    return (_contrastive_loss(similarity) + _contrastive_loss(similarity.t())) / 2.0


def _ones_mask(states: torch.Tensor) -> torch.Tensor:
    return torch.ones(states.shape[:-1], dtype=torch.long, device=states.device)


def with_enc_token(input_ids: torch.Tensor, config: BlipConfig, use_enc_token: bool):
    """Image-grounded encoding as the original BLIP: ``[ENC]`` replaces ``[CLS]`` at position 0.
    Off by default (transformers' numbers)."""
    if not use_enc_token:
        return input_ids
    input_ids = input_ids.clone()
    input_ids[:, 0] = enc_token_id(config)
    return input_ids


class BlipPreTrainedModel(PreTrainedMixin, nn.Module):
    config_class = BlipConfig
    backend = BACKEND

    def __init__(self, config: BlipConfig):
        super().__init__()
        if not isinstance(config, BlipConfig):
            raise TypeError(
                f"{type(self).__name__} expects a BlipConfig, got {type(config).__name__}"
            )
        self.config = config

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype


class BlipModel(BlipPreTrainedModel):
    """CLIP-style contrastive image-text model (``logits_per_image``/``logits_per_text``)."""

    def __init__(self, config: BlipConfig):
        super().__init__(config)
        self.text_model = _TextModel(config.text_config)
        self.vision_model = _VisionModel(config.vision_config)
        self.visual_projection = nn.Linear(
            config.vision_config.hidden_size, config.projection_dim, bias=False
        )
        self.text_projection = nn.Linear(
            config.text_config.hidden_size, config.projection_dim, bias=False
        )
        self.logit_scale = nn.Parameter(torch.tensor(config.logit_scale_init_value))

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

    def forward(
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
    ) -> BlipOutput:
        vision_outputs = self.vision_model(
            pixel_values=pixel_values,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            interpolate_pos_encoding=interpolate_pos_encoding,
        )
        text_outputs = self.text_model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        image_embeds = self.visual_projection(vision_outputs.pooler_output)
        text_embeds = self.text_projection(text_outputs.pooler_output)
        image_embeds = image_embeds / image_embeds.norm(p=2, dim=-1, keepdim=True)
        text_embeds = text_embeds / text_embeds.norm(p=2, dim=-1, keepdim=True)
        logits_per_text = torch.matmul(text_embeds, image_embeds.t()) * self.logit_scale.exp()
        loss = blip_loss(logits_per_text) if return_loss else None
        out = BlipOutput(
            loss=loss,
            logits_per_image=logits_per_text.t(),
            logits_per_text=logits_per_text,
            text_embeds=text_embeds,
            image_embeds=image_embeds,
            text_model_output=text_outputs,
            vision_model_output=vision_outputs,
        )
        return out if return_dict is not False else out.to_tuple()


class BlipForConditionalGeneration(CaptioningTasks, BlipPreTrainedModel):
    """Image captioning: ViT encoder + causal text decoder cross-attending to the image."""

    main_input_name = "pixel_values"

    def __init__(self, config: BlipConfig):
        super().__init__(config)
        self.vision_model = _VisionModel(config.vision_config)
        self.text_decoder = _TextLMHead(config.text_config)
        self.decoder_input_ids = config.text_config.bos_token_id
        self.decoder_pad_token_id = config.text_config.pad_token_id

    def get_input_embeddings(self) -> nn.Embedding:
        return self.text_decoder.get_input_embeddings()

    def forward(
        self,
        pixel_values,
        input_ids=None,
        attention_mask=None,
        labels=None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        interpolate_pos_encoding: bool = False,
    ) -> BlipForConditionalGenerationModelOutput:
        vision_outputs = self.vision_model(
            pixel_values=pixel_values,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            interpolate_pos_encoding=interpolate_pos_encoding,
        )
        image_embeds = vision_outputs.last_hidden_state
        outputs = self.text_decoder(
            input_ids=input_ids,
            attention_mask=attention_mask,
            encoder_hidden_states=image_embeds,
            labels=labels,
            reduction="mean",
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


class BlipForQuestionAnswering(QuestionAnsweringTasks, BlipPreTrainedModel):
    """VQA: the question is encoded against the image, the answer decoded against the question."""

    def __init__(self, config: BlipConfig):
        super().__init__(config)
        self.vision_model = _VisionModel(config.vision_config)
        self.text_encoder = _TextModel(config.text_config, add_pooling_layer=False)
        self.text_decoder = _TextLMHead(config.text_config)
        self.decoder_pad_token_id = config.text_config.pad_token_id
        self.decoder_start_token_id = config.text_config.bos_token_id

    def get_input_embeddings(self) -> nn.Embedding:
        return self.text_encoder.get_input_embeddings()

    def forward(
        self,
        input_ids,
        pixel_values,
        decoder_input_ids=None,
        decoder_attention_mask=None,
        attention_mask=None,
        labels=None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        interpolate_pos_encoding: bool = False,
        use_enc_token: bool = False,
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
        )
        image_embeds = vision_outputs.last_hidden_state
        question_embeds = self.text_encoder(
            input_ids=with_enc_token(input_ids, self.config, use_enc_token),
            attention_mask=attention_mask,
            encoder_hidden_states=image_embeds,
            encoder_attention_mask=_ones_mask(image_embeds),
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
        )
        loss = answer_output.loss.mean() if labels is not None else None
        out = BlipTextVisionModelOutput(
            loss=loss,
            image_embeds=image_embeds,
            last_hidden_state=vision_outputs.last_hidden_state,
            hidden_states=vision_outputs.hidden_states,
            attentions=vision_outputs.attentions,
        )
        return out if return_dict is not False else out.to_tuple()


class BlipForImageTextRetrieval(RetrievalTasks, BlipPreTrainedModel):
    """Image-text matching (ITM head) and contrastive similarity (ITC projections)."""

    def __init__(self, config: BlipConfig):
        super().__init__(config)
        self.vision_model = _VisionModel(config.vision_config)
        self.text_encoder = _TextModel(config.text_config, add_pooling_layer=False)
        self.vision_proj = nn.Linear(
            config.vision_config.hidden_size, config.image_text_hidden_size
        )
        self.text_proj = nn.Linear(config.text_config.hidden_size, config.image_text_hidden_size)
        self.itm_head = nn.Linear(config.text_config.hidden_size, 2)
        self.decoder_pad_token_id = config.text_config.pad_token_id
        self.decoder_start_token_id = config.text_config.bos_token_id

    def get_input_embeddings(self) -> nn.Embedding:
        return self.text_encoder.get_input_embeddings()

    def forward(
        self,
        input_ids,
        pixel_values,
        use_itm_head: bool = True,
        attention_mask=None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        interpolate_pos_encoding: bool = False,
        use_enc_token: bool = False,
    ) -> BlipImageTextMatchingModelOutput:
        vision_outputs = self.vision_model(
            pixel_values=pixel_values,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            interpolate_pos_encoding=interpolate_pos_encoding,
        )
        image_embeds = vision_outputs.last_hidden_state
        if use_itm_head:
            question_embeds = self.text_encoder(
                input_ids=with_enc_token(input_ids, self.config, use_enc_token),
                attention_mask=attention_mask,
                encoder_hidden_states=image_embeds,
                encoder_attention_mask=_ones_mask(image_embeds),
            ).last_hidden_state
            output = self.itm_head(question_embeds[:, 0, :])  # (B, 2)
        else:
            question_embeds = self.text_encoder(
                input_ids=input_ids, attention_mask=attention_mask
            ).last_hidden_state
            image_feat = F.normalize(self.vision_proj(image_embeds[:, 0, :]), dim=-1)
            text_feat = F.normalize(self.text_proj(question_embeds[:, 0, :]), dim=-1)
            output = image_feat @ text_feat.t()  # (B_img, B_txt) cosine
        out = BlipImageTextMatchingModelOutput(
            itm_score=output,
            last_hidden_state=vision_outputs.last_hidden_state,
            hidden_states=vision_outputs.hidden_states,
            attentions=vision_outputs.attentions,
            question_embeds=question_embeds,
        )
        return out if return_dict is not False else out.to_tuple()
