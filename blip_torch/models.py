"""The BLIP task models (PyTorch), with the API of the transformers BLIP classes."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from blip_core.config import BlipConfig, BlipTextConfig, BlipVisionConfig, enc_token_id
from blip_core.generation import (
    GenerationConfig,
    answer_prompts,
    blip_generation_config,
    caption_prompts,
    generate_ids,
    pad_sequences,
    sequence_log_likelihood,
)
from blip_core.outputs import (
    BlipForConditionalGenerationModelOutput,
    BlipImageTextMatchingModelOutput,
    BlipOutput,
    BlipTextVisionModelOutput,
)
from blip_core.retrieval import RankResult, itc_top_k, rerank
from blip_torch.checkpoint import PreTrainedMixin
from blip_torch.generation import TorchDecoderSession
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

    def __init__(self, config: BlipConfig):
        super().__init__()
        if not isinstance(config, BlipConfig):
            raise TypeError(
                f"{type(self).__name__} expects a BlipConfig, got {type(config).__name__}"
            )
        self.config = config

    def _generation_config(self, generation_config, kwargs) -> GenerationConfig:
        """The model's generation settings, with BLIP's ids: ``[SEP]`` ends, ``[PAD]`` pads."""
        return blip_generation_config(
            getattr(self, "generation_config", None),
            self.config.text_config,
            generation_config,
            kwargs,
        )

    def _decode(self, encoder_states, encoder_mask, prompts, config) -> torch.Tensor:
        def open_session(expansion: int) -> TorchDecoderSession:
            return TorchDecoderSession(self.text_decoder, encoder_states, encoder_mask, expansion)

        ids = generate_ids(open_session, prompts, config)
        return torch.from_numpy(pad_sequences(ids, config.pad_token_id)).to(encoder_states.device)

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


class BlipForConditionalGeneration(BlipPreTrainedModel):
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

    @torch.no_grad()
    def generate(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        interpolate_pos_encoding: bool = False,
        generation_config: GenerationConfig | None = None,
        **generate_kwargs,
    ) -> torch.LongTensor:
        """Caption images ``(B, 3, H, W)``; returns ids ``(B * num_return_sequences, T)``.

        ``input_ids``/``attention_mask`` (the processor's right-padded output) give a prompt per
        row: token 0 becomes ``[DEC]`` and its trailing ``[SEP]`` is dropped.  Each output row is
        ``[DEC]`` + prompt + generated tokens (ending with ``[SEP]``), right-padded with
        ``[PAD]``.  Settings: see :class:`blip_core.generation.GenerationConfig`.
        """
        config = self._generation_config(generation_config, generate_kwargs)
        image_embeds = self.vision_model(
            pixel_values=pixel_values, interpolate_pos_encoding=interpolate_pos_encoding
        ).last_hidden_state
        text = self.config.text_config
        prompts = caption_prompts(
            None if input_ids is None else input_ids.cpu().numpy(),
            None if attention_mask is None else attention_mask.cpu().numpy(),
            image_embeds.shape[0],
            text.bos_token_id,
            text.sep_token_id,
        )
        return self._decode(image_embeds, None, prompts, config)


class BlipForQuestionAnswering(BlipPreTrainedModel):
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

    def _encode_question(
        self, input_ids, pixel_values, attention_mask, interpolate_pos_encoding, use_enc_token
    ):
        input_ids = with_enc_token(input_ids, self.config, use_enc_token)
        image_embeds = self.vision_model(
            pixel_values=pixel_values, interpolate_pos_encoding=interpolate_pos_encoding
        ).last_hidden_state
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        question = self.text_encoder(
            input_ids=input_ids,
            attention_mask=attention_mask,
            encoder_hidden_states=image_embeds,
            encoder_attention_mask=_ones_mask(image_embeds),
        ).last_hidden_state
        return question, attention_mask

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor,
        pixel_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        interpolate_pos_encoding: bool = False,
        generation_config: GenerationConfig | None = None,
        use_enc_token: bool = False,
        **generate_kwargs,
    ) -> torch.LongTensor:
        """Answer questions ``input_ids`` ``(B, T)`` about images; returns answer ids from ``[DEC]``.

        The answer decoder cross-attends to the question states with the question's padding
        masked (transformers attends to it; ``text_config.ignore_encoder_attention_mask=True``
        reproduces that).
        """
        config = self._generation_config(generation_config, generate_kwargs)
        if isinstance(input_ids, list):
            input_ids = torch.tensor(input_ids)
        question, mask = self._encode_question(
            input_ids, pixel_values, attention_mask, interpolate_pos_encoding, use_enc_token
        )
        prompts = [[self.config.text_config.bos_token_id] for _ in range(question.shape[0])]
        return self._decode(question, mask, prompts, config)

    @torch.no_grad()
    def rank_answers(
        self,
        input_ids: torch.Tensor,
        pixel_values: torch.Tensor,
        answer_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        answer_attention_mask: torch.Tensor | None = None,
        interpolate_pos_encoding: bool = False,
        use_enc_token: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Score candidate answers by decoder log-likelihood (the original BLIP's ``rank``).

        ``answer_ids`` ``(A, T)``: tokenized candidates (``[CLS] answer [SEP]``, right-padded;
        token 0 becomes ``[DEC]``).  Returns ``scores`` ``(B, A)`` — the summed log-probability
        of each answer's tokens after ``[DEC]``, ``[SEP]`` included — and ``ranking`` ``(B, A)``,
        candidate indices best first.  The question is encoded once and its cross-attention
        keys/values are projected once, shared by all candidates.
        """
        question, mask = self._encode_question(
            input_ids, pixel_values, attention_mask, interpolate_pos_encoding, use_enc_token
        )
        ids, amask = answer_prompts(
            answer_ids.cpu().numpy(),
            None if answer_attention_mask is None else answer_attention_mask.cpu().numpy(),
            self.config.text_config.bos_token_id,
        )
        batch, num = question.shape[0], ids.shape[0]
        session = TorchDecoderSession(self.text_decoder, question, mask, expansion=num)
        tiled_ids, tiled_mask = np.tile(ids, (batch, 1)), np.tile(amask, (batch, 1))
        log_probs = session.log_probs(tiled_ids, tiled_mask).cpu().numpy()
        scores = sequence_log_likelihood(log_probs, tiled_ids, tiled_mask).reshape(batch, num)
        ranking = np.argsort(-scores, axis=1, kind="stable")
        return torch.from_numpy(scores), torch.from_numpy(ranking)


class BlipForImageTextRetrieval(BlipPreTrainedModel):
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

    # -- retrieval: embeddings computed once, ITC shortlist, ITM re-rank -------------------------

    @torch.no_grad()
    def encode_images(
        self, pixel_values: torch.Tensor, interpolate_pos_encoding: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """ITC image embeddings ``(N, D_itc)`` (L2-normalised) and the image states
        ``(N, L, D_vision)`` the ITM head needs; keep both to query many times."""
        states = self.vision_model(
            pixel_values=pixel_values, interpolate_pos_encoding=interpolate_pos_encoding
        ).last_hidden_state
        return F.normalize(self.vision_proj(states[:, 0, :]), dim=-1), states

    @torch.no_grad()
    def encode_texts(self, input_ids: torch.Tensor, attention_mask=None) -> torch.Tensor:
        """ITC text embeddings ``(M, D_itc)`` (L2-normalised; unimodal text encoder, [CLS])."""
        states = self.text_encoder(input_ids=input_ids, attention_mask=attention_mask)
        return F.normalize(self.text_proj(states.last_hidden_state[:, 0, :]), dim=-1)

    @torch.no_grad()
    def itm_probability(
        self,
        image_states: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        use_enc_token: bool = False,
    ) -> torch.Tensor:
        """Match probability ``(P,)`` of image ``i`` with text ``i``.

        ``image_states`` ``(P, L, D)`` or ``(1, L, D)``: one image against ``P`` texts projects
        its cross-attention keys/values once and shares them (no per-pair image copies).
        """
        input_ids = with_enc_token(input_ids, self.config, use_enc_token)
        layers = self.text_encoder.encoder.layer
        rows = input_ids.shape[0]
        past = []
        for layer in layers:
            k, v = layer.crossattention.self.project_key_value(image_states)
            if k.shape[0] != rows:
                k, v = k.expand(rows, -1, -1, -1), v.expand(rows, -1, -1, -1)
            empty = k[:, :, :0, :]
            past.append((empty, empty, k, v))
        states = self.text_encoder(
            input_ids=input_ids,
            attention_mask=attention_mask,
            encoder_attention_mask=torch.ones(
                (rows, image_states.shape[1]), dtype=torch.long, device=input_ids.device
            ),
            past_key_values=tuple(past),
        ).last_hidden_state
        return torch.softmax(self.itm_head(states[:, 0, :]).float(), dim=-1)[:, 1]

    def rank_texts(
        self,
        image_embeds: torch.Tensor,
        image_states: torch.Tensor,
        text_embeds: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        k: int = 16,
        use_enc_token: bool = False,
    ) -> RankResult:
        """One image (``image_embeds`` ``(D,)``/``(1, D)``, ``image_states`` ``(1, L, D)``)
        against a text collection: ITC top-``k``, then ITM re-rank of those ``k``."""
        idx, itc = itc_top_k(image_embeds.reshape(-1).cpu().numpy(), text_embeds.cpu().numpy(), k)
        sel = torch.from_numpy(idx).to(input_ids.device)
        mask = None if attention_mask is None else attention_mask.index_select(0, sel)
        itm = self.itm_probability(
            image_states, input_ids.index_select(0, sel), mask, use_enc_token
        )
        return rerank(idx, itc, itm.cpu().numpy())

    def rank_images(
        self,
        text_embeds: torch.Tensor,
        input_ids: torch.Tensor,
        image_embeds: torch.Tensor,
        image_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        k: int = 16,
        use_enc_token: bool = False,
    ) -> RankResult:
        """One text (``text_embeds`` ``(D,)``, ``input_ids`` ``(1, T)``) against an image
        collection (``image_embeds`` ``(N, D)``, ``image_states`` ``(N, L, D)``)."""
        idx, itc = itc_top_k(text_embeds.reshape(-1).cpu().numpy(), image_embeds.cpu().numpy(), k)
        sel = torch.from_numpy(idx).to(image_states.device)
        rows = len(idx)
        ids = input_ids.reshape(1, -1).expand(rows, -1)
        mask = None if attention_mask is None else attention_mask.reshape(1, -1).expand(rows, -1)
        itm = self.itm_probability(image_states.index_select(0, sel), ids, mask, use_enc_token)
        return rerank(idx, itc, itm.cpu().numpy())
