"""Importing blip_core must not import torch or tensorflow (nor transformers)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CHECK = (
    "import blip_core, blip_core.config, blip_core.image_processing, blip_core.tokenization, "
    "blip_core.processing, blip_core.weights, blip_core.weights.convert, "
    "blip_core.weights.original_map, blip_core.weights.tf_map, blip_core.weights.h5, "
    "blip_core.generation, blip_core.retrieval, blip_core.pipeline, blip_core.cli, "
    "blip_core.demo, blip_core.demo.data; import sys; "
    "bad = [m for m in ('torch', 'tensorflow', 'transformers', 'keras') if m in sys.modules]; "
    "assert not bad, bad"
)


def test_blip_core_imports_no_framework() -> None:
    result = subprocess.run(
        [sys.executable, "-c", CHECK], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr


def test_preprocessing_runs_without_framework_imports() -> None:
    """Using the preprocessing (numpy outputs) also stays framework-free."""
    code = (
        "import numpy as np; from PIL import Image; "
        "from blip_core.image_processing import BlipImageProcessor; "
        "from blip_core.tokenization import BlipTokenizer; "
        "from blip_core.processing import BlipProcessor; "
        "vocab = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]', 'a', 'cat']; "
        "tok = BlipTokenizer.from_vocab(vocab); "
        "p = BlipProcessor(BlipImageProcessor(size=8), tok); "
        "out = p(images=Image.new('RGB', (9, 9)), text=['a cat', 'a'], padding=True, "
        "return_tensors='np'); "
        "assert out['pixel_values'].shape == (1, 3, 8, 8); "
        "import sys; bad = [m for m in ('torch', 'tensorflow') if m in sys.modules]; "
        "assert not bad, bad"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
