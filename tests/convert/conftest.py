"""Fixtures of the conversion tests: perturbed transformers models and their original checkpoints."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from tests.convert.common import (  # noqa: E402
    LARGE_LIKE_VISION,
    build_model,
    original_state_dict,
    save_original,
    write_config,
)
from tests.helpers import TINY_VISION  # noqa: E402

SHAPES = {"base_like": TINY_VISION, "large_like": LARGE_LIKE_VISION}


class Case:
    """One reference model, its original-format checkpoint and its config.json."""

    def __init__(self, root, task: str, shape: str):
        self.task, self.shape = task, shape
        self.model = build_model(task, SHAPES[shape])
        self.dir = root / f"{task}_{shape}"
        self.dir.mkdir()
        self.pth = save_original(self.dir / f"model_{task}.pth", original_state_dict(self.model))
        self.config = write_config(self.model, self.dir / "config")
        self.hub = self.dir / "hub"
        self.model.save_pretrained(self.hub)  # a transformers-written PyTorch hub directory


@pytest.fixture(scope="session")
def cases(tmp_path_factory):
    root = tmp_path_factory.mktemp("convert_cases")
    made: dict[tuple[str, str], Case] = {}

    def get(task: str, shape: str = "base_like") -> Case:
        if (task, shape) not in made:
            made[task, shape] = Case(root, task, shape)
        return made[task, shape]

    return get
