"""Benchmark blip_torch / blip_tf against transformers 4.57.6 on the same random BLIP weights.

    python scripts/benchmark.py [--smoke] [--repeats 5] [--out bench-results.json]
                                [--device cpu|cuda] [--dtype float32|bfloat16|auto] [--no-tf]
                                [--no-lowp]

Builds random (perturbed) BLIP-base models with transformers (text 12 heads, as the released
checkpoints), saves them in hub layout, and times each work item for the reference and for ours
in the same run, alternating, after a warm-up, taking the median of ``--repeats`` runs.  The
reference's TensorFlow side runs in a subprocess with ``TF_USE_LEGACY_KERAS=1`` (tf-keras cannot
share a process with Keras 3).  Token ids of ours and the reference are compared while timing.
Prints a table and writes JSON.  ``--smoke`` uses a tiny config (for CI: it must not rot).

The low-precision section (``scripts/bench_lowp.py``; off with ``--no-lowp``) adds the hardware
report (CPU flags, what ``dtype="auto"`` picks), transformers bf16, ours in bf16 / auto / int8
(torchao, compiled), per-dtype floors (weight bytes per step / measured streaming rate; FLOPs /
measured matmul peak), the largest logit difference and token agreement against fp32, folder
throughput per dtype, and OpenVINO f32/bf16 rows when ``openvino`` is installed.

Time only on a quiet machine: other load on 2 cores distorts every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("USE_TF", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from timing import alternate, median_time  # noqa: E402  (scripts/ is sys.path[0])

TINY = dict(
    text=dict(vocab_size=99, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
              num_attention_heads=4, max_position_embeddings=64, bos_token_id=97,
              sep_token_id=3),
    vision=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                image_size=32, patch_size=8),
)  # fmt: skip
BASE = dict(text=dict(num_attention_heads=12), vision=dict())


def matmul_gflops(torch, n: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    t, _ = median_time(lambda: a @ b, repeats)
    return 2 * n**3 / t / 1e9


def build_models(sizes: dict, out: Path) -> dict[str, Path]:
    import torch
    import transformers

    config = transformers.BlipConfig(text_config=sizes["text"], vision_config=sizes["vision"])
    dirs = {}
    for name, cls in (
        ("caption", transformers.BlipForConditionalGeneration),
        ("vqa", transformers.BlipForQuestionAnswering),
        ("itm", transformers.BlipForImageTextRetrieval),
    ):
        torch.manual_seed(0)
        model = cls(config).eval()
        gen = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn(p.shape, generator=gen) * 0.02)
        dirs[name] = out / name
        model.save_pretrained(dirs[name])
        del model
        write_processor(dirs[name], config)
    return dirs


def write_processor(directory: Path, config) -> None:
    """A BERT-layout vocabulary of the model's size (synthetic words: no download) + BLIP's
    [DEC]/[ENC], and the image processor for the model's resolution."""
    from blip_core import BlipImageProcessor, BlipProcessor, BlipTokenizer

    vocab_size = config.text_config.vocab_size
    specials = (
        ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    )
    words = "a the of picture photo cat dog red blue what is color how many".split()
    vocab = (specials + words + [f"w{i}" for i in range(vocab_size)])[: max(vocab_size - 2, 110)]
    if vocab_size < 110:  # tiny smoke config: a vocabulary of the model's size
        vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words
        vocab += [f"w{i}" for i in range(vocab_size - 2 - len(vocab))]
    tokenizer = BlipTokenizer.from_vocab(vocab + ["[DEC]", "[ENC]"], bos_token="[DEC]")
    size = config.vision_config.image_size
    processor = BlipProcessor(BlipImageProcessor(size={"height": size, "width": size}), tokenizer)
    processor.save_pretrained(directory)


def rss_load_probe(kind: str, directory: Path) -> dict:
    """Load one caption model in a fresh process: import seconds, ``from_pretrained`` seconds,
    peak RSS during the load above the post-import baseline, and RSS once a forward pass has
    touched every vision weight (memory-mapped weights count in RSS only once read)."""
    code = f"""
import os, sys, time, json
os.environ["USE_TF"] = "0"
sys.path.insert(0, {str(ROOT)!r})
import numpy as np

def mem():  # this process's current and peak RSS (MB); VmHWM excludes the parent's
    out = {{}}
    for line in open("/proc/self/status"):
        if line.startswith(("VmHWM:", "VmRSS:")):
            out[line[:5]] = int(line.split()[1]) / 1024
    return out

start = time.perf_counter()
if {kind!r} == "tf":
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    import blip_tf as lib
else:
    import torch
    torch.set_grad_enabled(False)
    lib = __import__("transformers" if {kind!r} == "reference" else "blip_torch")
import_s = time.perf_counter() - start
base = mem()["VmHWM"]
start = time.perf_counter()
m = lib.BlipForConditionalGeneration.from_pretrained({str(directory)!r})
load_s = time.perf_counter() - start
peak = mem()["VmHWM"]
size = m.config.vision_config.image_size
pixels = np.zeros((1, 3, size, size), np.float32)
if {kind!r} == "tf":
    m.vision_model(pixels)
else:
    m.vision_model(pixel_values=torch.from_numpy(pixels))
after = mem()
print(json.dumps({{"import_seconds": import_s, "seconds": load_s, "peak_rss_mb": peak,
                  "baseline_rss_mb": base, "rss_after_forward_mb": after["VmRSS"]}}))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


REFERENCE_TF = """
import json, os, sys, time, statistics
os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
import numpy as np
import transformers
args = json.loads(sys.argv[1])
pixels = np.load(args["pixels"])
config = transformers.BlipConfig.from_pretrained(args["dir"])
config.vision_config.num_channels = 3  # transformers' TF BLIP cannot build its signature without
model = transformers.TFBlipForConditionalGeneration.from_pretrained(args["dir"], config=config, from_pt=True)
def timed(fn):
    fn()
    ts = []
    for _ in range(args["repeats"]):
        s = time.perf_counter(); fn(); ts.append(time.perf_counter() - s)
    return statistics.median(ts)
out = {}
out["vision"] = timed(lambda: model.vision_model(pixel_values=pixels))
n = args["new_tokens"]
out["greedy"] = timed(lambda: model.generate(pixel_values=pixels, max_new_tokens=n, min_new_tokens=n))
print("RESULT " + json.dumps(out))
"""


def reference_tf(directory: Path, pixels: np.ndarray, repeats: int, new_tokens: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "pixels.npy", pixels)
        args = json.dumps(
            {"dir": str(directory), "pixels": str(Path(tmp) / "pixels.npy"),
             "repeats": repeats, "new_tokens": new_tokens}
        )  # fmt: skip
        env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "USE_TF": "1"}
        env.pop("USE_TORCH", None)
        proc = subprocess.run(
            [sys.executable, "-c", REFERENCE_TF, args], capture_output=True, text=True, env=env
        )
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}


def make_jpegs(folder: Path, count: int) -> list[Path]:
    from PIL import Image

    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        y, x = np.mgrid[0:480, 0:640]
        img = np.stack([(x + i * 7) % 256, (y * 2) % 256, (x + y) % 256], -1).astype(np.uint8)
        img = np.clip(img + rng.integers(0, 30, img.shape), 0, 255).astype(np.uint8)
        path = folder / f"img{i:03d}.jpg"
        Image.fromarray(img).save(path, quality=90)
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny config, 1 repeat (CI)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="bench-results.json")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--dtype", default="float32", choices=["float32", "bfloat16", "float16", "auto"]
    )
    parser.add_argument("--no-lowp", dest="lowp", action="store_false",
                        help="skip the low-precision section (bench_lowp.py)")  # fmt: skip
    parser.add_argument("--no-tf", action="store_true", help="skip both TensorFlow backends")
    parser.add_argument("--new-tokens", type=int, default=20)
    parser.add_argument(
        "--compile",
        dest="compile",
        action="store_true",
        default=None,
        help="time the torch.compile fast paths (default: on, off with --smoke)",
    )
    parser.add_argument("--no-compile", dest="compile", action="store_false")
    args = parser.parse_args(argv)

    import torch
    import transformers

    import blip_torch
    from blip_core import BlipImageProcessor

    torch.set_num_threads(os.cpu_count() or 1)
    repeats = 1 if args.smoke else args.repeats
    sizes = TINY if args.smoke else BASE
    new_tokens = 5 if args.smoke else args.new_tokens
    device = torch.device(args.device)
    dtype = blip_torch.precision.resolve_dtype(args.dtype, device) or torch.float32
    rows: list[dict] = []
    report = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "device": str(device),
            "dtype": str(dtype).replace("torch.", ""),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        },
        "config": "tiny (smoke)" if args.smoke else "BLIP-base, text 12 heads, 384 px",
        "rows": rows,
    }
    if args.lowp:
        import bench_lowp

        report["hardware"] = bench_lowp.hardware(device)
    report["machine"]["matmul_gflops_fp32"] = round(
        matmul_gflops(torch, 256 if args.smoke else 2048), 1
    )
    print(f"fp32 matmul: {report['machine']['matmul_gflops_fp32']} GFLOP/s", flush=True)

    def add(work, ref_s, our_s, same=None, note="", backend="torch"):
        row = {"work": work, "backend": backend, "reference_s": ref_s, "ours_s": our_s,
               "speedup": (ref_s / our_s) if ref_s and our_s else None,
               "same_ids": same, "note": note}  # fmt: skip
        rows.append(row)
        sp = f"{row['speedup']:.2f}x" if row["speedup"] else "-"
        print(f"{backend:6s} {work:34s} ref {ref_s or float('nan'):8.3f}s  ours "
              f"{our_s or float('nan'):8.3f}s  {sp:>8s}  {'' if same is None else ('same outputs' if same else 'OUTPUTS DIFFER')} {note}", flush=True)  # fmt: skip

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        dirs = build_models(sizes, tmp)
        image_size = sizes["vision"].get("image_size", 384)
        rng = np.random.default_rng(0)
        pixels_np = rng.standard_normal((1, 3, image_size, image_size)).astype(np.float32)
        pixels = torch.from_numpy(pixels_np).to(device, dtype)

        def load_pair(kind):
            ref = getattr(transformers, f"Blip{kind}").from_pretrained(dirs[_dir_of(kind)])
            ours = getattr(blip_torch, f"Blip{kind}").from_pretrained(dirs[_dir_of(kind)])
            return ref.to(device, dtype).eval(), ours.to(device, dtype).eval()

        ref, ours = load_pair("ForConditionalGeneration")
        with torch.no_grad():
            r, o, _, _ = alternate(
                lambda: ref.vision_model(pixel_values=pixels),
                lambda: ours.vision_model(pixels),
                repeats,
            )
            flops, ref_vision = _vision_flops(sizes["vision"]), r
            add("vision encoder forward (1 image)", r, o,
                note=f"ours {flops / o / 1e9:.0f} GFLOP/s = {100 * flops / o / 1e9 / report['machine']['matmul_gflops_fp32']:.0f}% of matmul")  # fmt: skip
            gen = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens)
            r, o, rid, oid = alternate(
                lambda: ref.generate(pixel_values=pixels, **gen),
                lambda: ours.generate(pixels, **gen),
                repeats,
            )
            add(f"greedy caption ({new_tokens} new tokens)", r, o, rid.tolist() == oid.tolist())
            torch_greedy, ref_greedy = o, r
            r, o, rid, oid = alternate(
                lambda: ref.generate(pixel_values=pixels, num_beams=3, **gen),
                lambda: ours.generate(pixels, num_beams=3, **gen),
                repeats,
            )
            add(f"beam-3 caption ({new_tokens} new tokens)", r, o, rid.tolist() == oid.tolist())
            report["bounds"] = _bounds(torch, ours, sizes, report, ref_greedy, r,
                                       new_tokens, repeats)  # fmt: skip
            report["reference_cross_kv_projections_per_generate"] = _count_cross_kv(
                ref, lambda: ref.generate(pixel_values=pixels, **gen)
            )
            print("reference cross-attention key projections (layer 0) in one greedy generate "
                  f"of {new_tokens} tokens: {report['reference_cross_kv_projections_per_generate']}"
                  " (1 = cached after the first step, as ours)")  # fmt: skip

        ref, ours = load_pair("ForQuestionAnswering")
        q = torch.tensor([[101, 2054, 3609, 2003, 1996, 4937, 1029, 102]], device=device)
        q = q % sizes["text"].get("vocab_size", 30524)
        with torch.no_grad():
            gen = dict(max_new_tokens=min(new_tokens, 10), min_new_tokens=min(new_tokens, 10))
            r, o, rid, oid = alternate(
                lambda: ref.generate(input_ids=q, pixel_values=pixels, **gen),
                lambda: ours.generate(q, pixels, **gen),
                repeats,
            )
            add("VQA generate (10 new tokens)", r, o, rid.tolist() == oid.tolist())

        ref, ours = load_pair("ForImageTextRetrieval")
        texts = torch.from_numpy(
            rng.integers(1000, 20000, (64, 12)) % sizes["text"].get("vocab_size", 30524)
        )
        texts[:, 0] = 101 % sizes["text"].get("vocab_size", 30524)
        texts = texts.to(device)
        mask = torch.ones_like(texts)
        with torch.no_grad():

            def ref_itm():
                logits = ref(input_ids=texts, pixel_values=pixels.expand(64, -1, -1, -1),
                             attention_mask=mask).itm_score  # fmt: skip
                return torch.softmax(logits, -1)[:, 1]

            def our_itm():
                _, states = ours.encode_images(pixels)
                return ours.itm_probability(states, texts, mask)

            r_rep = 1 if not args.smoke else repeats
            r, o, rp, op = alternate(ref_itm, our_itm, r_rep, warmup=0 if not args.smoke else 1)
            close = bool(torch.allclose(rp.float(), op.float(), atol=1e-4))
            add("ITM: 1 image x 64 texts", r, o, close,
                note="reference repeats the image per pair (its API); ours encodes it once")  # fmt: skip
            pix16 = pixels.expand(16, -1, -1, -1).contiguous()

            def ref_itc():
                states = ref.vision_model(pixel_values=pix16).last_hidden_state
                return torch.nn.functional.normalize(ref.vision_proj(states[:, 0]), dim=-1)

            r, o, _, _ = alternate(
                ref_itc, lambda: ours.encode_images(pix16)[0], max(1, repeats // 2)
            )
            add("ITC embeddings of 16 images", r, o)

        # preprocessing: JPEG files -> pixel batch
        jpegs = make_jpegs(tmp, 8 if args.smoke else 32)
        ours_proc = BlipImageProcessor(size={"height": image_size, "width": image_size})
        ref_proc = transformers.BlipImageProcessor(size={"height": image_size, "width": image_size})
        from PIL import Image

        def ref_pre():
            return ref_proc([Image.open(p) for p in jpegs], return_tensors="np")["pixel_values"]

        def our_pre():
            return ours_proc([str(p) for p in jpegs], return_tensors="np")["pixel_values"]

        r, o, rp, op = alternate(ref_pre, our_pre, repeats)
        add(f"preprocess {len(jpegs)} JPEGs (images/s: ref {len(jpegs) / r:.0f}, ours {len(jpegs) / o:.0f})",
            r, o, bool(np.allclose(rp, op, atol=1e-5)))  # fmt: skip

        # load time and peak RSS, each in a fresh process
        weight_bytes = (dirs["caption"] / "model.safetensors").stat().st_size
        report["caption_weight_mb"] = weight_bytes / 2**20
        probes = {k: rss_load_probe(k, dirs["caption"]) for k in ("reference", "ours")}
        if not args.no_tf:
            probes["ours_tf"] = rss_load_probe("tf", dirs["caption"])
        report["load"] = probes
        for k, v in probes.items():
            if "error" in v:
                print(f"load {k}: {v['error']}")
                continue
            weights_mb = report["caption_weight_mb"]
            v["load_peak_over_weights"] = (v["peak_rss_mb"] - v["baseline_rss_mb"]) / weights_mb
            v["after_forward_over_weights"] = (
                v["rss_after_forward_mb"] - v["baseline_rss_mb"]
            ) / weights_mb
            print(f"load {k:10s} import {v['import_seconds']:.2f}s, from_pretrained "
                  f"{v['seconds']:.2f}s; RSS above the post-import baseline: peak during load "
                  f"{v['load_peak_over_weights']:.2f}x the weight bytes ({weights_mb:.0f} MB), "
                  f"after a vision forward {v['after_forward_over_weights']:.2f}x")  # fmt: skip
        r, o = probes["reference"].get("seconds"), probes["ours"].get("seconds")
        add("load caption checkpoint (fresh process, from_pretrained)", r, o)

        report["throughput"] = _throughput(
            dirs["caption"], jpegs, image_size, [1, 2] if args.smoke else [1, 8, 32],
            ["torch"] if args.no_tf else ["torch", "tf"], new_tokens, device,
        )  # fmt: skip

        run_compile = (not args.smoke) if args.compile is None else args.compile
        report["fast_paths"] = _torch_fast_paths(
            dirs["caption"], pixels, new_tokens, repeats, run_compile,
            {"vision": ref_vision, "greedy": ref_greedy},
        )  # fmt: skip

        if args.lowp:
            _lowp(report, dirs["caption"], jpegs, pixels, sizes, new_tokens, args.smoke, add)

        if not args.no_tf:
            ref_tf = reference_tf(dirs["caption"], pixels_np, repeats, new_tokens)
            report["reference_tf"] = ref_tf
            if "error" in ref_tf:
                print(f"reference TF failed: {ref_tf['error']}")
            _bench_our_tf(
                dirs["caption"], pixels_np, repeats, new_tokens, ref_tf, add, torch_greedy
            )

    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")
    return 0


def _lowp(report, directory, jpegs, pixels, sizes, new_tokens, smoke, add) -> None:
    """The low-precision section (see ``bench_lowp``), on the fp32 pixels of the main run."""
    import bench_lowp
    import torch
    import transformers

    def timer(fn, repeats):
        return median_time(fn, 1 if smoke else repeats)

    device = pixels.device
    pixels = pixels.float()
    ref = transformers.BlipForConditionalGeneration.from_pretrained(directory).to(device).eval()
    ours = blip_torch_load(directory, device)
    report["floors"] = bench_lowp.floors(
        torch, ours, device, timer, _vision_flops(sizes["vision"]), smoke
    )
    del ours
    report["low_precision"] = bench_lowp.dtype_rows(
        directory, ref, pixels, new_tokens, timer, add, report["floors"], smoke
    )
    report["openvino"] = bench_lowp.openvino_rows(ref, pixels, new_tokens, 1 if smoke else 3, add)
    report["throughput_per_dtype"] = bench_lowp.folder_throughput(
        directory, jpegs, [1, 2] if smoke else [1, 8, 32], new_tokens, device, smoke
    )


def blip_torch_load(directory, device):
    import blip_torch

    return blip_torch.BlipForConditionalGeneration.from_pretrained(directory, device=device)


def _caption_folder(captioner, jpegs, batch_size: int, new_tokens: int) -> int:
    from blip_apps.pipeline import iter_image_batches

    count = 0
    for batch in iter_image_batches(jpegs, captioner.processor, batch_size):
        captioner.caption_pixels(batch.pixel_values, max_new_tokens=new_tokens)
        count += len(batch.paths)
    return count


def _throughput(directory, jpegs, image_size, batch_sizes, backends, new_tokens, device) -> dict:
    """Images/s captioning a folder of JPEGs through blip_core.pipeline (decoding overlapped
    with the model on a background thread), per backend and batch size; torch on ``device``."""
    from blip_apps.pipeline import Backend, Captioner

    results: dict = {}
    for name in backends:
        try:
            place = str(device) if name == "torch" and device.type != "cpu" else None
            captioner = Captioner(directory, Backend(name), device=place)
        except Exception as exc:  # pragma: no cover - depends on the environment
            results[name] = {"error": str(exc)}
            continue
        if not hasattr(captioner.model, "generate"):
            results[name] = {"error": "no generate"}
            continue
        results[name] = {}
        for bs in batch_sizes:
            # warm-up at this batch size: XLA compiles once per shape, not inside the timing
            _caption_folder(captioner, jpegs[:bs], bs, new_tokens)
            start = time.perf_counter()
            count = _caption_folder(captioner, jpegs, bs, new_tokens)
            results[name][bs] = count / (time.perf_counter() - start)
            print(f"{name:6s} caption folder of {count} JPEGs, batch {bs:2d}: "
                  f"{results[name][bs]:.2f} images/s", flush=True)  # fmt: skip
    return results


def _count_cross_kv(ref, generate) -> int:
    """How many times one generate call runs the reference's layer-0 cross-attention key
    projection: 1 if it caches cross-attention keys/values, one per step if it recomputes."""
    calls = []
    key = ref.text_decoder.bert.encoder.layer[0].crossattention.self.key
    hook = key.register_forward_hook(lambda *_: calls.append(1))
    try:
        generate()
    finally:
        hook.remove()
    return len(calls)


def _bounds(torch, ours, sizes, report, ref_greedy, ref_beam, new_tokens, repeats) -> dict:
    """Lower bounds for any fp32 implementation on this machine, from two measurements made
    here: the matmul peak (vision encoder and cross-attention key/value FLOPs at that rate) and
    the time to stream the weights one decode step must read (every 2-D decoder weight but the
    cached cross-attention keys/values, through one-row products).  A greedy step for one
    image cannot beat the second; beam 3 reads the same weights for 3 rows."""
    mats = [
        p.detach()
        for name, p in ours.text_decoder.named_parameters()  # tied LM head counted once
        if p.ndim == 2
        and "position_embeddings" not in name
        and "crossattention.self.key" not in name
        and "crossattention.self.value" not in name
    ]
    rows = {w.shape[1]: torch.randn(1, w.shape[1], dtype=w.dtype, device=w.device) for w in mats}

    def stream():
        for w in mats:
            torch.nn.functional.linear(rows[w.shape[1]], w)

    step_s, _ = median_time(stream, max(repeats, 5))
    step_bytes = sum(w.numel() * w.element_size() for w in mats)
    peak = report["machine"]["matmul_gflops_fp32"] * 1e9
    text = ours.config.text_config
    vision_width = ours.config.vision_config.hidden_size
    tokens = _vision_tokens(sizes["vision"])
    cross_kv_flops = text.num_hidden_layers * 2 * 2 * tokens * vision_width * text.hidden_size
    vision_s = _vision_flops(sizes["vision"]) / peak
    greedy = vision_s + cross_kv_flops / peak + new_tokens * step_s
    out = {
        "decode_step_weight_mb": step_bytes / 2**20,
        "decode_step_floor_s": step_s,
        "decode_bandwidth_gb_s": step_bytes / step_s / 1e9,
        "vision_floor_s": vision_s,
        "greedy_floor_s": greedy,
        "greedy_max_speedup": ref_greedy / greedy,
        "beam3_max_speedup": ref_beam / greedy,
    }
    print(f"bounds: a decode step streams {out['decode_step_weight_mb']:.0f} MB of weights, "
          f">= {1e3 * step_s:.1f} ms here ({out['decode_bandwidth_gb_s']:.0f} GB/s); vision "
          f">= {vision_s:.3f} s at the matmul peak; greedy caption >= {greedy:.3f} s, so at most "
          f"{out['greedy_max_speedup']:.2f}x the reference (beam 3: at most "
          f"{out['beam3_max_speedup']:.2f}x)", flush=True)  # fmt: skip
    return out


def _torch_fast_paths(
    directory, pixels, new_tokens, repeats, run_compile: bool, reference: dict
) -> list[dict]:
    """Opt-in fast paths against our own fp32 eager model, same run: bf16/fp16 weights and
    activations, and torch.compile (inductor, freezing) of the vision tower, then of the decode
    step too (:func:`blip_torch.compile_decoder`).  Prints each with its speed-up over our eager
    fp32, over the reference's time for the same work measured earlier in the run, and whether
    the token ids stay the same."""
    import torch

    import blip_torch

    gen = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens)
    load = blip_torch.BlipForConditionalGeneration.from_pretrained
    rows: list[dict] = []

    def measure(model, pix):
        vision = median_time(lambda: model.vision_model(pix), repeats)[0]
        greedy, ids = median_time(lambda: model.generate(pix, **gen), repeats)
        return vision, greedy, ids

    with torch.no_grad():
        vision_s, greedy_s, ids = measure(load(directory).to(pixels.device).eval(), pixels)
        eager, base_ids = {"vision": vision_s, "greedy": greedy_s}, ids.tolist()

        def add(path, work, seconds, ids=None, note=""):
            row = {"path": path, "work": work, "eager_fp32_s": eager[work], "fast_s": seconds,
                   "speedup": eager[work] / seconds,
                   "speedup_over_reference": reference[work] / seconds,
                   "same_ids": None if ids is None else ids.tolist() == base_ids, "note": note}  # fmt: skip
            rows.append(row)
            same = "" if ids is None else ("same ids" if row["same_ids"] else "ids differ")
            print(f"fast path {path:38s} {work:7s} eager fp32 {eager[work]:7.3f}s  "
                  f"{seconds:7.3f}s  {row['speedup']:5.2f}x ours eager, "
                  f"{row['speedup_over_reference']:5.2f}x the reference  {same} {note}",
                  flush=True)  # fmt: skip

        for dtype in (torch.bfloat16, torch.float16):
            model = load(directory, torch_dtype=dtype).to(pixels.device).eval()
            vision_s, greedy_s, ids = measure(model, pixels.to(dtype))
            name = str(dtype).replace("torch.", "")
            add(name, "vision", vision_s)
            add(name, "greedy", greedy_s, ids)
            del model
        if not run_compile:
            return rows
        model = load(directory).to(pixels.device).eval()
        start = time.perf_counter()
        blip_torch.compile_vision(model)  # inductor with freezing (a process-wide flag)
        model.vision_model(pixels)
        took = time.perf_counter() - start
        path = "blip_torch.compile_vision"
        add(path, "vision", median_time(lambda: model.vision_model(pixels), repeats)[0],
            note=f"first call {took:.0f}s")  # fmt: skip
        seconds, ids = median_time(lambda: model.generate(pixels, **gen), repeats)
        add(path, "greedy", seconds, ids)
        start = time.perf_counter()
        blip_torch.compile_decoder(model)  # the decode step over the fixed-size slot cache
        model.generate(pixels, **gen)
        took = time.perf_counter() - start
        seconds, ids = median_time(lambda: model.generate(pixels, **gen), repeats)
        add("+ blip_torch.compile_decoder", "greedy", seconds, ids,
            note=f"first call {took:.0f}s")  # fmt: skip
        if pixels.device.type == "cuda":  # CUDA graphs for the decode step
            try:
                start = time.perf_counter()
                blip_torch.compile_decoder(model, mode="reduce-overhead")
                model.generate(pixels, **gen)
                took = time.perf_counter() - start
                seconds, ids = median_time(lambda: model.generate(pixels, **gen), repeats)
                add("+ compile_decoder(mode='reduce-overhead')", "greedy", seconds, ids,
                    note=f"first call {took:.0f}s")  # fmt: skip
            except Exception as exc:  # pragma: no cover - GPU only; recorded, run goes on
                print(f"compile_decoder(mode='reduce-overhead'): {type(exc).__name__}: {exc}")
                rows.append({"path": "+ compile_decoder(mode='reduce-overhead')",
                             "error": f"{type(exc).__name__}: {exc}"})  # fmt: skip
        import bench_lowp

        bench_lowp.reset_compiler(torch)
    return rows


def _dir_of(kind: str) -> str:
    return {"ForConditionalGeneration": "caption", "ForQuestionAnswering": "vqa",
            "ForImageTextRetrieval": "itm"}[kind]  # fmt: skip


def _vision_tokens(vision: dict) -> int:
    """Patches + the class token for a vision config dict (BLIP defaults: 577)."""
    return (vision.get("image_size", 384) // vision.get("patch_size", 16)) ** 2 + 1


def _vision_flops(vision: dict) -> float:
    d = vision.get("hidden_size", 768)
    inter = vision.get("intermediate_size", 3072)
    layers = vision.get("num_hidden_layers", 12)
    n = _vision_tokens(vision)
    per_layer = 2 * n * (4 * d * d + 2 * d * inter) + 4 * n * n * d
    return layers * per_layer + 2 * n * 3 * vision.get("patch_size", 16) ** 2 * d


def _bench_our_tf(directory, pixels_np, repeats, new_tokens, ref_tf, add, torch_greedy):
    try:
        import blip_tf
    except Exception as exc:  # pragma: no cover - depends on the environment
        print(f"blip_tf unavailable: {exc}")
        return
    model = blip_tf.BlipForConditionalGeneration.from_pretrained(directory)
    t_eager, _ = median_time(lambda: model.vision_model(pixels_np), repeats)
    t_vision, _ = median_time(lambda: model.vision_model.compiled_forward(pixels_np), repeats)
    add("vision encoder forward (1 image)", ref_tf.get("vision"), t_vision, backend="tf",
        note=f"XLA (compiled_forward, what generate uses); Keras eager call {t_eager:.3f}s")  # fmt: skip
    if not hasattr(model, "generate"):
        print("blip_tf has no generate yet")
        return
    gen = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens)
    t_greedy, _ = median_time(lambda: model.generate(pixels_np, **gen), repeats)
    add(f"greedy caption ({new_tokens} new tokens)", ref_tf.get("greedy"), t_greedy,
        note=f"{t_greedy / torch_greedy:.2f}x our PyTorch time", backend="tf")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
