"""The BLIP task models on ONNX Runtime, with the API of the transformers BLIP classes.

``from_pretrained(OUT_DIR)`` reads a ``blip export --format onnx`` directory; the task methods
(``generate``, ``rank_answers``, ``encode_images``, ``rank_texts``, ...) come from
:mod:`blip_core.tasks`, and ``__call__`` returns the fields of blip_torch's ``forward`` as numpy
arrays.  Not available here: gradients, ``output_attentions`` / ``output_hidden_states``,
``interpolate_pos_encoding``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from blip_core.config import BlipConfig, load_config
from blip_core.constants import IGNORE_INDEX
from blip_core.generation import GENERATION_CONFIG_NAME, GenerationConfig
from blip_core.outputs import (
    BaseModelOutputWithPooling,
    BlipForConditionalGenerationModelOutput,
    BlipImageTextMatchingModelOutput,
    BlipTextVisionModelOutput,
)
from blip_core.tasks import CaptioningTasks, QuestionAnsweringTasks, RetrievalTasks
from blip_onnx.adapter import BACKEND
from blip_onnx.generation import OrtDecoderSession, log_softmax
from blip_onnx.runtime import ExportedModelError, open_graphs, read_manifest


class TextEncoder:
    """The text encoder's graphs: ``grounded`` (cross-attending to images) and ``unimodal``."""

    def __init__(self, grounded=None, unimodal=None):
        self.grounded, self.unimodal = grounded, unimodal


class TextDecoder:
    """The decoder's graphs: ``cross_kv`` (once per encoder state) and ``step`` (cached)."""

    def __init__(self, cross_kv, step, num_layers: int):
        self.cross_kv, self.step, self.num_layers = cross_kv, step, num_layers


def lm_loss(logits: np.ndarray, labels: np.ndarray, label_smoothing: float) -> np.float32:
    """blip_torch's next-token cross-entropy (mean over non-ignored targets, label smoothing)."""
    logp = log_softmax(logits[:, :-1, :]).astype(np.float64)
    targets = np.asarray(labels)[:, 1:]
    keep = targets != IGNORE_INDEX
    picked = np.take_along_axis(logp, np.where(keep, targets, 0)[..., None], axis=-1)[..., 0]
    loss = -(1.0 - label_smoothing) * picked - label_smoothing * logp.mean(axis=-1)
    return np.float32(loss[keep].sum() / max(int(keep.sum()), 1))


def _unsupported(**flags) -> None:
    for name, value in flags.items():
        if value:
            raise ValueError(f"{name}=True is not available in blip_onnx (not exported)")


def _ones(ids: np.ndarray, mask) -> np.ndarray:
    if mask is None:
        return np.ones(ids.shape, dtype=np.int64)
    return np.asarray(mask, dtype=np.int64)


class BlipOnnxModel:
    """An exported model: ``config``, ``generation_config``, one ONNX Runtime session per graph."""

    backend = BACKEND
    graph_names: tuple[str, ...] = ()
    config_class = BlipConfig
    main_input_name = "pixel_values"

    def __init__(self, config: BlipConfig, graphs: dict, manifest: dict):
        self.config, self.graphs, self.manifest = config, graphs, manifest
        self.vision_model = graphs.get("vision")
        if "decoder_step" in graphs:
            self.text_decoder = TextDecoder(
                graphs["decoder_cross_kv"], graphs["decoder_step"], manifest["num_decoder_layers"]
            )
        if "text_encoder" in graphs or "text_embeds" in graphs:
            self.text_encoder = TextEncoder(graphs.get("text_encoder"), graphs.get("text_embeds"))
        self.decoder_pad_token_id = config.text_config.pad_token_id
        self.decoder_start_token_id = config.text_config.bos_token_id

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        providers=None,
        threads: int | None = None,
    ):
        """Open the graphs of an exported directory; ``providers``: onnxruntime execution
        providers (default CPU), ``threads``: intra-op threads (default: onnxruntime's)."""
        directory = Path(pretrained_model_name_or_path)
        manifest = read_manifest(directory)
        exported = manifest.get("class")
        if cls.__name__ != "BlipVisionModel" and exported != cls.__name__:
            raise ExportedModelError(
                f"{directory}: holds an exported {exported}; load it with "
                f"blip_onnx.{exported} (or export a {cls.__name__} checkpoint)"
            )
        config = load_config(BlipConfig, directory)
        graphs = open_graphs(directory, manifest, cls.graph_names, providers, threads)
        model = cls(config, graphs, manifest)
        if (directory / GENERATION_CONFIG_NAME).is_file():
            model.generation_config = GenerationConfig.from_pretrained(directory)
        return model

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def _vision(self, pixel_values, interpolate_pos_encoding=False, **flags):
        _unsupported(interpolate_pos_encoding=interpolate_pos_encoding, **flags)
        pixels = np.asarray(pixel_values, dtype=np.float32)
        return self.vision_model.run({"pixel_values": pixels})

    @staticmethod
    def _finish(out, return_dict):
        return out if return_dict is not False else out.to_tuple()


class BlipVisionModel(BlipOnnxModel):
    """The vision tower of any export: ``last_hidden_state`` and ``pooler_output``."""

    graph_names = ("vision",)

    def forward(self, pixel_values, output_attentions=None, output_hidden_states=None,
                return_dict=None, interpolate_pos_encoding=False):  # fmt: skip
        out = self._vision(pixel_values, interpolate_pos_encoding,
                           output_attentions=output_attentions,
                           output_hidden_states=output_hidden_states)  # fmt: skip
        return self._finish(
            BaseModelOutputWithPooling(
                last_hidden_state=out["last_hidden_state"], pooler_output=out["pooler_output"]
            ),
            return_dict,
        )


class BlipForConditionalGeneration(CaptioningTasks, BlipOnnxModel):
    """Image captioning over the vision, ``decoder_cross_kv`` and ``decoder_step`` graphs."""

    graph_names = ("vision", "decoder_cross_kv", "decoder_step")

    def forward(self, pixel_values, input_ids=None, attention_mask=None, labels=None,
                output_attentions=None, output_hidden_states=None, return_dict=None,
                interpolate_pos_encoding=False):  # fmt: skip
        """Decoder logits ``(B, T, V)`` of ``input_ids`` against the images, the image states,
        and the loss when ``labels`` are given."""
        if input_ids is None:
            raise ValueError("input_ids is required (use generate() to caption)")
        states = self._vision(pixel_values, interpolate_pos_encoding,
                              output_attentions=output_attentions,
                              output_hidden_states=output_hidden_states)["last_hidden_state"]  # fmt: skip
        ids = np.asarray(input_ids, dtype=np.int64)
        session = OrtDecoderSession(self.text_decoder, states, None, 1)
        logits = session.logits(ids, _ones(ids, attention_mask))
        loss = None
        if labels is not None:
            loss = lm_loss(logits, labels, self.config.text_config.label_smoothing)
        out = BlipForConditionalGenerationModelOutput(
            loss=loss, logits=logits, image_embeds=states, last_hidden_state=states
        )
        return self._finish(out, return_dict)


class BlipForQuestionAnswering(QuestionAnsweringTasks, BlipOnnxModel):
    """VQA over the vision, grounded ``text_encoder`` and decoder graphs."""

    graph_names = ("vision", "text_encoder", "decoder_cross_kv", "decoder_step")

    def forward(self, input_ids, pixel_values, decoder_input_ids=None,
                decoder_attention_mask=None, attention_mask=None, labels=None,
                output_attentions=None, output_hidden_states=None, return_dict=None,
                interpolate_pos_encoding=False, use_enc_token=False):  # fmt: skip
        """The image states, and the answer loss when ``labels`` are given (as blip_torch)."""
        if labels is None and decoder_input_ids is None:
            raise ValueError(
                "Either `decoder_input_ids` or `labels` should be passed when calling forward on "
                "BlipForQuestionAnswering (labels for training, decoder_input_ids for scoring; use "
                "generate() to answer)"
            )
        states = self._vision(pixel_values, interpolate_pos_encoding,
                              output_attentions=output_attentions,
                              output_hidden_states=output_hidden_states)["last_hidden_state"]  # fmt: skip
        loss = None
        if labels is not None:
            ids = self._grounded_ids(np.asarray(input_ids, dtype=np.int64), use_enc_token)
            mask = _ones(ids, attention_mask)
            question = BACKEND.encode_text(self.text_encoder, ids, mask, states)
            session = OrtDecoderSession(self.text_decoder, question, mask, 1)
            answer = np.asarray(labels if decoder_input_ids is None else decoder_input_ids)
            logits = session.logits(answer, _ones(answer, decoder_attention_mask))
            loss = lm_loss(logits, labels, self.config.text_config.label_smoothing)
        out = BlipTextVisionModelOutput(loss=loss, image_embeds=states, last_hidden_state=states)
        return self._finish(out, return_dict)


class BlipForImageTextRetrieval(RetrievalTasks, BlipOnnxModel):
    """ITM / ITC over the vision, text-encoder, projection and ITM-head graphs."""

    graph_names = ("vision", "text_encoder", "text_embeds", "image_embeds", "itm_head")

    def forward(self, input_ids, pixel_values, use_itm_head=True, attention_mask=None,
                output_attentions=None, output_hidden_states=None, return_dict=None,
                interpolate_pos_encoding=False, use_enc_token=False):  # fmt: skip
        """``itm_score``: ITM logits ``(B, 2)`` (``use_itm_head``) or the ITC cosine matrix
        ``(B_img, B_txt)``; ``question_embeds``: the text encoder's states."""
        states = self._vision(pixel_values, interpolate_pos_encoding,
                              output_attentions=output_attentions,
                              output_hidden_states=output_hidden_states)["last_hidden_state"]  # fmt: skip
        ids = np.asarray(input_ids, dtype=np.int64)
        mask = _ones(ids, attention_mask)
        if use_itm_head:
            ids = self._grounded_ids(ids, use_enc_token)
            question = BACKEND.encode_text(self.text_encoder, ids, mask, states)
            score = self.graphs["itm_head"].run({"cls_states": question[:, 0, :]})["logits"]
        else:
            out = self.text_encoder.unimodal.run({"input_ids": ids, "attention_mask": mask})
            question = out["last_hidden_state"]
            image = BACKEND.itc_image(self, states)
            score = image @ out["text_embeds"].T
        out = BlipImageTextMatchingModelOutput(
            itm_score=score, last_hidden_state=states, question_embeds=question
        )
        return self._finish(out, return_dict)


__all__ = [
    "BlipForConditionalGeneration",
    "BlipForImageTextRetrieval",
    "BlipForQuestionAnswering",
    "BlipOnnxModel",
    "BlipVisionModel",
    "TextDecoder",
    "TextEncoder",
    "lm_loss",
]
