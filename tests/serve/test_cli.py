"""``blip serve`` arguments -> ServeOptions (no server started)."""

from __future__ import annotations

import argparse
import json

import pytest

from blip_apps.serve import add_parser
from blip_apps.serve.cli import options_from_args


def parse(*argv):
    parser = argparse.ArgumentParser(prog="blip")
    add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["serve", *argv])


def test_defaults_bind_loopback_and_serve_all_demo_models():
    from blip_apps.demo import model_dir

    args = parse()
    assert (args.host, args.port) == ("127.0.0.1", 8000)
    options = options_from_args(args)
    assert options.models == {t: str(model_dir(t)) for t in ("caption", "vqa", "retrieval")}
    assert options.max_batch_size == 8 and options.max_upload_bytes == 10 * 2**20


def test_no_batching_and_limits():
    options = options_from_args(
        parse("--task", "caption", "--no-batching", "--max-upload-mb", "1.5", "--max-queue", "3")
    )
    assert list(options.models) == ["caption"]
    assert options.max_batch_size == 1 and options.batch_wait_timeout_s == 0
    assert options.max_upload_bytes == int(1.5 * 2**20) and options.max_queued_requests == 3


def test_task_read_from_model_config(tmp_path):
    from blip_apps.demo import model_dir

    assert list(options_from_args(parse("--model", str(model_dir("vqa")))).models) == ["vqa"]
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["BlipModel"]}))
    with pytest.raises(ValueError, match="--task"):
        options_from_args(parse("--model", str(tmp_path)))
    with pytest.raises(ValueError, match="--task all"):
        options_from_args(parse("--model", str(model_dir("vqa")), "--task", "all"))


@pytest.mark.parametrize("argv", [("--max-batch-size", "0"), ("--task", "nope")])
def test_bad_arguments_exit_2(argv):
    with pytest.raises(SystemExit) as exc:
        parse(*argv)
    assert exc.value.code == 2
