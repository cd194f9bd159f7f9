"""The BLIP tasks, written once: captioning, VQA, answer ranking, retrieval.

Each backend's public classes inherit these mixins and set ``backend`` to their
:class:`~blip_core.adapter.Backend`; the mixins hold the transformers BLIP API (names, arguments,
return values) and every decision — prompts, the search, ranking, argument checks — while the
adapter runs the tensor operations.  Outputs are the backend's tensors (``torch.Tensor``,
``tf.Tensor``, numpy for ONNX Runtime), as the transformers classes return them.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from blip_core import validation
from blip_core.config import enc_token_id
from blip_core.generation import (
    GenerationConfig,
    answer_prompts,
    blip_generation_config,
    caption_prompts,
    generate_ids,
    length_limits,
    pad_sequences,
    sequence_log_likelihood,
)
from blip_core.retrieval import RankResult, itc_top_k, rerank
from blip_core.scoring import decoder_scores


class TaskModel:
    """What every task mixin needs from the model class it is mixed into."""

    backend: Any  # a blip_core.adapter.Backend
    config: Any  # BlipConfig

    def _generation_config(self, generation_config, kwargs) -> GenerationConfig:
        """The model's generation settings, with BLIP's ids: ``[SEP]`` ends, ``[PAD]`` pads."""
        return blip_generation_config(
            getattr(self, "generation_config", None),
            self.config.text_config,
            generation_config,
            kwargs,
        )

    def _pixels(self, pixel_values, interpolate_pos_encoding: bool):
        """Check ``pixel_values`` and run the vision tower: states ``(B, L, D)``."""
        if isinstance(pixel_values, (list, tuple)):
            pixel_values = np.asarray(pixel_values, dtype=np.float32)
        vision = self.config.vision_config
        validation.pixel_array(
            pixel_values, vision.image_size, vision.patch_size, interpolate_pos_encoding
        )
        return self.backend.image_states(self, pixel_values, interpolate_pos_encoding)

    def _text_ids(self, name, ids, mask, mask_name="attention_mask"):
        text = self.config.text_config
        return validation.token_ids(
            name, self.backend.to_numpy(ids), text.vocab_size, text.max_position_embeddings,
            self.backend.to_numpy(mask), mask_name,
        )  # fmt: skip

    def _grounded_ids(self, input_ids: np.ndarray, use_enc_token: bool) -> np.ndarray:
        """Image-grounded text as the original BLIP when ``use_enc_token``: ``[ENC]`` replaces
        ``[CLS]`` at position 0.  Off by default (transformers' numbers)."""
        if not use_enc_token:
            return input_ids
        input_ids = input_ids.copy()
        input_ids[:, 0] = enc_token_id(self.config)
        return input_ids

    def _decode(self, encoder_states, encoder_mask, prompts, config: GenerationConfig):
        """Run the search over a decoder session; right-padded ids as the backend's tensor."""
        text = self.config.text_config
        widths = np.array([len(p) for p in prompts], dtype=np.int64)
        limit = text.max_position_embeddings
        if widths.max() >= limit:
            raise ValueError(
                f"the prompt has {int(widths.max())} tokens, which leaves no room in the "
                f"model's position table of {limit} (text_config.max_position_embeddings); "
                "use a shorter prompt"
            )
        max_lengths, _ = length_limits(config, widths)  # capped at the table
        uncapped = config.merged()
        uncapped.extra["_max_positions"] = None
        requested, _ = length_limits(uncapped, widths)
        explicit = config.max_new_tokens is not None or not config.extra.get(
            "_max_length_is_default"
        )
        if explicit and requested.max() > limit:
            warnings.warn(
                f"generation was asked to run to {int(requested.max())} tokens but the position "
                f"table holds {limit} (text_config.max_position_embeddings); stopping there",
                stacklevel=3,
            )
        # prompts are left-aligned to the widest, so a row may run past it by its new tokens
        capacity = int(widths.max() + (max_lengths - widths).max())

        def open_session(expansion: int):
            return self.backend.open_session(
                self.text_decoder, encoder_states, encoder_mask, expansion, capacity
            )

        ids = pad_sequences(generate_ids(open_session, prompts, config), config.pad_token_id)
        return self.backend.from_numpy(ids.astype(np.int64), like=encoder_states)


class CaptioningTasks(TaskModel):
    """``generate`` of ``BlipForConditionalGeneration``."""

    def generate(
        self,
        pixel_values,
        input_ids=None,
        attention_mask=None,
        interpolate_pos_encoding: bool = False,
        generation_config: GenerationConfig | None = None,
        **generate_kwargs,
    ):
        """Caption images ``(B, 3, H, W)``; returns int64 ids ``(B * num_return_sequences, T)``.

        ``input_ids``/``attention_mask`` (the processor's right-padded output) give a prompt per
        row (or one row for all images): token 0 becomes ``[DEC]`` and its trailing ``[SEP]`` is
        dropped.  Each output row is ``[DEC]`` + prompt + generated tokens (ending with
        ``[SEP]``), right-padded with ``[PAD]``.  Generation stops at the position table
        (``max_position_embeddings``) with a warning.  Settings: see
        :class:`blip_core.generation.GenerationConfig`.
        """
        return self._caption(
            pixel_values, input_ids, attention_mask, interpolate_pos_encoding,
            generation_config, generate_kwargs, scores=False,
        )  # fmt: skip

    def generate_with_scores(
        self,
        pixel_values,
        input_ids=None,
        attention_mask=None,
        interpolate_pos_encoding: bool = False,
        generation_config: GenerationConfig | None = None,
        **generate_kwargs,
    ):
        """:meth:`generate`, and each caption's confidence: ``(ids, scores)`` with ``scores``
        ``(B * num_return_sequences,)`` float32, the mean log-probability of the generated
        tokens (``[SEP]`` included, the prompt not; :mod:`blip_core.scoring`) under the decoder,
        over the same image states (the vision tower runs once)."""
        return self._caption(
            pixel_values, input_ids, attention_mask, interpolate_pos_encoding,
            generation_config, generate_kwargs, scores=True,
        )  # fmt: skip

    def _caption(self, pixel_values, input_ids, attention_mask, interpolate, gen, kwargs, scores):
        config = self._generation_config(gen, kwargs)
        with self.backend.inference():
            states = self._pixels(pixel_values, interpolate)
            batch = int(states.shape[0])
            ids = mask = None
            if input_ids is not None:
                ids = self._text_ids("input_ids", input_ids, attention_mask)
                mask = None if attention_mask is None else self.backend.to_numpy(attention_mask)
            text = self.config.text_config
            prompts = caption_prompts(ids, mask, batch, text.bos_token_id, text.sep_token_id)
            out = self._decode(states, None, prompts, config)
            if not scores:
                return out
            rows = self.backend.to_numpy(out)
            widths = np.repeat([len(p) for p in prompts], len(rows) // batch)
            conf = decoder_scores(self.backend, self.text_decoder, states, None, rows, widths, text)
        return out, self.backend.from_numpy(conf.astype(np.float32), like=states)


class QuestionAnsweringTasks(TaskModel):
    """``generate`` and ``rank_answers`` of ``BlipForQuestionAnswering``."""

    def _encode_question(
        self, input_ids, pixel_values, attention_mask, interpolate_pos_encoding, use_enc_token
    ):
        ids = self._text_ids("input_ids", input_ids, attention_mask)
        mask = np.ones_like(ids)
        if attention_mask is not None:
            mask = np.asarray(self.backend.to_numpy(attention_mask), dtype=np.int64).reshape(
                ids.shape
            )
        images = self._pixels(pixel_values, interpolate_pos_encoding)
        validation.same_rows("input_ids", len(ids), "pixel_values", int(images.shape[0]))
        ids = self._grounded_ids(ids, use_enc_token)
        like = images
        question = self.backend.encode_text(
            self.text_encoder,
            self.backend.from_numpy(ids, like=like),
            self.backend.from_numpy(mask, like=like),
            images,
        )
        return question, mask

    def generate(
        self,
        input_ids,
        pixel_values,
        attention_mask=None,
        interpolate_pos_encoding: bool = False,
        generation_config: GenerationConfig | None = None,
        use_enc_token: bool = False,
        **generate_kwargs,
    ):
        """Answer questions ``input_ids`` ``(B, T)`` about images; returns int64 answer ids from
        ``[DEC]``.

        The answer decoder cross-attends to the question states with the question's padding
        masked (transformers attends to it; ``text_config.ignore_encoder_attention_mask=True``
        reproduces that).
        """
        return self._answer(
            input_ids, pixel_values, attention_mask, interpolate_pos_encoding,
            generation_config, use_enc_token, generate_kwargs, scores=False,
        )  # fmt: skip

    def generate_with_scores(
        self,
        input_ids,
        pixel_values,
        attention_mask=None,
        interpolate_pos_encoding: bool = False,
        generation_config: GenerationConfig | None = None,
        use_enc_token: bool = False,
        **generate_kwargs,
    ):
        """:meth:`generate`, and each answer's confidence: ``(ids, scores)``, ``scores`` the mean
        log-probability of the answer's tokens after ``[DEC]`` (``[SEP]`` included) under the
        decoder over the same question states (:mod:`blip_core.scoring`)."""
        return self._answer(
            input_ids, pixel_values, attention_mask, interpolate_pos_encoding,
            generation_config, use_enc_token, generate_kwargs, scores=True,
        )  # fmt: skip

    def _answer(self, input_ids, pixel_values, attention_mask, interpolate, gen, enc, kwargs,
                scores):  # fmt: skip
        config = self._generation_config(gen, kwargs)
        with self.backend.inference():
            question, mask = self._encode_question(
                input_ids, pixel_values, attention_mask, interpolate, enc
            )
            prompts = [[self.config.text_config.bos_token_id] for _ in range(len(mask))]
            out = self._decode(question, mask, prompts, config)
            if not scores:
                return out
            text = self.config.text_config
            rows = self.backend.to_numpy(out)
            conf = decoder_scores(self.backend, self.text_decoder, question, mask, rows, 1, text)
        return out, self.backend.from_numpy(conf.astype(np.float32), like=question)

    def rank_answers(
        self,
        input_ids,
        pixel_values,
        answer_ids,
        attention_mask=None,
        answer_attention_mask=None,
        interpolate_pos_encoding: bool = False,
        use_enc_token: bool = False,
    ):
        """Score candidate answers by decoder log-likelihood (the original BLIP's ``rank``).

        ``answer_ids`` ``(A, T)``: tokenized candidates (``[CLS] answer [SEP]``, right-padded;
        token 0 becomes ``[DEC]``).  Returns ``scores`` ``(B, A)`` float32 — the summed
        log-probability of each answer's tokens after ``[DEC]``, ``[SEP]`` included — and
        ``ranking`` ``(B, A)`` int64, candidate indices best first.  The question is encoded once
        and its cross-attention keys/values are projected once, shared by all candidates.
        """
        answers = self._text_ids(
            "answer_ids", answer_ids, answer_attention_mask, "answer_attention_mask"
        )
        with self.backend.inference():
            question, mask = self._encode_question(
                input_ids, pixel_values, attention_mask, interpolate_pos_encoding, use_enc_token
            )
            ids, amask = answer_prompts(
                answers,
                self.backend.to_numpy(answer_attention_mask),
                self.config.text_config.bos_token_id,
            )
            batch, num = len(mask), ids.shape[0]
            session = self.backend.open_session(
                self.text_decoder, question, mask, num, ids.shape[1]
            )
            tiled_ids, tiled_mask = np.tile(ids, (batch, 1)), np.tile(amask, (batch, 1))
            log_probs = self.backend.sequence_log_probs(session, tiled_ids, tiled_mask)
        scores = sequence_log_likelihood(log_probs, tiled_ids, tiled_mask).reshape(batch, num)
        ranking = np.argsort(-scores, axis=1, kind="stable")
        return (
            self.backend.from_numpy(scores.astype(np.float32), like=question),
            self.backend.from_numpy(ranking.astype(np.int64), like=question),
        )


class RetrievalTasks(TaskModel):
    """Embeddings computed once, an ITC shortlist, ITM re-ranking (``BlipForImageTextRetrieval``)."""

    def encode_images(self, pixel_values, interpolate_pos_encoding: bool = False):
        """ITC image embeddings ``(N, D_itc)`` (L2-normalised) and the image states
        ``(N, L, D_vision)`` the ITM head needs; keep both to query many times."""
        with self.backend.inference():
            states = self._pixels(pixel_values, interpolate_pos_encoding)
            return self.backend.itc_image(self, states), states

    def encode_texts(self, input_ids, attention_mask=None):
        """ITC text embeddings ``(M, D_itc)`` (L2-normalised; unimodal text encoder, [CLS])."""
        ids = self._text_ids("input_ids", input_ids, attention_mask)
        with self.backend.inference():
            mask = self.backend.to_numpy(attention_mask)
            return self.backend.itc_text(
                self,
                self.backend.from_numpy(ids),
                None if mask is None else self.backend.from_numpy(mask.astype(np.int64)),
            )

    def itm_probability(self, image_states, input_ids, attention_mask=None, use_enc_token=False):
        """Match probability ``(P,)`` of image ``i`` with text ``i``.

        ``image_states`` ``(P, L, D)`` or ``(1, L, D)``: one image against ``P`` texts projects
        its cross-attention keys/values once and shares them (no per-pair image copies).
        """
        ids = self._grounded_ids(
            self._text_ids("input_ids", input_ids, attention_mask), use_enc_token
        )
        rows = int(np.shape(image_states)[0])
        if rows not in (1, len(ids)):
            validation.same_rows("image_states", rows, "input_ids", len(ids))
        mask = self.backend.to_numpy(attention_mask)
        with self.backend.inference():
            probs = self.backend.itm_probability(
                self, image_states, ids, None if mask is None else mask.reshape(ids.shape)
            )
        return self.backend.from_numpy(np.asarray(probs, dtype=np.float32), like=image_states)

    def rank_texts(
        self,
        image_embeds,
        image_states,
        text_embeds,
        input_ids,
        attention_mask=None,
        k: int = 16,
        use_enc_token: bool = False,
    ) -> RankResult:
        """One image (``image_embeds`` ``(D,)``/``(1, D)``, ``image_states`` ``(1, L, D)``)
        against a text collection: ITC top-``k``, then ITM re-rank of those ``k``."""
        k = validation.positive_int("k", k)
        query = validation.embeddings("image_embeds", self.backend.to_numpy(image_embeds))
        collection = validation.embeddings("text_embeds", self.backend.to_numpy(text_embeds), (2,))
        ids = self.backend.to_numpy(input_ids)
        validation.same_rows("input_ids", len(ids), "text_embeds", len(collection))
        idx, itc = itc_top_k(query.reshape(-1), collection, k)
        mask = self.backend.to_numpy(attention_mask)
        itm = self.itm_probability(
            image_states, ids[idx], None if mask is None else mask[idx], use_enc_token
        )
        return rerank(idx, itc, self.backend.to_numpy(itm))

    def rank_images(
        self,
        text_embeds,
        input_ids,
        image_embeds,
        image_states,
        attention_mask=None,
        k: int = 16,
        use_enc_token: bool = False,
    ) -> RankResult:
        """One text (``text_embeds`` ``(D,)``, ``input_ids`` ``(1, T)``) against an image
        collection (``image_embeds`` ``(N, D)``, ``image_states`` ``(N, L, D)``)."""
        k = validation.positive_int("k", k)
        query = validation.embeddings("text_embeds", self.backend.to_numpy(text_embeds))
        collection = validation.embeddings(
            "image_embeds", self.backend.to_numpy(image_embeds), (2,)
        )
        validation.same_rows(
            "image_states", int(np.shape(image_states)[0]), "image_embeds", len(collection)
        )
        idx, itc = itc_top_k(query.reshape(-1), collection, k)
        ids = np.asarray(self.backend.to_numpy(input_ids)).reshape(1, -1)
        mask = self.backend.to_numpy(attention_mask)
        ids = np.repeat(ids, len(idx), axis=0)
        if mask is not None:
            mask = np.repeat(np.asarray(mask).reshape(1, -1), len(idx), axis=0)
        states = self.backend.take(image_states, idx)
        itm = self.itm_probability(states, ids, mask, use_enc_token)
        return rerank(idx, itc, self.backend.to_numpy(itm))


__all__ = ["CaptioningTasks", "QuestionAnsweringTasks", "RetrievalTasks", "TaskModel"]
