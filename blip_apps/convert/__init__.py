"""The ``blip-convert`` command line and the converter's numeric verification.

The conversion itself (read -> canonical dict -> write, assembled beside ``DST``) is the numpy
core :mod:`blip_core.weights.convert`; this package adds what needs a backend: the key/shape
check against a model of the target class and the output comparison
(:mod:`blip_apps.convert.verify`), and the command line (:mod:`blip_apps.convert.cli`).
"""

from __future__ import annotations

from blip_apps.convert.cli import build_parser, main
from blip_apps.convert.progress import Progress
from blip_apps.convert.run import convert_checkpoint
from blip_apps.convert.verify import (
    DEFAULT_ATOL,
    VerificationError,
    compare_probes,
    probe_inputs,
    run_probe,
    verify_conversion,
)
from blip_core.weights.convert import ConversionError, ConversionResult, Source, load_source

__all__ = [
    "DEFAULT_ATOL",
    "ConversionError",
    "ConversionResult",
    "Progress",
    "Source",
    "VerificationError",
    "build_parser",
    "compare_probes",
    "convert_checkpoint",
    "load_source",
    "main",
    "probe_inputs",
    "run_probe",
    "verify_conversion",
]
