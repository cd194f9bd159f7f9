"""``blip serve``: the argument parser (:func:`add_parser`) and its handler (:func:`cmd_serve`).

    blip serve [--model DIR] [--task caption|vqa|retrieval|all] [--backend torch|tf]
               [--dtype auto] [--host 127.0.0.1] [--port 8000] [--max-batch-size N]
               [--no-batching] [--max-upload-mb MB] [--max-queue N] [--timeout S]

Without ``--model`` the bundled demo models serve (all three for ``--task all``, the default).
With ``--model`` the task is ``--task``, or read from the ``architectures`` of its
``config.json``.  The server runs until interrupted (Ctrl-C, SIGTERM).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path

ARCHITECTURES = {
    "BlipForConditionalGeneration": "caption",
    "BlipForQuestionAnswering": "vqa",
    "BlipForImageTextRetrieval": "retrieval",
}


def _positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected a number") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"invalid value {text!r}: must be > 0")
        return value

    return parse


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``serve`` subcommand to ``subparsers`` (``argparse``'s ``add_subparsers()``);
    its handler is ``func=cmd_serve``."""
    p = subparsers.add_parser(
        "serve",
        help="serve the models over HTTP (API + web page)",
        description="Serve BLIP over HTTP with dynamic batching: POST /caption, /vqa, /match, "
        "/embed; GET /health; a web page at /; OpenAPI at /docs.",
    )
    p.add_argument("--model", help="model directory or hub id (default: the bundled demo models)")
    p.add_argument("--task", choices=("caption", "vqa", "retrieval", "all"), default=None)
    p.add_argument("--backend", choices=("torch", "tf"), default="torch")
    p.add_argument(
        "--dtype",
        choices=("auto", "float32", "bfloat16", "float16"),
        default="auto",
        help="auto: bfloat16 on CPUs with AMX, on AVX512-BF16 CPUs where measured faster, and on "
        "GPUs with bf16; else float32",
    )
    p.add_argument("--device", choices=("cpu", "cuda"), default=None,
                   help="torch backend: cuda runs the models on one GPU the replica reserves "
                   "(default: the CPU)")  # fmt: skip
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-batch-size", type=_positive(int), default=8)
    p.add_argument("--batch-wait-ms", type=_positive(float), default=10.0,
                   help="how long a batch waits to fill (default 10 ms)")  # fmt: skip
    p.add_argument("--no-batching", action="store_true", help="one request per model call")
    p.add_argument("--max-upload-mb", type=_positive(float), default=10.0)
    p.add_argument("--max-queue", type=_positive(int), default=64,
                   help="requests waiting beyond the replica's; more get 503 (default 64)")  # fmt: skip
    p.add_argument("--timeout", type=_positive(float), default=60.0,
                   help="seconds before an unanswered request gets 408 (default 60)")  # fmt: skip
    p.set_defaults(func=cmd_serve)
    return p


def _task_of(directory: Path) -> str:
    try:
        config = json.loads((directory / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read {directory / 'config.json'}: {exc}") from None
    for arch in config.get("architectures") or ():
        if arch in ARCHITECTURES:
            return ARCHITECTURES[arch]
    raise ValueError(
        f"{directory / 'config.json'}: architectures {config.get('architectures')!r} name no "
        f"servable class ({', '.join(ARCHITECTURES)}); give --task caption|vqa|retrieval"
    )


def options_from_args(args):
    """The :class:`~blip_apps.serve.app.ServeOptions` of parsed ``blip serve`` arguments.

    Raises ``ValueError`` (naming the argument) for ``--task all`` with ``--model``, and for
    ``--device cuda`` with another backend or where no GPU is there."""
    from blip_apps.serve.app import ServeOptions, default_models

    if args.model is None:
        models = default_models(args.task or "all")
    else:
        if args.task == "all":
            raise ValueError("--task all serves the demo models; with --model give one task")
        from blip_core.hub import resolve_model_dir

        directory = resolve_model_dir(args.model)
        models = {args.task or _task_of(Path(directory)): os.fspath(directory)}
    if args.device == "cuda":  # checked here: a replica asking for a GPU nobody has never starts
        if args.backend != "torch":
            raise ValueError(f"--device cuda is for the torch backend, not {args.backend!r}")
        from blip_apps.backends import load_backend

        load_backend("torch").check_device("cuda")
    batch = 1 if args.no_batching else args.max_batch_size
    return ServeOptions(
        models=models,
        backend=args.backend,
        dtype=args.dtype,
        device=None if args.device == "cpu" else args.device,
        max_batch_size=batch,
        batch_wait_timeout_s=0.0 if args.no_batching else args.batch_wait_ms / 1000,
        max_upload_bytes=int(args.max_upload_mb * 2**20),
        max_ongoing_requests=max(2 * batch, 2),
        max_queued_requests=args.max_queue,
    )


def cmd_serve(args, out=None) -> int:
    """Run the server until SIGINT/SIGTERM; returns exit code 0 after a clean shutdown."""
    from blip_apps.serve import server

    options = options_from_args(args)
    stop = threading.Event()
    try:
        url = server.start(options, args.host, args.port, args.timeout)
        for sig in (signal.SIGINT, signal.SIGTERM):  # after ray.init, which sets its own
            signal.signal(sig, lambda *_: stop.set())
        tasks = ", ".join(sorted(options.models))
        print(f"blip serve: {tasks} at {url}/ (API docs {url}/docs); Ctrl-C stops", flush=True)
        stop.wait()
    finally:
        server.stop()
    print("blip serve: stopped", file=sys.stderr)
    return 0


def main(argv=None) -> int:
    """``python -m blip_apps.serve``: ``blip serve`` before the ``blip`` command has it."""
    parser = argparse.ArgumentParser(prog="blip")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub)
    args = parser.parse_args(["serve", *(sys.argv[1:] if argv is None else argv)])
    try:
        return args.func(args)
    except ValueError as exc:
        print(f"blip: error: {exc}", file=sys.stderr)
        return 2


__all__ = ["add_parser", "cmd_serve", "main", "options_from_args"]
