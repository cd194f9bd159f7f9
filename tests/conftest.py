"""Test-wide settings: the reference's TensorFlow side stays out of the main process."""

import os
import sys
from pathlib import Path

# transformers must not try to import TensorFlow (Keras 3 is not its Keras); its TF BLIP runs
# only in subprocesses with TF_USE_LEGACY_KERAS=1.
os.environ.setdefault("USE_TF", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
