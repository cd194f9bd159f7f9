"""``blip export --format onnx``: a model directory -> verified ONNX graphs + manifest, atomically.

The model is loaded with ``blip_torch`` (any weights format it reads; ``config.json`` + weights
is enough), each graph of :data:`~blip_apps.export.graphs.CLASS_GRAPHS` is written with the
TorchScript-based ``torch.onnx.export`` (``dynamo=False``: it handles the empty self-attention
cache of a prefill, which ``torch.export`` specialises away) with dynamic batch and sequence axes,
and the result is checked in ONNX Runtime against the torch model before it appears at
``out_dir``.  Everything is built in a temporary directory beside ``out_dir`` and renamed into
place, so a failed export leaves nothing at ``out_dir``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from blip_apps.export import verify
from blip_apps.export.graphs import CLASS_GRAPHS, graph_specs
from blip_core.config import CONFIG_NAME, BlipConfig, load_config
from blip_core.hub import resolve_model_dir
from blip_core.loading import write_config
from blip_core.weights import read_checkpoint
from blip_core.weights.io import default_mode
from blip_core.weights.schema import TASK_CLASSES
from blip_core.weights.task_inference import infer_task, task_of_architectures
from blip_onnx.runtime import FORMAT, FORMAT_VERSION, MANIFEST_NAME

OPSET = 17
DTYPES = ("fp32", "int8")
# copied along when present: what BlipProcessor.from_pretrained and generation settings read
SIDE_FILES = (
    "generation_config.json",
    "preprocessor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
)


class ExportError(ValueError):
    """A bad export request: the output exists, unknown dtype/class, unreadable model."""


def model_class_name(directory: Path, config: BlipConfig) -> str:
    """The class of the checkpoint in ``directory``: ``architectures``, else its modules."""
    task = task_of_architectures(config.extra.get("architectures"))
    if task is None:
        task = infer_task(read_checkpoint(directory))
    name = TASK_CLASSES[task]
    if name not in CLASS_GRAPHS:
        raise ExportError(
            f"{directory / CONFIG_NAME}: a {name} cannot be exported yet; exportable classes: "
            f"{', '.join(CLASS_GRAPHS)}"
        )
    return name


def load_torch_model(model_dir: str | os.PathLike, class_name: str | None = None):
    """``(model, class_name, directory)``: the blip_torch model of ``model_dir`` in eval mode."""
    import blip_torch

    directory = resolve_model_dir(model_dir)
    config = load_config(BlipConfig, directory)
    class_name = class_name or model_class_name(directory, config)
    model = getattr(blip_torch, class_name).from_pretrained(directory)
    return model.eval(), class_name, directory


def _export_graph(spec, path: Path) -> None:
    with torch.no_grad(), warnings.catch_warnings():
        # the tracer warns about Python ints taken from shapes; the axes are declared dynamic
        warnings.simplefilter("ignore")
        torch.onnx.export(
            spec.module,
            spec.probes[0],
            str(path),
            input_names=spec.inputs,
            output_names=spec.outputs,
            dynamic_axes=spec.dynamic_axes,
            opset_version=OPSET,
            dynamo=False,
        )


def _graph_entry(path: Path) -> dict[str, Any]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)

    def describe(values):
        out = []
        for v in values:
            dims = [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            dtype = onnx.TensorProto.DataType.Name(v.type.tensor_type.elem_type).lower()
            out.append({"name": v.name, "dtype": dtype, "shape": dims})
        return out

    return {
        "file": path.name,
        "inputs": describe(model.graph.input),
        "outputs": describe(model.graph.output),
    }


def _publish(tmp: Path, out_dir: Path, force: bool) -> None:
    """Rename ``tmp`` to ``out_dir`` (an existing ``out_dir`` is replaced only with ``force``)."""
    os.chmod(tmp, default_mode(directory=True))
    if out_dir.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
        os.replace(out_dir, old / out_dir.name)
        os.replace(tmp, out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out_dir)


def check_out_dir(out_dir: Path, force: bool) -> None:
    if out_dir.exists() and not force:
        raise ExportError(f"{out_dir} exists; pass --force (force=True) to replace it")
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"{out_dir} exists and is not a directory")


def export_onnx(
    model_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    force: bool = False,
    dtype: str = "fp32",
    class_name: str | None = None,
    before_verify: Callable[[Path], None] | None = None,
) -> Path:
    """Export the model in ``model_dir`` to ONNX graphs in ``out_dir``; returns ``out_dir``.

    ``dtype``: ``"fp32"`` or ``"int8"`` (the fp32 graphs, verified, then dynamically quantized
    with onnxruntime's ``quantize_dynamic``; see :mod:`blip_apps.export.quantize`).
    ``class_name`` overrides the class read from ``config.json``.  ``before_verify(tmp_dir)`` is a
    test hook called after the graphs are written and before they are verified.  Raises
    :class:`ExportError` for a bad request and :class:`~blip_apps.export.verify.VerificationError`
    when a graph differs from the torch model by more than 1e-4; either way nothing is left at
    ``out_dir`` (an existing one, replaced with ``force``, is left as it was).
    """
    if dtype not in DTYPES:
        raise ExportError(f"dtype {dtype!r} is not supported; expected one of {', '.join(DTYPES)}")
    out_dir = Path(out_dir)
    check_out_dir(out_dir, force)
    model, class_name, directory = load_torch_model(model_dir, class_name)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        specs = graph_specs(model, class_name)
        files = {spec.name: f"{spec.name}.onnx" for spec in specs}
        for spec in specs:
            _export_graph(spec, tmp / files[spec.name])
        if before_verify is not None:
            before_verify(tmp)
        diffs = verify.graph_differences(tmp, specs, files)
        verify.check(diffs)
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "class": class_name,
            "dtype": dtype,
            "opset": OPSET,
            "source": str(directory),
            "num_decoder_layers": model.config.text_config.num_hidden_layers,
            "verification": {"tolerance": verify.TOLERANCE, "max_abs_diff": diffs},
        }
        if dtype == "int8":
            from blip_apps.export.quantize import quantize_graphs

            manifest["int8"] = quantize_graphs(tmp, specs, files)
        manifest["graphs"] = {name: _graph_entry(tmp / file) for name, file in files.items()}
        write_config(model.config, class_name, tmp)
        for name in SIDE_FILES:
            if (directory / name).is_file():
                shutil.copyfile(directory / name, tmp / name)
        text = json.dumps(manifest, indent=2) + "\n"
        (tmp / MANIFEST_NAME).write_text(text, encoding="utf-8")
        check_out_dir(out_dir, force)  # appeared while exporting?
        _publish(tmp, out_dir, force)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


__all__ = ["DTYPES", "OPSET", "SIDE_FILES", "ExportError", "export_onnx", "load_torch_model"]
