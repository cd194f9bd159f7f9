"""Outputs: formats by extension, complete-or-absent chunks, torn tails, resume, sidecars."""

from __future__ import annotations

import json

import pytest

from blip_apps.datasets.outputs import Writer, read_records, write_sidecar

RECORDS = [
    {"id": f"img{i}", "caption": f'a "quoted", caption\nnumber {i}', "log_prob": -0.5 * i,
     "settings": {"num_beams": 1, "prompt": None}}
    for i in range(7)
]  # fmt: skip


@pytest.mark.parametrize("ext", ["jsonl", "csv", "parquet"])
def test_round_trip_in_chunks(tmp_path, ext):
    if ext == "parquet":
        pytest.importorskip("pyarrow")
    path = tmp_path / f"out.{ext}"
    with Writer(path, chunk_size=3) as writer:
        writer.write(RECORDS[:4])
        if ext == "parquet":  # full chunks are part files until the writer closes
            assert len(list((tmp_path / "out.parquet.parts").iterdir())) == 1
        writer.write(RECORDS[4:])
    assert read_records(path) == RECORDS
    assert not (tmp_path / "out.parquet.parts").exists()


@pytest.mark.parametrize("ext", ["jsonl", "csv"])
def test_a_torn_tail_is_truncated_on_resume(tmp_path, ext):
    path = tmp_path / f"out.{ext}"
    with Writer(path, chunk_size=2) as writer:
        writer.write(RECORDS[:4])
    whole = path.read_bytes()
    with Writer(tmp_path / f"more.{ext}", chunk_size=2) as writer:
        writer.write(RECORDS[:6])
    torn = (tmp_path / f"more.{ext}").read_bytes()[: len(whole) + 25]  # 25 bytes of record 5
    path.write_bytes(torn)
    writer = Writer(path, resume=True, chunk_size=2)
    assert writer.done == {"img0", "img1", "img2", "img3"}
    assert path.read_bytes() == whole  # the torn bytes are gone
    writer.write(RECORDS[4:])
    writer.close()
    assert read_records(path) == RECORDS


def test_parquet_merge_never_duplicates(tmp_path):
    pytest.importorskip("pyarrow")
    path = tmp_path / "out.parquet"
    with Writer(path, chunk_size=2) as writer:
        writer.write(RECORDS[:4])
    # a kill after the merged file was renamed into place but before the parts were removed
    parts = tmp_path / "out.parquet.parts"
    writer = Writer(tmp_path / "again.parquet", chunk_size=2)
    writer.write(RECORDS[:4])
    (tmp_path / "again.parquet.parts").rename(parts)
    resumed = Writer(path, resume=True, chunk_size=2)
    assert resumed.done == {f"img{i}" for i in range(4)}
    resumed.write(RECORDS[4:])
    resumed.close()
    assert read_records(path) == RECORDS


def test_existing_output_needs_resume_or_overwrite(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_text(json.dumps(RECORDS[0]) + "\n")
    with pytest.raises(FileExistsError, match="resume=True"):
        Writer(path)
    Writer(path, overwrite=True).close()
    assert not path.exists()
    with pytest.raises(ValueError, match=r"'\.txt'.*\.jsonl"):
        Writer(tmp_path / "out.txt")
    assert read_records(tmp_path / "out.data", format="jsonl") == []


def test_sidecar_kept_unless_overwrite(tmp_path):
    image = tmp_path / "photo.jpg"
    assert write_sidecar(image, "first")
    assert not write_sidecar(image, "second")
    assert (tmp_path / "photo.txt").read_text() == "first\n"
    assert write_sidecar(image, "third", overwrite=True)
    assert (tmp_path / "photo.txt").read_text() == "third\n"
