"""``blip-convert``: convert a BLIP checkpoint between formats, then check the outputs.

    blip-convert SRC DST --to {pt,tf} [--task {caption,vqa,itm,auto}] [--config CONFIG_JSON]
                 [--tokenizer DIR] [--force] [--no-verify] [--atol ATOL]

``SRC`` is a hub-layout directory (``model.safetensors``, sharded safetensors,
``pytorch_model.bin`` or ``tf_model.h5``, with ``config.json``) or an original Salesforce BLIP
checkpoint file (``model_base_caption_capfilt_large.pth``, ...: a pickle of
``{"model": state_dict}``).  ``DST`` becomes a new hub-layout directory: ``config.json`` plus
``model.safetensors`` (``--to pt``) or the ``tf_model.h5`` layout that ``transformers``' TF BLIP
writes (``--to tf``).

Safety: the source is only read (pickles with ``torch.load(weights_only=True)``, which never runs
code from the file); the output is assembled in a hidden partial folder beside ``DST``, verified
there, and renamed into place only when complete, so an interrupted or failed run leaves no
``DST``; a partial folder left by a killed run is removed by the next run; an existing ``DST`` is
replaced only with ``--force``.

Exit codes: 0 success, 1 error (one ``blip-convert: error:`` line on stderr), 2 usage error,
3 verification failed, 130 interrupted (``SIGINT`` / ``SIGTERM``).
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from collections.abc import Sequence

from blip_apps.convert.run import convert_checkpoint
from blip_apps.convert.verify import DEFAULT_ATOL, VerificationError
from blip_core.config import ConfigError
from blip_core.weights.convert import TARGETS, ConversionError
from blip_core.weights.io import WeightLoadError
from blip_core.weights.task_inference import ORIGINAL_TASKS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="blip-convert",
        description=(
            "Convert a BLIP checkpoint (original Salesforce .pth, or a hub directory with "
            "model.safetensors / pytorch_model.bin / tf_model.h5) into a new hub directory for "
            "PyTorch (model.safetensors) or TensorFlow (tf_model.h5)."
        ),
    )
    parser.add_argument("src", help="hub-layout directory or original BLIP .pth checkpoint")
    parser.add_argument("dst", help="new output directory (must not exist unless --force)")
    parser.add_argument("--to", required=True, choices=TARGETS, help="output format")
    parser.add_argument(
        "--task",
        default="auto",
        choices=(*ORIGINAL_TASKS, "auto"),
        help="task model to build from an original checkpoint (default: inferred from its heads)",
    )
    parser.add_argument(
        "--config",
        metavar="CONFIG_JSON",
        help="explicit config.json (any sizes) instead of inference",
    )
    parser.add_argument(
        "--tokenizer", metavar="DIR", help="copy tokenizer and preprocessor files from DIR into DST"
    )
    parser.add_argument("--force", action="store_true", help="replace an existing DST directory")
    parser.add_argument(
        "--no-verify", action="store_true", help="skip loading both sides and comparing outputs"
    )
    parser.add_argument(
        "--atol",
        type=float,
        default=DEFAULT_ATOL,
        help=f"verification tolerance (default {DEFAULT_ATOL:g})",
    )
    return parser


def _sigterm(signum, frame):  # pragma: no cover - exercised by sending a signal
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    """``blip-convert`` / ``scripts/convert_weights.py``: 0 on success, 1 on error, 3 when the
    verification fails, 130 when interrupted (argparse usage errors exit with 2)."""
    args = build_parser().parse_args(argv)
    previous = None
    with contextlib.suppress(ValueError):  # not the main thread
        previous = signal.signal(signal.SIGTERM, _sigterm)
    try:
        result = convert_checkpoint(
            args.src,
            args.dst,
            args.to,
            task=args.task,
            config=args.config,
            tokenizer=args.tokenizer,
            force=args.force,
            verify=not args.no_verify,
            atol=args.atol,
            log=lambda line: print(line, flush=True),
        )
    except VerificationError as exc:
        print(f"blip-convert: error: {exc}; nothing was written to {args.dst}", file=sys.stderr)
        return 3
    except (ConversionError, WeightLoadError, ConfigError, OSError, ValueError, KeyError) as exc:
        message = str(exc) if not isinstance(exc, KeyError) else f"unexpected key {exc}"
        print(f"blip-convert: error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"blip-convert: interrupted; nothing was written to {args.dst}", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            with contextlib.suppress(ValueError):
                signal.signal(signal.SIGTERM, previous)
    if result.max_abs_diff is not None:
        worst = max(result.max_abs_diff.values(), default=0.0)
        print(f"verified: largest difference {worst:.3e} (tolerance {args.atol:g})")
    return 0


__all__ = ["build_parser", "main"]
