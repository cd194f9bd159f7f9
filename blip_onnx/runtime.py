"""An exported directory seen by ONNX Runtime: the manifest, one session per graph.

``OUT_DIR/blip_onnx.json`` (written by ``blip export``) names the model class, the graphs and
their inputs/outputs, the opset and the dtype; each graph is ``OUT_DIR/<name>.onnx``.  This
module imports onnxruntime and numpy only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

MANIFEST_NAME = "blip_onnx.json"
FORMAT = "blip_onnx"
FORMAT_VERSION = 1

_ORT_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(float16)": np.float16,
}


class ExportedModelError(ValueError):
    """A directory that is not a readable ``blip export --format onnx`` output."""


def read_manifest(directory: str | os.PathLike) -> dict[str, Any]:
    """The manifest of an exported directory (checked: format, version, graph files present)."""
    directory = Path(directory)
    path = directory / MANIFEST_NAME
    if not path.is_file():
        raise ExportedModelError(
            f"{directory}: no {MANIFEST_NAME}; is this the output of "
            "'blip export MODEL_DIR OUT_DIR --format onnx'?"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ExportedModelError(f"{path}: unreadable manifest ({exc})") from None
    if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
        raise ExportedModelError(
            f"{path}: format {manifest.get('format')!r} version "
            f"{manifest.get('format_version')!r}; this blip_onnx reads {FORMAT!r} version "
            f"{FORMAT_VERSION}"
        )
    for name, graph in manifest.get("graphs", {}).items():
        if not (directory / graph["file"]).is_file():
            raise ExportedModelError(f"{directory}: graph {name!r} file {graph['file']} is missing")
    return manifest


def session_options(threads: int | None = None):
    """``onnxruntime.SessionOptions`` with ``threads`` intra-op threads (``None``: ORT's default)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    return options


class Graph:
    """One ONNX Runtime session; ``run`` takes numpy inputs by name and returns outputs by name.

    Inputs the graph does not use (the exporter drops unused ones, e.g. the encoder mask when
    ``ignore_encoder_attention_mask`` is set) are skipped; each input is cast to the graph's dtype.
    """

    def __init__(self, path: str | os.PathLike, providers=None, options=None):
        import onnxruntime as ort

        self.path = Path(path)
        self.session = ort.InferenceSession(
            str(path),
            sess_options=options,
            providers=list(providers) if providers else ["CPUExecutionProvider"],
        )
        self.input_types = {
            i.name: _ORT_DTYPES.get(i.type, np.float32) for i in self.session.get_inputs()
        }
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, feeds: Mapping[str, Any]) -> dict[str, np.ndarray]:
        missing = [name for name in self.input_types if name not in feeds]
        if missing:
            raise ValueError(f"{self.path.name}: inputs {missing} not given")
        arrays = {
            name: np.ascontiguousarray(np.asarray(feeds[name]), dtype=dtype)
            for name, dtype in self.input_types.items()
        }
        return dict(zip(self.output_names, self.session.run(self.output_names, arrays)))


def open_graphs(
    directory: str | os.PathLike,
    manifest: Mapping[str, Any],
    names,
    providers=None,
    threads: int | None = None,
) -> dict[str, Graph]:
    """Sessions for the graphs ``names`` (each must be in the manifest)."""
    directory = Path(directory)
    graphs = manifest.get("graphs", {})
    missing = [n for n in names if n not in graphs]
    if missing:
        raise ExportedModelError(
            f"{directory}: the export (class {manifest.get('class')}) has no graph "
            f"{', '.join(missing)}; it has {', '.join(graphs)} -- export the model of the class "
            "you load"
        )
    options = session_options(threads)
    return {n: Graph(directory / graphs[n]["file"], providers, options) for n in names}


__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "ExportedModelError",
    "Graph",
    "open_graphs",
    "read_manifest",
    "session_options",
]
