"""Task-level helpers over either backend: load a model directory, batch a folder of images with
decoding overlapped with the model, caption / answer / match / search.

The backend is chosen by name (``"torch"`` or ``"tf"``) and imported only then; both expose the
same model methods (``generate``, ``rank_answers``, ``encode_images``, ``encode_texts``,
``itm_probability``, ``rank_images``), so the code here is written once.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from blip_core.generation import strip_prompt
from blip_core.hub import resolve_model_dir
from blip_core.image_processing import ImageLoadError, load_image
from blip_core.processing import BlipProcessor

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"}
BACKENDS = ("torch", "tf")


class Backend:
    """Tensor conversion and model classes of one backend."""

    def __init__(self, name: str):
        if name not in BACKENDS:
            raise ValueError(f"unknown backend {name!r}; expected one of {', '.join(BACKENDS)}")
        self.name = name
        if name == "torch":
            import torch

            import blip_torch

            self.module, self._torch = blip_torch, torch
            torch.set_num_threads(max(1, os.cpu_count() or 1))
        else:
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
            import blip_tf

            self.module, self._torch = blip_tf, None

    def tensor(self, array: np.ndarray):
        if self._torch is not None:
            return self._torch.from_numpy(np.ascontiguousarray(array))
        return array  # blip_tf accepts numpy

    @staticmethod
    def numpy(x) -> np.ndarray:
        if hasattr(x, "detach"):
            return x.detach().cpu().numpy()
        return np.asarray(x)

    def load(self, class_name: str, directory: Path):
        return getattr(self.module, class_name).from_pretrained(directory)


def resolve_model(model: str | os.PathLike | None, task: str) -> Path:
    """``--model``: a directory or hub id; none means the bundled demo model for ``task``."""
    if model is None:
        from blip_apps.demo import model_dir

        return model_dir(task)
    return resolve_model_dir(model)


def expand_images(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """Files as given; directories expanded to their image files (sorted, by suffix)."""
    paths: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            paths.extend(sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES))
        else:
            paths.append(path)
    return paths


@dataclass
class ImageBatch:
    paths: list[Path]  # images that decoded
    pixel_values: np.ndarray | None  # (B, 3, H, W) float32, None when every image failed
    failures: list[tuple[Path, str]]  # (path, reason)


def _decode_batch(paths: list[Path], processor: BlipProcessor) -> ImageBatch:
    images, ok, failures = [], [], []
    for path in paths:
        try:
            images.append(load_image(path))
            ok.append(path)
        except ImageLoadError as exc:
            failures.append((path, exc.reason if hasattr(exc, "reason") else str(exc)))
    pixels = (
        processor.image_processor(images, return_tensors="np")["pixel_values"] if images else None
    )
    return ImageBatch(ok, pixels, failures)


def iter_image_batches(
    paths: Sequence[Path], processor: BlipProcessor, batch_size: int, prefetch: int = 2
) -> Iterator[ImageBatch]:
    """Decode and preprocess batches on a background thread, ``prefetch`` batches ahead, so
    image decoding overlaps the model work on the previous batch."""
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    chunks = [list(paths[i : i + batch_size]) for i in range(0, len(paths), batch_size)]
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending: deque = deque()
        for chunk in chunks:
            pending.append(pool.submit(_decode_batch, chunk, processor))
            if len(pending) > prefetch:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


class Captioner:
    """Caption images with a captioning model directory."""

    def __init__(self, directory: Path, backend: Backend):
        self.backend = backend
        self.processor = BlipProcessor.from_pretrained(directory)
        self.model = backend.load("BlipForConditionalGeneration", directory)

    def caption_pixels(
        self, pixel_values: np.ndarray, prompt: str | None = None, strip: bool = False, **gen
    ) -> list[str]:
        kwargs = dict(gen)
        if prompt:
            tok = self.processor.tokenizer([prompt] * len(pixel_values), return_tensors="np")
            kwargs["input_ids"] = self.backend.tensor(tok["input_ids"])
            kwargs["attention_mask"] = self.backend.tensor(tok["attention_mask"])
        ids = self.model.generate(self.backend.tensor(pixel_values), **kwargs)
        texts = self.processor.batch_decode(self.backend.numpy(ids), skip_special_tokens=True)
        if prompt and strip:
            texts = [strip_prompt(t, prompt) for t in texts]
        return texts


class QuestionAnswerer:
    def __init__(self, directory: Path, backend: Backend):
        self.backend = backend
        self.processor = BlipProcessor.from_pretrained(directory)
        self.model = backend.load("BlipForQuestionAnswering", directory)

    def _inputs(self, pixel_values: np.ndarray, question: str):
        tok = self.processor.tokenizer([question] * len(pixel_values), return_tensors="np")
        return tok["input_ids"], tok["attention_mask"]

    def answer(self, pixel_values: np.ndarray, question: str, **gen) -> list[str]:
        ids, mask = self._inputs(pixel_values, question)
        t = self.backend.tensor
        out = self.model.generate(t(ids), t(pixel_values), attention_mask=t(mask), **gen)
        return self.processor.batch_decode(self.backend.numpy(out), skip_special_tokens=True)

    def rank(self, pixel_values: np.ndarray, question: str, answers: Sequence[str]):
        """``[(answer, log-likelihood), ...]`` best first, for the first image."""
        ids, mask = self._inputs(pixel_values[:1], question)
        cand = self.processor.tokenizer(list(answers), padding=True, return_tensors="np")
        t = self.backend.tensor
        scores, ranking = self.model.rank_answers(
            t(ids), t(pixel_values[:1]), t(cand["input_ids"]),
            attention_mask=t(mask), answer_attention_mask=t(cand["attention_mask"]),
        )  # fmt: skip
        scores, ranking = self.backend.numpy(scores)[0], self.backend.numpy(ranking)[0]
        return [(answers[i], float(scores[i])) for i in ranking]


class Matcher:
    """ITM probability and ITC cosine for image-text pairs; text search over image folders."""

    def __init__(self, directory: Path, backend: Backend):
        self.backend = backend
        self.processor = BlipProcessor.from_pretrained(directory)
        self.model = backend.load("BlipForImageTextRetrieval", directory)

    def _texts(self, texts: Sequence[str]):
        tok = self.processor.tokenizer(list(texts), padding=True, return_tensors="np")
        return self.backend.tensor(tok["input_ids"]), self.backend.tensor(tok["attention_mask"])

    def match(self, pixel_values: np.ndarray, texts: Sequence[str]) -> list[dict]:
        ids, mask = self._texts(texts)
        image_embeds, states = self.model.encode_images(self.backend.tensor(pixel_values[:1]))
        text_embeds = self.model.encode_texts(ids, mask)
        itm = self.backend.numpy(self.model.itm_probability(states, ids, mask))
        itc = self.backend.numpy(text_embeds) @ self.backend.numpy(image_embeds)[0]
        return [
            {"text": text, "itm": float(p), "itc": float(c)} for text, p, c in zip(texts, itm, itc)
        ]

    def encode_images(self, pixel_values: np.ndarray):
        embeds, states = self.model.encode_images(self.backend.tensor(pixel_values))
        return self.backend.numpy(embeds), self.backend.numpy(states)

    def search(self, image_embeds, image_states, query: str, k: int):
        ids, mask = self._texts([query])
        text_embeds = self.model.encode_texts(ids, mask)
        t = self.backend.tensor
        return self.model.rank_images(
            text_embeds[0], ids, t(image_embeds), t(image_states), attention_mask=mask, k=k
        )
