"""The model work behind the endpoints, one batch at a time: what a ``@serve.batch`` method
hands over is a list of jobs, and each job gets exactly the answer it would get alone.

Jobs are grouped so that no row is padded for another row's sake: captions by (prompt,
``max_new_tokens``, ``num_beams``), generated answers by (question length in tokens, settings),
image embeddings all together; answer ranking, matching and text embeddings run one job at a
time.  Each group is one model call, so batching changes only how many rows a call has.
A job that fails gets its exception back in its own slot; the other jobs are unaffected.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

TASKS = ("caption", "vqa", "retrieval")


@dataclass(frozen=True)
class CaptionJob:
    pixels: np.ndarray  # (3, H, W) float32, the processor's output for one image
    prompt: str | None = None
    max_new_tokens: int | None = None
    num_beams: int | None = None


@dataclass(frozen=True)
class VqaJob:
    pixels: np.ndarray
    question: str
    answers: tuple[str, ...] | None = None  # candidates to rank; None: generate an answer
    max_new_tokens: int | None = None
    num_beams: int | None = None


@dataclass(frozen=True)
class EmbedJob:
    pixels: np.ndarray | None = None  # an image, or
    text: str | None = None  # a text


@dataclass(frozen=True)
class MatchJob:
    pixels: np.ndarray
    texts: tuple[str, ...]


def _gen(max_new_tokens: int | None, num_beams: int | None) -> dict:
    gen = {}
    if max_new_tokens is not None:
        gen["max_new_tokens"] = max_new_tokens
    if num_beams is not None:
        gen["num_beams"] = num_beams
    return gen


def _grouped(jobs: Sequence[Any], key: Callable[[Any], Any], run: Callable[[list], list]) -> list:
    """``run`` once per group of jobs with equal ``key``; results (or exceptions) in job order."""
    groups: dict[Any, list[int]] = defaultdict(list)
    results: list[Any] = [None] * len(jobs)
    for i, job in enumerate(jobs):
        try:
            groups[key(job)].append(i)
        except Exception as exc:  # noqa: BLE001 - this job's own failure, reported to it
            results[i] = exc
    for indices in groups.values():
        try:
            answers = run([jobs[i] for i in indices])
        except Exception as exc:  # noqa: BLE001
            answers = [exc] * len(indices)
        for i, answer in zip(indices, answers):
            results[i] = answer
    return results


def _each(jobs: Sequence[Any], run: Callable[[Any], Any]) -> list:
    results = []
    for job in jobs:
        try:
            results.append(run(job))
        except Exception as exc:  # noqa: BLE001
            results.append(exc)
    return results


class ServeModels:
    """The loaded models of the served tasks (``caption``, ``vqa``, ``retrieval``) over one
    backend, and the batch functions the deployment calls.

    ``models``: ``{task: model directory}``.  Not safe to call from several threads at once:
    the deployment runs all model work on one thread.
    """

    def __init__(
        self,
        models: dict[str, str | os.PathLike],
        backend: str = "torch",
        dtype: str | None = None,
        device: str | None = None,
    ):
        from blip_apps.pipeline import Captioner, Matcher, QuestionAnswerer, load_backend

        unknown = sorted(set(models) - set(TASKS))
        if unknown:
            raise ValueError(f"unknown task(s) {unknown}; expected some of {', '.join(TASKS)}")
        self.backend = load_backend(backend)
        classes = {"caption": Captioner, "vqa": QuestionAnswerer, "retrieval": Matcher}
        self.tasks = {
            task: classes[task](models[task], self.backend, dtype, device=device) for task in models
        }
        self.completed = {task: 0 for task in models}  # jobs answered (or failed) per task

    def processor(self, task: str):
        return self.tasks[task].processor

    def preprocess(self, task: str, image) -> np.ndarray:
        """One RGB image as the ``(3, H, W)`` float32 pixels of ``task``'s image processor."""
        out = self.tasks[task].processor.image_processor([image], return_tensors="np")
        return np.ascontiguousarray(out["pixel_values"][0])

    # -- captions ---------------------------------------------------------------------------
    def caption_batch(self, jobs: Sequence[CaptionJob]) -> list:
        """``{"caption", "score"}`` per job; ``score``: the mean log-probability of the
        caption's generated tokens (``[SEP]`` included, the prompt not)."""

        def key(job: CaptionJob):
            return (job.prompt or None, job.max_new_tokens, job.num_beams)

        self.completed["caption"] += len(jobs)
        return _grouped(jobs, key, self._caption_group)

    def _caption_group(self, jobs: list[CaptionJob]) -> list[dict]:
        task = self.tasks["caption"]
        pixels = np.stack([job.pixels for job in jobs])
        prompt = jobs[0].prompt or None
        gen = _gen(jobs[0].max_new_tokens, jobs[0].num_beams)
        if prompt:
            tok = task.processor.tokenizer([prompt] * len(jobs), return_tensors="np")
            gen["input_ids"] = task.tensor(tok["input_ids"])
            gen["attention_mask"] = task.tensor(tok["attention_mask"])
        with task.backend.inference():
            ids, scores = task.model.generate_with_scores(task.tensor(pixels), **gen)
        ids, scores = task.numpy(ids), task.numpy(scores)
        texts = task.processor.batch_decode(ids, skip_special_tokens=True)
        return [{"caption": t, "score": float(s)} for t, s in zip(texts, scores)]

    # -- questions --------------------------------------------------------------------------
    def vqa_batch(self, jobs: Sequence[VqaJob]) -> list:
        """``{"answer", "score"}`` per job (``score``: the mean log-probability of the answer's
        tokens), or with ``answers`` ``{"answer", "score", "ranking": [{"answer", "score"}]}``
        best first (``score``: the summed log-likelihood, as ``rank_answers`` gives it)."""
        self.completed["vqa"] += len(jobs)
        tokenizer = self.tasks["vqa"].processor.tokenizer
        generate = [i for i, job in enumerate(jobs) if not job.answers]
        results: list[Any] = [None] * len(jobs)

        def key(job: VqaJob):
            length = len(tokenizer(job.question)["input_ids"])
            return (length, job.max_new_tokens, job.num_beams)

        for i, answer in zip(generate, _grouped([jobs[i] for i in generate], key, self._answer)):
            results[i] = answer
        ranked = [i for i, job in enumerate(jobs) if job.answers]
        for i, answer in zip(ranked, _each([jobs[i] for i in ranked], self._rank)):
            results[i] = answer
        return results

    def _answer(self, jobs: list[VqaJob]) -> list[dict]:
        task = self.tasks["vqa"]
        tok = task.processor.tokenizer([job.question for job in jobs], return_tensors="np")
        ids, mask = tok["input_ids"], tok["attention_mask"]
        pixels = np.stack([job.pixels for job in jobs])
        gen = _gen(jobs[0].max_new_tokens, jobs[0].num_beams)
        t = task.tensor
        with task.backend.inference():
            out, scores = task.model.generate_with_scores(
                t(ids), t(pixels), attention_mask=t(mask), **gen
            )
        out, scores = task.numpy(out), task.numpy(scores)
        texts = task.processor.batch_decode(out, skip_special_tokens=True)
        return [{"answer": a, "score": float(s)} for a, s in zip(texts, scores)]

    def _rank(self, job: VqaJob) -> dict:
        ranking = self.tasks["vqa"].rank(job.pixels[None], job.question, list(job.answers))
        best, score = ranking[0]
        return {
            "answer": best,
            "score": score,
            "ranking": [{"answer": a, "score": s} for a, s in ranking],
        }

    # -- retrieval --------------------------------------------------------------------------
    def retrieval_batch(self, jobs: Sequence[EmbedJob | MatchJob]) -> list:
        """``{"embedding": [...]}`` per :class:`EmbedJob` (image embeddings of the batch in one
        call) and ``{"matches": [{"text", "itm", "itc"}]}`` per :class:`MatchJob`."""
        self.completed["retrieval"] += len(jobs)
        results: list[Any] = [None] * len(jobs)
        images = [i for i, j in enumerate(jobs) if isinstance(j, EmbedJob) and j.pixels is not None]
        if images:
            try:
                pixels = np.stack([jobs[i].pixels for i in images])
                embeds, _ = self.tasks["retrieval"].encode_images(pixels)
                for i, row in zip(images, embeds):
                    results[i] = {"embedding": [float(x) for x in row]}
            except Exception as exc:  # noqa: BLE001
                for i in images:
                    results[i] = exc
        rest = [i for i in range(len(jobs)) if i not in set(images)]
        for i, answer in zip(rest, _each([jobs[i] for i in rest], self._retrieval_one)):
            results[i] = answer
        return results

    def _retrieval_one(self, job: EmbedJob | MatchJob) -> dict:
        task = self.tasks["retrieval"]
        if isinstance(job, MatchJob):
            return {"matches": task.match(job.pixels[None], list(job.texts))}
        tok = task.processor.tokenizer([job.text], return_tensors="np")
        t = task.tensor
        with task.backend.inference():
            embeds = task.model.encode_texts(t(tok["input_ids"]), t(tok["attention_mask"]))
        return {"embedding": [float(x) for x in task.numpy(embeds)[0]]}


__all__ = ["TASKS", "CaptionJob", "EmbedJob", "MatchJob", "ServeModels", "VqaJob"]
