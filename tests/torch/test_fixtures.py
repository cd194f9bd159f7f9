"""Parity on files the reference wrote (committed fixtures); needs no transformers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import blip_torch  # noqa: E402
from tests.helpers import compare_outputs  # noqa: E402

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "reference"
CLASSES = {
    "caption": "BlipForConditionalGeneration",
    "vqa": "BlipForQuestionAnswering",
    "itm": "BlipForImageTextRetrieval",
    "blip_model": "BlipModel",
}


def load_expected(case: str) -> tuple[dict, dict]:
    data = np.load(FIXTURES / case / "expected.npz")
    kwargs = {k[3:]: torch.from_numpy(data[k]) for k in data.files if k.startswith("in.")}
    kwargs.update({k[5:]: bool(data[k]) for k in data.files if k.startswith("flag.")})
    expected = {k[4:]: data[k] for k in data.files if k.startswith("out.")}
    return kwargs, expected


@pytest.mark.parametrize("case", sorted(CLASSES))
def test_reference_written_fixture(case):
    model = getattr(blip_torch, CLASSES[case]).from_pretrained(FIXTURES / case)
    model.config.text_config.ignore_encoder_attention_mask = True  # as the reference
    kwargs, expected = load_expected(case)
    with torch.no_grad():
        got = model(**kwargs)
    compare_outputs(got, expected, atol=1e-5)
