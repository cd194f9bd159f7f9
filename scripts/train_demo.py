"""Train the three bundled demo BLIP models from scratch, with PyTorch, on CPU.

A command line over :func:`blip_apps.demo.training.train_demo_models` (the stages, losses and
seeding are described there)::

    python scripts/train_demo.py                      # writes blip_apps/demo/models/{caption,vqa,retrieval}
    python scripts/train_demo.py --out /tmp/demo --steps-caption 200   # a quick smoke run
    python scripts/train_demo.py --tasks vqa,retrieval                 # redo the later stages
"""

# ruff: noqa: E402  (the imports follow the sys.path set-up)
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a source checkout without installing
    sys.path.insert(0, str(ROOT))

from blip_apps.demo import MODELS_DIR, data
from blip_apps.demo.training import train_demo_models


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=MODELS_DIR, help="output directory")
    parser.add_argument("--seed", type=int, default=data.TRAIN_SEED)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps-caption", type=int, default=4000)
    parser.add_argument("--steps-vqa", type=int, default=2000)
    parser.add_argument("--steps-retrieval", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--patch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--finetune-lr", type=float, default=5e-4)
    parser.add_argument(
        "--tasks", default="caption,vqa,retrieval", help="comma-separated subset to train"
    )
    parser.add_argument("--init", type=Path, help="continue training the models in this directory")
    args = parser.parse_args(argv)
    options = vars(args)
    options["tasks"] = [t for t in args.tasks.split(",") if t]
    train_demo_models(**options, echo=lambda line: print(line, flush=True))


if __name__ == "__main__":
    main()
