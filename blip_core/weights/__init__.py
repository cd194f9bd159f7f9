"""The one place that knows BLIP weight names, layouts and checkpoint files."""

from blip_core.weights.io import (
    WeightLoadError,
    check_keys,
    find_weights_file,
    read_checkpoint,
    read_safetensors,
    read_torch_pickle,
    write_safetensors,
)
from blip_core.weights.names import normalize_tied

__all__ = [
    "WeightLoadError",
    "check_keys",
    "find_weights_file",
    "normalize_tied",
    "read_checkpoint",
    "read_safetensors",
    "read_torch_pickle",
    "write_safetensors",
]
