"""The ``blip`` command: caption, answer, match and search with either backend.

    blip caption DATA... [--model DIR_OR_HUB_ID] [--backend torch|tf|onnx] [--beams N]
                 [--prompt TEXT] [--batch-size N] [--max-new-tokens N]
                 [--output FILE.jsonl|.csv|.parquet] [--resume] [--sidecar .txt]
                 [--engine local|ray] [--itm-model DIR]
                 [--dtype auto|float32|bfloat16|float16|int8] [--compile] ...
    blip vqa DATA... "question" [--answers a,b,c] [--top-k K] [--beams N] (same output flags)
    blip match IMAGE "text" ["text" ...]
    blip search --images DIR --query "text" [--top-k K] [--batch-size N]
    blip search --index FILE "text" [--top-k K]
    blip embed DATA... --index FILE.parquet
    blip env [--json]
    blip serve [--model DIR] [--task caption|vqa|retrieval|all] [--host 127.0.0.1] [--port 8000]
    blip convert SRC DST --to {pt,tf} ...
    blip export MODEL_DIR OUT_DIR [--format onnx|savedmodel] [--dtype fp32|int8] [--force]

Without ``--model`` the bundled demo models (trained by this project on generated shape
scenes) are used.  Results stream as JSON lines (stdout, or ``--output``).  An image that
cannot be read is a record ``{"path": ..., "error": ...}`` in that stream (and a line on
stderr), the run goes on, and the exit status is then 1.  Any other user error is one line
``blip: error: ...`` on stderr with the exit code listed in :data:`blip_apps.errors.EXIT_CODES`
(also in ``blip --help``); a traceback is shown only for a bug (exit code 70).
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from typing import NoReturn

from blip_apps.errors import (
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SOME_FAILED,
    EXIT_USAGE,
    UsageError,
    epilog,
    exit_code,
    message,
)

EXIT_ERROR = EXIT_USAGE  # the old name of the usage-error code (EXIT_OK, EXIT_SOME_FAILED too)


class _Parser(argparse.ArgumentParser):
    """``argparse`` whose errors are one line, ``blip: error: ...``, exit code 2."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.split(" ", 1)[1] if " " in self.prog else ""
        hint = f"; see 'blip {command} --help'" if command else "; see 'blip --help'"
        self.exit(EXIT_USAGE, f"blip: error: {message}{hint}\n")


def positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1 (the message gives the value)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid value {text!r}: expected a whole number >= 1"
        ) from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: must be >= 1")
    return value


def answer_list(text: str) -> list[str]:
    """An argparse type: comma-separated candidate answers, at least one non-empty."""
    answers = [a.strip() for a in text.split(",") if a.strip()]
    if not answers:
        raise argparse.ArgumentTypeError(
            f"no candidate answers in {text!r}; give comma-separated answers, e.g. red,blue"
        )
    return answers


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="model directory or hub id (default: bundled demo model)")
    from blip_apps.backends import BACKENDS

    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="torch",
        help="torch, tf, or onnx (a directory written by 'blip export')",
    )
    parser.add_argument("--output", help="write JSON lines to this file instead of stdout")


def build_parser() -> argparse.ArgumentParser:
    from blip_apps import commands

    parser = _Parser(
        prog="blip",
        description="BLIP captioning, VQA and retrieval",
        epilog=epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)

    from blip_apps.datasets import cli as dataset_cli

    p = sub.add_parser("caption", help="caption images, folders, path lists, parquet tables, tar shards",
                       epilog=epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("images", nargs="+", metavar="DATA")
    _common(p)
    p.add_argument("--beams", type=positive_int, default=1)
    p.add_argument("--prompt", help="caption prompt, e.g. 'a picture of'")
    p.add_argument("--original", action="store_true",
                   help="the original BLIP settings: 3 beams, max length 20, min length 5, "
                        "prompt 'a picture of ' stripped from the caption")  # fmt: skip
    p.add_argument("--max-new-tokens", type=positive_int, default=30)
    p.add_argument("--batch-size", type=positive_int, default=8)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    dataset_cli.add_dataset_arguments(p, "caption")
    p.set_defaults(func=dataset_cli.cmd_caption_dataset, opens_output=True)

    p = sub.add_parser("vqa", help="answer a question about images (blip vqa IMAGE... QUESTION)")
    p.add_argument("images", nargs="+", metavar="DATA",
                   help="images, folders, ...; without --question the last one is the question")  # fmt: skip
    p.add_argument("--question", help="the question to ask about every image")
    p.add_argument("--answers", type=answer_list,
                   help="comma-separated candidates to rank instead of generating")  # fmt: skip
    p.add_argument("--beams", type=positive_int, default=1)
    p.add_argument("--max-new-tokens", type=positive_int, default=None)
    p.add_argument("--batch-size", type=positive_int, default=8)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _common(p)
    dataset_cli.add_dataset_arguments(p, "vqa")
    p.set_defaults(func=_vqa, opens_output=True)

    p = sub.add_parser("match", help="ITM probability and ITC cosine of an image with texts")
    p.add_argument("image")
    p.add_argument("texts", nargs="+")
    _common(p)
    p.set_defaults(func=commands.cmd_match)

    p = sub.add_parser("search", help="rank images against a text query (a folder, or an index)")
    p.add_argument("--images", help="folder of images (encoded for this query)")
    p.add_argument("--query", help="the text query")
    p.add_argument("--top-k", type=positive_int, default=5)
    p.add_argument("--batch-size", type=positive_int, default=16)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _common(p)
    dataset_cli.add_search_arguments(p)  # --index FILE "query": ranks from a blip embed index
    p.set_defaults(func=_search)

    for name in ("embed",):
        dataset_cli.add_parsers(sub, only=name)

    p = sub.add_parser("env", help="the hardware found and the dtype 'auto' picks, per backend")
    p.add_argument("--json", action="store_true", help="one JSON object instead of text")
    p.set_defaults(func=_env, opens_output=True)

    from blip_apps.export.command import add_parser as add_export
    from blip_apps.serve.cli import add_parser as add_serve

    add_export(sub)
    add_serve(sub)

    p = sub.add_parser("convert", help="convert weights (see blip-convert --help)", add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=None)
    return parser


def _env(args: argparse.Namespace, out) -> int:
    """``blip env``: :func:`blip_core.hardware.hardware_report`, and what each installed
    backend's framework sees (version, threads, GPUs, the dtype ``"auto"`` gives there)."""
    import importlib
    import json

    from blip_core import hardware

    report = hardware.hardware_report()
    backends = {}
    for name, module in (("torch", "blip_torch"), ("tf", "blip_tf")):
        try:
            package = importlib.import_module(module)
        except ImportError as exc:
            backends[name] = {"installed": False, "reason": message(exc)}
            continue
        extra = package.hardware_report()  # its own measurement and verdict where they differ
        differs = {k: v for k, v in extra.items() if k not in report or report[k] != v}
        differs.pop("auto_dtype", None)
        backends[name] = {"installed": True, **differs}
        backends[name]["auto"] = str(package.auto_dtype()).removeprefix("torch.")
    report["backends"] = backends
    if args.json:
        print(json.dumps(report, indent=2, default=str))
        return 0
    print(hardware.format_report({k: v for k, v in report.items() if k != "backends"}))
    for name, info in backends.items():
        details = ", ".join(f"{k}={v}" for k, v in info.items() if k != "installed")
        print(f"{name}: {'installed' if info['installed'] else 'not installed'}; {details}")
    return 0


def _vqa(args: argparse.Namespace, out) -> int:
    """``blip vqa IMAGE... QUESTION`` (or ``--question Q``) through the dataset runner."""
    if not args.question:
        if len(args.images) < 2:
            raise UsageError("blip vqa needs images and a question: blip vqa IMAGE 'question'")
        args.question, args.images = args.images[-1], args.images[:-1]
    from blip_apps.datasets.cli import cmd_vqa_dataset

    return cmd_vqa_dataset(args, out)


def _search(args: argparse.Namespace, out) -> int:
    """``blip search --images DIR --query Q`` or ``blip search --index FILE "query"``."""
    from blip_apps import commands
    from blip_apps.datasets.cli import cmd_search_index

    if args.index:
        return cmd_search_index(args, out)
    if not args.images or not (args.query or args.query_text):
        raise UsageError(
            "blip search needs --images DIR --query TEXT, or --index FILE 'query' "
            "(an index written by blip embed)"
        )
    args.query = args.query or args.query_text
    return commands.cmd_search(args, out)


def _open_output(path: str | None):
    if not path:
        return sys.stdout
    try:
        return open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed by main
    except OSError as exc:
        raise UsageError(f"--output {path}: cannot write: {message(exc)}") from exc


def _internal_error(exc: BaseException) -> int:
    traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    print(
        f"blip: internal error ({type(exc).__name__}: {message(exc)}); this is a bug, please "
        "report it with the command line and the traceback above",
        file=sys.stderr,
    )
    return EXIT_INTERNAL


def run(args: argparse.Namespace) -> int:
    """Run parsed ``args``; user errors become one stderr line and their exit code."""
    from blip_apps.commands import Output

    out = None
    try:
        # dataset runs open --output themselves (--resume continues it, never truncated here)
        path = None if getattr(args, "opens_output", False) else getattr(args, "output", None)
        out = Output(_open_output(path))
        return args.func(args, out)
    except KeyboardInterrupt:
        print("blip: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `blip caption ... | head`: the reader left, nothing to report
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_SOME_FAILED
    except Exception as exc:
        code = exit_code(exc)
        if code == EXIT_INTERNAL:
            return _internal_error(exc)
        print(f"blip: error: {message(exc)}", file=sys.stderr)
        return code
    finally:
        if out is not None and out.stream is not sys.stdout:
            out.stream.close()


def main(argv: list[str] | None = None) -> int:
    """The ``blip`` entry point; returns the exit code (see ``blip --help``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "convert":
        from blip_apps.commands import convert_main

        return convert_main(argv[1:])
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2, already printed)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    return run(args)


__all__ = ["EXIT_ERROR", "EXIT_OK", "EXIT_SOME_FAILED", "build_parser", "main", "run"]


if __name__ == "__main__":
    sys.exit(main())
