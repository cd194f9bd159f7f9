"""Partial folders beside DST: a killed conversion's folder is removed by the next run (and only
such folders); DST and its files get the usual permissions (umask), not mkdtemp's 0700."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from blip_core.weights.convert import convert_checkpoint, remove_stale_partials
from blip_core.weights.convert.staging import OWNER_MARKER, make_partial_dir
from tests.convert.common import leftovers
from tests.helpers import FIXTURES, ROOT

SOURCE = FIXTURES / "caption"  # a transformers-written hub directory (no torch needed to read)

# A conversion that stops in the middle (during verification, when the output is on disk in
# its partial folder) and waits to be killed.
_KILLED_RUN = """
import sys, time
from pathlib import Path
from blip_core.weights.convert import convert_checkpoint

def wait_to_be_killed(source, out, to, notes):
    Path(sys.argv[3]).write_text(str(out))
    time.sleep(300)

convert_checkpoint(sys.argv[1], sys.argv[2], "pt", verify=wait_to_be_killed, log=lambda line: None)
"""


def _quiet(line: str) -> None:
    pass


def test_sigkilled_conversion_is_cleaned_up_by_the_next_run(tmp_path):
    dst, ready = tmp_path / "out", tmp_path / "ready"
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_RUN, str(SOURCE), str(dst), str(ready)], cwd=ROOT
    )
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert proc.poll() is None, "the conversion ended before it could be killed"
            assert time.monotonic() < deadline, "the conversion never reached its output"
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    partial = tmp_path / ready.read_text().strip().split("/")[-1]
    assert partial.is_dir() and partial.name.endswith(".partial")
    assert (partial / "model.safetensors").is_file()
    owner = json.loads((partial / OWNER_MARKER).read_text())
    assert owner["pid"] == proc.pid
    assert not dst.exists()  # an interrupted run never leaves DST

    lines: list[str] = []
    convert_checkpoint(SOURCE, dst, "pt", log=lines.append)
    assert not partial.exists()
    assert any(f"removed {partial}" in line and "killed" in line for line in lines), lines
    assert leftovers(tmp_path, "out") == ["out"]
    assert not (dst / OWNER_MARKER).exists()
    assert (dst / "model.safetensors").is_file() and (dst / "config.json").is_file()


def test_only_dead_owners_partials_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    dead_pid = int(dead.stdout)
    stale = make_partial_dir(tmp_path / "a")
    marker = json.loads((stale / OWNER_MARKER).read_text())
    (stale / OWNER_MARKER).write_text(json.dumps({**marker, "pid": dead_pid, "start": None}))
    alive = make_partial_dir(tmp_path / "b")  # this process: still running
    other_host = make_partial_dir(tmp_path / "c")
    (other_host / OWNER_MARKER).write_text(
        json.dumps({**marker, "pid": dead_pid, "host": "another-machine"})
    )
    unmarked = tmp_path / ".d.x1y2.partial"  # not ours: no marker
    unmarked.mkdir()
    reused = make_partial_dir(tmp_path / "e")  # our pid, but another process's start time
    (reused / OWNER_MARKER).write_text(json.dumps({**marker, "start": "1"}))

    removed = remove_stale_partials(tmp_path, _quiet)
    expected = [stale] + ([reused] if marker["start"] is not None else [])
    assert sorted(removed) == sorted(expected)
    for folder in (alive, other_host, unmarked):
        assert folder.is_dir()
    assert not stale.exists()


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_destination_gets_the_usual_permissions(tmp_path, umask):
    previous = os.umask(umask)
    try:
        dst = tmp_path / "out"
        convert_checkpoint(SOURCE, dst, "pt", log=_quiet)
    finally:
        os.umask(previous)
    assert dst.stat().st_mode & 0o777 == 0o777 & ~umask
    for path in dst.iterdir():
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask, path.name
