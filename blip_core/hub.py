"""Resolve a model location: a local hub-layout directory, or a hub id when that is possible."""

from __future__ import annotations

import os
from pathlib import Path


class ModelNotFoundError(FileNotFoundError):
    """Neither a local directory nor a hub id that could be fetched."""


def resolve_model_dir(name_or_path: str | os.PathLike) -> Path:
    """A local directory as is; a hub id (``owner/name``) through ``huggingface_hub`` if installed.

    No network access happens unless ``huggingface_hub`` is installed and the path does not
    exist locally.  Failures say how to use a local directory instead.
    """
    path = Path(name_or_path)
    if path.exists():
        if not path.is_dir():
            raise ModelNotFoundError(f"{path}: expected a model directory, found a file")
        return path
    text = str(name_or_path)
    looks_like_hub_id = text.count("/") == 1 and not text.startswith((".", "/", "~"))
    if not looks_like_hub_id:
        raise ModelNotFoundError(f"{path}: no such directory")
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise ModelNotFoundError(
            f"{text!r} is not a local directory and huggingface_hub is not installed to fetch it "
            "from the hub; download the model elsewhere and pass its local directory "
            "(config.json + model.safetensors + tokenizer files)"
        ) from None
    try:
        return Path(
            snapshot_download(
                text,
                allow_patterns=[
                    "*.json",
                    "*.safetensors",
                    "*.txt",
                    "*.h5",
                ],
            )
        )
    except Exception as exc:  # offline, unknown repo, auth...
        raise ModelNotFoundError(
            f"could not fetch {text!r} from the hub ({type(exc).__name__}: {exc}); if this machine "
            "is offline, pass a local directory holding config.json and the weights instead"
        ) from exc
