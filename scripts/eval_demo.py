"""Score the demo BLIP models on held-out generated scenes, with the PyTorch or the Keras backend.

A command line over :mod:`blip_apps.demo.evaluate` (the metrics are described there): caption
exact match and VQA accuracy over ``--n`` held-out scenes, retrieval R@1 among ``--gallery``
candidates (ITC, and the ITC top ``--k`` re-ranked by ITM).

    python scripts/eval_demo.py --backend torch
    python scripts/eval_demo.py --backend tf --n 200 --json /tmp/eval_tf.json
"""

# ruff: noqa: E402  (the imports follow the sys.path set-up)
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a source checkout without installing
    sys.path.insert(0, str(ROOT))

from blip_apps.backends import load_backend
from blip_apps.demo import MODELS_DIR, data
from blip_apps.demo.evaluate import evaluate, format_table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--backend",
        choices=["torch", "tf", "onnx"],
        default="torch",
        help="onnx: --models holds directories written by blip export",
    )
    parser.add_argument("--models", type=Path, default=MODELS_DIR)
    parser.add_argument("--n", type=int, default=200, help="held-out images for caption and VQA")
    parser.add_argument("--gallery", type=int, default=100, help="retrieval candidates")
    parser.add_argument("--k", type=int, default=10, help="ITC candidates re-ranked by ITM")
    parser.add_argument("--tasks", default="caption,vqa,retrieval")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--greedy-loop", action="store_true", help="do not use model.generate")
    parser.add_argument("--dtype", help="load the models in this dtype (bfloat16, auto, ...)")
    parser.add_argument("--quantization", choices=["int8", "int8-dynamic"], help="torch only")
    parser.add_argument(
        "--quantize-vision",
        action="store_true",
        help="with --quantization: the vision tower too (quantization_parts=('text', 'vision'))",
    )
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--show", type=int, default=0, help="print this many predictions per task")
    args = parser.parse_args(argv)

    backend = load_backend(args.backend, threads=args.threads)
    tasks = [t for t in args.tasks.split(",") if (args.models / t).is_dir()]
    load = {k: v for k, v in (("dtype", args.dtype), ("quantization", args.quantization)) if v}
    if args.quantize_vision:
        if not args.quantization:
            parser.error("--quantize-vision needs --quantization")
        load["quantization_parts"] = ("text", "vision")
    results = evaluate(
        backend, args.models, args.n, args.gallery, args.k, tasks, args.greedy_loop, **load
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
