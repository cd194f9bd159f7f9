"""The `blip` command end to end (subprocess), on committed tiny models and generated images.

Bad input (issue 12): a user error is one line ``blip: error: ...`` on stderr with its documented
exit code and no traceback; an unreadable image is an error record in the output and the run
goes on (exit code 1).  Argument checks run in-process through ``main([...])``."""

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
    """With --output the file holds the results only (so --resume retries failures); the
    failed image is named on stderr.  On stdout the failure is an error record in the stream."""
    out = tmp_path / "captions.jsonl"
    proc = run_blip("caption", str(image_dir), "--model", str(FIXTURES / "caption"),
                    "--batch-size", "2", "--max-new-tokens", "4", "--output", str(out))  # fmt: skip
    assert proc.returncode == 1, proc.stderr  # some inputs failed
    assert "corrupt.jpg" in proc.stderr and "not a readable image" in proc.stderr
    records = lines(out.read_text())
    assert sorted(Path(r["path"]).name for r in records) == ["0.png", "1.png", "2.png"]
    assert all(isinstance(r.get("caption"), str) for r in records)
    streamed = run_blip("caption", str(image_dir), "--model", str(FIXTURES / "caption"),
                        "--batch-size", "2", "--max-new-tokens", "4", "--quiet")  # fmt: skip
    assert streamed.returncode == 1, streamed.stderr
    [failed] = [r for r in lines(streamed.stdout) if "error" in r]
    assert Path(failed["path"]).name == "corrupt.jpg" and "corrupt.jpg" in failed["error"]
    assert [r["caption"] for r in lines(streamed.stdout) if "caption" in r] == [
        r["caption"] for r in records
    ]
    # the same captions as the library gives for each image alone
    from blip_apps.pipeline import Backend, Captioner  # Backend(name): the backend's adapter

    captioner = Captioner(FIXTURES / "caption", Backend("torch"))
    from blip_core.image_processing import load_image

    for r in records:
        if "caption" in r:
            pixels = captioner.processor.image_processor(
                [load_image(r["path"])], return_tensors="np"
            )["pixel_values"]
            assert captioner.caption_pixels(pixels, max_new_tokens=4)[0] == r["caption"]


def test_vqa_generate_and_rank(image_dir):
    model = str(FIXTURES / "vqa")
    proc = run_blip("vqa", str(image_dir / "0.png"), "what color is it?", "--model", model)
    assert proc.returncode == 0, proc.stderr
    assert "answer" in lines(proc.stdout)[0]
    proc = run_blip("vqa", str(image_dir / "0.png"), "what color?", "--answers", "red,blue,green",
                    "--model", model)  # fmt: skip
    ranking = lines(proc.stdout)[0]["answers"]
    assert sorted(r["answer"] for r in ranking) == ["blue", "green", "red"]
    scores = [r["log_likelihood"] for r in ranking]
    assert scores == sorted(scores, reverse=True)
    probabilities = np.array([r["probability"] for r in ranking])
    expected = np.exp(scores - np.max(scores))  # softmax over the candidates' log-likelihoods
    np.testing.assert_allclose(probabilities, expected / expected.sum(), rtol=1e-6)


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
    assert proc.returncode == 4  # EXIT_MODEL (was the generic 2 before the exit codes split)
    assert "local directory" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_image_and_bad_backend(image_dir):
    proc = run_blip("caption", str(image_dir / "nope.png"), "--model", str(FIXTURES / "caption"))
    assert proc.returncode == 1 and "no such file" in proc.stderr
    proc = run_blip("caption", str(image_dir), "--backend", "jax")
    assert proc.returncode == 2 and "invalid choice" in proc.stderr


# ---- bad input (issue 12) ---------------------------------------------------------------------


def run_main(capsys, *args: str) -> tuple[int, str, str]:
    """``blip_apps.cli.main([...])`` in-process: (exit code, stdout, stderr)."""
    from blip_apps.cli import main

    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(err: str, *needles: str) -> None:
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("blip: error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, err)


@pytest.mark.parametrize(
    "args, flag, value",
    [
        (("search", "--images", "d", "--query", "q", "--top-k", "-1"), "--top-k", "-1"),
        (("search", "--images", "d", "--query", "q", "--top-k", "0"), "--top-k", "0"),
        (("search", "--images", "d", "--query", "q", "--batch-size", "0"), "--batch-size", "0"),
        (("caption", "x.png", "--batch-size", "-3"), "--batch-size", "-3"),
        (("caption", "x.png", "--beams", "0"), "--beams", "0"),
        (("caption", "x.png", "--max-new-tokens", "0"), "--max-new-tokens", "0"),
        (("caption", "x.png", "--beams", "two"), "--beams", "two"),
        (("vqa", "x.png", "q?", "--beams", "-2"), "--beams", "-2"),
        (("vqa", "x.png", "q?", "--max-new-tokens", "1.5"), "--max-new-tokens", "1.5"),
    ],
)
def test_counts_must_be_positive(capsys, args, flag, value):
    code, out, err = run_main(capsys, *args)
    assert code == 2 and out == ""
    assert_one_line_error(err, flag, repr(value))


def test_vqa_answers_without_candidates_is_a_usage_error(capsys):
    code, out, err = run_main(capsys, "vqa", "x.png", "what?", "--answers", " , ,")
    assert code == 2 and out == ""
    assert_one_line_error(err, "--answers", "' , ,'")


def test_usage_errors_are_one_line(capsys):
    code, _, err = run_main(capsys)
    assert code == 2
    assert_one_line_error(err, "command")
    code, _, err = run_main(capsys, "caption", "x.png", "--backend", "jax")
    assert code == 2
    assert_one_line_error(err, "--backend", "'jax'")


def test_help_documents_exit_codes(capsys):
    code, out, _ = run_main(capsys, "--help")
    assert code == 0
    from blip_apps.errors import EXIT_CODES

    assert "exit codes:" in out
    for number, text in EXIT_CODES.items():
        assert f"{number:>3}  {text}" in out


def test_no_images_found_and_unwritable_output(capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    code, _, err = run_main(capsys, "caption", str(tmp_path / "empty"), "--quiet")
    assert code == 2
    assert_one_line_error(err, "no images found", "empty")
    image = tmp_path / "a.png"
    _write_good_image(image)
    (tmp_path / "a-file").write_text("x")
    missing = tmp_path / "a-file" / "out.jsonl"  # a path under a file: cannot be created
    code, _, err = run_main(capsys, "caption", str(image), "--output", str(missing), "--quiet")
    assert code == 2
    assert_one_line_error(err, "--output", str(missing))


def test_broken_model_directory_is_a_model_error(capsys, tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{ not json")
    image = tmp_path / "a.png"
    _write_good_image(image)
    code, out, err = run_main(capsys, "caption", str(image), "--model", str(model))
    assert code == 4 and out == ""
    assert_one_line_error(err, str(model))
    code, out, err = run_main(capsys, "match", str(image), "x", "--model", str(tmp_path / "nope"))
    assert code == 4 and out == ""
    assert_one_line_error(err, "nope")


def test_internal_error_exits_70_with_traceback_and_hint(capsys, monkeypatch):
    from blip_apps import commands

    def broken(args, out):
        raise RuntimeError("something inside broke")

    monkeypatch.setattr(commands, "cmd_match", broken)
    code, _, err = run_main(capsys, "match", "x.png", "a text")
    assert code == 70
    assert "Traceback" in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("blip: internal error (RuntimeError: something inside broke)")
    assert "bug" in last


def test_library_value_errors_are_usage_errors(capsys, monkeypatch):
    from blip_apps.datasets import cli as dataset_cli

    def refuses(args, out):
        raise ValueError("max_new_tokens=500: the prompt and new tokens exceed 64 positions")

    monkeypatch.setattr(dataset_cli, "cmd_caption_dataset", refuses)
    code, _, err = run_main(capsys, "caption", "x.png")
    assert code == 2
    assert_one_line_error(err, "max_new_tokens=500")


def test_keras_wrapped_errors_are_unwrapped():
    """A ValueError raised inside a Keras layer's call reaches the caller re-wrapped by Keras
    ("Exception encountered when calling ...", ANSI bold); the CLI shows the original text."""
    keras = pytest.importorskip("keras")
    from blip_apps.errors import clean_text, exit_code, message

    class Refuses(keras.layers.Layer):
        def call(self, x):
            raise ValueError("input_ids holds token id 99, outside the vocabulary [0, 40)")

    with pytest.raises(ValueError) as info:
        Refuses()(np.zeros((1, 2), dtype="float32"))
    wrapped = str(info.value)
    assert "Exception encountered" in wrapped or "\x1b[" in wrapped  # Keras did wrap it
    assert message(info.value) == "input_ids holds token id 99, outside the vocabulary [0, 40)"
    assert exit_code(info.value) == 2
    # the text alone (as when only the message survives), colour codes stripped
    assert clean_text(wrapped) == message(info.value)


def test_message_strips_colour_codes_and_joins_lines():
    from blip_apps.errors import clean_text

    assert clean_text("\x1b[1mbad\x1b[0m value\n\n  second line ") == "bad value; second line"


def test_blip_apps_imports_no_framework_and_core_has_no_apps():
    code = (
        "import sys, importlib.util, blip_apps, blip_apps.cli, blip_apps.commands, "
        "blip_apps.errors, blip_apps.backends, blip_apps.pipeline, blip_apps.demo, "
        "blip_apps.demo.data, blip_apps.demo.evaluate, blip_apps.demo.run; "
        "bad = [m for m in ('torch', 'tensorflow', 'keras') if m in sys.modules]; "
        "assert not bad, bad; "
        "left = [m for m in ('blip_core.cli', 'blip_core.pipeline', 'blip_core.demo') "
        "if importlib.util.find_spec(m) is not None]; "
        "assert not left, left"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=ROOT, timeout=120)


def _write_good_image(path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)).save(path)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    import struct
    import zlib

    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def _write_decompression_bomb(path: Path) -> None:
    """A PNG whose header declares 30000 x 30000 pixels (over twice PIL's MAX_IMAGE_PIXELS)."""
    import struct
    import zlib

    header = struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(b""))
        + _png_chunk(b"IEND", b"")
    )


def test_folder_with_broken_and_good_image(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    _write_good_image(folder / "good.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    proc = run_blip("caption", str(folder), "--model", str(FIXTURES / "caption"),
                    "--max-new-tokens", "3", "--quiet")  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    records = {Path(r.get("image") or r["path"]).name: r for r in lines(proc.stdout)}
    assert set(records) == {"good.png", "broken.png"}
    assert isinstance(records["good.png"]["caption"], str)
    assert "caption" not in records["broken.png"]
    assert records["broken.png"]["path"] == str(folder / "broken.png")
    assert "broken.png" in records["broken.png"]["error"]


def test_per_file_failures_are_records_and_the_run_goes_on(tmp_path):
    """Unreadable, not-an-image, decompression-bomb and missing files: one record each, the good
    image still captioned, exit code 1, no traceback."""
    folder = tmp_path / "images"
    folder.mkdir()
    _write_good_image(folder / "b_good.png")
    (folder / "a_text.png").write_text("this is a text file, not an image")
    _write_decompression_bomb(folder / "c_bomb.png")
    (folder / "d_cut.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut short")
    missing = tmp_path / "missing.png"
    proc = run_blip("caption", str(folder), str(missing), "--model", str(FIXTURES / "caption"),
                    "--max-new-tokens", "3", "--batch-size", "2", "--quiet")  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    records = lines(proc.stdout)
    errors = {Path(r["path"]).name: r["error"] for r in records if "error" in r}
    assert set(errors) == {"a_text.png", "c_bomb.png", "d_cut.jpg", "missing.png"}
    for name, text in errors.items():
        assert name in text and "\n" not in text
    assert "decompression bomb" in errors["c_bomb.png"].lower() or "pixels" in errors["c_bomb.png"]
    assert "no such file" in errors["missing.png"]
    [good] = [r for r in records if "caption" in r]
    assert Path(good["path"]).name == "b_good.png"


def test_single_image_commands_report_unreadable_image(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    proc = run_blip("match", str(bad), "a text", "--model", str(FIXTURES / "itm"))
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    [record] = lines(proc.stdout)
    assert record["path"] == str(bad) and "bad.png" in record["error"]


def test_convert_dispatches_to_the_converter(tmp_path):
    proc = run_blip("convert", "--help")
    assert proc.returncode == 0 and "blip-convert" in proc.stdout
    proc = run_blip("convert", str(tmp_path / "missing"), str(tmp_path / "out"), "--to", "pt")
    assert proc.returncode not in (0, 70)
    assert "Traceback" not in proc.stderr and "missing" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_env_reports_what_each_backend_measures_and_picks():
    """``blip env --json``: the CPU as the core sees it, and per backend the dtype "auto" gives
    there, with the backend's own measurement and reason where its verdict differs."""
    from blip_core import hardware

    result = run_blip("env", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["cpu_flags"] == [f for f in hardware.RELEVANT_FLAGS if f in hardware.cpu_flags()]
    torch_info = report["backends"]["torch"]
    assert torch_info["installed"] and torch_info["auto"] in ("float32", "bfloat16")
    flags = hardware.cpu_flags()
    if hardware.needs_bf16_probe("cpu", flags, "torch"):  # measured in that process
        speedup = torch_info["bf16_speedup"]
        want = hardware.choose_dtype("cpu", flags, framework="torch", bf16_speedup=speedup)
        assert torch_info["auto"] == want and "measured" in torch_info["reason"]
    else:
        assert torch_info["auto"] == hardware.choose_dtype("cpu", flags, framework="torch")
    if report["backends"]["tf"]["installed"]:
        assert report["backends"]["tf"]["auto"] == hardware.choose_dtype("cpu", flags, None, "tf")
