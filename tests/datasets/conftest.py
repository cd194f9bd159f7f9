"""Fixtures of the dataset tests: a folder of generated scenes and demo-model pipelines."""

from __future__ import annotations

from pathlib import Path

import pytest

from blip_apps.demo import data

NUM_SCENES = 8


def write_scenes(folder: Path, n: int = NUM_SCENES, seed: int = 11) -> list[str]:
    """``n`` generated scenes as ``folder/scene_I.png`` (the last half in ``folder/more``, so
    folders are read recursively); returns their true captions in path order."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "more").mkdir(exist_ok=True)
    captions = []
    for i, example in enumerate(data.retrieval_set(seed, n)):
        where = folder / "more" if i >= n // 2 else folder
        example.image.save(where / f"scene_{i}.png")
        captions.append(example.caption)
    return captions


@pytest.fixture(scope="session")
def scenes(tmp_path_factory) -> Path:
    """A read-only folder of generated scenes (copy it before writing beside the images)."""
    folder = tmp_path_factory.mktemp("scenes")
    write_scenes(folder)
    return folder


@pytest.fixture(scope="session")
def captioner():
    pytest.importorskip("torch")
    from blip_apps.api import pipeline

    return pipeline("caption", dtype="float32")


@pytest.fixture(scope="session")
def embedder():
    pytest.importorskip("torch")
    from blip_apps.api import pipeline

    return pipeline("embed", dtype="float32")
