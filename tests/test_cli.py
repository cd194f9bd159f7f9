"""The `blip` command end to end (subprocess), on committed tiny models and generated images."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "reference"
pytest.importorskip("torch")


def run_blip(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "blip_apps.cli", *args],
        capture_output=True, text=True, env=full_env, timeout=300,
    )  # fmt: skip


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory) -> Path:
    from PIL import Image

    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8 definitely not a jpeg")
    (folder / "notes.txt").write_text("not an image suffix: ignored")
    return folder


def lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_caption_folder_with_corrupt_image_streams_jsonl(image_dir, tmp_path):
    out = tmp_path / "captions.jsonl"
    proc = run_blip("caption", str(image_dir), "--model", str(FIXTURES / "caption"),
                    "--batch-size", "2", "--max-new-tokens", "4", "--output", str(out))  # fmt: skip
    assert proc.returncode == 1, proc.stderr  # some inputs failed
    assert "corrupt.jpg" in proc.stderr and "not a readable image" in proc.stderr
    records = lines(out.read_text())
    assert sorted(Path(r["image"]).name for r in records) == [
        "0.png",
        "1.png",
        "2.png",
        "corrupt.jpg",
    ]
    assert all(isinstance(r.get("caption"), str) for r in records if "error" not in r)
    # the same captions as the library gives for each image alone
    from blip_apps.pipeline import Backend, Captioner

    captioner = Captioner(FIXTURES / "caption", Backend("torch"))
    from blip_core.image_processing import load_image

    for r in records:
        if "caption" in r:
            pixels = captioner.processor.image_processor(
                [load_image(r["image"])], return_tensors="np"
            )["pixel_values"]
            assert captioner.caption_pixels(pixels, max_new_tokens=4)[0] == r["caption"]


def test_vqa_generate_and_rank(image_dir):
    model = str(FIXTURES / "vqa")
    proc = run_blip("vqa", str(image_dir / "0.png"), "what color is it?", "--model", model)
    assert proc.returncode == 0, proc.stderr
    assert "answer" in lines(proc.stdout)[0]
    proc = run_blip("vqa", str(image_dir / "0.png"), "what color?", "--answers", "red,blue,green",
                    "--model", model)  # fmt: skip
    ranking = lines(proc.stdout)[0]["ranking"]
    assert sorted(r["answer"] for r in ranking) == ["blue", "green", "red"]
    scores = [r["log_likelihood"] for r in ranking]
    assert scores == sorted(scores, reverse=True)


def test_match_and_search(image_dir):
    model = str(FIXTURES / "itm")
    proc = run_blip("match", str(image_dir / "1.png"), "a red circle", "two cats", "--model", model)
    assert proc.returncode == 0, proc.stderr
    rows = lines(proc.stdout)
    assert [r["text"] for r in rows] == ["a red circle", "two cats"]
    assert all(0.0 <= r["itm"] <= 1.0 and -1.0 <= r["itc"] <= 1.0 for r in rows)
    proc = run_blip("search", "--images", str(image_dir), "--query", "a red circle", "--top-k", "2",
                    "--model", model, "--quiet")  # fmt: skip
    assert proc.returncode == 1  # the corrupt file is reported
    ranked = [r for r in lines(proc.stdout) if "rank" in r]
    assert [r["rank"] for r in ranked] == [1, 2]


def test_unreachable_hub_id_fails_cleanly(image_dir):
    proc = run_blip("caption", str(image_dir / "0.png"), "--model", "Salesforce/not-here")
    assert proc.returncode == 2
    assert "local directory" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_image_and_bad_backend(image_dir):
    proc = run_blip("caption", str(image_dir / "nope.png"), "--model", str(FIXTURES / "caption"))
    assert proc.returncode == 1 and "no such file" in proc.stderr
    proc = run_blip("caption", str(image_dir), "--backend", "jax")
    assert proc.returncode == 2 and "invalid choice" in proc.stderr
