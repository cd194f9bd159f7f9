"""A backend by name: the adapter object (:class:`blip_core.adapter.Backend`) of ``blip_torch``,
``blip_tf`` or ``blip_onnx`` (a directory written by ``blip export``), imported only when asked for.

The pipeline, the ``blip`` command and the demo evaluation convert tensors and pick model
classes through this one object (``to_numpy``, ``from_numpy``, ``inference``, ``model_class``,
``name``); they hold no tensor code of their own.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

BACKENDS = ("torch", "tf", "onnx")
_MODULES = {"torch": "blip_torch", "tf": "blip_tf", "onnx": "blip_onnx"}
_EXTRAS = {"torch": "torch", "tf": "tf", "onnx": "onnx"}


def _set_threads(name: str, threads: int | None) -> None:
    """Intra-op threads: every core for torch unless ``threads`` is given (torch's default
    leaves cores idle on some machines); TF only when ``threads`` is given and TF has not
    started yet (its thread pools are fixed at start-up)."""
    if name == "torch":
        import torch

        torch.set_num_threads(threads if threads else max(1, os.cpu_count() or 1))
    elif threads:
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:  # TensorFlow already started (a caller used it): keep its pools
            pass


def load_backend(name: str, threads: int | None = None) -> Any:
    """The adapter of backend ``name`` (``"torch"``, ``"tf"`` or ``"onnx"``):
    ``blip_torch.adapter.BACKEND``, ``blip_tf.adapter.BACKEND`` or ``blip_onnx.adapter.BACKEND``.

    ``threads``: CPU threads for the framework's intra-op pool (torch: all cores when ``None``).

    Raises:
        ValueError: ``name`` is not a known backend (the message lists them).
        ImportError: the backend's framework is not installed (the message names the extra).
    """
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; expected one of {', '.join(BACKENDS)}")
    if name == "tf":
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    package = _MODULES[name]
    try:
        _set_threads(name, threads)
        module = importlib.import_module(f"{package}.adapter")
    except ImportError as exc:
        if exc.name and exc.name.startswith(f"{package}.adapter"):
            raise  # the package is there but its adapter is not: a bug, not a missing extra
        raise ImportError(
            f"backend {name!r} needs {package} and its framework ({exc}); install it with "
            f"pip install 'blip-twin[{_EXTRAS[name]}]'"
        ) from exc
    return module.BACKEND


__all__ = ["BACKENDS", "load_backend"]
