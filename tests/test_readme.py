"""Every Python example in the README runs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index):
    block = BLOCKS[index]
    if "blip_torch" in block:
        pytest.importorskip("torch")
    if "blip_tf" in block:
        pytest.importorskip("keras")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run(
        [sys.executable, "-c", block],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_readme_conversion_commands_run(tmp_path):
    """The hub round trip documented in the README, with /tmp replaced by a test directory."""
    pytest.importorskip("torch")
    pytest.importorskip("keras")
    text = (ROOT / "README.md").read_text()
    commands = [
        line.strip()
        for line in text.splitlines()
        if line.strip().startswith("python scripts/convert_weights.py tests/fixtures")
        or line.strip().startswith("python scripts/convert_weights.py /tmp/")
    ]
    assert len(commands) == 2, commands
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    for command in commands:
        argv = command.replace("/tmp/", f"{tmp_path}/").split()
        argv[0] = sys.executable
        proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "blip-caption-pt" / "model.safetensors").is_file()
