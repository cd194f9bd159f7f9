"""`make demo`: caption the example images with both backends, answer questions, rank captions.

Uses the demo models bundled in ``blip_apps/demo/models`` (trained by ``scripts/train_demo.py``
on generated shape scenes) and the images in ``examples/``.  Prints short tables.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from blip_apps.demo import model_dir  # noqa: E402
from blip_core.image_processing import load_image  # noqa: E402
from blip_apps.pipeline import Backend, Captioner, Matcher, QuestionAnswerer  # noqa: E402


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    line = "  ".join(f"{{:{w}s}}" for w in widths)
    out = [line.format(*headers), line.format(*("-" * w for w in widths))]
    out += [line.format(*map(str, row)) for row in rows]
    return "\n".join(out)


def main() -> int:
    images = sorted((ROOT / "examples").glob("*.png"))
    if not images:
        print("no example images in examples/", file=sys.stderr)
        return 1
    backends = {}
    for name in ("torch", "tf"):
        try:
            backends[name] = Backend(name)
        except ImportError as exc:
            print(f"backend {name} unavailable: {exc}", file=sys.stderr)
    start = time.perf_counter()
    captioners = {n: Captioner(model_dir("caption"), b) for n, b in backends.items()}
    processor = next(iter(captioners.values())).processor
    pixels = processor.image_processor([load_image(p) for p in images], return_tensors="np")[
        "pixel_values"
    ]
    captions = {n: c.caption_pixels(pixels, num_beams=3) for n, c in captioners.items()}
    rows = []
    for i, path in enumerate(images):
        row = [path.name] + [captions[n][i] for n in captioners]
        if len(captioners) == 2:
            row.append("yes" if captions["torch"][i] == captions["tf"][i] else "NO")
        rows.append(row)
    headers = ["image"] + [f"caption ({n})" for n in captioners]
    headers += ["same"] if len(captioners) == 2 else []
    print("\nCaptions (3 beams)\n" + table(headers, rows))

    questions = ["how many shapes are there?", "what shape is on the left?"]
    rows = []
    for name, backend in backends.items():
        qa = QuestionAnswerer(model_dir("vqa"), backend)
        for q in questions:
            answer = qa.answer(pixels[:1], q)[0]
            ranked = qa.rank(
                pixels[:1], q, ["one", "two", "three", "circle", "square", "triangle", "cross"]
            )
            rows.append([name, images[0].name, q, answer, f"{ranked[0][0]} ({ranked[0][1]:.2f})"])
    print("\nQuestions\n" + table(["backend", "image", "question", "answer", "best ranked"], rows))

    rows = []
    texts = captions["torch"] if "torch" in captions else next(iter(captions.values()))
    for name, backend in backends.items():
        matcher = Matcher(model_dir("retrieval"), backend)
        for i, path in enumerate(images):
            scores = matcher.match(pixels[i : i + 1], texts)
            best = max(range(len(texts)), key=lambda j: scores[j]["itm"])
            rows.append([name, path.name, texts[best], f"{scores[best]['itm']:.3f}",
                         "yes" if best == i else "no"])  # fmt: skip
    print("\nBest-matching caption per image (ITM)\n"
          + table(["backend", "image", "best caption", "ITM p", "own caption"], rows))  # fmt: skip
    print(f"\ndone in {time.perf_counter() - start:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
