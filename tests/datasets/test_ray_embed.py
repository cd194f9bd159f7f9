"""The Ray engine gives the local engine's records; an index built in two steps equals one built
at once, and search ranks from it like the folder search of blip_apps.pipeline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from blip_apps.datasets.outputs import read_records
from blip_apps.datasets.run import run_dataset
from blip_apps.demo import model_dir

pytest.importorskip("torch")


def test_ray_records_equal_the_local_engine(scenes, captioner, tmp_path):
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    from blip_apps.datasets.ray_engine import run_ray

    run_dataset(captioner, [scenes], output=tmp_path / "local.jsonl", batch_size=4,
                progress=False)  # fmt: skip
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        summary = run_ray("caption", [scenes, tmp_path / "absent.png"],
                          output=tmp_path / "ray.jsonl", batch_size=4, actors=1, num_cpus=0.5,
                          progress=False)  # fmt: skip
    finally:
        ray.shutdown()
    assert (summary.done, summary.failed) == (8, 1)
    assert read_records(tmp_path / "ray.jsonl") == read_records(tmp_path / "local.jsonl")


def test_index_in_two_steps_equals_one_and_search_ranks_from_it(scenes, embedder, tmp_path):
    pytest.importorskip("pyarrow")
    from blip_apps.datasets.embed import build_index, load_index, search
    from blip_apps.pipeline import Matcher, decode_batch

    first = sorted(scenes.glob("*.png"))
    build_index(embedder, first, tmp_path / "steps.parquet", progress=False)
    summary = build_index(embedder, [scenes], tmp_path / "steps.parquet", progress=False)
    assert (summary.skipped, summary.done) == (len(first), 8 - len(first))  # only new encoded
    build_index(embedder, [scenes], tmp_path / "once.npy", progress=False)
    steps, once = load_index(tmp_path / "steps.parquet"), load_index(tmp_path / "once.npy")
    assert sorted(steps.ids) == sorted(once.ids) and len(once.ids) == 8
    order = [steps.ids.index(i) for i in once.ids]
    np.testing.assert_allclose(steps.embeddings[order], once.embeddings, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(once.embeddings, axis=1), 1.0, atol=1e-5)

    query = "a small red circle"
    hits = search(tmp_path / "once.npy", query, top_k=3, matcher=embedder)
    ref = Matcher(model_dir("retrieval"), "torch")  # the folder search, encoding every image
    paths = list(once.paths)
    pixels = decode_batch([Path(p) for p in paths], ref.processor)
    embeds, states = ref.encode_images(pixels.pixel_values)
    expected = ref.search(embeds, states, query, 3).as_list()
    assert [h["path"] for h in hits] == [paths[e["index"]] for e in expected]
    np.testing.assert_allclose([h["itm"] for h in hits], [e["itm"] for e in expected], atol=1e-5)
