"""Write tiny ``tf_model.h5`` checkpoints with transformers' own TF BLIP, plus expected outputs.

    python scripts/make_tf_fixture.py [OUT_DIR]   (default tests/fixtures/tf_reference)

For each case a perturbed transformers 4.57 *PyTorch* model is saved, then transformers' TF BLIP
(``TFBlip*.from_pretrained(..., from_pt=True)`` + ``save_pretrained``) converts it in a
subprocess with ``TF_USE_LEGACY_KERAS=1`` (tf-keras and Keras 3 cannot share a process).
``OUT_DIR/<case>/`` then holds the TF-written ``config.json`` and ``tf_model.h5`` and
``expected.npz``: the inputs (``in.<name>``, ``flag.<name>``), the PyTorch reference's outputs
(``out.<path>``) and, for information, the outputs of transformers' TF model itself
(``tf.<path>``; its caption logits are wrong because the conversion loses the tied LM-head
kernel, which blip_tf restores).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CASES = {
    "caption": "BlipForConditionalGeneration",
    "blip_model": "BlipModel",
}


def convert_with_transformers_tf(src: Path, dst: Path, class_name: str, inputs: Path) -> None:
    """Runs in the subprocess: transformers TF BLIP loads ``src`` (PyTorch) and writes ``dst``."""
    import numpy as np
    import transformers

    config = transformers.BlipConfig.from_pretrained(src)
    # Needed by the TF model's serving signature; harmless elsewhere.
    config.vision_config.num_channels = 3
    model = getattr(transformers, "TF" + class_name).from_pretrained(
        src, config=config, from_pt=True
    )
    model.save_pretrained(dst)
    data = dict(np.load(inputs))
    kwargs = {k[3:]: v for k, v in data.items() if k.startswith("in.")}
    kwargs.update({k[5:]: bool(v) for k, v in data.items() if k.startswith("flag.")})
    outputs = model(**kwargs)
    flat = {}

    def walk(value, prefix):
        if value is None:
            return
        if hasattr(value, "keys"):
            for key in value.keys():
                walk(value[key], f"{prefix}{key}.")
        elif isinstance(value, (tuple, list)):
            for i, item in enumerate(value):
                walk(item, f"{prefix}{i}.")
        else:
            flat[f"tf.{prefix.rstrip('.')}"] = np.asarray(value)

    walk(outputs, "")
    np.savez(dst / "tf_outputs.npz", **flat)


def main(out_dir: Path) -> None:
    os.environ.setdefault("USE_TF", "0")
    sys.path.insert(0, str(ROOT))
    import numpy as np
    import torch

    from tests.helpers import TINY_TEXT, TINY_VISION, flatten_outputs
    from tests.reference import build_reference
    from tests.torch.cases import case_kwargs, to_torch

    for case, class_name in CASES.items():
        directory = out_dir / case
        directory.mkdir(parents=True, exist_ok=True)
        model = build_reference(class_name, seed=100 + len(case))
        kwargs = case_kwargs(case, TINY_TEXT, TINY_VISION, batch=2)
        with torch.no_grad():
            outputs = model(**to_torch(kwargs))
        arrays = {f"in.{k}": v for k, v in kwargs.items() if isinstance(v, np.ndarray)}
        arrays.update(
            {f"flag.{k}": np.asarray(v) for k, v in kwargs.items() if isinstance(v, bool)}
        )
        arrays.update({f"out.{k}": v for k, v in flatten_outputs(outputs).items()})
        with tempfile.TemporaryDirectory() as tmp:
            pt_dir, tf_dir = Path(tmp) / "pt", Path(tmp) / "tf"
            model.save_pretrained(pt_dir)
            np.savez(Path(tmp) / "inputs.npz", **arrays)
            # Both frameworks on "auto" (from_pt needs torch too); tf.keras is tf-keras (Keras 2).
            env = {k: v for k, v in os.environ.items() if k not in ("USE_TF", "USE_TORCH")}
            env.update(TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
            subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--convert",
                    str(pt_dir),
                    str(tf_dir),
                    class_name,
                    str(Path(tmp) / "inputs.npz"),
                ],  # fmt: skip
                check=True,
                env=env,
                cwd=str(ROOT),
            )
            for name in ("config.json", "tf_model.h5"):
                shutil.copyfile(tf_dir / name, directory / name)
            arrays.update(dict(np.load(tf_dir / "tf_outputs.npz")))
        np.savez_compressed(directory / "expected.npz", **arrays)
        info = json.loads((directory / "config.json").read_text())["architectures"]
        print(f"wrote {directory} ({info}, {len(arrays)} arrays)")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--convert":
        src, dst, class_name, inputs = sys.argv[2:6]
        convert_with_transformers_tf(Path(src), Path(dst), class_name, Path(inputs))
    else:
        main(
            Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "tests" / "fixtures" / "tf_reference"
        )
