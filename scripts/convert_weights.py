"""Convert BLIP checkpoints: original Salesforce .pth / hub PyTorch / hub TensorFlow.

    python scripts/convert_weights.py SRC DST --to {pt,tf} [--task {caption,vqa,itm,auto}]
        [--config CONFIG_JSON] [--tokenizer DIR] [--force] [--no-verify]

A thin wrapper over :func:`blip_apps.convert.main` (installed as ``blip-convert``).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file from a checkout: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from blip_apps.convert import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
