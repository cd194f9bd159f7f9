"""Small BLIP models trained by this project on generated shape scenes, shipped with the package.

``model_dir("caption")`` gives the directory of the captioning model (also ``"vqa"`` and
``"retrieval"``); any backend's ``from_pretrained`` loads it, and ``BlipProcessor.from_pretrained``
reads its tokenizer and image processor.  :mod:`blip_apps.demo.data` generates the scenes they
were trained on, :mod:`blip_apps.demo.evaluate` scores them on held-out scenes
(``scripts/eval_demo.py``) and :mod:`blip_apps.demo.run` is the demo run (``make demo``);
``scripts/train_demo.py`` retrains them (with PyTorch).  Importing this package imports no
framework.
"""

from __future__ import annotations

from pathlib import Path

TASKS = ("caption", "vqa", "retrieval")
MODELS_DIR = Path(__file__).resolve().parent / "models"

__all__ = ["MODELS_DIR", "TASKS", "model_dir"]


def model_dir(task: str) -> Path:
    """The directory of the bundled demo model for ``task`` (``caption``, ``vqa``, ``retrieval``).

    Raises ``ValueError`` for an unknown task and ``FileNotFoundError`` when the model files are
    missing (for example a source checkout where ``scripts/train_demo.py`` has not been run).
    """
    if task not in TASKS:
        raise ValueError(f"unknown demo task {task!r}; expected one of {', '.join(TASKS)}")
    path = MODELS_DIR / task
    missing = [
        name
        for name in ("config.json", "model.safetensors", "tokenizer.json")
        if not (path / name).is_file()
    ]
    if missing:
        raise FileNotFoundError(
            f"the bundled demo model {task!r} is missing ({', '.join(missing)} not found in "
            f"{path}); reinstall the package with its package data, or recreate the models with "
            "`python scripts/train_demo.py`"
        )
    return path
