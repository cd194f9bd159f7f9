"""``blip export --format onnx``: layout, manifest, atomicity, verification catches bad graphs."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from tests.helpers import FIXTURES

CAPTION = FIXTURES / "caption"


def _perturb_initializer(directory, graph="decoder_step.onnx", delta=1e-2):
    """Add noise of size ``delta`` to the largest float initializer of ``graph`` (a corrupted
    export; noise, not a constant shift, which a following LayerNorm would cancel)."""
    import onnx
    from onnx import numpy_helper

    path = directory / graph
    model = onnx.load(str(path))
    floats = [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT]
    tensor = max(floats, key=lambda t: int(np.prod(t.dims)))
    array = numpy_helper.to_array(tensor)
    noise = np.random.default_rng(0).standard_normal(array.shape) * delta
    array = (array + noise).astype(np.float32)
    tensor.CopyFrom(numpy_helper.from_array(array, tensor.name))
    onnx.save(model, str(path))


def _leftovers(parent, name):
    return [p.name for p in parent.iterdir() if name in p.name]


def test_layout_and_manifest(exported):
    out = exported["caption"]
    names = {p.name for p in out.iterdir()}
    assert {"vision.onnx", "decoder_cross_kv.onnx", "decoder_step.onnx", "blip_onnx.json",
            "config.json", "tokenizer.json", "vocab.txt", "preprocessor_config.json",
            "generation_config.json"} <= names  # fmt: skip
    assert "text_encoder.onnx" not in names  # a captioning model needs no text encoder
    manifest = json.loads((out / "blip_onnx.json").read_text())
    assert manifest["class"] == "BlipForConditionalGeneration"
    assert manifest["dtype"] == "fp32" and manifest["opset"] == 17
    assert set(manifest["graphs"]) == {"vision", "decoder_cross_kv", "decoder_step"}
    step = manifest["graphs"]["decoder_step"]
    inputs = {i["name"]: i for i in step["inputs"]}
    # cross K/V are inputs of the step (never recomputed from image states), batch is dynamic
    assert "cross_key_0" in inputs and "encoder_hidden_states" not in inputs
    assert inputs["past_key_0"]["shape"][0] == "batch"
    assert inputs["past_key_0"]["shape"][2] == "past_sequence"
    assert max(manifest["verification"]["max_abs_diff"].values()) <= 1e-4
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["BlipForConditionalGeneration"]
    itm = json.loads((exported["itm"] / "blip_onnx.json").read_text())
    assert set(itm["graphs"]) == {"vision", "text_encoder", "text_embeds", "image_embeds",
                                  "itm_head"}  # fmt: skip


def test_processor_loads_from_export(exported):
    from blip_core.processing import BlipProcessor

    processor = BlipProcessor.from_pretrained(exported["caption"])
    reference = BlipProcessor.from_pretrained(CAPTION)
    assert (
        processor.tokenizer("a red square").input_ids
        == reference.tokenizer("a red square").input_ids
    )


def test_config_and_weights_only_directory(tmp_path):
    from blip_apps.export import export_onnx

    src = tmp_path / "src"
    src.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copyfile(FIXTURES / "itm" / name, src / name)
    out = export_onnx(src, tmp_path / "out")
    assert {p.name for p in out.iterdir()} >= {"config.json", "blip_onnx.json", "vision.onnx"}
    assert not (out / "tokenizer.json").exists()


def test_refuses_existing_out_dir_unless_forced(tmp_path):
    from blip_apps.export import ExportError, export_onnx

    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ExportError, match="--force"):
        export_onnx(CAPTION, out)
    assert (out / "keep.txt").read_text() == "mine"
    export_onnx(CAPTION, out, force=True)
    assert not (out / "keep.txt").exists() and (out / "blip_onnx.json").is_file()
    assert _leftovers(tmp_path, ".out.") == []


def test_corrupted_graph_is_caught_and_nothing_is_left(tmp_path):
    from blip_apps.export import VerificationError, export_onnx

    out = tmp_path / "out"
    with pytest.raises(VerificationError, match="decoder_step") as info:
        export_onnx(CAPTION, out, before_verify=_perturb_initializer)
    assert "vision:" in str(info.value)  # the table names every graph's difference
    assert not out.exists()
    assert _leftovers(tmp_path, "out") == []


def test_command_line_exit_codes(tmp_path, monkeypatch, capsys):
    from blip_apps.export import main, verify

    out = tmp_path / "out"
    assert main([str(CAPTION), str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["out_dir"] == str(out)
    assert main([str(CAPTION), str(out)]) == 2  # exists, no --force
    assert "--force" in capsys.readouterr().err

    def broken(directory, specs, files):
        _perturb_initializer(directory, "vision.onnx")
        return original(directory, specs, files)

    original = verify.graph_differences
    monkeypatch.setattr(verify, "graph_differences", broken)
    fresh = tmp_path / "fresh"
    assert main([str(CAPTION), str(fresh)]) == 3
    assert "verification failed" in capsys.readouterr().err
    assert not fresh.exists() and _leftovers(tmp_path, "fresh") == []
    assert main([str(tmp_path / "missing"), str(fresh)]) == 4


def test_add_parser_wires_a_subcommand(tmp_path):
    import argparse

    from blip_apps.export import add_parser
    from blip_apps.export.command import cmd_export

    parser = argparse.ArgumentParser(prog="blip")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["export", "m", "o", "--dtype", "int8", "--force"])
    assert args.func is cmd_export and args.dtype == "int8" and args.force
