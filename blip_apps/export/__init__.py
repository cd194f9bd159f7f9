"""``blip export``: deploy a model without the training framework.

* :func:`export_onnx` -- ONNX graphs (vision, text encoders, heads, the once-per-image
  cross-attention K/V and the cached decoder step) for :mod:`blip_onnx`, verified in ONNX Runtime.
* :func:`export_savedmodel` -- a TF SavedModel with a greedy-captioning ``serving_default``.
* :func:`main` / :func:`add_parser` -- the ``blip export`` command line.
"""

from __future__ import annotations

from blip_apps.export.onnx_export import ExportError, export_onnx
from blip_apps.export.verify import VerificationError


def export_savedmodel(*args, **kwargs):
    """See :func:`blip_apps.export.savedmodel.export_savedmodel` (imports TensorFlow)."""
    from blip_apps.export.savedmodel import export_savedmodel as _export

    return _export(*args, **kwargs)


def main(argv=None) -> int:
    """See :func:`blip_apps.export.command.main`."""
    from blip_apps.export.command import main as _main

    return _main(argv)


def add_parser(subparsers):
    """See :func:`blip_apps.export.command.add_parser`."""
    from blip_apps.export.command import add_parser as _add

    return _add(subparsers)


__all__ = [
    "ExportError",
    "VerificationError",
    "add_parser",
    "export_onnx",
    "export_savedmodel",
    "main",
]
