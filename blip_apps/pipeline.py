"""Task-level helpers over either backend: load a model directory, batch a folder of images with
decoding overlapped with the model, caption / answer / match / search.

The backend is the adapter object of :func:`blip_apps.backends.load_backend` (``"torch"`` or
``"tf"``, imported only then): tensors go in through its ``from_numpy`` and come out through its
``to_numpy``, and the model classes come from its ``model_class``.  Both backends expose the same
model methods (``generate``, ``rank_answers``, ``encode_images``, ``encode_texts``,
``itm_probability``, ``rank_images``), so the code here is written once.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from blip_apps.backends import BACKENDS, load_backend
from blip_apps.datasets.decode import DECODE_ERRORS, Decoded, decode_items, describe, iter_decoded
from blip_apps.datasets.inputs import IMAGE_SUFFIXES, Item
from blip_core.generation import strip_prompt
from blip_core.hub import resolve_model_dir
from blip_core.processing import BlipProcessor

# What one unreadable input can raise while it is read and preprocessed: the file is reported and
# the run goes on (PIL's DecompressionBombError derives from Exception, not OSError).
IMAGE_ERRORS = DECODE_ERRORS


def Backend(name: str) -> Any:  # noqa: N802 - the name the pipeline's callers already use
    """The backend adapter called ``name``; the same as :func:`~blip_apps.backends.load_backend`
    (kept so that ``Captioner(directory, Backend("torch"))`` reads as before)."""
    return load_backend(name)


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


def image_error(path: str | os.PathLike, exc: BaseException) -> str:
    """One line naming ``path`` and why it could not be read."""
    return describe(str(path), exc)


@dataclass
class ImageBatch:
    paths: list[Path]  # images that decoded
    pixel_values: np.ndarray | None  # (B, 3, H, W) float32, None when every image failed
    failures: list[tuple[Path, str]]  # (path, one-line reason naming the path)


def _batch(decoded: Decoded) -> ImageBatch:
    return ImageBatch(
        [item.path for item in decoded.items],
        decoded.inputs,
        [(Path(f.id), f.reason) for f in decoded.failures],
    )


def _preparer(processor: BlipProcessor):
    return lambda images: processor.image_processor(images, return_tensors="np")["pixel_values"]


def decode_batch(paths: Sequence[Path], processor: BlipProcessor) -> ImageBatch:
    """Read and preprocess ``paths``; a file that fails is listed in ``failures``, not raised
    (:func:`blip_apps.datasets.decode.decode_items`)."""
    items = [Item(str(p), Path(p)) for p in paths]
    return _batch(decode_items(items, _preparer(processor)))


def iter_image_batches(
    paths: Sequence[Path], processor: BlipProcessor, batch_size: int, prefetch: int = 2
) -> Iterator[ImageBatch]:
    """Decode and preprocess batches on a background thread, ``prefetch`` batches ahead, so
    image decoding overlaps the model work on the previous batch (the one decode loop,
    :func:`blip_apps.datasets.decode.iter_decoded`)."""
    items = [Item(str(p), Path(p)) for p in paths]
    for decoded in iter_decoded(items, _preparer(processor), batch_size, prefetch):
        yield _batch(decoded)


def _check_device(backend: Any, device: str | None) -> str | None:
    """``device`` checked for ``backend``: its name, or None for the CPU default."""
    if device is None:
        return None
    check = getattr(backend, "check_device", None)
    if check is None:
        if str(device) == "cpu":
            return None
        raise ValueError(
            f"device={device!r} is for the torch backend; the {backend.name} backend places its "
            "work itself (tf: on a GPU when TensorFlow sees one; onnx: the CPU): leave it unset"
        )
    return check(device)


class _Task:
    """A model directory loaded with one backend: its processor and its ``class_name`` model.

    ``dtype``: ``None`` keeps the checkpoint's float32; ``"auto"`` applies
    :func:`blip_core.hardware.choose_dtype` (bfloat16 on CPUs with AMX, on AVX512-BF16 CPUs
    where measured faster and on GPUs with bf16, float32 elsewhere); ``"float32"``,
    ``"bfloat16"``, ``"float16"`` as named; ``"int8"``: int8 weights for the text towers'
    Linear layers with bfloat16 activations and a compiled decode step (torch, through torchao:
    ``from_pretrained(..., quantization="int8")``).  The ONNX backend runs the dtype its graphs
    were exported in (``blip export --dtype``).

    ``compile``: ``torch.compile`` the vision tower and the decode step (torch only; the first
    batch of each shape compiles, tens of seconds on a small CPU; pays on long runs).  With
    ``dtype="int8"`` it also quantizes the vision tower (int8 x int8 products, which pay only
    compiled: ``quantization_parts=("text", "vision")``).

    ``device``: where the torch backend runs the model (``"cuda"``, ``"cuda:1"``; the CPU when
    ``None``); ``"auto"`` dtypes are chosen for it.  TensorFlow places its work itself and the
    ONNX backend runs on the CPU, so they take only ``None`` / ``"cpu"``.
    """

    class_name = ""

    def __init__(
        self,
        directory: str | os.PathLike,
        backend: Any,
        dtype: str | None = None,
        compile: bool = False,  # noqa: A002 - the torch.compile switch, named as users know it
        device: str | None = None,
    ):
        if isinstance(backend, str):
            backend = load_backend(backend)
        self.backend = backend
        self.quantization = None
        self.device = _check_device(backend, device)
        place = {} if self.device is None else {"device": self.device}
        if dtype == "int8" and backend.name == "tf":
            raise ValueError(
                "dtype='int8' is not available with the tf backend: Keras int8 Dense layers "
                "measured slower than float32 on CPU for decoding; use --backend torch, or "
                "dtype 'auto' / 'bfloat16' with tf"
            )
        compile_model = getattr(backend, "compile_model", None)
        if compile and compile_model is None:
            raise ValueError(
                f"compile=True needs the torch backend (torch.compile); the {backend.name} "
                "backend runs its own graph optimiser: leave compile off there"
            )
        self.processor = BlipProcessor.from_pretrained(directory)
        cls = backend.model_class(self.class_name)
        if dtype is None or backend.name == "onnx":
            if dtype not in (None, "auto", "float32"):
                raise ValueError(
                    f"dtype={dtype!r}: the onnx backend runs the exported graphs as written; "
                    "export with 'blip export --dtype int8' for int8"
                )
            self.model = cls.from_pretrained(directory, **place)
        elif dtype == "int8":
            self.quantization = "int8"
            # the vision tower's int8 graph pays only compiled: with compile, quantize it too
            parts = ("text", "vision") if compile else ("text",)
            self.model = cls.from_pretrained(
                directory, quantization="int8", quantization_parts=parts, **place
            )
        else:
            self.model = cls.from_pretrained(directory, dtype=dtype, **place)
        # tensors go where the weights are (torch: the first parameter's device)
        self._like = None if self.device is None else next(iter(self.model.parameters()))
        if compile:
            compile_model(self.model)

    @property
    def dtype(self) -> str:
        """The dtype the model computes in (``"float32"``, ``"bfloat16"``, ...; ``"int8"`` for
        int8 weights)."""
        if self.quantization is not None:
            return self.quantization
        policy = getattr(self.model, "dtype_policy", None)  # Keras
        if policy is not None:
            return str(policy.compute_dtype)
        dtype = getattr(self.model, "dtype", "float32")
        return str(dtype).removeprefix("torch.")

    def tensor(self, array: np.ndarray) -> Any:
        """numpy -> the backend's tensor, on the model's device."""
        return self.backend.from_numpy(np.ascontiguousarray(array), like=self._like)

    def numpy(self, x: Any) -> np.ndarray:
        return self.backend.to_numpy(x)


class Captioner(_Task):
    """Caption images with a captioning model directory."""

    class_name = "BlipForConditionalGeneration"

    def caption_pixels(
        self, pixel_values: np.ndarray, prompt: str | None = None, strip: bool = False, **gen
    ) -> list[str]:
        """One caption per row of ``pixel_values`` ``(B, 3, H, W)``; ``gen``: generation
        arguments (``num_beams``, ``max_new_tokens``, ...); ``strip`` removes the prompt."""
        kwargs = dict(gen)
        t = self.tensor
        if prompt:
            tok = self.processor.tokenizer([prompt] * len(pixel_values), return_tensors="np")
            kwargs["input_ids"] = t(tok["input_ids"])
            kwargs["attention_mask"] = t(tok["attention_mask"])
        with self.backend.inference():
            ids = self.model.generate(t(pixel_values), **kwargs)
        texts = self.processor.batch_decode(self.numpy(ids), skip_special_tokens=True)
        if prompt and strip:
            texts = [strip_prompt(t, prompt) for t in texts]
        return texts


class QuestionAnswerer(_Task):
    """Answer questions (generated, or ranked among candidates) with a VQA model directory."""

    class_name = "BlipForQuestionAnswering"

    def _inputs(self, pixel_values: np.ndarray, question: str):
        tok = self.processor.tokenizer([question] * len(pixel_values), return_tensors="np")
        return tok["input_ids"], tok["attention_mask"]

    def answer(self, pixel_values: np.ndarray, question: str, **gen) -> list[str]:
        """The generated answer to ``question`` for each image."""
        ids, mask = self._inputs(pixel_values, question)
        t = self.tensor
        with self.backend.inference():
            out = self.model.generate(t(ids), t(pixel_values), attention_mask=t(mask), **gen)
        return self.processor.batch_decode(self.numpy(out), skip_special_tokens=True)

    def rank(self, pixel_values: np.ndarray, question: str, answers: Sequence[str]):
        """``[(answer, log-likelihood), ...]`` best first, for the first image.

        Raises ``ValueError`` when ``answers`` is empty."""
        if not answers:
            raise ValueError("answers is empty; give at least one candidate answer")
        ids, mask = self._inputs(pixel_values[:1], question)
        cand = self.processor.tokenizer(list(answers), padding=True, return_tensors="np")
        t = self.tensor
        with self.backend.inference():
            scores, ranking = self.model.rank_answers(
                t(ids), t(pixel_values[:1]), t(cand["input_ids"]),
                attention_mask=t(mask), answer_attention_mask=t(cand["attention_mask"]),
            )  # fmt: skip
        scores, ranking = self.numpy(scores)[0], self.numpy(ranking)[0]
        return [(answers[i], float(scores[i])) for i in ranking]


class Matcher(_Task):
    """ITM probability and ITC cosine for image-text pairs; text search over image folders."""

    class_name = "BlipForImageTextRetrieval"

    def _texts(self, texts: Sequence[str]):
        tok = self.processor.tokenizer(list(texts), padding=True, return_tensors="np")
        return self.tensor(tok["input_ids"]), self.tensor(tok["attention_mask"])

    def match(self, pixel_values: np.ndarray, texts: Sequence[str]) -> list[dict]:
        """``[{"text", "itm", "itc"}, ...]`` of the first image with each text."""
        ids, mask = self._texts(texts)
        with self.backend.inference():
            image_embeds, states = self.model.encode_images(self.tensor(pixel_values[:1]))
            text_embeds = self.model.encode_texts(ids, mask)
            itm = self.numpy(self.model.itm_probability(states, ids, mask))
        itc = self.numpy(text_embeds) @ self.numpy(image_embeds)[0]
        return [
            {"text": text, "itm": float(p), "itc": float(c)} for text, p, c in zip(texts, itm, itc)
        ]

    def encode_images(self, pixel_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(image_embeds (B, D_itc), image_states (B, L, D))`` as numpy."""
        with self.backend.inference():
            embeds, states = self.model.encode_images(self.tensor(pixel_values))
        return self.numpy(embeds), self.numpy(states)

    def search(self, image_embeds: np.ndarray, image_states: np.ndarray, query: str, k: int):
        """The top ``k`` images for ``query`` (ITC top-k re-ranked by ITM): a ``RankResult``."""
        ids, mask = self._texts([query])
        t = self.tensor
        with self.backend.inference():
            text_embeds = self.model.encode_texts(ids, mask)
            return self.model.rank_images(
                text_embeds[0], ids, t(image_embeds), t(image_states), attention_mask=mask, k=k
            )


__all__ = [
    "BACKENDS",
    "IMAGE_ERRORS",
    "IMAGE_SUFFIXES",
    "Backend",
    "Captioner",
    "ImageBatch",
    "Matcher",
    "QuestionAnswerer",
    "decode_batch",
    "expand_images",
    "image_error",
    "iter_image_batches",
    "load_backend",
    "resolve_model",
]
