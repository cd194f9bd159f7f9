"""Numeric verification of exported ONNX graphs against the torch modules they came from.

Every graph is replayed in ONNX Runtime on its probe inputs (:class:`~blip_apps.export.graphs.GraphSpec`,
batch 2 with a padded row; the decoder step both with an empty cache and with a filled one) and
each output is compared with the torch wrapper's output on the same inputs.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from blip_onnx.runtime import Graph, session_options

TOLERANCE = 1e-4  # max |onnxruntime - torch| over every output of every probe (as the converter)


class VerificationError(RuntimeError):
    """An exported graph does not reproduce the source model within the tolerance."""


def graph_differences(directory: Path, specs: Iterable, files: dict[str, str]) -> dict[str, float]:
    """``{graph name: max |onnxruntime - torch|}`` over all probes and outputs of each graph."""
    options = session_options(threads=1)
    diffs = {}
    for spec in specs:
        graph = Graph(directory / files[spec.name], options=options)
        worst = 0.0
        for probe in spec.probes:
            got = graph.run({n: t.numpy() for n, t in zip(spec.inputs, probe)})
            with torch.no_grad():
                ref = spec.module(*probe)
            ref = ref if isinstance(ref, tuple) else (ref,)
            for name, expected in zip(spec.outputs, ref):
                actual = got[name]
                if actual.shape != tuple(expected.shape):
                    return {**diffs, spec.name: float("inf")}
                diff = np.abs(actual.astype(np.float64) - expected.numpy().astype(np.float64))
                worst = max(worst, float(diff.max()) if diff.size else 0.0)
                if not np.isfinite(actual).all():
                    worst = float("inf")
        diffs[spec.name] = worst
    return diffs


def check(diffs: dict[str, float], tolerance: float = TOLERANCE, what: str = "exported") -> None:
    """Raise :class:`VerificationError` (with a table) when any difference exceeds ``tolerance``."""
    bad = {n: d for n, d in diffs.items() if not d <= tolerance}
    if bad:
        table = ", ".join(f"{n}: {d:.3g}" for n, d in diffs.items())
        raise VerificationError(
            f"verification failed: the {what} graphs {', '.join(bad)} differ from the torch model "
            f"by more than {tolerance:g} (max |diff| per graph: {table}); nothing was written"
        )


__all__ = ["TOLERANCE", "VerificationError", "check", "graph_differences"]
