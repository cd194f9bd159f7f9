"""Where the torch backend runs: ``device`` of the pipeline, ``--device`` of the dataset
commands and of ``blip serve``, and the GPU an actor of the Ray engine reserves.

CI machines have no GPU, so the accelerator cases are checked with torch reporting none (also
on a machine that has one): the error must name the device and what is there."""

from __future__ import annotations

import argparse

import pytest

torch = pytest.importorskip("torch")


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_device_cpu_gives_the_default_records(scenes, captioner):
    from blip_apps.api import pipeline

    pipe = pipeline("caption", dtype="float32", device="cpu", itm_model=None)
    assert pipe.device == "cpu" and captioner.device is None
    assert {p.device.type for p in pipe.model.parameters()} == {"cpu"}
    images = [scenes / "scene_0.png", scenes / "scene_1.png"]
    want = [{k: r[k] for k in ("id", "caption", "log_prob")} for r in captioner(images)]
    got = [{k: r[k] for k in ("id", "caption", "log_prob")} for r in pipe(images)]
    assert got == want


def test_missing_accelerator_is_a_clear_error(no_gpu):
    from blip_apps.api import pipeline
    from blip_torch import BlipForConditionalGeneration
    from blip_torch.precision import check_device

    with pytest.raises(ValueError, match=r"device='cuda': cuda is not available here \(torch"):
        pipeline("caption", device="cuda")
    with pytest.raises(ValueError, match="device='cuda:1': cuda is not available"):
        BlipForConditionalGeneration.from_pretrained("tests/fixtures/reference/caption",
                                                     device="cuda:1")  # fmt: skip
    with pytest.raises(ValueError, match="'gpu0' is not a torch device.*e.g. 'cpu', 'cuda'"):
        check_device("gpu0")
    assert check_device("cpu") == torch.device("cpu")


def test_device_is_for_the_torch_backend():
    pytest.importorskip("tensorflow")
    from blip_apps.api import pipeline

    with pytest.raises(ValueError, match="device='cuda' is for the torch backend; the tf backend"):
        pipeline("caption", backend="tf", device="cuda")
    assert pipeline("caption", backend="tf", dtype="float32", device="cpu").device is None


def test_cli_device_flag(scenes, no_gpu):
    from blip_apps.errors import UsageError
    from tests.datasets.test_cli_flags import _parser, _run

    assert _parser().parse_args(["caption", "x.png"]).device is None
    assert (
        _parser().parse_args(["embed", "x.png", "--index", "i.npy", "--device", "cuda:1"]).device
        == "cuda:1"
    )
    with pytest.raises(UsageError, match="device='cuda': cuda is not available here"):
        _run(["caption", str(scenes / "scene_0.png"), "--device", "cuda", "--quiet"])


def test_ray_actors_with_gpus_run_the_torch_model_there():
    from blip_apps.datasets.ray_engine import actor_settings

    assert actor_settings({"num_beams": 3}, "torch", 1) == {"num_beams": 3, "device": "cuda"}
    assert actor_settings(None, "torch", 0.5) == {"device": "cuda"}
    assert actor_settings({"device": "cpu"}, "torch", 1) == {"device": "cpu"}  # named: kept
    assert actor_settings({}, "torch", 0) == {}
    assert actor_settings({}, "tf", 1) == {}  # TensorFlow places its work itself


def _serve_args(*argv):
    from blip_apps.serve import add_parser

    parser = argparse.ArgumentParser(prog="blip")
    add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["serve", "--task", "caption", *argv])


def test_serve_device(no_gpu):
    from blip_apps.serve.app import ServeOptions, build_app
    from blip_apps.serve.cli import options_from_args

    assert options_from_args(_serve_args("--device", "cpu")).device is None
    with pytest.raises(ValueError, match="cuda is not available here"):
        options_from_args(_serve_args("--device", "cuda"))
    with pytest.raises(ValueError, match="--device cuda is for the torch backend, not 'tf'"):
        options_from_args(_serve_args("--device", "cuda", "--backend", "tf"))
    for device, gpus in ((None, 0), ("cuda", 1)):  # the replica reserves the GPU it runs on
        app = build_app(ServeOptions(models={}, device=device))
        assert app._bound_deployment.ray_actor_options == {"num_cpus": 0, "num_gpus": gpus}
