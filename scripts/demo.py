"""`make demo`: caption the example images with both backends, answer questions, rank captions.

A command line over :func:`blip_apps.demo.run.demo_report`: the demo models bundled in
``blip_apps/demo/models`` (trained by ``scripts/train_demo.py`` on generated shape scenes) on the
images in ``examples/``.  Prints short tables.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from blip_apps.demo.run import available_backends, demo_report  # noqa: E402


def main() -> int:
    images = sorted((ROOT / "examples").glob("*.png"))
    if not images:
        print("no example images in examples/", file=sys.stderr)
        return 1
    backends = available_backends()
    if not backends:
        return 1
    start = time.perf_counter()
    print("\n" + demo_report(images, backends))
    print(f"\ndone in {time.perf_counter() - start:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
