"""Which int8 path pays for the vision tower on this CPU?  Times one forward of a random-weight
BLIP-base vision tower (384 px, batch 1) in float32, bfloat16 (eager and compiled) and int8
three ways: torchao's weight-only and dynamic-activation configs (eager and compiled) and the
PT2E flow with ``X86InductorQuantizer`` (what ``blip_torch.quantize(parts=("vision",))`` uses
on x86), and reports each one's largest difference and cosine similarity to float32.

    python scripts/vision_int8_probe.py [--repeats 5] [--out probe.json] [--size base|tiny]

Prints a table (ms per forward, first-call seconds, fidelity) and the CPU flags; writes JSON
with ``--out``.  Each variant runs in a fresh process (compiled graphs and inductor's
process-wide ``freezing`` flag would leak between variants).  Time only on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

VARIANTS = (
    "float32",
    "bfloat16",
    "bfloat16 compiled",
    "torchao int8 weight-only, compiled",
    "torchao int8 dynamic, eager",
    "torchao int8 dynamic, compiled",
    "PT2E x86 int8 dynamic (blip_torch.quantize)",
)
_FLAGS = {"amx_bf16", "amx_int8", "avx512_bf16", "avx512_vnni", "avx512f", "avx2", "fma"}
TINY = dict(image_size=64, hidden_size=128, intermediate_size=512, num_attention_heads=4,
            num_hidden_layers=2)  # fmt: skip


def _one(variant: str, size: str, repeats: int) -> dict:
    """Run one variant in this process; returns its row."""
    import warnings

    import torch

    from blip_core.config import BlipVisionConfig
    from blip_torch import compile_vision, quantize
    from blip_torch.vision import BlipVisionModel

    warnings.filterwarnings("ignore")
    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(0)
    config = BlipVisionConfig(**(TINY if size == "tiny" else {}))
    model = BlipVisionModel(config).eval()
    pixels = torch.randn(1, 3, config.image_size, config.image_size)
    with torch.no_grad():
        want = model(pixels).last_hidden_state
        dtype = torch.float32 if variant == "float32" else torch.bfloat16
        if variant.startswith("bfloat16"):
            model.to(torch.bfloat16)
            if "compiled" in variant:
                compile_vision(model)
        elif variant.startswith("torchao"):
            scheme = "int8" if "weight-only" in variant else "int8-dynamic"
            from torchao.quantization import (
                Int8DynamicActivationInt8WeightConfig,
                Int8WeightOnlyConfig,
                quantize_,
            )

            model.to(torch.bfloat16)
            config_ = Int8WeightOnlyConfig() if scheme == "int8" else None
            quantize_(model, config_ or Int8DynamicActivationInt8WeightConfig())
            if "compiled" in variant:
                compile_vision(model)
        elif variant.startswith("PT2E"):
            quantize(model, "int8", parts=("vision",))
        x = pixels.to(dtype)
        start = time.perf_counter()
        got = model(x).last_hidden_state.float()
        first = time.perf_counter() - start
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - start)
    cosine = torch.nn.functional.cosine_similarity(got.flatten(), want.flatten(), dim=0)
    return {"variant": variant, "ms": 1e3 * sorted(times)[len(times) // 2],
            "first_call_s": first, "max_abs_diff": float((got - want).abs().max()),
            "cosine": float(cosine), "output_scale": float(want.abs().max())}  # fmt: skip


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--size", choices=["base", "tiny"], default="base")
    parser.add_argument("--out", help="write the rows as JSON here")
    parser.add_argument("--variant", help=argparse.SUPPRESS)  # one variant, JSON on stdout
    args = parser.parse_args(argv)
    if args.variant:
        print(json.dumps(_one(args.variant, args.size, args.repeats)))
        return 0
    import torch

    from blip_core.hardware import cpu_flags

    rows = []
    for variant in VARIANTS:
        cmd = [sys.executable, __file__, "--variant", variant, "--size", args.size,
               "--repeats", str(args.repeats)]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"{variant}: failed\n{done.stderr[-3000:]}")
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"{variant}: {rows[-1]['ms']:.0f} ms", file=sys.stderr, flush=True)
    flags = sorted(cpu_flags() & _FLAGS)
    print(f"torch {torch.__version__}, {os.cpu_count()} threads; CPU flags: {' '.join(flags)}")
    print(f"{'variant':46s} {'ms':>7} {'first s':>8} {'max diff':>9} {'cosine':>9}")
    for r in rows:
        print(f"{r['variant']:46s} {r['ms']:7.1f} {r['first_call_s']:8.1f} "
              f"{r['max_abs_diff']:9.4f} {r['cosine']:9.6f}")  # fmt: skip
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"torch": torch.__version__, "threads": os.cpu_count(), "size": args.size,
                       "cpu_flags": flags, "rows": rows}, f, indent=2)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
