"""The converter's numpy core: any BLIP checkpoint -> canonical dict -> a new hub directory.

* :mod:`~blip_core.weights.convert.source` -- reading (hub directory, weights file, original
  ``.pth``) into a :class:`Source`;
* :mod:`~blip_core.weights.task_inference` -- which task model a checkpoint makes;
* :mod:`~blip_core.weights.convert.output` -- writing ``model.safetensors`` / ``tf_model.h5``,
  ``config.json`` and the tokenizer files;
* :mod:`~blip_core.weights.convert.staging` -- the partial folder beside ``DST``, stale-folder
  cleanup and the final rename;
* :mod:`~blip_core.weights.convert.run` -- :func:`convert_checkpoint`, all of it in order.

The ``blip-convert`` command line and the numeric verification (which load models in a
backend) are :mod:`blip_apps.convert`.  Nothing here imports a framework or a backend.
"""

from blip_core.weights.convert.output import (
    TARGETS,
    TOKENIZER_FILES,
    with_lm_head_weights,
    write_output,
)
from blip_core.weights.convert.run import ConversionResult, convert_checkpoint
from blip_core.weights.convert.source import ConversionError, Source, load_source
from blip_core.weights.convert.staging import remove_stale_partials

__all__ = [
    "TARGETS",
    "TOKENIZER_FILES",
    "ConversionError",
    "ConversionResult",
    "Source",
    "convert_checkpoint",
    "load_source",
    "remove_stale_partials",
    "with_lm_head_weights",
    "write_output",
]
