"""The dataset flags and handlers of blip_apps.datasets.cli, through the blip command's parser."""

from __future__ import annotations

import io
import json

import pytest

from blip_apps.datasets.outputs import read_records

pytest.importorskip("torch")


def _parser():
    from blip_apps.cli import build_parser

    return build_parser()


def _run(argv):
    from blip_apps.commands import Output

    args = _parser().parse_args(argv)
    out = Output(io.StringIO())
    return args.func(args, out), out.stream.getvalue()


def test_caption_vqa_embed_search_commands(scenes, tmp_path, capsys):
    from blip_apps.errors import UsageError

    out = tmp_path / "c.csv"
    code, _ = _run(["caption", str(scenes), "--output", str(out), "--quiet", "--batch-size", "4"])
    assert code == 0 and len(read_records(out)) == 8
    assert "done 8, skipped 0, failed 0" in capsys.readouterr().err
    with pytest.raises(UsageError, match="--resume"):
        _run(["caption", str(scenes), "--output", str(out), "--quiet"])
    code, _ = _run(["caption", str(scenes), "--output", str(out), "--resume", "--quiet"])
    assert code == 0 and "done 0, skipped 8" in capsys.readouterr().err
    code, text = _run(["vqa", str(scenes / "scene_0.png"), str(tmp_path / "gone.png"),
                       "--question", "how many shapes are there?", "--answers", "one,two,three",
                       "--top-k", "2", "--quiet"])  # fmt: skip
    records = [json.loads(line) for line in text.splitlines()]
    [record] = [r for r in records if "error" not in r]
    [failed] = [r for r in records if "error" in r]
    assert failed["path"].endswith("gone.png") and "gone.png" in failed["error"]
    assert code == 1 and len(record["answers"]) == 2 and record["answer"] in ("one", "two", "three")
    index = tmp_path / "index.parquet"
    assert _run(["embed", str(scenes), "--index", str(index), "--quiet"])[0] == 0
    code, text = _run(["search", "--index", str(index), "a small red circle", "--top-k", "3"])
    hits = [json.loads(line) for line in text.splitlines()]
    assert code == 0 and [h["rank"] for h in hits] == [1, 2, 3]
    assert sorted(h["itm"] for h in hits)[::-1] == [h["itm"] for h in hits]


def test_dtype_int8_and_compile_flags(scenes, tmp_path):
    """``--dtype int8`` and ``--compile`` reach the pipeline (the records name int8); with a
    backend that cannot honour them the run stops with a usage error naming the switch."""
    pytest.importorskip("torchao")
    from blip_apps.errors import UsageError

    args = _parser().parse_args(["caption", "x.png", "--dtype", "int8", "--compile"])
    assert (args.dtype, args.compile) == ("int8", True)
    assert _parser().parse_args(["embed", "x.png", "--index", "i.parquet"]).compile is False
    out = tmp_path / "c.jsonl"
    code, _ = _run(["caption", str(scenes / "scene_0.png"), "--dtype", "int8", "--quiet",
                    "--output", str(out)])  # fmt: skip
    [record] = read_records(out)
    assert code == 0 and record["settings"]["dtype"] == "int8" and record["caption"]
    pytest.importorskip("tensorflow")
    for flags, needle in ((["--compile"], "needs the torch backend"),
                          (["--dtype", "int8"], "not available with the tf backend")):  # fmt: skip
        with pytest.raises(UsageError, match=needle):
            _run(["caption", str(scenes / "scene_0.png"), "--backend", "tf", "--quiet", *flags])
