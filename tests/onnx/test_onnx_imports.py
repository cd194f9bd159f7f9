"""``import blip_onnx`` and a generate call import neither torch nor tensorflow."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.helpers import ROOT

SCRIPT = """
import sys
import numpy as np
import blip_onnx
model = blip_onnx.BlipForConditionalGeneration.from_pretrained(sys.argv[1], threads=1)
ids = model.generate(np.zeros((1, 3, 32, 32), np.float32), num_beams=2, max_new_tokens=4)
assert isinstance(ids, np.ndarray) and ids.shape[0] == 1, ids
loaded = sorted(m for m in ("torch", "tensorflow", "keras", "jax") if m in sys.modules)
assert not loaded, loaded
print("clean")
"""


def test_no_framework_imported(exported):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(exported["caption"])],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "clean"
