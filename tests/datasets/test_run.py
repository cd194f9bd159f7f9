"""The local engine: every format holds the same captions, sidecars, broken files skipped, and a
run killed with SIGKILL then resumed ends with exactly the uninterrupted run's records."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from blip_apps.datasets.outputs import read_records
from blip_apps.datasets.run import run_dataset

pytest.importorskip("torch")
ROOT = Path(__file__).resolve().parents[2]
BATCH = 2


@pytest.fixture(scope="module")
def reference(scenes, captioner, tmp_path_factory):
    """The uninterrupted run's records (JSON lines) over the scenes, in batches of 2 as every
    run here (scores are bit-identical for the same batches; other batch sizes change them
    within float rounding)."""
    out = tmp_path_factory.mktemp("ref") / "captions.jsonl"
    run_dataset(captioner, [scenes], output=out, batch_size=BATCH, progress=False)
    return read_records(out)


def test_formats_and_sidecars_hold_the_same_captions(scenes, captioner, reference, tmp_path):
    pytest.importorskip("pyarrow")
    from blip_apps.api import as_items

    expected = captioner(as_items([Path(r["path"]) for r in reference]), batch_size=BATCH)
    assert reference == expected
    for ext in ("csv", "parquet"):
        run_dataset(captioner, [scenes], output=tmp_path / f"c.{ext}", chunk_size=3,
                    batch_size=BATCH, progress=False)  # fmt: skip
        assert read_records(tmp_path / f"c.{ext}") == reference, ext


def test_sidecars_beside_the_images_kept_unless_overwrite(scenes, captioner, reference, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("scene_0.png", "scene_1.png"):
        shutil.copy(scenes / name, folder / name)
    expected = {Path(r["path"]).name: r["caption"] for r in reference}
    kept = folder / "scene_0.txt"
    kept.write_text("my own caption\n")
    summary = run_dataset(captioner, [folder], sidecar=".txt", progress=False)
    assert (summary.skipped, summary.done, summary.sidecars) == (1, 1, 1)
    assert (folder / "scene_1.txt").read_text() == expected["scene_1.png"] + "\n"
    assert kept.read_text() == "my own caption\n"
    summary = run_dataset(captioner, [folder], sidecar=".txt", overwrite=True, progress=False)
    assert kept.read_text() == expected["scene_0.png"] + "\n" and summary.sidecars == 2


def test_broken_files_are_reported_and_skipped(scenes, captioner, reference, tmp_path, capsys):
    folder = tmp_path / "images"
    shutil.copytree(scenes, folder)
    (folder / "broken.png").write_bytes(b"\x89PNG truncated")
    (folder / "more" / "empty.jpg").write_bytes(b"")
    summary = run_dataset(captioner, [folder, tmp_path / "absent"],
                          output=tmp_path / "out.jsonl", progress=True)  # fmt: skip
    err = capsys.readouterr().err
    assert (summary.done, summary.failed) == (len(reference), 3)
    for name in ("broken.png", "empty.jpg", "absent"):
        assert "blip: skipped:" in err and name in err
    assert "done 8, skipped 0, failed 3" in err
    records = read_records(tmp_path / "out.jsonl")
    assert [r["caption"] for r in records] == [r["caption"] for r in reference]


CHILD = """
import sys, time
from blip_apps.api import pipeline
from blip_apps.datasets.run import run_dataset
pipe = pipeline("caption", dtype="float32")
records = pipe.records
def slow(*args, **kwargs):
    time.sleep(0.4)
    return records(*args, **kwargs)
pipe.records = slow
run_dataset(pipe, [sys.argv[1]], output=sys.argv[2], batch_size=2, chunk_size=2,
            resume=sys.argv[3] == "resume", progress=False)
"""


def _child(scenes, out, mode):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", CHILD, str(scenes), str(out), mode], env=env,
                            stderr=subprocess.PIPE)  # fmt: skip


@pytest.mark.parametrize("ext", ["jsonl", "parquet"])
def test_sigkill_then_resume_equals_the_uninterrupted_run(scenes, reference, tmp_path, ext):
    if ext == "parquet":
        pytest.importorskip("pyarrow")
    out = tmp_path / f"captions.{ext}"
    child = _child(scenes, out, "fresh")
    deadline = time.monotonic() + 120
    while len(read_records(out)) < 2:  # killed once some chunks are written
        assert child.poll() is None, child.stderr.read().decode()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait()
    partial = read_records(out)
    assert 2 <= len(partial) < len(reference)
    assert partial == reference[: len(partial)]
    resumed = _child(scenes, out, "resume")
    assert resumed.wait(timeout=120) == 0, resumed.stderr.read().decode()
    assert read_records(out) == reference
    if ext == "parquet":
        assert not (tmp_path / "captions.parquet.parts").exists()
