"""The one place that knows BLIP weight names, layouts and checkpoint files.

* :mod:`~blip_core.weights.schema` -- the key space of every class, described once;
* :mod:`~blip_core.weights.names` -- tied and ignored keys, sub-model selection;
* :mod:`~blip_core.weights.io` -- safetensors / pickles / shards <-> ``dict[str, np.ndarray]``;
* :mod:`~blip_core.weights.h5` -- transformers' ``tf_model.h5``;
* :mod:`~blip_core.weights.tf_map` -- canonical <-> Keras variable paths and layouts;
* :mod:`~blip_core.weights.original_map`, :mod:`~blip_core.weights.task_inference`,
  :mod:`~blip_core.weights.resize` -- original Salesforce checkpoints;
* :mod:`~blip_core.weights.convert` -- the converter's numpy core.
"""

from blip_core.weights.io import (
    SAFE_WEIGHTS_NAME,
    WeightLoadError,
    atomic_write,
    check_keys,
    find_weights_file,
    read_checkpoint,
    read_safetensors,
    read_torch_pickle,
    write_safetensors,
)
from blip_core.weights.names import fill_untied_lm_head, normalize_tied, select_submodel

__all__ = [
    "SAFE_WEIGHTS_NAME",
    "WeightLoadError",
    "atomic_write",
    "check_keys",
    "fill_untied_lm_head",
    "find_weights_file",
    "normalize_tied",
    "read_checkpoint",
    "read_safetensors",
    "read_torch_pickle",
    "select_submodel",
    "write_safetensors",
]
