"""Importing blip_core (any module of it) imports no framework and no backend or application."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Every module of blip_core, found by walking the package (so a new module is checked too).
CHECK = (
    "import pkgutil, sys, importlib, blip_core; "
    "names = [m.name for m in pkgutil.walk_packages(blip_core.__path__, 'blip_core.')]; "
    "assert len(names) > 10, names; "
    "[importlib.import_module(n) for n in names]; "
    "bad = [m for m in ('torch', 'tensorflow', 'transformers', 'keras', 'onnxruntime', "
    "'blip_torch', 'blip_tf', 'blip_onnx', 'blip_apps') if m in sys.modules]; "
    "assert not bad, bad; print(len(names))"
)


def test_blip_core_imports_no_framework() -> None:
    result = subprocess.run(
        [sys.executable, "-c", CHECK], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr


def test_blip_core_source_names_no_backend() -> None:
    """No blip_core file imports a backend or an application package, even lazily (frameworks
    may be imported lazily where the user asks for their tensors: ``return_tensors="pt"``)."""
    offenders = []
    for file in sorted((ROOT / "blip_core").rglob("*.py")):
        for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
            words = line.strip().split()
            if words[:1] in (["import"], ["from"]) and len(words) > 1:
                top = words[1].split(".")[0]
                if top in ("blip_torch", "blip_tf", "blip_onnx", "blip_apps"):
                    offenders.append(f"{file.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


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
