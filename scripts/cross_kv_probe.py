"""Does the int8 graph of the cross-attention key/value projections pay on this CPU?

Builds a random-weight BLIP-base caption model (384 px), quantizes it the way
``pipeline(..., dtype="int8", compile=True)`` does (``blip_torch.quantize(model, "int8",
parts=("text", "vision"))``: on x86 the decoder's cross-attention key/value projections become
one PT2E int8 graph, ``Int8CrossKeyValues``) and times, alternating call by call so that the
host's drift hits both sides alike:

* the projections of 1 and 8 images' states: the int8 graph vs the same model's float path
  (torchao int8 weight-only Linears, bf16 activations) and a bf16 model's;
* a greedy caption of 20 new tokens per image, at batch 1 and 8, with the graph on and off.

    python scripts/cross_kv_probe.py [--repeats 5] [--out probe.json]

Prints a table (median ms) with the largest key/value difference to float32 and the CPU
flags; writes JSON with ``--out``.  Time only on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import warnings

from timing import alternate_all

_FLAGS = {"amx_bf16", "amx_int8", "avx512_bf16", "avx512_vnni", "avx512f", "avx2", "fma"}


def _alternate_ms(fns: dict, repeats: int) -> dict[str, float]:
    return {name: 1e3 * seconds for name, (seconds, _) in alternate_all(fns, repeats).items()}


def _batch_rows(torch, batch, fp32, bf16, int8, repeats: int, new_tokens: int) -> list[dict]:
    text = int8.text_decoder.bert
    graph = text.int8_cross_kv
    size = fp32.config.vision_config.image_size
    states = fp32.vision_model(torch.randn(batch, 3, size, size)).last_hidden_state
    low = states.bfloat16()
    want = fp32.text_decoder.bert.cross_key_values(states)
    scale = max(float(w.abs().max()) for pair in want for w in pair)
    diffs = {}
    for name, model in (("int8 graph", int8), ("bf16", bf16)):
        got = model.text_decoder.bert.cross_key_values(low)
        diffs[name] = max(
            float((g.float() - w).abs().max())
            for pair, want_pair in zip(got, want)
            for g, w in zip(pair, want_pair)
        )

    def projections(on: bool):
        text.int8_cross_kv = graph if on else None
        try:
            return text.cross_key_values(low)
        finally:
            text.int8_cross_kv = graph

    pixels = torch.randn(batch, 3, size, size)

    def caption(on: bool):
        text.int8_cross_kv = graph if on else None
        try:
            return int8.generate(pixels, max_new_tokens=new_tokens)
        finally:
            text.int8_cross_kv = graph

    rows = []
    ms = _alternate_ms(
        {
            "int8 graph": lambda: projections(True),
            "int8 weight-only Linears": lambda: projections(False),
            "bf16": lambda: bf16.text_decoder.bert.cross_key_values(low),
        },
        repeats,
    )
    for name, value in ms.items():
        rows.append({"work": "cross key/value projections", "batch": batch, "variant": name,
                     "ms": value, "max_abs_diff": diffs.get(name), "scale": scale})  # fmt: skip
    ms = _alternate_ms(
        {"graph on": lambda: caption(True), "graph off": lambda: caption(False)}, repeats
    )
    for name, value in ms.items():
        rows.append({"work": f"int8 greedy caption, {new_tokens} new tokens", "batch": batch,
                     "variant": name, "ms": value, "ms_per_image": value / batch})  # fmt: skip
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--new-tokens", type=int, default=20)
    parser.add_argument("--out", help="write the rows as JSON here")
    args = parser.parse_args(argv)

    import torch

    import blip_torch
    from blip_core.config import BlipConfig
    from blip_core.hardware import cpu_flags, is_x86

    if not is_x86():
        raise SystemExit("the int8 cross key/value graph is built on x86 CPUs only")
    warnings.filterwarnings("ignore")
    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(0)
    fp32 = blip_torch.BlipForConditionalGeneration(BlipConfig()).eval()
    state = fp32.state_dict()
    bf16 = blip_torch.BlipForConditionalGeneration(BlipConfig()).eval()
    bf16.load_state_dict(state)
    bf16.to(torch.bfloat16)
    int8 = blip_torch.BlipForConditionalGeneration(BlipConfig()).eval()
    int8.load_state_dict(state)
    blip_torch.quantize(int8, "int8", parts=("text", "vision"))
    if int8.text_decoder.bert.int8_cross_kv is None:
        raise SystemExit("quantize built no int8 cross key/value graph")
    rows = []
    with torch.no_grad():
        for batch in (1, 8):
            rows += _batch_rows(torch, batch, fp32, bf16, int8, args.repeats, args.new_tokens)
    flags = sorted(cpu_flags() & _FLAGS)
    print(f"torch {torch.__version__}, {os.cpu_count()} threads; CPU flags: {' '.join(flags)}")
    print(f"{'work':36s} {'batch':>5} {'variant':26s} {'ms':>8} {'max diff':>9}")
    for r in rows:
        diff = "" if r.get("max_abs_diff") is None else f"{r['max_abs_diff']:9.4f}"
        print(f"{r['work']:36s} {r['batch']:5d} {r['variant']:26s} {r['ms']:8.1f} {diff}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"torch": torch.__version__, "threads": os.cpu_count(),
                       "cpu_flags": flags, "rows": rows}, f, indent=2)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
