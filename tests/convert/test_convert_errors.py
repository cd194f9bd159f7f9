"""Failures: each exits non-zero with one clear message and leaves nothing at DST."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import blip_core.weights.convert.output as output  # noqa: E402
from blip_apps.convert import main  # noqa: E402
from tests.convert.common import leftovers  # noqa: E402


def _fails(capsys, tmp_path, argv, needle, code=1, name="out"):
    assert main(argv) == code
    err = capsys.readouterr().err
    assert err.count("blip-convert:") == 1, err
    assert needle in err, err
    assert leftovers(tmp_path, name) == []
    return err


def test_missing_source(tmp_path, capsys):
    _fails(capsys, tmp_path, [str(tmp_path / "nope.pth"), str(tmp_path / "out"), "--to", "pt"],
           "nope.pth: no such file or directory")  # fmt: skip


def test_unknown_format(tmp_path, capsys):
    src = tmp_path / "weights.txt"
    src.write_text("hello")
    _fails(capsys, tmp_path, [str(src), str(tmp_path / "out"), "--to", "pt"],
           "unknown checkpoint format")  # fmt: skip


def test_directory_without_weights(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    _fails(capsys, tmp_path, [str(tmp_path / "empty"), str(tmp_path / "out"), "--to", "tf"],
           "no weights file found")  # fmt: skip


def test_existing_destination_needs_force(cases, tmp_path, capsys):
    case = cases("caption")
    dst = tmp_path / "out"
    dst.mkdir()
    (dst / "keep.txt").write_text("mine")
    args = [str(case.pth), str(dst), "--to", "pt", "--config", str(case.config)]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "already exists; pass --force" in err
    assert sorted(p.name for p in dst.iterdir()) == ["keep.txt"]
    assert main([*args, "--force"]) == 0
    assert sorted(p.name for p in dst.iterdir()) == ["config.json", "model.safetensors"]
    assert leftovers(tmp_path, "out") == ["out"]  # no temporary or backup directories


def test_destination_holding_the_source_is_refused(cases, tmp_path, capsys):
    case = cases("caption")
    _fails(capsys, case.dir, [str(case.hub), str(case.dir), "--to", "pt", "--force"],
           "holds the source", name="-none-")  # fmt: skip
    assert (case.hub / "model.safetensors").is_file()


def test_truncated_checkpoint(cases, tmp_path, capsys):
    case = cases("caption")
    data = case.pth.read_bytes()
    src = tmp_path / "truncated.pth"
    src.write_bytes(data[: len(data) // 2])
    err = _fails(capsys, tmp_path, [str(src), str(tmp_path / "out"), "--to", "pt"], "truncated.pth")
    assert "unreadable" in err


def test_truncated_safetensors(cases, tmp_path, capsys):
    case = cases("caption")
    src = tmp_path / "hub"
    src.mkdir()
    (src / "config.json").write_bytes((case.hub / "config.json").read_bytes())
    data = (case.hub / "model.safetensors").read_bytes()
    (src / "model.safetensors").write_bytes(data[: len(data) - 100])
    _fails(capsys, tmp_path, [str(src), str(tmp_path / "out"), "--to", "tf"],
           "model.safetensors")  # fmt: skip


class _Payload:
    """Unpickling this object would run a shell command."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_crafted_pickle_is_refused(tmp_path, capsys):
    marker = tmp_path / "pwned"
    src = tmp_path / "model_base.pth"
    torch.save(
        {"model": {"visual_encoder.cls_token": torch.zeros(1, 1, 4)}, "x": _Payload(marker)}, src
    )
    err = _fails(capsys, tmp_path, [str(src), str(tmp_path / "out"), "--to", "pt"], "refused")
    assert "weights_only=True" in err
    assert not marker.exists()


def test_unmatched_keys_are_listed(cases, tmp_path, capsys):
    case = cases("caption")
    state = torch.load(case.pth, weights_only=True)["model"]
    state["visual_encoder.head.weight"] = torch.zeros(3, 3)
    state["text_decoder.bert.pooler_extra.bias"] = torch.zeros(3)
    src = tmp_path / "odd.pth"
    torch.save({"model": state}, src)
    err = _fails(capsys, tmp_path, [str(src), str(tmp_path / "out"), "--to", "pt", "--config",
                 str(case.config)], "2 keys of the original checkpoint match no conversion rule")  # fmt: skip
    assert "visual_encoder.head.weight" in err and "text_decoder.bert.pooler_extra.bias" in err


def test_config_of_the_wrong_size(cases, tmp_path, capsys):
    case = cases("caption")
    wrong = cases("caption", "large_like").config
    err = _fails(capsys, tmp_path, [str(case.pth), str(tmp_path / "out"), "--to", "pt",
                 "--config", str(wrong)], "shape mismatches")  # fmt: skip
    assert "--config describe" in err


def test_failed_verification_writes_nothing(cases, tmp_path, capsys, monkeypatch):
    case = cases("caption")
    real = output.with_lm_head_weights

    def corrupt(state):
        out = real(state)
        key = "vision_model.post_layernorm.bias"
        out[key] = out[key] + 1e-2
        return out

    monkeypatch.setattr(output, "with_lm_head_weights", corrupt)
    err = _fails(capsys, tmp_path, [str(case.pth), str(tmp_path / "out"), "--to", "pt", "--config",
                 str(case.config)], "verification failed", code=3)  # fmt: skip
    assert "nothing was written" in err


def test_interrupted_run_leaves_nothing(cases, tmp_path, capsys, monkeypatch):
    case = cases("caption")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(output, "write_safetensors_file", interrupted)
    _fails(capsys, tmp_path, [str(case.pth), str(tmp_path / "out"), "--to", "pt", "--config",
           str(case.config)], "interrupted", code=130)  # fmt: skip


def test_hub_task_mismatch(cases, tmp_path, capsys):
    case = cases("itm")
    _fails(capsys, tmp_path, [str(case.hub), str(tmp_path / "out"), "--to", "pt", "--task", "vqa"],
           "--task vqa cannot be made from it")  # fmt: skip


def test_usage_error_exits_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path), str(tmp_path / "out")])  # --to missing
    assert exc.value.code == 2
