"""The ``blip export`` command line.

    blip export MODEL_DIR OUT_DIR [--format onnx|savedmodel] [--dtype fp32|int8] [--force]

``--format onnx`` (default) writes the graphs ``blip_onnx`` loads; ``--format savedmodel`` a
TensorFlow SavedModel with a greedy-captioning ``serving_default`` (captioning models; add
``--serving`` for the TF Serving layout ``OUT_DIR/1/``).  Prints one JSON line describing what was
written.  Exit codes: 0 written and verified, 2 bad arguments (``OUT_DIR`` exists without
``--force``, ...), 3 verification failed (nothing is left at ``OUT_DIR``), 4 the model cannot be
loaded.
"""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("model_dir", metavar="MODEL_DIR", help="hub-layout model directory")
    p.add_argument("out_dir", metavar="OUT_DIR", help="where to write (must not exist)")
    p.add_argument("--format", choices=("onnx", "savedmodel"), default="onnx")
    p.add_argument("--dtype", choices=("fp32", "int8"), default="fp32",
                   help="onnx only: int8 = onnxruntime dynamic quantization of the MatMuls")  # fmt: skip
    p.add_argument("--serving", action="store_true",
                   help="savedmodel only: write the TF Serving layout OUT_DIR/1/")  # fmt: skip
    p.add_argument("--force", action="store_true", help="replace an existing OUT_DIR")
    return p


def cmd_export(args: argparse.Namespace, out=None) -> int:
    """Run one export; prints (or emits to ``out``) ``{"out_dir", "format", ...}``."""
    if args.format == "onnx":
        from blip_apps.export.onnx_export import export_onnx

        path = export_onnx(args.model_dir, args.out_dir, force=args.force, dtype=args.dtype)
        record = {"out_dir": str(path), "format": "onnx", "dtype": args.dtype}
    else:
        if args.dtype != "fp32":
            from blip_apps.errors import UsageError

            raise UsageError(f"--dtype {args.dtype}: --format savedmodel writes fp32 only")
        from blip_apps.export.savedmodel import export_savedmodel

        path = export_savedmodel(
            args.model_dir, args.out_dir, force=args.force, serving_layout=args.serving
        )
        record = {"out_dir": str(path), "format": "savedmodel"}
    if out is not None:
        out.emit(record)
    else:
        print(json.dumps(record))
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``export`` to the ``blip`` sub-command parsers (``func`` = :func:`cmd_export`)."""
    p = subparsers.add_parser("export", help="export for ONNX Runtime or TF Serving")
    add_arguments(p)
    p.set_defaults(func=cmd_export)
    return p


def main(argv: list[str] | None = None) -> int:
    """``blip export`` on its own: errors are one ``blip: error:`` line and the exit code."""
    from blip_apps.errors import EXIT_INTERNAL, exit_code, message

    parser = add_arguments(argparse.ArgumentParser(prog="blip export"))
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    try:
        return cmd_export(args)
    except Exception as exc:
        code = exit_code(exc)
        if code == EXIT_INTERNAL:
            raise
        print(f"blip: error: {message(exc)}", file=sys.stderr)
        return code


__all__ = ["add_arguments", "add_parser", "cmd_export", "main"]
