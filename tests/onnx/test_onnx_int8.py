"""int8 export (onnxruntime dynamic quantization): fidelity on the tiny fixture; no timing here."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.helpers import FIXTURES, make_inputs

# int8 weights (per channel) and int8 activations (per tensor, dynamic) on a random-weight tiny
# model: the logits move by about 1e-2 (0.015 measured on the export probes); ids may differ.
INT8_LOGITS_ATOL = 0.1


@pytest.fixture(scope="module")
def int8_caption(tmp_path_factory):
    from blip_apps.export import export_onnx

    return export_onnx(FIXTURES / "caption", tmp_path_factory.mktemp("int8") / "out", dtype="int8")


def test_int8_manifest_and_graphs(int8_caption):
    import onnx

    manifest = json.loads((int8_caption / "blip_onnx.json").read_text())
    assert manifest["dtype"] == "int8"
    assert max(manifest["verification"]["max_abs_diff"].values()) <= 1e-4  # fp32, before
    assert 0 < max(manifest["int8"]["max_abs_diff"].values()) < INT8_LOGITS_ATOL
    ops = {n.op_type for n in onnx.load(str(int8_caption / "decoder_step.onnx")).graph.node}
    assert {"MatMulInteger", "DynamicQuantizeLinear"} <= ops


def test_int8_logits_close_to_torch(int8_caption, models):
    import blip_onnx

    onnx_model = blip_onnx.BlipForConditionalGeneration.from_pretrained(int8_caption, threads=1)
    torch_model = models["caption"][1]
    inp = make_inputs(batch=2, length=6, vocab=99, seed=5)
    kwargs = {k: inp[k] for k in ("pixel_values", "input_ids", "attention_mask")}
    ours = onnx_model(**kwargs)
    with torch.no_grad():
        ref = torch_model(**{k: torch.from_numpy(v) for k, v in kwargs.items()})
    diff = np.abs(ours.logits - ref.logits.numpy()).max()
    assert 0 < diff < INT8_LOGITS_ATOL, diff
    ids = onnx_model.generate(inp["pixel_values"], max_new_tokens=5)
    assert ids.shape[0] == 2 and ids.dtype == np.int64 and (ids[:, 0] == 97).all()
