"""Dataset inputs: folders, path lists, parquet tables, tar shards; broken inputs as failures."""

from __future__ import annotations

import io
import tarfile

import PIL.Image
import pytest

from blip_apps.datasets.inputs import Failure, Item, iter_items


def _png(color=(200, 10, 10)) -> bytes:
    buffer = io.BytesIO()
    PIL.Image.new("RGB", (8, 8), color).save(buffer, format="PNG")
    return buffer.getvalue()


def test_folder_is_recursive_and_sorted(tmp_path):
    (tmp_path / "b").mkdir()
    for name in ("b/z.png", "a.jpg.png", "c.PNG", "notes.txt"):
        (tmp_path / name).write_bytes(_png())
    ids = [item.id for item in iter_items([tmp_path])]
    assert ids == [str(tmp_path / n) for n in ("a.jpg.png", "b/z.png", "c.PNG")]


def test_list_file_paths_relative_to_the_list(tmp_path):
    (tmp_path / "x.png").write_bytes(_png())
    (tmp_path / "list.txt").write_text("# a comment\nx.png\n\nmissing.png\n")
    items = list(iter_items([tmp_path / "list.txt"]))
    assert [i.id for i in items] == [str(tmp_path / "x.png"), str(tmp_path / "missing.png")]
    assert items[0].load().size == (8, 8)
    with pytest.raises(ValueError, match="missing.png"):
        items[1].load()


def test_parquet_path_and_bytes_columns(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    (tmp_path / "x.png").write_bytes(_png())
    pq.write_table(pa.table({"path": ["x.png"], "n": [1]}), tmp_path / "paths.parquet")
    pq.write_table(pa.table({"jpg": [_png((0, 0, 255)), b"garbage", None]}),
                   tmp_path / "bytes.parquet")  # fmt: skip
    [item] = iter_items([tmp_path / "paths.parquet"])
    assert item.id == str(tmp_path / "x.png") and item.path == tmp_path / "x.png"
    entries = list(iter_items([tmp_path / "bytes.parquet"], column="jpg"))
    assert entries[0].id == f"{tmp_path / 'bytes.parquet'}#0"
    assert entries[0].load().getpixel((0, 0)) == (0, 0, 255)
    with pytest.raises(ValueError, match="#1"):
        entries[1].load()
    assert isinstance(entries[2], Failure) and "#2" in entries[2].reason
    with pytest.raises(ValueError, match="column='nope'.*jpg"):
        list(iter_items([tmp_path / "bytes.parquet"], column="nope"))


def test_tar_shard_groups_members_by_key(tmp_path):
    shard = tmp_path / "shard-000.tar"
    with tarfile.open(shard, "w") as archive:
        for name, payload in [
            ("a/001.jpg", _png()),
            ("a/001.txt", b"cap"),
            ("a/002.txt", b"no image"),
            ("a/003.seg.png", _png((0, 255, 0))),
        ]:
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            archive.addfile(info, io.BytesIO(payload))  # fmt: skip
    entries = list(iter_items([shard]))
    assert [e.id for e in entries] == [f"{shard}/a/001", f"{shard}/a/002", f"{shard}/a/003"]
    assert isinstance(entries[0], Item) and entries[0].load().size == (8, 8)
    assert isinstance(entries[1], Failure) and "no image member" in entries[1].reason
    assert entries[2].load().getpixel((0, 0)) == (0, 255, 0)


def test_broken_inputs_are_failures_not_errors(tmp_path):
    (tmp_path / "broken.tar").write_bytes(b"not a tar at all" * 100)
    entries = list(iter_items([tmp_path / "nothing", tmp_path / "broken.tar"]))
    assert all(isinstance(e, Failure) for e in entries) and len(entries) == 2
    assert "no such file" in entries[0].reason and "broken.tar" in entries[1].reason
