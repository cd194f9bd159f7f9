"""Golden outputs of the released checkpoints (from transformers' integration tests).

Needs real downloaded checkpoints, which no machine of this project can fetch: set
``BLIP_CHECKPOINTS_DIR`` to a directory holding hub snapshots named ``blip-image-captioning-base``,
``blip-vqa-base`` and ``blip-itm-base-coco`` plus BLIP's ``demo.jpg`` (the woman and her dog on
the beach).  Skipped otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = os.environ.get("BLIP_CHECKPOINTS_DIR")
pytestmark = [
    pytest.mark.real_checkpoint,
    pytest.mark.skipif(not ROOT, reason="BLIP_CHECKPOINTS_DIR is not set (needs real checkpoints)"),
]
torch = pytest.importorskip("torch")

CAPTION = [30522, 1037, 2450, 3564, 2006, 1996, 3509, 2007, 2014, 3899, 102]
CAPTION_WITH_PROMPT = [30522, 1037, 3861, 1997, 1037, 2450, 3564, 2006, 1996, 3509, 2007, 2014, 3899, 102]  # fmt: skip


def _dir(name: str) -> Path:
    path = Path(ROOT) / name
    if not path.is_dir():
        pytest.skip(f"{path} not present")
    return path


def _image():
    from PIL import Image

    path = Path(ROOT) / "demo.jpg"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    return Image.open(path).convert("RGB")


@pytest.mark.parametrize("backend", ["torch", "tf"])
def test_captioning_base_golden_ids(backend):
    from blip_core import BlipProcessor

    module = pytest.importorskip(f"blip_{backend}")
    directory = _dir("blip-image-captioning-base")
    processor = BlipProcessor.from_pretrained(directory)
    model = module.BlipForConditionalGeneration.from_pretrained(directory)
    tensors = "pt" if backend == "torch" else "np"
    inputs = processor(images=_image(), return_tensors=tensors)
    assert list(map(int, model.generate(inputs["pixel_values"])[0])) == CAPTION
    inputs = processor(images=_image(), text=["a picture of"], return_tensors=tensors)
    out = model.generate(inputs["pixel_values"], input_ids=inputs["input_ids"])
    assert list(map(int, out[0])) == CAPTION_WITH_PROMPT


def test_vqa_base_golden_ids():
    import blip_torch
    from blip_core import BlipProcessor

    directory = _dir("blip-vqa-base")
    processor = BlipProcessor.from_pretrained(directory)
    model = blip_torch.BlipForQuestionAnswering.from_pretrained(directory)
    inputs = processor(
        images=_image(), text="how many dogs are in the picture?", return_tensors="pt"
    )
    assert model.generate(**inputs)[0].tolist() == [30522, 1015, 102]


def test_itm_base_coco_golden_scores():
    import blip_torch
    from blip_core import BlipProcessor

    directory = _dir("blip-itm-base-coco")
    processor = BlipProcessor.from_pretrained(directory)
    model = blip_torch.BlipForImageTextRetrieval.from_pretrained(directory)
    inputs = processor(
        images=_image(), text="A woman and her dog sitting in a beach", return_tensors="pt"
    )
    with torch.no_grad():
        itm = torch.softmax(model(**inputs).itm_score, dim=-1)
        itc = model(**inputs, use_itm_head=False).itm_score
    assert torch.allclose(itm, torch.tensor([[0.0029, 0.9971]]), atol=1e-3)
    assert torch.allclose(itc, torch.tensor([[0.5162]]), atol=1e-3)
