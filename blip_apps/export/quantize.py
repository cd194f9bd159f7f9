"""int8 ONNX graphs: onnxruntime's dynamic quantization of the verified fp32 graphs.

``quantize_dynamic`` stores every MatMul weight that is a constant as int8 (per output channel)
and quantizes the activations at run time (``DynamicQuantizeLinear`` + ``MatMulInteger``).
Attention score products (both operands computed) stay float32, as do the convolution of the
patch embedding, LayerNorms, softmax and the embedding tables.  The fp32 graphs are verified
against torch first; the int8 graphs' distance to torch on the same probes is recorded in the
manifest (``int8.max_abs_diff``), not held to the fp32 tolerance.
"""

from __future__ import annotations

from pathlib import Path

from blip_apps.export import verify


def quantize_graph(src: Path, dst: Path) -> None:
    """Write the int8 version of graph ``src`` to ``dst``."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(src),
        str(dst),
        op_types_to_quantize=["MatMul"],
        per_channel=True,
        weight_type=QuantType.QInt8,
        extra_options={"MatMulConstBOnly": True},
    )


def quantize_graphs(directory: Path, specs, files: dict[str, str]) -> dict:
    """Replace each fp32 graph in ``directory`` by its int8 version; returns the manifest entry
    ``{"method": ..., "max_abs_diff": {graph: max |int8 - torch| on the probes}}``.

    Raises :class:`~blip_apps.export.verify.VerificationError` when an int8 graph gives a
    non-finite output or a wrong shape.
    """
    for spec in specs:
        path = directory / files[spec.name]
        tmp = path.with_name(path.stem + ".int8.onnx")
        quantize_graph(path, tmp)
        tmp.replace(path)
    diffs = verify.graph_differences(directory, specs, files)
    verify.check(diffs, tolerance=float("1e30"), what="int8")
    return {
        "method": "onnxruntime.quantization.quantize_dynamic (MatMul, per-channel QInt8 weights)",
        "max_abs_diff": diffs,
    }


__all__ = ["quantize_graph", "quantize_graphs"]
