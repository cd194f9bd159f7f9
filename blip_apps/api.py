"""The one-line Python API: ``pipeline(task, model=..., backend=..., dtype=...)`` -> a callable.

    from blip_apps.api import pipeline

    captioner = pipeline("caption", model="path/to/blip-caption", backend="torch")
    captioner(["a.jpg", "b.png"], batch_size=8)
    # [{"id": "a.jpg", "path": "a.jpg", "caption": "...", "log_prob": -0.21,
    #   "model": "path/to/blip-caption", "settings": {...}}, ...]

    vqa = pipeline("vqa", question="what colour is the circle?", answers=["red", "blue"])
    embedder = pipeline("embed")            # records with "embedding" (L2-normalised ITC)
    matcher = pipeline("match", texts=["a red circle", "a blue square"])

Tasks (:data:`TASKS`): ``caption``, ``vqa``, ``embed``, ``match``.  Without ``model`` the bundled
demo model of the task is used.  A call takes a list of image paths, ``PIL`` images, numpy
``(H, W, 3)`` arrays, encoded bytes or :class:`~blip_apps.datasets.inputs.Item` and returns one
record per image (per image-text pair for ``match``) in input order; an image that cannot be read
is a record ``{"id": ..., "error": ...}`` in its place.  Keyword arguments of a call override the
pipeline's settings for that call (``captioner(paths, num_beams=3)``).

Records carry scores: a caption its mean token log-probability (``log_prob``) and, with
``itm_model=DIR``, the ITM probability of the caption against the image (``itm``); a VQA answer
its probability among the ``answers`` candidates (softmax of their log-likelihoods, top
``top_k`` listed in ``answers``) or, generated, its mean token log-probability.

``dtype``: ``"auto"`` (the default) picks bfloat16 where the hardware runs it fast (CPUs with
AMX, AVX512-BF16 CPUs where measured faster, GPUs with bf16) and float32 elsewhere
(:mod:`blip_core.hardware`); ``None`` keeps the checkpoint's float32; ``"float32"``,
``"bfloat16"``, ``"float16"`` as named; ``"int8"``: int8 text-tower weights through torchao
(torch only).  Records name the dtype the model ran in.  ``compile=True`` (torch only)
``torch.compile``-s the vision tower and the decode step: the first batch of each shape
compiles (tens of seconds on a small CPU), later ones run faster -- for long runs.  The
dataset runner (:mod:`blip_apps.datasets.run`), the Ray engine and the ``blip`` command are
thin layers over these classes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image

from blip_apps.backends import load_backend
from blip_apps.datasets.decode import Decoded, iter_decoded
from blip_apps.datasets.inputs import Failure, Item
from blip_apps.pipeline import Captioner, Matcher, QuestionAnswerer, resolve_model
from blip_core.scoring import softmax

TASKS = ("caption", "vqa", "embed", "match")
DTYPES = (None, "auto", "float32", "bfloat16", "float16", "int8")


@dataclass(frozen=True, eq=False)
class ImageItem:
    """An in-memory image given to a pipeline call (id: its position in the call)."""

    id: str
    image: PIL.Image.Image
    path: Path | None = None

    def load(self) -> PIL.Image.Image:
        return self.image.convert("RGB")


def as_items(inputs: Any) -> list:
    """Paths, PIL images, ``(H, W, 3)`` uint8 arrays, bytes or items -> items (one image or a
    list of them)."""
    if not isinstance(inputs, (list, tuple)):
        inputs = [inputs]
    items: list = []
    for index, value in enumerate(inputs):
        if isinstance(value, (Item, ImageItem)):
            items.append(value)
        elif isinstance(value, (str, os.PathLike)):
            items.append(Item(str(value), path=Path(value)))
        elif isinstance(value, PIL.Image.Image):
            items.append(ImageItem(str(index), value))
        elif isinstance(value, np.ndarray):
            items.append(ImageItem(str(index), PIL.Image.fromarray(value)))
        elif isinstance(value, (bytes, bytearray)):
            items.append(Item(str(index), data=bytes(value)))
        else:
            raise TypeError(
                f"input {index} is a {type(value).__name__}; expected a path, a PIL image, a "
                "numpy (H, W, 3) array, encoded image bytes or an Item"
            )
    return items


def _check_dtype(dtype: str | None) -> str | None:
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r}: expected one of {', '.join(map(repr, DTYPES))}")
    return dtype


class Pipeline:
    """A model directory loaded for one task; call it on images.  Subclasses set
    ``task_class``, ``demo`` (the demo model's task) and :attr:`defaults` (their settings)."""

    task_class: type = Captioner
    demo = "caption"
    defaults: dict[str, Any] = {}

    def __init__(
        self,
        model: str | os.PathLike | None = None,
        backend: str = "torch",
        dtype: str | None = "auto",
        threads: int | None = None,
        compile: bool = False,  # noqa: A002 - the torch.compile switch, named as users know it
        device: str | None = None,
        **settings: Any,
    ) -> None:
        unknown = set(settings) - set(self.defaults)
        if unknown:
            raise TypeError(
                f"unknown setting(s) {', '.join(sorted(unknown))} for this pipeline; expected "
                f"{', '.join(sorted(self.defaults)) or 'none'}"
            )
        adapter = load_backend(backend, threads) if isinstance(backend, str) else backend
        _check_dtype(dtype)
        self.model_name = str(model) if model is not None else f"demo:{self.demo}"
        self.runner = self.task_class(
            resolve_model(model, self.demo), adapter, dtype, compile, device
        )
        self.device = self.runner.device
        self.backend, self.model, self.processor = adapter, self.runner.model, self.runner.processor
        self.dtype = self.runner.dtype
        self.settings = {**self.defaults, **settings}

    def tensor(self, array: np.ndarray, pixels: bool = False) -> Any:
        """numpy -> the backend's tensor on the model's device (the model casts pixels to its
        own dtype)."""
        return self.runner.tensor(array)

    def numpy(self, x: Any) -> np.ndarray:
        return self.backend.to_numpy(x)  # bfloat16 / float16 come back as float32

    def prepare(self, images: list[PIL.Image.Image]) -> dict[str, np.ndarray]:
        """Preprocess decoded images (run on the decode thread)."""
        return {"pixel_values": self.processor.image_processor(images, return_tensors="np")[
            "pixel_values"
        ]}  # fmt: skip

    def process(self, inputs: dict[str, np.ndarray], settings: dict) -> list[dict]:
        """Records (without id) of one prepared batch; one per image (override for others)."""
        raise NotImplementedError

    def record_settings(self, settings: dict) -> dict:
        """The settings a record names: the task's, the backend and the dtype."""
        return {**settings, "backend": self.backend.name, "dtype": self.dtype}

    def records(self, decoded: Decoded, settings: dict | None = None) -> list[dict]:
        """Records of a decoded batch with ``id`` / ``path`` first and ``model`` / ``settings``
        last (failures are not included: see :attr:`Decoded.failures`)."""
        settings = self.settings if settings is None else settings
        if decoded.inputs is None:
            return []
        rows = self.process(decoded.inputs, settings)
        per_image = len(rows) // max(len(decoded.items), 1)
        named = self.record_settings(settings)
        out = []
        for i, row in enumerate(rows):
            item = decoded.items[i // per_image]
            head = {"id": item.id}
            if getattr(item, "path", None) is not None:
                head["path"] = str(item.path)
            out.append({**head, **row, "model": self.model_name, "settings": named})
        return out

    def __call__(self, inputs: Any, batch_size: int = 8, **overrides: Any) -> list[dict]:
        """Records of every image in input order (an unreadable one: ``{"id", "error"}``)."""
        settings = self.call_settings(overrides)
        items = as_items(inputs)
        done: dict[Any, list[dict]] = {}
        failed: dict[str, Failure] = {}
        for decoded in iter_decoded(items, self.prepare, batch_size):
            for failure in decoded.failures:
                failed[failure.id] = failure
            records = self.records(decoded, settings)
            per_image = len(records) // max(len(decoded.items), 1)
            for i, item in enumerate(decoded.items):
                done[item] = records[i * per_image : (i + 1) * per_image]
        out: list[dict] = []
        for item in items:
            if item in done:
                out.extend(done[item])
            else:
                reason = failed[item.id].reason if item.id in failed else "not decoded"
                out.append({"id": item.id, "error": reason})
        return out

    def call_settings(self, overrides: dict) -> dict:
        unknown = set(overrides) - set(self.defaults)
        if unknown:
            raise TypeError(
                f"unknown argument(s) {', '.join(sorted(unknown))}; a call takes batch_size "
                f"and the settings {', '.join(sorted(self.defaults)) or '(none)'}"
            )
        return {**self.settings, **overrides}


class CaptionPipeline(Pipeline):
    """``caption``: records ``{"id", "path", "caption", "log_prob", ["itm"], "model",
    "settings"}``; ``itm_model``: a retrieval model directory whose ITM head scores each caption
    against its image."""

    task_class = Captioner
    demo = "caption"
    defaults = {"prompt": None, "num_beams": 1, "max_new_tokens": 30, "original": False}

    def __init__(self, model=None, backend="torch", dtype="auto", threads=None, compile=False,  # noqa: A002
                 device=None, itm_model=None, **settings) -> None:  # fmt: skip
        super().__init__(model, backend, dtype, threads, compile, device, **settings)
        self.itm = None
        self.itm_model = None if itm_model is None else str(itm_model)
        if itm_model is not None:
            self.itm = Matcher(
                resolve_model(itm_model, "retrieval"), self.backend, dtype, device=device
            )
            own = self.processor.image_processor.to_dict()
            self._itm_own_pixels = self.itm.processor.image_processor.to_dict() != own

    def record_settings(self, settings: dict) -> dict:
        named = super().record_settings(settings)
        if self.itm_model is not None:
            named["itm_model"] = self.itm_model
        return named

    def prepare(self, images):
        inputs = super().prepare(images)
        if self.itm is not None and self._itm_own_pixels:
            ip = self.itm.processor.image_processor
            inputs["itm_pixel_values"] = ip(images, return_tensors="np")["pixel_values"]
        return inputs

    def _generation(self, settings: dict) -> tuple[str | None, dict]:
        gen = {"num_beams": settings["num_beams"], "max_new_tokens": settings["max_new_tokens"]}
        prompt = settings["prompt"]
        if settings["original"]:
            from blip_core.generation import ORIGINAL_BLIP_CAPTION, ORIGINAL_BLIP_PROMPT

            gen, prompt = dict(ORIGINAL_BLIP_CAPTION), prompt or ORIGINAL_BLIP_PROMPT
        return prompt, gen

    def process(self, inputs, settings):
        from blip_core.generation import strip_prompt

        prompt, gen = self._generation(settings)
        pixels = inputs["pixel_values"]
        if prompt:
            tok = self.processor.tokenizer([prompt] * len(pixels), return_tensors="np")
            gen["input_ids"] = self.tensor(tok["input_ids"])
            gen["attention_mask"] = self.tensor(tok["attention_mask"])
        with self.backend.inference():
            ids, log_prob = self.model.generate_with_scores(self.tensor(pixels, pixels=True), **gen)
        out, log_prob = self.numpy(ids), self.numpy(log_prob)
        texts = self.processor.batch_decode(out, skip_special_tokens=True)
        if prompt and settings["original"]:
            texts = [strip_prompt(t, prompt) for t in texts]
        rows = [{"caption": c, "log_prob": float(s)} for c, s in zip(texts, log_prob)]
        if self.itm is not None:
            itm_pixels = inputs.get("itm_pixel_values", pixels)
            for row, p in zip(rows, self.itm_probability(itm_pixels, texts)):
                row["itm"] = float(p)
        return rows

    def itm_probability(self, pixel_values: np.ndarray, texts: Sequence[str]) -> np.ndarray:
        """ITM match probability ``(B,)`` of image ``i`` with text ``i``."""
        m = self.itm.model
        tok = self.itm.processor.tokenizer(list(texts), padding=True, return_tensors="np")
        with self.backend.inference():
            _, states = m.encode_images(self.tensor(pixel_values, pixels=True))
            probs = m.itm_probability(
                states, self.tensor(tok["input_ids"]), self.tensor(tok["attention_mask"])
            )
        return self.numpy(probs)


class VqaPipeline(Pipeline):
    """``vqa``: records ``{"id", "path", "question", "answer", "probability" | "log_prob",
    ["answers"], "model", "settings"}``.  With ``answers`` (candidates) the answer is the most
    likely candidate and ``answers`` lists the top ``top_k`` with their probabilities (softmax
    over every candidate's log-likelihood); without, the answer is generated and carries its
    mean token log-probability."""

    task_class = QuestionAnswerer
    demo = "vqa"
    defaults = {"question": None, "answers": None, "top_k": 5, "num_beams": 1,
                "max_new_tokens": None}  # fmt: skip

    def process(self, inputs, settings):
        question = settings["question"]
        if not question:
            raise ValueError("question is missing; pass question='...' to the vqa pipeline")
        pixels = inputs["pixel_values"]
        tok = self.processor.tokenizer([question] * len(pixels), return_tensors="np")
        qids, qmask = tok["input_ids"], tok["attention_mask"]
        t, px = self.tensor, self.tensor(pixels, pixels=True)
        if settings["answers"]:
            return self._ranked(qids, qmask, px, question, list(settings["answers"]), settings)
        gen = {"num_beams": settings["num_beams"]}
        if settings["max_new_tokens"] is not None:
            gen["max_new_tokens"] = settings["max_new_tokens"]
        with self.backend.inference():
            ids, scores = self.model.generate_with_scores(
                t(qids), px, attention_mask=t(qmask), **gen
            )
        out, log_prob = self.numpy(ids), self.numpy(scores)
        texts = self.processor.batch_decode(out, skip_special_tokens=True)
        return [{"question": question, "answer": a, "log_prob": float(s)}
                for a, s in zip(texts, log_prob)]  # fmt: skip

    def _ranked(self, qids, qmask, px, question, answers, settings):
        top_k = settings["top_k"]
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"top_k={top_k!r}: must be a whole number >= 1")
        cand = self.processor.tokenizer(answers, padding=True, return_tensors="np")
        t = self.tensor
        with self.backend.inference():
            scores, _ = self.model.rank_answers(
                t(qids), px, t(cand["input_ids"]), attention_mask=t(qmask),
                answer_attention_mask=t(cand["attention_mask"]),
            )  # fmt: skip
        scores = self.numpy(scores).astype(np.float64)
        rows = []
        for row in scores:
            probs = softmax(row)
            order = np.argsort(-row, kind="stable")[:top_k]
            ranked = [{"answer": answers[i], "probability": float(probs[i]),
                       "log_likelihood": float(row[i])} for i in order]  # fmt: skip
            rows.append({"question": question, "answer": ranked[0]["answer"],
                         "probability": ranked[0]["probability"], "answers": ranked})  # fmt: skip
        return rows


class EmbedPipeline(Pipeline):
    """``embed``: records ``{"id", "path", "embedding", "model", "settings"}`` — the
    L2-normalised ITC image embedding (float32 numpy); :meth:`encode_texts` for text."""

    task_class = Matcher
    demo = "retrieval"
    defaults: dict[str, Any] = {}

    def process(self, inputs, settings):
        with self.backend.inference():
            embeds, _ = self.model.encode_images(self.tensor(inputs["pixel_values"], True))
        return [{"embedding": e} for e in self.numpy(embeds)]

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised ITC text embeddings ``(M, D)`` float32."""
        tok = self.processor.tokenizer(list(texts), padding=True, return_tensors="np")
        with self.backend.inference():
            out = self.model.encode_texts(
                self.tensor(tok["input_ids"]), self.tensor(tok["attention_mask"])
            )
        return self.numpy(out)


class MatchPipeline(Pipeline):
    """``match``: one record per image and text, ``{"id", "path", "text", "itm", "itc",
    "model", "settings"}`` (ITM probability and ITC cosine)."""

    task_class = Matcher
    demo = "retrieval"
    defaults = {"texts": None}

    def process(self, inputs, settings):
        texts = list(settings["texts"] or [])
        if not texts:
            raise ValueError("texts is missing; pass texts=['...'] to the match pipeline")
        tok = self.processor.tokenizer(texts, padding=True, return_tensors="np")
        ids, mask = self.tensor(tok["input_ids"]), self.tensor(tok["attention_mask"])
        pixels = inputs["pixel_values"]
        rows = []
        with self.backend.inference():
            embeds, states = self.model.encode_images(self.tensor(pixels, True))
            text_embeds = self.numpy(self.model.encode_texts(ids, mask))
            image_embeds = self.numpy(embeds)
            for i in range(len(pixels)):
                itm = self.numpy(self.model.itm_probability(states[i : i + 1], ids, mask))
                itc = text_embeds @ image_embeds[i]
                rows += [{"text": x, "itm": float(p), "itc": float(c)}
                         for x, p, c in zip(texts, itm, itc)]  # fmt: skip
        return rows


PIPELINES = {"caption": CaptionPipeline, "vqa": VqaPipeline, "embed": EmbedPipeline,
             "match": MatchPipeline}  # fmt: skip


def pipeline(
    task: str,
    model: str | os.PathLike | None = None,
    backend: str = "torch",
    dtype: str | None = "auto",
    **settings: Any,
) -> Pipeline:
    """A callable for ``task`` (one of :data:`TASKS`) over ``model`` (a directory or hub id;
    the bundled demo model when ``None``) with ``backend`` (``"torch"`` or ``"tf"``).

    ``settings``: the task's (``caption``: ``prompt``, ``num_beams``, ``max_new_tokens``,
    ``original``, ``itm_model``; ``vqa``: ``question``, ``answers``, ``top_k``, ``num_beams``,
    ``max_new_tokens``; ``match``: ``texts``), ``threads`` (CPU threads of the backend),
    ``compile`` (torch: ``torch.compile`` the vision tower and decode step) and ``device``
    (torch: ``"cuda"``, ``"cuda:1"``, ...; the CPU by default; ``dtype="auto"`` is chosen for
    it, bfloat16 on GPUs with bf16).

    Raises:
        ValueError: an unknown task or dtype (the message lists the allowed ones).
        TypeError: a setting the task does not take.
    """
    if task not in PIPELINES:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    return PIPELINES[task](model, backend, dtype, **settings)


__all__ = [
    "DTYPES",
    "PIPELINES",
    "TASKS",
    "CaptionPipeline",
    "EmbedPipeline",
    "ImageItem",
    "MatchPipeline",
    "Pipeline",
    "VqaPipeline",
    "as_items",
    "pipeline",
]
