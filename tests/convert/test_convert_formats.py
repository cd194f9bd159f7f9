"""Hub formats: PyTorch <-> TensorFlow round trips, transformers' TF BLIP and blip_tf loading."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from blip_apps.convert import Progress, main, probe_inputs, run_probe  # noqa: E402
from blip_core.config import BlipConfig  # noqa: E402
from blip_core.weights.io import read_safetensors, write_safetensors  # noqa: E402
from tests.convert.common import TASK_CLASSES, assert_close, ours_probe  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "reference"
TASKS = ("caption", "vqa", "itm")


@pytest.fixture(scope="module")
def converted(cases, tmp_path_factory):
    """For each task: hub PT (transformers-written) -> pt -> tf -> pt, all verified."""
    root = tmp_path_factory.mktemp("formats")
    out = {}
    for task in TASKS:
        case = cases(task)
        pt1, tf, pt2 = root / f"{task}_pt1", root / f"{task}_tf", root / f"{task}_pt2"
        assert main([str(case.hub), str(pt1), "--to", "pt"]) == 0
        assert main([str(pt1), str(tf), "--to", "tf"]) == 0
        assert main([str(tf), str(pt2), "--to", "pt"]) == 0
        out[task] = (pt1, tf, pt2)
    return out


@pytest.mark.parametrize("task", TASKS)
def test_pt_tf_pt_round_trip_is_bit_exact(converted, task):
    from blip_core.weights.h5 import read_tf_h5

    pt1, tf, pt2 = converted[task]
    first, last = (
        read_safetensors(pt1 / "model.safetensors"),
        read_safetensors(pt2 / "model.safetensors"),
    )
    assert sorted(first) == sorted(last)
    for key in first:
        assert first[key].dtype == last[key].dtype and np.array_equal(first[key], last[key]), key
    via_h5 = read_tf_h5(tf / "tf_model.h5")
    for key, value in via_h5.items():
        assert np.array_equal(value, first[key]), key
    files = {p.name for p in tf.iterdir()}
    assert files - {"generation_config.json"} == {"config.json", "tf_model.h5"}
    assert ("generation_config.json" in files) == (task != "itm")  # copied along from the source
    assert BlipConfig.from_pretrained(tf).to_dict() == BlipConfig.from_pretrained(pt2).to_dict()


def test_transformers_tf_blip_loads_our_h5(converted, tmp_path):
    """transformers' own TFBlip*.from_pretrained (tf-keras, in a subprocess) loads every weight of
    our tf_model.h5, the LM head included, and computes the same outputs as blip_torch."""
    pytest.importorskip("tf_keras")
    config = BlipConfig.from_pretrained(converted["caption"][1])
    inputs = probe_inputs(config)
    np.savez(tmp_path / "inputs.npz", **inputs)
    specs = [f"{converted[task][1]}:{task}" for task in TASKS]
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "USE_TF": "1"}
    result = subprocess.run(
        [sys.executable, str(Path(__file__).parent / "transformers_tf_probe.py"),
         str(tmp_path / "inputs.npz"), str(tmp_path / "out.npz"), *specs],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    reference = np.load(tmp_path / "out.npz")
    for index, task in enumerate(TASKS):
        ours = ours_probe(converted[task][0], task, inputs, match_reference=False)
        theirs = {k.split("/", 1)[1]: reference[k] for k in reference if k.startswith(f"{index}/")}
        assert_close(ours, theirs, 1e-5)


@pytest.mark.parametrize("task", TASKS)
def test_blip_tf_loads_our_h5(converted, task):
    try:
        import blip_tf
    except ImportError as exc:  # pragma: no cover - depends on the checkout
        pytest.skip(f"blip_tf is not importable yet: {exc}")
    pt1, tf, _ = converted[task]
    from blip_tf.adapter import BACKEND

    model = getattr(blip_tf, TASK_CLASSES[task]).from_pretrained(tf)
    inputs = probe_inputs(BlipConfig.from_pretrained(tf))
    ours_tf = run_probe(BACKEND, model, task, inputs)
    assert_close(ours_tf, ours_probe(pt1, task, inputs, match_reference=False), 1e-5)


def test_original_to_tf_directly(cases, tmp_path, capsys):
    case = cases("caption")
    dst = tmp_path / "tf"
    assert main([str(case.pth), str(dst), "--to", "tf", "--config", str(case.config)]) == 0
    assert "blip_tf" in capsys.readouterr().out
    assert (dst / "tf_model.h5").is_file()


def test_sharded_and_bin_sources(cases, tmp_path):
    """Sharded safetensors and pytorch_model.bin hub directories convert too."""
    case = cases("itm")
    sharded = tmp_path / "sharded"
    case.model.save_pretrained(sharded, max_shard_size="20KB")
    assert (sharded / "model.safetensors.index.json").is_file()
    binary = tmp_path / "bin"
    case.model.save_pretrained(binary, safe_serialization=False)
    assert (binary / "pytorch_model.bin").is_file()
    inputs = probe_inputs(BlipConfig.from_pretrained(case.hub))
    expected = ours_probe(case.hub, "itm", inputs)
    for src in (sharded, binary):
        dst = tmp_path / f"{src.name}_out"
        assert main([str(src), str(dst), "--to", "pt", "--task", "itm"]) == 0
        assert_close(ours_probe(dst, "itm", inputs), expected, 0)


def test_tokenizer_files_are_copied(cases, tmp_path, capsys):
    case = cases("caption")
    dst = tmp_path / "out"
    tokenizer = FIXTURES / "caption"
    args = [str(case.pth), str(dst), "--to", "pt", "--config", str(case.config)]
    assert main([*args, "--tokenizer", str(tokenizer)]) == 0
    names = {p.name for p in dst.iterdir()}
    assert {"tokenizer.json", "vocab.txt", "preprocessor_config.json"} <= names
    try:
        from blip_core.processing import BlipProcessor
    except ImportError:  # pragma: no cover - depends on the checkout
        return
    processor = BlipProcessor.from_pretrained(dst)
    assert processor is not None
    capsys.readouterr()
    # A hub source brings its own tokenizer / preprocessor / generation files along.
    hub_dst = tmp_path / "from_hub"
    assert main([str(FIXTURES / "caption"), str(hub_dst), "--to", "pt"]) == 0
    assert "generation_config.json" in {p.name for p in hub_dst.iterdir()}
    assert "copied from" in capsys.readouterr().out
    BlipProcessor.from_pretrained(hub_dst)


def test_command_line_script(cases, tmp_path):
    case = cases("caption")
    dst = tmp_path / "cli"
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "convert_weights.py"), str(case.pth), str(dst),
         "--to", "pt", "--config", str(case.config), "--no-verify"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (dst / "model.safetensors").is_file()
    assert "verified" not in result.stdout


def test_safetensors_writer(tmp_path):
    from safetensors.numpy import load_file

    rng = np.random.default_rng(0)
    big = rng.standard_normal((6, 5)).astype(np.float32)
    state = {
        "a": big,
        "b.t": big.T,  # not contiguous
        "c": np.arange(7, dtype=np.int64),
        "d": rng.standard_normal(3).astype(np.float16),
        "e": np.float32(2.5) * np.ones((), np.float32),
        "f": rng.standard_normal((2, 3)).astype(">f4"),  # big-endian input
    }
    path = write_safetensors(state, tmp_path / "x.safetensors")
    loaded = load_file(str(path))
    assert sorted(loaded) == sorted(state)
    for key, value in state.items():
        assert loaded[key].dtype == value.dtype.newbyteorder("=") and np.array_equal(
            loaded[key], value
        )
    # Also what torch's own reader sees (transformers loads it that way).
    from safetensors.torch import load_file as load_torch

    assert torch.equal(load_torch(str(path))["c"], torch.arange(7))


def test_progress_counter_without_tqdm(monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # import fails
    stream = io.StringIO()
    progress = Progress(100 * 2**20, "writing x", enabled=True, stream=stream)
    for _ in range(10):
        progress.update(10 * 2**20)
    progress.close()
    lines = stream.getvalue().splitlines()
    assert lines[-1] == "writing x: 100/100 MiB (100%)" and len(lines) >= 5
    quiet = io.StringIO()
    small = Progress(10, "small", stream=quiet)  # below the size threshold: silent
    small.update(10)
    assert quiet.getvalue() == ""


def test_source_is_not_modified(cases, tmp_path):
    case = cases("vqa")
    src = tmp_path / "src"
    shutil.copytree(case.hub, src)
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in src.iterdir()}
    assert main([str(src), str(tmp_path / "out"), "--to", "tf"]) == 0
    after = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in src.iterdir()}
    assert before == after


def test_tf_verification_without_blip_tf(cases, tmp_path, capsys, monkeypatch):
    """Without blip_tf the written tf_model.h5 is read back into blip_torch and compared."""
    import blip_apps.convert.verify as verify

    real = verify.optional_backend
    monkeypatch.setattr(
        verify, "optional_backend", lambda name: None if name == "tf" else real(name)
    )
    case = cases("vqa")
    assert main([str(case.hub), str(tmp_path / "tf"), "--to", "tf"]) == 0
    out = capsys.readouterr().out
    assert "blip_tf is not importable" in out and "verified" in out
    assert main([str(tmp_path / "tf"), str(tmp_path / "pt"), "--to", "pt"]) == 0
    assert "run in blip_torch" in capsys.readouterr().out
