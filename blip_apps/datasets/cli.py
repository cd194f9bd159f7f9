"""The ``blip`` flags and handlers of dataset runs, for :mod:`blip_apps.cli` to merge.

    blip caption DATA... [--output FILE.jsonl|.csv|.parquet] [--format F] [--sidecar .txt]
                 [--overwrite] [--resume] [--column NAME] [--itm-model DIR]
                 [--engine local|ray] [--ray-address ADDR] [--actors N] [--num-gpus G]
    blip vqa DATA... --question "..." [--answers a,b,c] [--top-k K] (the same output flags)
    blip embed DATA... --index FILE.parquet|FILE.npy [--texts]
    blip search --index FILE "query" [--top-k K] [--no-rerank]

``DATA``: image files, folders (recursive), ``.txt`` lists of paths, ``.parquet`` tables,
``.tar`` shards.  :func:`add_dataset_arguments` adds the output/engine flags to the existing
``caption`` / ``vqa`` parsers; :func:`add_parsers` adds ``embed`` and ``search --index``.  Each
handler takes ``(args, out)`` like :mod:`blip_apps.commands` (``out``: the JSON-lines
:class:`~blip_apps.commands.Output` used when there is no ``--output``) and returns an exit
code: 0, or :data:`~blip_apps.errors.EXIT_SOME_FAILED` when some inputs could not be used.
The handlers open ``--output`` themselves (the caller must not open or truncate it: ``--resume``
continues it).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from blip_apps.errors import (
    EXIT_OK,
    EXIT_SOME_FAILED,
    MODEL_ERRORS,
    ModelError,
    UsageError,
    message,
)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected a number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: must be >= 0")
    return value


def _positive_int(text: str) -> int:
    from blip_apps.cli import positive_int

    return positive_int(text)


def add_dataset_arguments(parser: argparse.ArgumentParser, task: str) -> None:
    """The output, resume and engine flags of a dataset run (``task``: caption or vqa); the
    parser already has ``--output``, ``--model``, ``--backend`` and ``--batch-size``."""
    parser.add_argument("--format", choices=("jsonl", "csv", "parquet"),
                        help="output format (default: from the --output extension)")  # fmt: skip
    parser.add_argument("--column", help="image column of parquet inputs (path or bytes)")
    parser.add_argument("--resume", action="store_true",
                        help="keep the records --output holds and skip their images")  # fmt: skip
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing --output and existing sidecar files")  # fmt: skip
    parser.add_argument("--chunk-size", type=_positive_int, default=64,
                        help="records per complete-or-absent output chunk")  # fmt: skip
    add_speed_arguments(parser)
    parser.add_argument("--engine", choices=("local", "ray"), default="local")
    parser.add_argument("--ray-address", help="an existing Ray cluster (default: a local one)")
    parser.add_argument("--actors", type=_positive_int, default=1,
                        help="Ray actors, each with the model loaded once")  # fmt: skip
    parser.add_argument("--num-cpus", type=_positive_float, default=0.5,
                        help="CPUs each Ray actor reserves (leave room for the read stage)")  # fmt: skip
    parser.add_argument("--num-gpus", type=_positive_float, default=0.0,
                        help="GPUs each Ray actor reserves")  # fmt: skip
    if task == "caption":
        parser.add_argument("--sidecar", metavar="SUFFIX",
                            help="write each caption beside its image file, e.g. .txt")  # fmt: skip
        parser.add_argument("--itm-model", help="retrieval model whose ITM head scores captions")
    else:
        parser.add_argument("--top-k", type=_positive_int, default=5,
                            help="candidate answers listed with probabilities")  # fmt: skip


def add_speed_arguments(parser: argparse.ArgumentParser) -> None:
    """``--dtype`` (the pipeline's :data:`~blip_apps.api.DTYPES`), ``--compile`` and
    ``--device``: the precision, ``torch.compile`` and placement switches of a dataset run
    (``blip serve`` has no ``--compile``: its dynamic batches of every size would each compile,
    on a live request)."""
    from blip_apps.api import DTYPES

    parser.add_argument("--dtype", choices=[d for d in DTYPES if d], default="auto",
                        help="auto: bfloat16 on CPUs with AMX, on AVX512-BF16 CPUs where measured "
                        "faster, and on GPUs with bf16; else float32.  int8: int8 text weights "
                        "through torchao (torch backend); with --compile the vision tower runs "
                        "int8 x int8 products too")  # fmt: skip
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the vision tower and decode step (torch backend): "
                        "the first batch compiles for tens of seconds, later ones run faster; "
                        "for long runs.  With --dtype int8 it also quantizes the vision tower")  # fmt: skip
    parser.add_argument("--device",
                        help="where the torch backend runs the model: cuda, cuda:1, ... "
                        "(default: the CPU; with --engine ray and --num-gpus, each actor's GPU)")  # fmt: skip


def add_parsers(subparsers: Any, only: str | None = None) -> None:
    """``blip embed`` and a stand-alone ``blip search-index`` on ``subparsers`` (argparse's);
    ``only="embed"`` adds just ``embed`` (the ``blip`` command has ``search --index``)."""
    p = subparsers.add_parser("embed", help="write ITC embeddings of a dataset to an index")
    p.add_argument("inputs", nargs="+", metavar="DATA")
    p.add_argument("--index", required=True, help="index file (.parquet, or .npy + .ids.json)")
    p.add_argument("--texts", action="store_true", help="DATA are text files, one text a line")
    p.add_argument("--model", help="retrieval model directory or hub id (default: demo)")
    p.add_argument("--backend", choices=("torch", "tf"), default="torch")
    add_speed_arguments(p)
    p.add_argument("--column", help="image column of parquet inputs")
    p.add_argument("--batch-size", type=_positive_int, default=16)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_embed)
    if only == "embed":
        return

    p = subparsers.add_parser("search-index", help="rank an embedding index for a text query")
    add_search_arguments(p)


def add_search_arguments(parser: argparse.ArgumentParser) -> None:
    """``--index FILE "query"``: the index flags of ``blip search`` (handler
    :func:`cmd_search_index`)."""
    parser.add_argument("query_text", nargs="?", metavar="QUERY")
    parser.add_argument("--index", help="an index written by blip embed")
    parser.add_argument("--no-rerank", action="store_true",
                        help="rank by ITC only (no ITM re-rank against the images)")  # fmt: skip
    if not any(a.dest == "top_k" for a in parser._actions):
        parser.add_argument("--top-k", type=_positive_int, default=5)
    parser.set_defaults(func=cmd_search_index)


def _pipeline(task: str, args: Any, **settings: Any):
    from blip_apps.api import pipeline

    where = args.model if args.model is not None else f"the bundled demo model for {task!r}"
    try:
        return pipeline(task, args.model, args.backend, getattr(args, "dtype", None),
                        compile=getattr(args, "compile", False),
                        device=getattr(args, "device", None), **settings)  # fmt: skip
    except ImportError as exc:
        raise UsageError(f"--backend {args.backend}: {message(exc)}") from exc
    except (*MODEL_ERRORS, OSError, KeyError) as exc:
        raise ModelError(f"cannot load {where}: {message(exc)}") from exc
    except (ValueError, TypeError) as exc:
        raise UsageError(message(exc)) from exc


def _inputs(args: Any) -> list[str]:
    inputs = getattr(args, "images", None) or getattr(args, "inputs", None)
    if inputs is None:
        inputs = [args.image]
    return list(inputs)


def _run(task: str, args: Any, out: Any, settings: dict) -> int:
    stream = None if args.output else out.stream
    common = dict(output=args.output, format=args.format, column=args.column,
                  batch_size=args.batch_size, chunk_size=args.chunk_size,
                  sidecar=getattr(args, "sidecar", None), overwrite=args.overwrite,
                  resume=args.resume, stream=stream)  # fmt: skip
    progress = not getattr(args, "quiet", False)
    if stream is not None:  # streamed JSON lines: a failed input is an error record there too
        common["on_failure"] = lambda failure: out.fail(failure.id, failure.reason)
    try:
        if args.engine == "ray":
            from blip_apps.datasets.ray_engine import run_ray

            pipe_settings = dict(settings)
            if args.compile:  # each actor compiles its own copy
                pipe_settings["compile"] = True
            if args.device is not None:
                pipe_settings["device"] = args.device
            summary = run_ray(task, _inputs(args), args.model, args.backend, args.dtype,
                              pipe_settings, actors=args.actors, num_cpus=args.num_cpus,
                              num_gpus=args.num_gpus, ray_address=args.ray_address,
                              progress=progress, **common)  # fmt: skip
        else:
            from blip_apps.datasets.run import run_dataset

            pipe = _pipeline(task, args, **settings)
            summary = run_dataset(pipe, _inputs(args), progress=progress, **common)
    except FileExistsError as exc:
        raise UsageError(f"--output {args.output}: {message(exc)}") from exc
    except OSError as exc:
        if args.output and getattr(exc, "filename", None) and str(args.output) in str(exc.filename):
            raise UsageError(f"--output {args.output}: cannot write: {message(exc)}") from exc
        raise
    except ImportError as exc:
        raise UsageError(f"--engine {args.engine}: {message(exc)}") from exc
    if not (summary.done or summary.skipped or summary.failed):
        raise UsageError(f"no images found in {', '.join(_inputs(args))}")
    if not progress:
        print(summary.line(), file=sys.stderr)
    return EXIT_SOME_FAILED if summary.failed else EXIT_OK


def cmd_caption_dataset(args: Any, out: Any) -> int:
    """``blip caption DATA...`` with the dataset flags."""
    settings = {"prompt": args.prompt, "num_beams": args.beams,
                "max_new_tokens": args.max_new_tokens, "original": args.original}  # fmt: skip
    if getattr(args, "itm_model", None):
        settings["itm_model"] = args.itm_model
    return _run("caption", args, out, settings)


def cmd_vqa_dataset(args: Any, out: Any) -> int:
    """``blip vqa DATA... --question Q`` (or the positional question) with the dataset flags."""
    question = getattr(args, "question", None)
    if not question:
        raise UsageError("no question given; pass the question to ask about every image")
    settings = {"question": question, "answers": args.answers, "top_k": args.top_k,
                "num_beams": args.beams, "max_new_tokens": args.max_new_tokens}  # fmt: skip
    return _run("vqa", args, out, settings)


def cmd_embed(args: Any, out: Any) -> int:
    """``blip embed DATA... --index FILE``: add what the index lacks."""
    from blip_apps.datasets.embed import build_index

    embedder = _pipeline("embed", args)
    try:
        summary = build_index(embedder, args.inputs, args.index,
                              kind="text" if args.texts else "image", column=args.column,
                              batch_size=args.batch_size, progress=not args.quiet)  # fmt: skip
    except ValueError as exc:
        raise UsageError(f"--index {args.index}: {message(exc)}") from exc
    return EXIT_SOME_FAILED if summary.failed else EXIT_OK


def cmd_search_index(args: Any, out: Any) -> int:
    """``blip search --index FILE "query"``: ranked records ``{"rank", "id", "path", "itc",
    "itm"}`` on ``out``."""
    from blip_apps.datasets.embed import search

    query = getattr(args, "query_text", None) or getattr(args, "query", None)
    if not args.index or not query:
        raise UsageError("blip search --index FILE needs a query: blip search --index FILE 'text'")
    failures = []
    try:
        hits = search(args.index, query, args.top_k, rerank_with_images=not args.no_rerank,
                      on_failure=failures.append)  # fmt: skip
    except FileNotFoundError as exc:
        raise UsageError(f"--index {args.index}: {message(exc)}") from exc
    except ValueError as exc:
        raise UsageError(f"--index {args.index}: {message(exc)}") from exc
    for failure in failures:
        out.fail(failure.id, failure.reason)
    for hit in hits:
        out.emit(hit)
    return out.status


__all__ = [
    "add_dataset_arguments",
    "add_parsers",
    "add_search_arguments",
    "cmd_caption_dataset",
    "cmd_embed",
    "cmd_search_index",
    "cmd_vqa_dataset",
]
