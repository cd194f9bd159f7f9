"""``BatchFeature`` (a dict of model inputs) and the conversion of values to numpy or to framework
tensors.

Imports neither torch nor tensorflow until a ``"pt"`` / ``"tf"`` output is asked for; tensors are
recognised by their type's module name.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["BatchFeature", "convert_to_tensors", "is_framework_tensor", "is_tensor", "to_numpy"]


def is_framework_tensor(x: Any, framework: str) -> bool:
    """Is ``x`` a tensor of ``framework`` ("torch", "tensorflow")?  Imports neither."""
    module = type(x).__module__ or ""
    return module == framework or module.startswith(framework + ".")


def tensor_to_numpy(x: Any) -> np.ndarray:
    if is_framework_tensor(x, "torch"):
        return x.detach().cpu().numpy()
    if is_framework_tensor(x, "tensorflow"):
        return x.numpy()
    if is_framework_tensor(x, "jax") or is_framework_tensor(x, "jaxlib"):
        return np.asarray(x)
    raise TypeError(f"not a tensor: {type(x).__name__}")


def is_tensor(x: Any) -> bool:
    return any(is_framework_tensor(x, f) for f in ("torch", "tensorflow", "jax", "jaxlib")) and (
        hasattr(x, "shape") and hasattr(x, "dtype")
    )


def to_numpy(value: Any) -> Any:
    """Convert torch / tensorflow tensors (and nested lists of them) to numpy; leave the rest."""
    if isinstance(value, (list, tuple)):
        return type(value)(to_numpy(v) for v in value)
    if is_tensor(value):
        return tensor_to_numpy(value)
    return value


def convert_to_tensors(value: Any, return_tensors: str | None, key: str = "value") -> Any:
    """Stack ``value`` (an array or a list of equally shaped rows) into one framework tensor.

    ``return_tensors`` is ``None`` (returned unchanged), ``"np"``, ``"pt"`` or ``"tf"``.  Ragged
    rows raise a ``ValueError`` naming ``key``.  Integer Python lists become int64 for numpy and
    torch and int32 for TensorFlow, as ``tf.constant`` (and ``transformers``) make them; so do
    empty ones (token ids of empty texts), which numpy alone would make float.
    """
    if return_tensors is None:
        return value
    return_tensors = getattr(return_tensors, "value", return_tensors)  # a TensorType enum
    if return_tensors not in ("np", "pt", "tf"):
        raise ValueError(f"return_tensors must be None, 'np', 'pt' or 'tf', got {return_tensors!r}")
    if return_tensors == "tf" and not isinstance(value, np.ndarray) and not _is_empty(value):
        import tensorflow as tf  # lazy: only for return_tensors="tf"

        try:
            return tf.constant(value)
        except ValueError as exc:
            raise ValueError(
                f"cannot stack {key!r} into one tensor: rows have different lengths; "
                "use padding=True or padding='max_length'"
            ) from exc
    try:
        array = value if isinstance(value, np.ndarray) else np.array(value)
    except ValueError as exc:
        raise ValueError(
            f"cannot stack {key!r} into one tensor: rows have different lengths/shapes; "
            "use padding=True (text) or do_resize=True (images)"
        ) from exc
    if array.dtype == object:
        raise ValueError(
            f"cannot stack {key!r} into one tensor: rows have different lengths/shapes; "
            "use padding=True (text) or do_resize=True (images)"
        )
    if array.size == 0 and not isinstance(value, np.ndarray):
        array = array.astype(np.int32 if return_tensors == "tf" else np.int64)
    if return_tensors == "np":
        return array
    if return_tensors == "pt":
        import torch  # lazy: only for return_tensors="pt"

        return torch.from_numpy(np.ascontiguousarray(array))
    import tensorflow as tf  # lazy: only for return_tensors="tf"

    return tf.constant(array)


def _is_empty(value: Any) -> bool:
    """A (nested) list or tuple without any element at the bottom, like ``[[], []]``."""
    if isinstance(value, (list, tuple)):
        return all(_is_empty(v) for v in value)
    return False


class BatchFeature(dict):
    """A ``dict`` of model inputs with attribute access (``batch.pixel_values``).

    Mirrors ``transformers.BatchFeature`` closely enough for ``model(**batch)`` and
    ``batch["pixel_values"]`` code; values are numpy arrays or framework tensors.
    """

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(
                f"{type(self).__name__} has no field {name!r}; fields: {sorted(self)}"
            ) from None

    @property
    def data(self) -> dict[str, Any]:
        """The underlying mapping (for code written against ``transformers.BatchFeature``)."""
        return dict(self)

    def convert_to_tensors(self, return_tensors: str | None) -> BatchFeature:
        """Convert every value in place to ``return_tensors`` ("np", "pt" or "tf"); returns self."""
        for key in list(self):
            self[key] = convert_to_tensors(self[key], return_tensors, key)
        return self

    def to(self, *args: Any, **kwargs: Any) -> BatchFeature:
        """Call ``.to(*args, **kwargs)`` on every torch tensor (device / dtype moves), like
        ``transformers.BatchFeature.to``; integer tensors keep their dtype under a dtype move."""
        out = type(self)()
        for key, value in self.items():
            if is_framework_tensor(value, "torch"):
                if value.is_floating_point() or not _has_dtype_arg(args, kwargs):
                    value = value.to(*args, **kwargs)
                else:
                    device = kwargs.get("device") or next(
                        (a for a in args if not _is_torch_dtype(a)), None
                    )
                    value = value.to(device) if device is not None else value
            out[key] = value
        return out


def _is_torch_dtype(x: Any) -> bool:
    return type(x).__module__ == "torch" and type(x).__name__ == "dtype"


def _has_dtype_arg(args: tuple, kwargs: dict) -> bool:
    return "dtype" in kwargs or any(_is_torch_dtype(a) for a in args)
