"""Score the demo BLIP models on held-out generated scenes, with the PyTorch or the Keras backend.

Metrics (held-out scenes from :data:`blip_apps.demo.data.HELDOUT_SEED`, never seen in training):

* caption exact match: greedy caption == the scene's canonical caption (after whitespace/case
  normalisation), over ``--n`` images;
* VQA accuracy: greedy answer == the one-word answer, over ``--n`` image-question pairs;
* retrieval R@1 among ``--gallery`` (100) candidates with distinct captions, both directions:
  text->image (each caption ranks every image) and image->text (each image ranks every caption);
  ``itc`` ranks by the contrastive cosine, ``itc+itm`` re-ranks the ITC top ``--k`` by the ITM
  match probability.

Captions and answers come from the models' ``generate`` when the backend has it; otherwise (or
with ``--greedy-loop``) from a plain greedy loop over the model's sub-modules written here.

    python scripts/eval_demo.py --backend torch
    python scripts/eval_demo.py --backend tf --n 200 --json /tmp/eval_tf.json
"""

# ruff: noqa: E402  (the imports follow the sys.path set-up)
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a source checkout without installing
    sys.path.insert(0, str(ROOT))

import numpy as np

from blip_apps.demo import MODELS_DIR, data
from blip_core.image_processing import BlipImageProcessor
from blip_core.tokenization import BlipTokenizer

CLASS_NAMES = {
    "caption": "BlipForConditionalGeneration",
    "vqa": "BlipForQuestionAnswering",
    "retrieval": "BlipForImageTextRetrieval",
}


# ---- backends ---------------------------------------------------------------------------------


class Backend:
    """The few framework operations the evaluation needs."""

    name = ""

    def load(self, task: str, directory: Path):
        raise NotImplementedError

    def tensor(self, array: np.ndarray):
        raise NotImplementedError

    def numpy(self, value) -> np.ndarray:
        return np.asarray(value)


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, threads: int) -> None:
        import torch

        import blip_torch

        torch.set_num_threads(threads)
        self.torch = torch
        self.module = blip_torch

    def load(self, task: str, directory: Path):
        return getattr(self.module, CLASS_NAMES[task]).from_pretrained(directory)

    def tensor(self, array: np.ndarray):
        return self.torch.from_numpy(np.ascontiguousarray(array))

    def numpy(self, value) -> np.ndarray:
        if isinstance(value, self.torch.Tensor):
            return value.detach().cpu().numpy()
        return np.asarray(value)


class TFBackend(Backend):
    name = "tf"

    def __init__(self, threads: int) -> None:
        import tensorflow as tf

        try:  # only possible before TensorFlow starts (not when a caller already used it)
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:
            pass
        import blip_tf

        self.tf = tf
        self.module = blip_tf

    def load(self, task: str, directory: Path):
        return getattr(self.module, CLASS_NAMES[task]).from_pretrained(directory)

    def tensor(self, array: np.ndarray):
        return self.tf.convert_to_tensor(array)

    def numpy(self, value) -> np.ndarray:
        return np.asarray(value)


def make_backend(name: str, threads: int = 2) -> Backend:
    if name == "torch":
        return TorchBackend(threads)
    if name == "tf":
        return TFBackend(threads)
    raise ValueError(f"unknown backend {name!r}; expected torch or tf")


# ---- helpers ----------------------------------------------------------------------------------


def normalize_text(text: str) -> str:
    text = text.lower().replace("?", " ?").replace(",", " , ")
    return " ".join(text.split())


def _field(output, name: str, index: int = 0):
    return getattr(output, name) if hasattr(output, name) else output[index]


def _batches(n: int, size: int):
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


class Task:
    """A loaded model with its tokenizer and image processor."""

    def __init__(self, backend: Backend, task: str, directory: Path) -> None:
        self.backend = backend
        self.model = backend.load(task, directory)
        self.tokenizer = BlipTokenizer.from_pretrained(directory)
        self.processor = BlipImageProcessor.from_pretrained(directory)
        self.text_config = self.model.config.text_config

    def pixels(self, images) -> np.ndarray:
        return self.processor(images, return_tensors="np")["pixel_values"]

    def text(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
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
            input_ids=b.tensor(ids),
            attention_mask=b.tensor(np.ones_like(ids)),
            encoder_hidden_states=encoder_states,
            encoder_attention_mask=encoder_mask,
        )
        logits = b.numpy(_field(out, "logits", 1))[:, -1]
        nxt = np.where(done, cfg.pad_token_id, logits.argmax(-1))
        ids = np.concatenate([ids, nxt[:, None]], axis=1)
        done |= nxt == cfg.sep_token_id
        if done.all():
            break
    return ids


def caption_ids(task: Task, pixel_values: np.ndarray, greedy_loop: bool, max_new_tokens=24):
    b = task.backend
    if not greedy_loop and hasattr(task.model, "generate"):
        return b.numpy(
            task.model.generate(b.tensor(pixel_values), max_new_tokens=max_new_tokens, num_beams=1)
        )
    image_embeds = _field(task.model.vision_model(b.tensor(pixel_values)), "last_hidden_state")
    ones = b.tensor(np.ones(b.numpy(image_embeds).shape[:2], dtype=np.int64))
    return greedy_decode(task, image_embeds, ones, len(pixel_values), max_new_tokens)


def answer_ids(task: Task, pixel_values, q_ids, q_mask, greedy_loop: bool, max_new_tokens=6):
    b = task.backend
    if not greedy_loop and hasattr(task.model, "generate"):
        return b.numpy(
            task.model.generate(
                b.tensor(q_ids),
                b.tensor(pixel_values),
                attention_mask=b.tensor(q_mask),
                max_new_tokens=max_new_tokens,
                num_beams=1,
            )
        )
    image_embeds = _field(task.model.vision_model(b.tensor(pixel_values)), "last_hidden_state")
    question = task.model.text_encoder(
        input_ids=b.tensor(q_ids),
        attention_mask=b.tensor(q_mask),
        encoder_hidden_states=image_embeds,
    )
    question = _field(question, "last_hidden_state")
    return greedy_decode(task, question, b.tensor(q_mask), len(q_ids), max_new_tokens)


# ---- metrics ----------------------------------------------------------------------------------


def eval_caption(task: Task, examples, greedy_loop=False, batch_size=50) -> dict:
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
    pixels = task.pixels([e.image for e in examples])
    ids, mask = task.text([e.caption for e in examples])
    out = task.model(
        input_ids=b.tensor(ids),
        pixel_values=b.tensor(pixels),
        attention_mask=b.tensor(mask),
        use_itm_head=False,
    )
    itc = b.numpy(_field(out, "itm_score"))  # (N_img, N_txt)
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
        logits = b.numpy(
            _field(
                task.model(
                    input_ids=b.tensor(ids[txt]),
                    pixel_values=b.tensor(pixels[img]),
                    attention_mask=b.tensor(mask[txt]),
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
    backend: Backend,
    models_dir: Path,
    n: int = 200,
    gallery: int = 100,
    k: int = 10,
    tasks=("caption", "vqa", "retrieval"),
    greedy_loop: bool = False,
) -> dict:
    examples = data.heldout_examples(n)
    results: dict = {"backend": backend.name, "models": str(models_dir)}
    for name in tasks:
        start = time.time()
        task = Task(backend, name, models_dir / name)
        if name == "caption":
            results[name] = eval_caption(task, examples, greedy_loop)
        elif name == "vqa":
            results[name] = eval_vqa(task, examples, greedy_loop)
        else:
            results[name] = eval_retrieval(task, data.retrieval_set(data.HELDOUT_SEED, gallery), k)
        results[name]["seconds"] = round(time.time() - start, 1)
    return results


def format_table(results: dict) -> str:
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--backend", choices=["torch", "tf"], default="torch")
    parser.add_argument("--models", type=Path, default=MODELS_DIR)
    parser.add_argument("--n", type=int, default=200, help="held-out images for caption and VQA")
    parser.add_argument("--gallery", type=int, default=100, help="retrieval candidates")
    parser.add_argument("--k", type=int, default=10, help="ITC candidates re-ranked by ITM")
    parser.add_argument("--tasks", default="caption,vqa,retrieval")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--greedy-loop", action="store_true", help="do not use model.generate")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--show", type=int, default=0, help="print this many predictions per task")
    args = parser.parse_args(argv)

    backend = make_backend(args.backend, args.threads)
    if args.backend == "torch":  # inference only; set here, not in the backend (tests reuse it)
        import torch

        torch.set_grad_enabled(False)
    tasks = [t for t in args.tasks.split(",") if (args.models / t).is_dir()]
    results = evaluate(
        backend, args.models, args.n, args.gallery, args.k, tasks, greedy_loop=args.greedy_loop
    )
    print(format_table(results))
    if "vqa" in results:
        print("VQA accuracy by question:")
        for template, (acc, count) in results["vqa"]["by_question"].items():
            print(f"  {template:<42} {100 * acc:5.1f} %  (n={count})")
    if args.show:
        examples = data.heldout_examples(args.n)
        for name, field in (("caption", "caption"), ("vqa", "answer")):
            if name in results:
                for e, p in list(zip(examples, results[name]["predictions"]))[: args.show]:
                    extra = f"{e.question} " if name == "vqa" else ""
                    print(f"  [{name}] {extra}{getattr(e, field)!r} -> {p!r}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
