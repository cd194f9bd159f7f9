"""Shared test utilities: tiny configs, perturbed reference models, output-tree comparison."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "reference"  # tiny models written by transformers

TINY_TEXT = dict(
    vocab_size=99,
    hidden_size=32,
    intermediate_size=37,
    num_hidden_layers=2,
    num_attention_heads=4,
    max_position_embeddings=64,
    bos_token_id=97,
    sep_token_id=3,
    pad_token_id=0,
    eos_token_id=2,
)
TINY_VISION = dict(
    hidden_size=32,
    intermediate_size=41,
    num_hidden_layers=2,
    num_attention_heads=4,
    image_size=32,
    patch_size=8,
)
TINY_COMPOSITE = dict(projection_dim=24, image_text_hidden_size=20)

BASE_TEXT = dict(num_attention_heads=12)  # the released checkpoints use 12 text heads
BASE_VISION = dict()


def to_numpy(x: Any) -> Any:
    if x is None:
        return None
    if hasattr(x, "detach"):
        return x.detach().cpu().numpy()
    if hasattr(x, "numpy"):
        return x.numpy()
    return np.asarray(x)


def flatten_outputs(out: Any, prefix: str = "") -> dict[str, np.ndarray]:
    """Walk an output tree (ModelOutput, dataclass, dict, tuple) into ``{path: array}``."""
    flat: dict[str, np.ndarray] = {}
    if out is None:
        return flat
    if hasattr(out, "keys") and callable(out.keys) and not isinstance(out, np.ndarray):
        for key in out.keys():
            if key == "past_key_values":
                continue
            flat.update(flatten_outputs(out[key], f"{prefix}{key}."))
        return flat
    if dataclasses.is_dataclass(out):
        for f in dataclasses.fields(out):
            if f.name != "past_key_values":
                flat.update(flatten_outputs(getattr(out, f.name), f"{prefix}{f.name}."))
        return flat
    if isinstance(out, (tuple, list)):
        for i, item in enumerate(out):
            flat.update(flatten_outputs(item, f"{prefix}{i}."))
        return flat
    flat[prefix.rstrip(".")] = to_numpy(out)
    return flat


def compare_outputs(
    ours: Any, reference: Any, atol: float, *, require_same_keys: bool = True
) -> str:
    """Assert every leaf of two output trees matches within ``atol``; return the table."""
    a, b = flatten_outputs(ours), flatten_outputs(reference)
    if require_same_keys:
        assert set(a) == set(b), (
            f"output fields differ: ours only {sorted(set(a) - set(b))}, "
            f"reference only {sorted(set(b) - set(a))}"
        )
    rows, failures = [], []
    for key in sorted(set(a) & set(b)):
        x, y = np.asarray(a[key], dtype=np.float64), np.asarray(b[key], dtype=np.float64)
        if x.shape != y.shape:
            failures.append(f"{key}: shape {x.shape} vs {y.shape}")
            continue
        diff = float(np.max(np.abs(x - y))) if x.size else 0.0
        rows.append(f"{key:60s} {str(x.shape):24s} {diff:.3e}")
        if not diff <= atol:
            failures.append(f"{key}: max|diff| {diff:.3e} > {atol}")
    table = "\n".join(rows)
    assert not failures, "\n".join(failures) + "\n" + table
    assert rows, "no outputs compared"
    return table


def make_inputs(
    batch: int = 3,
    length: int = 9,
    vocab: int = 99,
    image_size: int = 32,
    seed: int = 0,
    lengths: list[int] | None = None,
) -> dict[str, np.ndarray]:
    """Pixels, right-padded token ids with masks (at least one real token per row), labels."""
    rng = np.random.default_rng(seed)
    lengths = lengths or [length - (i * 3) % (length - 1) for i in range(batch)]
    ids = rng.integers(4, vocab - 3, size=(batch, length)).astype(np.int64)
    mask = np.zeros((batch, length), dtype=np.int64)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
    ids = np.where(mask == 1, ids, 0)
    labels = np.where(mask == 1, ids, -100)
    pixels = rng.standard_normal((batch, 3, image_size, image_size)).astype(np.float32)
    return {"pixel_values": pixels, "input_ids": ids, "attention_mask": mask, "labels": labels}
