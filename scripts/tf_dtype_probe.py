"""Time blip_tf's vision tower and one greedy caption per Keras dtype policy (float32,
bfloat16, mixed_bfloat16) on random BLIP-base weights, and compare each with float32.

    python scripts/tf_dtype_probe.py [--repeats 3] [--new-tokens 20] [--threads N]
                                     [--policies float32,bfloat16,mixed_bfloat16]
                                     [--out probe.json] [--smoke]

One random (perturbed) float32 BLIP-base captioning model (text 12 heads, as the released
checkpoints; 384 px) is built once; every policy loads the same weights (rounded to its
variable dtype).  Per policy: the median time of the XLA vision forward (``compiled_forward``) and of a greedy
caption of exactly ``--new-tokens`` tokens after one warm-up (which compiles), the largest
|difference| of the vision states and of the first step's logits against float32, and whether
the caption ids equal float32's.  Prints a table and the hardware report; writes JSON with
``--out``.  ``--smoke`` uses a tiny config (checks that the script runs, times nothing useful).

Time only on a quiet machine: other load on the cores distorts every figure.  The result
decides which policy ``dtype="auto"`` should pick on CPUs (today: ``"float32"``: bf16
decoding measured slower on an AMX Xeon and on an AMD EPYC).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from timing import median_time  # noqa: E402  (scripts/ is sys.path[0])

TINY = dict(
    text=dict(vocab_size=99, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
              num_attention_heads=4, max_position_embeddings=64, bos_token_id=97,
              sep_token_id=3, pad_token_id=0, eos_token_id=2),
    vision=dict(hidden_size=32, intermediate_size=41, num_hidden_layers=2, num_attention_heads=4,
                image_size=32, patch_size=8),
)  # fmt: skip
BASE = dict(text=dict(num_attention_heads=12), vision=dict())  # tests/helpers.py BASE_* style


def as_float32(x) -> np.ndarray:
    import tensorflow as tf

    return tf.cast(x, tf.float32).numpy()


def probe(policies: list[str], sizes: dict, repeats: int, new_tokens: int) -> list[dict]:
    import blip_tf
    from blip_core.config import BlipConfig, BlipTextConfig, BlipVisionConfig

    config = BlipConfig(
        text_config=BlipTextConfig(**sizes["text"]),
        vision_config=BlipVisionConfig(**sizes["vision"]),
    )
    Caption = blip_tf.BlipForConditionalGeneration
    # random float32 weights, shared by every policy; perturbed like scripts/benchmark.py, since
    # the vision initialiser (std 1e-10) alone would give near-constant image states
    rng = np.random.default_rng(1)
    state = {
        key: (value + 0.02 * rng.standard_normal(value.shape)).astype(np.float32)
        for key, value in Caption(config).get_weights_dict().items()
    }
    size = config.vision_config.image_size
    pixels = np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32)
    # a greedy caption of exactly new_tokens tokens (no early [SEP])
    caption = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens)
    rows, reference = [], None
    for policy in policies:
        model = Caption(config, dtype=policy)
        model.load_weights_dict(state)
        vision_s, states = median_time(
            functools.partial(model.vision_model.compiled_forward, pixels), repeats
        )
        caption_s, ids = median_time(
            functools.partial(model.generate, pixel_values=pixels, **caption), repeats
        )
        ids = np.asarray(ids)
        first = model(pixel_values=pixels, input_ids=ids[:, :1]).logits[:, -1]
        found = {"states": as_float32(states[0]), "logits": as_float32(first), "ids": ids}
        reference = reference or found
        rows.append(
            {
                "policy": policy,
                "variable_dtype": model.dtype_policy.variable_dtype,
                "compute_dtype": model.dtype_policy.compute_dtype,
                "vision_ms": 1000 * vision_s,
                "caption_ms": 1000 * caption_s,
                "vision_max_diff": float(np.abs(found["states"] - reference["states"]).max()),
                "logits_max_diff": float(np.abs(found["logits"] - reference["logits"]).max()),
                "ids_equal_fp32": bool(np.array_equal(ids, reference["ids"])),
            }
        )
        del model
    return rows


def table(rows: list[dict]) -> str:
    head = f"{'policy':<16} {'vision ms':>10} {'caption ms':>11} {'max|dv|':>9} {'max|dl|':>9}  ids=fp32"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['policy']:<16} {r['vision_ms']:>10.1f} {r['caption_ms']:>11.1f} "
            f"{r['vision_max_diff']:>9.4f} {r['logits_max_diff']:>9.4f}  {r['ids_equal_fp32']}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None, help="TF intra-op threads")
    parser.add_argument("--policies", default="float32,bfloat16,mixed_bfloat16")
    parser.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    parser.add_argument("--smoke", action="store_true", help="tiny config (the script runs)")
    args = parser.parse_args(argv)

    import tensorflow as tf

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    from blip_core.hardware import format_report
    from blip_tf.precision import hardware_report

    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    if policies[0] != "float32":
        policies.insert(0, "float32")  # the reference of the differences
    report = hardware_report()
    print(format_report(report))
    rows = probe(policies, TINY if args.smoke else BASE, args.repeats, args.new_tokens)
    print(table(rows))
    if args.out is not None:
        args.out.write_text(json.dumps({"hardware": report, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
