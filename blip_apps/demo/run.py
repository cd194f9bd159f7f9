"""The demo run (``make demo``): caption images with every installed backend, answer questions,
match captions to images, with the bundled demo models; results as short text tables.

    from blip_apps.demo.run import available_backends, demo_report
    print(demo_report(sorted(Path("examples").glob("*.png")), available_backends()))
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from blip_apps.backends import BACKENDS, load_backend
from blip_apps.demo import model_dir
from blip_apps.pipeline import Captioner, Matcher, QuestionAnswerer
from blip_core.image_processing import load_image

QUESTIONS = ("how many shapes are there?", "what shape is on the left?")
CANDIDATES = ("one", "two", "three", "circle", "square", "triangle", "cross")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table: a header line, a rule, one line per row, columns padded."""
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    line = "  ".join(f"{{:{w}s}}" for w in widths)
    out = [line.format(*headers), line.format(*("-" * w for w in widths))]
    out += [line.format(*map(str, row)) for row in rows]
    return "\n".join(out)


def available_backends(names: Sequence[str] = BACKENDS) -> dict[str, Any]:
    """``{name: adapter}`` of the backends that import; the others are named on stderr."""
    found = {}
    for name in names:
        try:
            found[name] = load_backend(name)
        except ImportError as exc:
            print(f"backend {name} unavailable: {exc}", file=sys.stderr)
    return found


def demo_report(images: Sequence[Path], backends: Mapping[str, Any], beams: int = 3) -> str:
    """Captions (``beams`` beams) per image and backend, answers to :data:`QUESTIONS` (generated
    and ranked among :data:`CANDIDATES`) for the first image, and the best-matching caption per
    image by ITM; with two backends, whether their captions agree."""
    if not images or not backends:
        raise ValueError("the demo needs at least one image and one backend")
    captioners = {n: Captioner(model_dir("caption"), b) for n, b in backends.items()}
    processor = next(iter(captioners.values())).processor
    pixels = processor.image_processor([load_image(p) for p in images], return_tensors="np")[
        "pixel_values"
    ]
    captions = {n: c.caption_pixels(pixels, num_beams=beams) for n, c in captioners.items()}
    both = len(captioners) == 2
    rows = []
    for i, path in enumerate(images):
        row = [path.name] + [captions[n][i] for n in captioners]
        if both:
            first, second = (captions[n][i] for n in captioners)
            row.append("yes" if first == second else "NO")
        rows.append(row)
    headers = ["image"] + [f"caption ({n})" for n in captioners] + (["same"] if both else [])
    parts = [f"Captions ({beams} beams)\n" + table(headers, rows)]

    rows = []
    for name, backend in backends.items():
        qa = QuestionAnswerer(model_dir("vqa"), backend)
        for q in QUESTIONS:
            answer = qa.answer(pixels[:1], q)[0]
            best, score = qa.rank(pixels[:1], q, list(CANDIDATES))[0]
            rows.append([name, images[0].name, q, answer, f"{best} ({score:.2f})"])
    headers = ["backend", "image", "question", "answer", "best ranked"]
    parts.append("Questions\n" + table(headers, rows))

    rows = []
    texts = next(iter(captions.values()))
    for name, backend in backends.items():
        matcher = Matcher(model_dir("retrieval"), backend)
        for i, path in enumerate(images):
            scores = matcher.match(pixels[i : i + 1], texts)
            best = max(range(len(texts)), key=lambda j: scores[j]["itm"])
            rows.append([name, path.name, texts[best], f"{scores[best]['itm']:.3f}",
                         "yes" if best == i else "no"])  # fmt: skip
    headers = ["backend", "image", "best caption", "ITM p", "own caption"]
    parts.append("Best-matching caption per image (ITM)\n" + table(headers, rows))
    return "\n\n".join(parts)


__all__ = ["CANDIDATES", "QUESTIONS", "available_backends", "demo_report", "table"]
