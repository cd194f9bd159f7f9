"""The ``blip`` command: caption, answer, match and search with either backend.

    blip caption IMAGE_OR_DIR... [--model DIR_OR_HUB_ID] [--backend torch|tf] [--beams N]
                 [--prompt TEXT] [--batch-size N] [--output FILE.jsonl]
    blip vqa IMAGE "question" [--answers a,b,c]
    blip match IMAGE "text" ["text" ...]
    blip search --images DIR --query "text" [--top-k K]
    blip convert SRC DST --to {pt,tf} ...

Without ``--model`` the bundled demo models (trained by this project on generated shape
scenes) are used.  Results stream as JSON lines (stdout, or ``--output``); an image that cannot be
read is reported on stderr (file and reason) and skipped, and the exit status is then 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TextIO

EXIT_OK, EXIT_SOME_FAILED, EXIT_ERROR = 0, 1, 2


def _progress(total: int, enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return None
    return tqdm(total=total, unit="img", file=sys.stderr, dynamic_ncols=True)


def _emit(record: dict, out: TextIO) -> None:
    out.write(json.dumps(record, ensure_ascii=False) + "\n")
    out.flush()


def _report_failure(path, reason: str, out: TextIO) -> None:
    print(f"blip: skipped {path}: {reason}", file=sys.stderr)
    _emit({"image": str(path), "error": reason}, out)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="model directory or hub id (default: bundled demo model)")
    parser.add_argument("--backend", choices=("torch", "tf"), default="torch")


def cmd_caption(args, out: TextIO) -> int:
    from blip_apps.pipeline import (
        Backend,
        Captioner,
        expand_images,
        iter_image_batches,
        resolve_model,
    )

    paths = expand_images(args.images)
    if not paths:
        print("blip caption: no images found in " + ", ".join(args.images), file=sys.stderr)
        return EXIT_ERROR
    captioner = Captioner(resolve_model(args.model, "caption"), Backend(args.backend))
    gen = {"num_beams": args.beams, "max_new_tokens": args.max_new_tokens}
    if args.original:
        from blip_core.generation import ORIGINAL_BLIP_CAPTION, ORIGINAL_BLIP_PROMPT

        gen = dict(ORIGINAL_BLIP_CAPTION)
        args.prompt = args.prompt or ORIGINAL_BLIP_PROMPT
    failed = 0
    bar = _progress(len(paths), len(paths) > 1 and not args.quiet)
    for batch in iter_image_batches(paths, captioner.processor, args.batch_size):
        for path, reason in batch.failures:
            failed += 1
            _report_failure(path, reason, out)
        if batch.pixel_values is not None:
            texts = captioner.caption_pixels(
                batch.pixel_values, prompt=args.prompt, strip=args.original, **gen
            )
            for path, text in zip(batch.paths, texts):
                _emit({"image": str(path), "caption": text}, out)
        if bar is not None:
            bar.update(len(batch.paths) + len(batch.failures))
    if bar is not None:
        bar.close()
    return EXIT_SOME_FAILED if failed else EXIT_OK


def _one_image(path: str, processor):
    from blip_core.image_processing import load_image

    return processor.image_processor([load_image(path)], return_tensors="np")["pixel_values"]


def cmd_vqa(args, out: TextIO) -> int:
    from blip_apps.pipeline import Backend, QuestionAnswerer, resolve_model

    qa = QuestionAnswerer(resolve_model(args.model, "vqa"), Backend(args.backend))
    pixels = _one_image(args.image, qa.processor)
    if args.answers:
        answers = [a.strip() for a in args.answers.split(",") if a.strip()]
        ranked = qa.rank(pixels, args.question, answers)
        _emit(
            {"image": args.image, "question": args.question,
             "ranking": [{"answer": a, "log_likelihood": s} for a, s in ranked]},
            out,
        )  # fmt: skip
    else:
        answer = qa.answer(pixels, args.question, num_beams=args.beams)[0]
        _emit({"image": args.image, "question": args.question, "answer": answer}, out)
    return EXIT_OK


def cmd_match(args, out: TextIO) -> int:
    from blip_apps.pipeline import Backend, Matcher, resolve_model

    matcher = Matcher(resolve_model(args.model, "retrieval"), Backend(args.backend))
    pixels = _one_image(args.image, matcher.processor)
    for row in matcher.match(pixels, args.texts):
        _emit({"image": args.image, **row}, out)
    return EXIT_OK


def cmd_search(args, out: TextIO) -> int:
    import numpy as np

    from blip_apps.pipeline import (
        Backend,
        Matcher,
        expand_images,
        iter_image_batches,
        resolve_model,
    )

    paths = expand_images([args.images])
    if not paths:
        print(f"blip search: no images found in {args.images}", file=sys.stderr)
        return EXIT_ERROR
    matcher = Matcher(resolve_model(args.model, "retrieval"), Backend(args.backend))
    kept, embeds, states, failed = [], [], [], 0
    bar = _progress(len(paths), len(paths) > 1 and not args.quiet)
    for batch in iter_image_batches(paths, matcher.processor, args.batch_size):
        for path, reason in batch.failures:
            failed += 1
            _report_failure(path, reason, out)
        if batch.pixel_values is not None:
            e, s = matcher.encode_images(batch.pixel_values)
            kept += batch.paths
            embeds.append(e)
            states.append(s)
        if bar is not None:
            bar.update(len(batch.paths) + len(batch.failures))
    if bar is not None:
        bar.close()
    if not kept:
        return EXIT_SOME_FAILED
    result = matcher.search(np.concatenate(embeds), np.concatenate(states), args.query, args.top_k)
    for rank, row in enumerate(result.as_list(), 1):
        _emit({"rank": rank, "image": str(kept[row["index"]]), "itm": row["itm"],
               "itc": row["itc"]}, out)  # fmt: skip
    return EXIT_SOME_FAILED if failed else EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="blip", description="BLIP captioning, VQA and retrieval")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("caption", help="caption images or folders of images")
    p.add_argument("images", nargs="+", metavar="IMAGE_OR_DIR")
    _common(p)
    p.add_argument("--beams", type=int, default=1)
    p.add_argument("--prompt", help="caption prompt, e.g. 'a picture of'")
    p.add_argument("--original", action="store_true",
                   help="the original BLIP settings: 3 beams, max length 20, min length 5, "
                        "prompt 'a picture of ' stripped from the caption")  # fmt: skip
    p.add_argument("--max-new-tokens", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--output", help="write JSON lines to this file instead of stdout")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_caption)

    p = sub.add_parser("vqa", help="answer a question about an image")
    p.add_argument("image")
    p.add_argument("question")
    p.add_argument("--answers", help="comma-separated candidates to rank instead of generating")
    p.add_argument("--beams", type=int, default=1)
    _common(p)
    p.add_argument("--output")
    p.set_defaults(func=cmd_vqa)

    p = sub.add_parser("match", help="ITM probability and ITC cosine of an image with texts")
    p.add_argument("image")
    p.add_argument("texts", nargs="+")
    _common(p)
    p.add_argument("--output")
    p.set_defaults(func=cmd_match)

    p = sub.add_parser("search", help="rank a folder of images against a text query")
    p.add_argument("--images", required=True, help="folder of images")
    p.add_argument("--query", required=True)
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--quiet", action="store_true")
    _common(p)
    p.add_argument("--output")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("convert", help="convert weights (see blip-convert --help)", add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "convert":
        from blip_core.weights.convert import main as convert_main

        return convert_main(argv[1:])
    args = build_parser().parse_args(argv)
    out_path = getattr(args, "output", None)
    try:
        out = open(out_path, "w", encoding="utf-8") if out_path else sys.stdout  # noqa: SIM115
    except OSError as exc:
        print(f"blip: cannot write {out_path}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    try:
        return args.func(args, out)
    except (FileNotFoundError, ValueError, OSError) as exc:
        print(f"blip {args.command}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        if out is not sys.stdout:
            out.close()


if __name__ == "__main__":
    sys.exit(main())
