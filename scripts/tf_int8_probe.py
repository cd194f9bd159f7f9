"""Does Keras 3's own int8 quantization pay on this CPU?  Times one ``keras.layers.Dense``
(BLIP-base's 768 -> 3072 MLP product) in float32 and after ``layer.quantize("int8")``, for one
row (a decode step) and 577 rows (a 384 px vision tower), eagerly traced and under XLA.

    python scripts/tf_int8_probe.py [--repeats 30] [--out probe.json]

Prints a table (ms per call, the int8/float32 ratio, the largest |difference| of the outputs)
and the CPU flags; writes JSON with ``--out``.  The result is why ``dtype="int8"`` is refused
with the tf backend (decode products measured slower in int8).  Time only on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import time

_FLAGS = {"amx_bf16", "amx_int8", "avx512_bf16", "avx512_vnni", "avx512f", "avx2", "fma"}


def _time(layer, x, jit: bool, repeats: int) -> float:
    import tensorflow as tf

    fn = tf.function(lambda v: layer(v), jit_compile=jit)
    for _ in range(3):
        fn(x).numpy()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn(x).numpy()
        best = min(best, time.perf_counter() - start)
    return best * 1e3


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--out", help="write the rows as JSON here")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np
    import tensorflow as tf

    from blip_core.hardware import cpu_flags

    rng = np.random.default_rng(0)
    rows_out = []
    for jit in (False, True):
        for rows in (1, 577):
            keras.utils.set_random_seed(0)
            x = tf.constant(rng.standard_normal((1, rows, 768)).astype("float32"))
            layer = keras.layers.Dense(3072)
            layer.build((None, None, 768))
            fp32_ms = _time(layer, x, jit, args.repeats)
            want = layer(x).numpy()
            layer.quantize("int8")
            int8_ms = _time(layer, x, jit, args.repeats)
            diff = float(np.abs(layer(x).numpy() - want).max())
            rows_out.append({"rows": rows, "xla": jit, "float32_ms": fp32_ms, "int8_ms": int8_ms,
                             "int8_over_float32": int8_ms / fp32_ms, "max_abs_diff": diff,
                             "output_scale": float(np.abs(want).max())})  # fmt: skip
    flags = sorted(cpu_flags() & _FLAGS)
    print(f"keras {keras.__version__}, tensorflow {tf.__version__}; CPU flags: {' '.join(flags)}")
    print(f"{'rows':>5} {'xla':>5} {'fp32 ms':>9} {'int8 ms':>9} {'int8/fp32':>10} {'max diff':>9}")
    for r in rows_out:
        print(f"{r['rows']:>5} {r['xla']!s:>5} {r['float32_ms']:9.2f} {r['int8_ms']:9.2f} "
              f"{r['int8_over_float32']:10.2f} {r['max_abs_diff']:9.4f}")  # fmt: skip
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"keras": keras.__version__, "cpu_flags": flags,
                       "rows": rows_out}, f, indent=2)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
