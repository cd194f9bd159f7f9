"""The dataset flags and handlers of blip_apps.datasets.cli, on a parser shaped like blip's
(the lead merges them into blip_apps.cli)."""

from __future__ import annotations

import argparse
import io
import json

import pytest

from blip_apps.datasets.outputs import read_records

pytest.importorskip("torch")


def _parser():
    from blip_apps.cli import answer_list, positive_int
    from blip_apps.datasets import cli

    parser = argparse.ArgumentParser(prog="blip")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("caption")
    p.add_argument("images", nargs="+")
    for flag in ("--model", "--output", "--prompt"):
        p.add_argument(flag)
    p.add_argument("--backend", default="torch")
    p.add_argument("--beams", type=positive_int, default=1)
    p.add_argument("--original", action="store_true")
    p.add_argument("--max-new-tokens", type=positive_int, default=30)
    p.add_argument("--batch-size", type=positive_int, default=8)
    p.add_argument("--quiet", action="store_true")
    cli.add_dataset_arguments(p, "caption")
    p.set_defaults(func=cli.cmd_caption_dataset)
    p = sub.add_parser("vqa")
    p.add_argument("images", nargs="+")
    p.add_argument("--question")
    p.add_argument("--answers", type=answer_list)
    for flag in ("--model", "--output"):
        p.add_argument(flag)
    p.add_argument("--backend", default="torch")
    p.add_argument("--beams", type=positive_int, default=1)
    p.add_argument("--max-new-tokens", type=positive_int)
    p.add_argument("--batch-size", type=positive_int, default=8)
    p.add_argument("--quiet", action="store_true")
    cli.add_dataset_arguments(p, "vqa")
    p.set_defaults(func=cli.cmd_vqa_dataset)
    cli.add_parsers(sub)
    return parser


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
    [record] = [json.loads(line) for line in text.splitlines()]
    assert code == 1 and len(record["answers"]) == 2 and record["answer"] in ("one", "two", "three")
    index = tmp_path / "index.parquet"
    assert _run(["embed", str(scenes), "--index", str(index), "--quiet"])[0] == 0
    code, text = _run(["search-index", "--index", str(index), "a small red circle", "--top-k", "3"])
    hits = [json.loads(line) for line in text.splitlines()]
    assert code == 0 and [h["rank"] for h in hits] == [1, 2, 3]
    assert sorted(h["itm"] for h in hits)[::-1] == [h["itm"] for h in hits]
