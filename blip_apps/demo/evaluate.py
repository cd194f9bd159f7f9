"""Score the demo BLIP models on held-out generated scenes, with any backend.

Metrics (held-out scenes from :data:`blip_apps.demo.data.HELDOUT_SEED`, never seen in training):

* caption exact match: greedy caption == the scene's canonical caption (after whitespace/case
  normalisation);
* VQA accuracy: greedy answer == the one-word answer;
* retrieval R@1 among a gallery of candidates with distinct captions, both directions:
  text->image (each caption ranks every image) and image->text (each image ranks every caption);
  ``itc`` ranks by the contrastive cosine, ``itc+itm`` re-ranks the ITC top ``k`` by the ITM
  match probability.

Captions and answers come from the models' ``generate``, or (``greedy_loop=True``) from a plain
greedy loop over the model's sub-modules written here, an independent check of ``generate``.
The backend is an adapter (:func:`blip_apps.backends.load_backend`); tensors cross it through
``from_numpy`` / ``to_numpy`` and model calls run inside its ``inference()`` context.

    from blip_apps.backends import load_backend
    from blip_apps.demo.evaluate import evaluate, format_table
    print(format_table(evaluate(load_backend("torch"), n=50)))
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from blip_apps.demo import MODELS_DIR, TASKS, data
from blip_core.image_processing import BlipImageProcessor
from blip_core.tokenization import BlipTokenizer

CLASS_NAMES = {
    "caption": "BlipForConditionalGeneration",
    "vqa": "BlipForQuestionAnswering",
    "retrieval": "BlipForImageTextRetrieval",
}


# ---- helpers ----------------------------------------------------------------------------------


def normalize_text(text: str) -> str:
    """Lower case, ``?`` and ``,`` as words of their own, single spaces (exact-match form)."""
    text = text.lower().replace("?", " ?").replace(",", " , ")
    return " ".join(text.split())


def _field(output, name: str, index: int = 0):
    return getattr(output, name) if hasattr(output, name) else output[index]


def _batches(n: int, size: int):
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


class Task:
    """The demo model of ``task`` (``caption``, ``vqa``, ``retrieval``) loaded from
    ``directory`` with ``backend``, with its tokenizer and image processor; ``load``: extra
    ``from_pretrained`` arguments (``dtype="bfloat16"``, ``quantization="int8"``)."""

    def __init__(self, backend: Any, task: str, directory: Path, **load: Any) -> None:
        self.backend = backend
        self.model = backend.model_class(CLASS_NAMES[task]).from_pretrained(directory, **load)
        self.tokenizer = BlipTokenizer.from_pretrained(directory)
        self.processor = BlipImageProcessor.from_pretrained(directory)
        self.text_config = self.model.config.text_config

    def pixels(self, images) -> np.ndarray:
        """``(B, 3, H, W)`` float32 pixels of PIL images."""
        return self.processor(images, return_tensors="np")["pixel_values"]

    def text(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(input_ids, attention_mask)`` ``(N, T)`` int64, padded to the longest text."""
        enc = self.tokenizer(texts, padding="longest", return_tensors="np")
        return enc["input_ids"].astype(np.int64), enc["attention_mask"].astype(np.int64)


def greedy_decode(task: Task, encoder_states, encoder_mask, batch: int, max_new_tokens: int):
    """Greedy decoding from ``[DEC]`` until ``[SEP]`` (full recompute per step; the sequences
    are a few tokens long).  Returns ``(B, T)`` ids starting with ``[DEC]``, padded with
    ``[PAD]`` after ``[SEP]``."""
    b, cfg = task.backend, task.text_config
    ids = np.full((batch, 1), cfg.bos_token_id, dtype=np.int64)
    done = np.zeros(batch, dtype=bool)
    for _ in range(max_new_tokens):
        out = task.model.text_decoder(
            input_ids=b.from_numpy(ids),
            attention_mask=b.from_numpy(np.ones_like(ids)),
            encoder_hidden_states=encoder_states,
            encoder_attention_mask=encoder_mask,
        )
        logits = b.to_numpy(_field(out, "logits", 1))[:, -1]
        nxt = np.where(done, cfg.pad_token_id, logits.argmax(-1))
        ids = np.concatenate([ids, nxt[:, None]], axis=1)
        done |= nxt == cfg.sep_token_id
        if done.all():
            break
    return ids


def caption_ids(task: Task, pixel_values: np.ndarray, greedy_loop: bool, max_new_tokens=24):
    """Greedy caption ids ``(B, T)`` (numpy) from ``generate``, or from :func:`greedy_decode`
    when ``greedy_loop`` (or the model has no ``generate``)."""
    b = task.backend
    with b.inference():
        if not greedy_loop and hasattr(task.model, "generate"):
            ids = task.model.generate(
                b.from_numpy(pixel_values), max_new_tokens=max_new_tokens, num_beams=1
            )
            return b.to_numpy(ids)
        vision = task.model.vision_model(b.from_numpy(pixel_values))
        image_embeds = _field(vision, "last_hidden_state")
        ones = b.from_numpy(np.ones(b.to_numpy(image_embeds).shape[:2], dtype=np.int64))
        return greedy_decode(task, image_embeds, ones, len(pixel_values), max_new_tokens)


def answer_ids(task: Task, pixel_values, q_ids, q_mask, greedy_loop: bool, max_new_tokens=6):
    """Greedy answer ids ``(B, T)`` (numpy) to the questions ``q_ids`` / ``q_mask`` ``(B, Tq)``,
    from ``generate`` or (``greedy_loop``) from :func:`greedy_decode` over the question states."""
    b = task.backend
    with b.inference():
        if not greedy_loop and hasattr(task.model, "generate"):
            ids = task.model.generate(
                b.from_numpy(q_ids),
                b.from_numpy(pixel_values),
                attention_mask=b.from_numpy(q_mask),
                max_new_tokens=max_new_tokens,
                num_beams=1,
            )
            return b.to_numpy(ids)
        vision = task.model.vision_model(b.from_numpy(pixel_values))
        question = task.model.text_encoder(
            input_ids=b.from_numpy(q_ids),
            attention_mask=b.from_numpy(q_mask),
            encoder_hidden_states=_field(vision, "last_hidden_state"),
        )
        question = _field(question, "last_hidden_state")
        return greedy_decode(task, question, b.from_numpy(q_mask), len(q_ids), max_new_tokens)


# ---- metrics ----------------------------------------------------------------------------------


def eval_caption(task: Task, examples, greedy_loop=False, batch_size=50) -> dict:
    """Caption exact match over ``examples`` (overall and by shape count), with predictions."""
    predictions = []
    for sl in _batches(len(examples), batch_size):
        pixels = task.pixels([e.image for e in examples[sl]])
        ids = caption_ids(task, pixels, greedy_loop)
        predictions += task.tokenizer.batch_decode(ids, skip_special_tokens=True)
    hits = [normalize_text(p) == normalize_text(e.caption) for p, e in zip(predictions, examples)]
    by_count: dict[str, list[bool]] = {}
    for hit, e in zip(hits, examples):
        by_count.setdefault(f"{len(e.scene.shapes)} shapes", []).append(hit)
    return {
        "exact_match": float(np.mean(hits)),
        "n": len(examples),
        "by_shapes": {k: float(np.mean(v)) for k, v in sorted(by_count.items())},
        "predictions": predictions,
    }


def question_template(question: str) -> str:
    """``question`` with its colour, shape and side words replaced by ``<color>`` ... slots."""
    words = []
    for word in question.split():
        bare = word.rstrip("?")
        if bare in data.COLORS:
            word = word.replace(bare, "<color>")
        elif bare in data.KINDS:
            word = word.replace(bare, "<shape>")
        elif bare in ("left", "right"):
            word = word.replace(bare, "<side>")
        words.append(word)
    return " ".join(words)


def eval_vqa(task: Task, examples, greedy_loop=False, batch_size=50) -> dict:
    """VQA accuracy over ``examples`` (overall, by shape count, by question template)."""
    predictions = []
    for sl in _batches(len(examples), batch_size):
        chunk = examples[sl]
        pixels = task.pixels([e.image for e in chunk])
        q_ids, q_mask = task.text([e.question for e in chunk])
        ids = answer_ids(task, pixels, q_ids, q_mask, greedy_loop)
        predictions += task.tokenizer.batch_decode(ids, skip_special_tokens=True)
    hits = [normalize_text(p) == normalize_text(e.answer) for p, e in zip(predictions, examples)]
    by_type: dict[str, list[bool]] = {}
    by_count: dict[str, list[bool]] = {}
    for hit, e in zip(hits, examples):
        by_type.setdefault(question_template(e.question), []).append(hit)
        by_count.setdefault(f"{len(e.scene.shapes)} shapes", []).append(hit)
    return {
        "accuracy": float(np.mean(hits)),
        "n": len(examples),
        "by_shapes": {k: float(np.mean(v)) for k, v in sorted(by_count.items())},
        "by_question": {k: [float(np.mean(v)), len(v)] for k, v in sorted(by_type.items())},
        "predictions": predictions,
    }


def retrieval_scores(task: Task, examples, k: int, batch_size: int = 200):
    """``(itc, itm)``: the ``(N_img, N_txt)`` ITC cosine matrix, and ITM match probabilities for
    each text's and each image's top-``k`` ITC candidates (NaN elsewhere)."""
    b = task.backend
    with b.inference():
        pixels = task.pixels([e.image for e in examples])
        ids, mask = task.text([e.caption for e in examples])
        out = task.model(
            input_ids=b.from_numpy(ids),
            pixel_values=b.from_numpy(pixels),
            attention_mask=b.from_numpy(mask),
            use_itm_head=False,
        )
        itc = b.to_numpy(_field(out, "itm_score"))  # (N_img, N_txt)
        n = len(examples)
        pairs = set()
        for t in range(n):
            pairs.update((int(i), t) for i in np.argsort(-itc[:, t], kind="stable")[:k])
        for i in range(n):
            pairs.update((i, int(t)) for t in np.argsort(-itc[i], kind="stable")[:k])
        pairs = sorted(pairs)
        itm = np.full((n, n), np.nan, dtype=np.float32)
        for start in range(0, len(pairs), batch_size):
            chunk = pairs[start : start + batch_size]
            img = np.array([i for i, _ in chunk])
            txt = np.array([t for _, t in chunk])
            logits = b.to_numpy(
                _field(
                    task.model(
                        input_ids=b.from_numpy(ids[txt]),
                        pixel_values=b.from_numpy(pixels[img]),
                        attention_mask=b.from_numpy(mask[txt]),
                        use_itm_head=True,
                    ),
                    "itm_score",
                )
            )
            logits = logits - logits.max(-1, keepdims=True)
            probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
            itm[img, txt] = probs[:, 1]
        return itc, itm


def eval_retrieval(task: Task, examples, k: int = 10) -> dict:
    """Retrieval R@1 in both directions among ``examples``, by ITC and by ITC top-``k`` + ITM."""
    itc, itm = retrieval_scores(task, examples, k)
    n = len(examples)
    truth = np.arange(n)
    rerank = np.where(np.isnan(itm), -np.inf, itm + 1e-3 * itc)  # ITC breaks ITM ties
    result = {"n_candidates": n, "k": k}
    for name, scores in (("itc", itc), ("itc+itm", rerank)):
        t2i = (scores.argmax(0) == truth).mean()  # each caption (column) ranks the images
        i2t = (scores.argmax(1) == truth).mean()  # each image (row) ranks the captions
        result[f"t2i_r1_{name}"] = float(t2i)
        result[f"i2t_r1_{name}"] = float(i2t)
    return result


def evaluate(
    backend: Any,
    models_dir: Path = MODELS_DIR,
    n: int = 200,
    gallery: int = 100,
    k: int = 10,
    tasks=TASKS,
    greedy_loop: bool = False,
    **load: Any,
) -> dict:
    """Score each of ``tasks`` on ``n`` held-out scenes (retrieval: a ``gallery`` of distinct
    captions, ITM re-ranking the ITC top ``k``) with the models under ``models_dir``.

    ``load``: extra ``from_pretrained`` arguments for every model (a dtype, a quantization).
    Returns ``{"backend", "models", <task>: {metrics..., "seconds"}}``; JSON-serialisable.
    """
    examples = data.heldout_examples(n)
    results: dict = {"backend": backend.name, "models": str(models_dir), **load}
    for name in tasks:
        start = time.time()
        task = Task(backend, name, models_dir / name, **load)
        if name == "caption":
            results[name] = eval_caption(task, examples, greedy_loop)
        elif name == "vqa":
            results[name] = eval_vqa(task, examples, greedy_loop)
        else:
            results[name] = eval_retrieval(task, data.retrieval_set(data.HELDOUT_SEED, gallery), k)
        results[name]["seconds"] = round(time.time() - start, 1)
    return results


def format_table(results: dict) -> str:
    """The results of :func:`evaluate` as a text table (metric, value, target)."""
    rows = [("metric", "value", "target")]
    if "caption" in results:
        r = results["caption"]
        rows.append(
            (f"caption exact match (n={r['n']})", f"{100 * r['exact_match']:.1f} %", ">= 90 %")
        )
        for key, value in r["by_shapes"].items():
            rows.append((f"  {key}", f"{100 * value:.1f} %", ""))
    if "vqa" in results:
        r = results["vqa"]
        rows.append((f"VQA accuracy (n={r['n']})", f"{100 * r['accuracy']:.1f} %", ">= 90 %"))
        for key, value in r["by_shapes"].items():
            rows.append((f"  {key}", f"{100 * value:.1f} %", ""))
    if "retrieval" in results:
        r = results["retrieval"]
        g = r["n_candidates"]
        for name in ("itc", "itc+itm"):
            for direction, label in (("t2i", "text->image"), ("i2t", "image->text")):
                rows.append(
                    (
                        f"retrieval R@1 {label}, {name} ({g} candidates)",
                        f"{100 * r[f'{direction}_r1_{name}']:.1f} %",
                        "",
                    )
                )
    width = max(len(row[0]) for row in rows)
    lines = [f"backend: {results['backend']}   models: {results['models']}"]
    lines += [f"{a:<{width}}  {b:>8}  {c}" for a, b, c in rows]
    return "\n".join(lines)


__all__ = [
    "CLASS_NAMES",
    "Task",
    "answer_ids",
    "caption_ids",
    "eval_caption",
    "eval_retrieval",
    "eval_vqa",
    "evaluate",
    "format_table",
    "greedy_decode",
    "normalize_text",
    "question_template",
    "retrieval_scores",
]
