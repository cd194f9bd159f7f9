"""Run transformers' own TF BLIP (tf-keras) on converted directories; a subprocess helper.

    TF_USE_LEGACY_KERAS=1 python tests/convert/transformers_tf_probe.py INPUTS.npz OUT.npz \
        DIR:TASK [DIR:TASK ...]

For each directory, loads ``TFBlip<Class>.from_pretrained(DIR, output_loading_info=True)``, fails
if any weight is missing, unexpected or mis-shaped, runs the conversion probe and saves every
output as ``<index>/<name>`` in OUT.npz.  (tf-keras and Keras 3 cannot share a process.)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ["USE_TF"] = "1"  # the parent test process sets USE_TF=0 for itself
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import contextlib  # noqa: E402

import numpy as np  # noqa: E402

CLASSES = {
    "caption": "TFBlipForConditionalGeneration",
    "vqa": "TFBlipForQuestionAnswering",
    "itm": "TFBlipForImageTextRetrieval",
}


class _NumpyTensors:
    """numpy in, numpy out: tf-keras models take numpy inputs, and blip_tf's adapter cannot be
    imported here (it needs Keras 3, which cannot share a process with tf-keras)."""

    @staticmethod
    def from_numpy(array):
        return array

    @staticmethod
    def to_numpy(value):
        return value.numpy() if hasattr(value, "numpy") else np.asarray(value)

    @staticmethod
    def inference():
        return contextlib.nullcontext()


def main(argv: list[str]) -> int:
    import transformers

    from blip_apps.convert.verify import run_probe

    inputs = dict(np.load(argv[0]))
    results = {}
    for index, spec in enumerate(argv[2:]):
        directory, task = spec.rsplit(":", 1)
        cls = getattr(transformers, CLASSES[task])
        model, info = cls.from_pretrained(directory, output_loading_info=True)
        problems = {k: v for k, v in info.items() if v}
        if problems:
            print(f"{directory}: loading problems {problems}", file=sys.stderr)
            return 1
        for name, value in run_probe(_NumpyTensors, model, task, inputs).items():
            results[f"{index}/{name}"] = value
    np.savez(argv[1], **results)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
