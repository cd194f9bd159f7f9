"""Every Python example in the README runs."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
# ```sh blocks: `blip ...` commands that must run as written (outputs under /tmp/blip-readme/)
SH_BLOCKS = re.findall(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)


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


def test_readme_has_command_blocks():
    assert len(SH_BLOCKS) >= 3


@pytest.mark.parametrize("index", range(len(SH_BLOCKS)))
def test_readme_commands_run(index, tmp_path):
    """Each line of a ```sh block, in order, with /tmp/blip-readme replaced by a test folder."""
    pytest.importorskip("torch")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    for line in SH_BLOCKS[index].splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        argv = shlex.split(line.replace("/tmp/blip-readme", str(tmp_path)))
        assert argv[0] == "blip", line
        proc = subprocess.run(
            [sys.executable, "-m", "blip_apps.cli", *argv[1:]],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, (line, proc.stderr[-3000:])
