"""Exports of the tiny reference fixtures, made once per test session (fp32)."""

from __future__ import annotations

import pytest

from tests.helpers import FIXTURES

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
pytest.importorskip("torch")

TASKS = {
    "caption": "BlipForConditionalGeneration",
    "vqa": "BlipForQuestionAnswering",
    "itm": "BlipForImageTextRetrieval",
}


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """``{task: OUT_DIR}`` of ``blip export`` (fp32) for each tiny fixture."""
    from blip_apps.export import export_onnx

    root = tmp_path_factory.mktemp("onnx")
    return {task: export_onnx(FIXTURES / task, root / task) for task in TASKS}


@pytest.fixture(scope="session")
def models(exported):
    """``{task: (blip_onnx model, blip_torch model)}``."""
    import blip_onnx
    import blip_torch

    return {
        task: (
            getattr(blip_onnx, name).from_pretrained(exported[task], threads=1),
            getattr(blip_torch, name).from_pretrained(FIXTURES / task),
        )
        for task, name in TASKS.items()
    }
