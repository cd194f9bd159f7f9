"""Low-precision sections of ``scripts/benchmark.py``: what the hardware offers, transformers bf16,
ours in bf16 / ``dtype="auto"`` / int8, the per-dtype floors, fidelity against fp32, folder
throughput per dtype, and (when ``openvino`` is installed) OpenVINO f32/bf16 rows.

Every function takes what it needs and returns JSON-serialisable dicts; timing goes through the
``median_time`` passed in (the benchmark's own), so the same warm-up / repeat rules apply.
"""

from __future__ import annotations

import time

from timing import alternate


def hardware(device) -> dict:
    """:func:`blip_torch.hardware_report` for the benchmark's device (CPU flags, auto dtype)."""
    import blip_torch

    report = blip_torch.hardware_report(device)
    print("hardware: " + ", ".join(f"{k}={v}" for k, v in report.items()), flush=True)
    return report


def matmul_peak(torch, dtype, device, n: int, median_time) -> float:
    """GFLOP/s of one ``n x n`` matrix product in ``dtype`` on ``device``."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)

    seconds, _ = median_time(lambda: a @ b, 5)  # timing's median_time syncs a GPU
    return 2 * n**3 / seconds / 1e9


def decode_matrices(model) -> list:
    """The 2-D weights one greedy decode step reads (tied LM head once; the position table and
    the cached cross-attention key/value projections left out)."""
    return [
        p.detach()
        for name, p in model.text_decoder.named_parameters()
        if p.ndim == 2
        and "position_embeddings" not in name
        and "crossattention.self.key" not in name
        and "crossattention.self.value" not in name
    ]


def floors(torch, model, device, median_time, vision_flops: float, smoke: bool) -> dict:
    """Per dtype: the bytes a decode step streams, the measured one-row streaming rate, the
    step floor (bytes / rate), the matmul peak and the vision floor (FLOPs / peak).  int8's
    floor uses its own bytes at the bf16 streaming rate (the int8 kernels read int8 rows and
    scale in bf16)."""
    out = {}
    mats = decode_matrices(model)
    n = 256 if smoke else 2048
    for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        weights = [w.to(device, dtype) for w in mats]
        rows = {w.shape[1]: torch.randn(1, w.shape[1], device=device).to(dtype) for w in weights}

        def stream(weights=weights, rows=rows):
            for w in weights:
                torch.nn.functional.linear(rows[w.shape[1]], w)

        step_s, _ = median_time(stream, 5)
        step_bytes = sum(w.numel() * w.element_size() for w in weights)
        peak = matmul_peak(torch, dtype, device, n, median_time)
        out[name] = {
            "step_weight_mb": step_bytes / 2**20,
            "stream_gb_s": step_bytes / step_s / 1e9,
            "step_floor_s": step_s,
            "matmul_gflops": peak,
            "vision_floor_s": vision_flops / (peak * 1e9),
        }
    int8_bytes = sum(w.numel() for w in mats)
    out["int8"] = {
        "step_weight_mb": int8_bytes / 2**20,
        "step_floor_s": int8_bytes / (out["bfloat16"]["stream_gb_s"] * 1e9),
    }
    for name, row in out.items():
        print(f"floor {name:8s}: a step streams {row['step_weight_mb']:.0f} MB -> >= "
              f"{1e3 * row['step_floor_s']:.2f} ms"
              + (f" ({row['stream_gb_s']:.0f} GB/s); matmul {row['matmul_gflops']:.0f} GFLOP/s,"
                 f" vision >= {row['vision_floor_s']:.3f} s" if "matmul_gflops" in row else ""),
              flush=True)  # fmt: skip
    return out


def our_variants(directory, device, smoke: bool = False) -> dict:
    """Our caption model as each low-precision variant: name -> (loader, activation dtype).
    ``smoke``: int8 runs eager (no compile) and leaves the vision tower in bf16, to keep the
    smoke run short; otherwise int8 is torchao's int8 text weights with the compiled decode
    step plus the vision tower's PT2E int8 graph (``quantize(parts=("text", "vision"))``)."""
    import torch

    import blip_torch

    load = blip_torch.BlipForConditionalGeneration.from_pretrained
    variants = {
        "ours bf16": (lambda: load(directory, dtype="bfloat16", device=device), torch.bfloat16),
        "ours auto": (lambda: load(directory, dtype="auto", device=device),
                      blip_torch.auto_dtype(device)),
    }  # fmt: skip
    if device.type == "cuda":
        variants["ours fp16"] = (lambda: load(directory, dtype="float16", device=device),
                                 torch.float16)  # fmt: skip
    try:
        import torchao  # noqa: F401

        def int8():
            model = load(directory, device=device)
            parts = ("text",) if smoke else ("text", "vision")
            return blip_torch.quantize(model, "int8", compile=not smoke, parts=parts)

        name = "ours int8 (torchao, eager)" if smoke else "ours int8 (torchao, compiled)"
        variants[name] = (int8, torch.bfloat16)
    except ImportError:
        print("torchao not installed: no int8 rows", flush=True)
    if not smoke:  # last: compile_vision's freezing flag is process-wide (reset by the caller)

        def compiled():
            model = load(directory, dtype="auto", device=device)
            blip_torch.compile_vision(model)
            return blip_torch.compile_decoder(model)

        variants["ours auto, compiled"] = (compiled, blip_torch.auto_dtype(device))
    return variants


def reset_compiler(torch) -> None:
    """Forget compiled graphs and undo compile_vision's process-wide freezing flag."""
    import torch._inductor.config as inductor_config

    torch._dynamo.reset()
    inductor_config.freezing = False


def fidelity(torch, model, fp32, pixels, new_tokens: int) -> dict:
    """Largest |logit - fp32 logit| (teacher-forced on fp32's greedy caption) and token
    agreement (free-running greedy, and argmax teacher-forced) against fp32."""
    gen = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens)
    want = fp32.generate(pixels.float(), **gen)
    got = model.generate(pixels.to(model.dtype), **gen)
    ref = fp32(pixel_values=pixels.float(), input_ids=want).logits.float()[:, 1:-1]
    low = model(pixel_values=pixels.to(model.dtype), input_ids=want).logits.float()[:, 1:-1]
    free = (got == want).float().mean().item() if got.shape == want.shape else 0.0
    return {
        "max_logit_diff": (low - ref).abs().max().item(),
        "logit_scale": ref.abs().max().item(),
        "greedy_token_agreement": free,
        "teacher_forced_agreement": (ref.argmax(-1) == low.argmax(-1)).float().mean().item(),
    }


def dtype_rows(directory, ref_fp32, pixels, new_tokens, median_time, add, step_floors,
               smoke: bool = False) -> dict:  # fmt: skip
    """Vision / greedy / beam-3 for transformers bf16 and each of our variants, against
    transformers fp32 (``add``'s reference column, timed in alternation with each variant),
    with each variant's per-step time over its floor and its fidelity against our fp32."""
    import torch
    import transformers

    import blip_torch

    device = pixels.device
    gen = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens)
    one = dict(max_new_tokens=1, min_new_tokens=1)
    fp32 = blip_torch.BlipForConditionalGeneration.from_pretrained(directory, device=device)
    results: dict = {}
    with torch.no_grad():
        ref16 = transformers.BlipForConditionalGeneration.from_pretrained(
            directory, dtype=torch.bfloat16
        ).to(device).eval()  # fmt: skip
        variants = {"transformers bf16": (lambda: ref16, torch.bfloat16)}
        variants.update(our_variants(directory, device, smoke))
        for name, (loader, dtype) in variants.items():
            try:
                start = time.perf_counter()
                model = loader()
                pix = pixels.to(dtype)
                model.generate(pix, **one)  # compiles a compiled step, outside the timing
                warm_s = time.perf_counter() - start
            except Exception as exc:  # pragma: no cover - depends on the environment
                print(f"{name}: {type(exc).__name__}: {exc}", flush=True)
                results[name] = {"error": f"{type(exc).__name__}: {exc}"}
                continue
            ref_t, (vision, greedy, first, beam) = _time_variant(
                model, pix, name.startswith("transformers"), gen, one, median_time,
                ref_fp32, pixels, 1 if smoke else 3,
            )  # fmt: skip
            step = (greedy - first) / max(new_tokens - 1, 1)
            floor_key = "int8" if "int8" in name else str(dtype).replace("torch.", "")
            floor = step_floors.get(floor_key, {}).get("step_floor_s")
            row = {"vision_s": vision, "greedy_s": greedy, "beam3_s": beam, "step_s": step,
                   "step_over_floor": step / floor if floor else None, "load_and_warm_s": warm_s,
                   "fidelity": fidelity(torch, model, fp32, pixels, new_tokens),
                   "transformers_fp32": ref_t}  # fmt: skip
            results[name] = row
            add(f"vision encoder [{name}]", ref_t["vision"], vision)
            add(f"greedy caption ({new_tokens}) [{name}]", ref_t["greedy"], greedy,
                note=f"step {1e3 * step:.1f} ms = {row['step_over_floor'] or float('nan'):.2f}x "
                     f"floor; max logit diff {row['fidelity']['max_logit_diff']:.3g}, token "
                     f"agreement {row['fidelity']['greedy_token_agreement']:.2f}")  # fmt: skip
            add(f"beam-3 caption ({new_tokens}) [{name}]", ref_t["beam"], beam)
            del model
            reset_compiler(torch)
    return results


def _time_variant(model, pix, is_ref, gen, one, median_time, ref_fp32, pixels, repeats):
    """Seconds of transformers fp32 (vision, greedy, beam-3) and of ``model`` (vision, greedy,
    greedy-of-one-token, beam-3).  Each of ``model``'s vision / greedy / beam timings alternates
    call by call with transformers fp32's, so their ratio is taken in one machine state (the
    host's speed drifts over a run)."""

    def call(**g):
        return model.generate(pixel_values=pix, **g) if is_ref else model.generate(pix, **g)

    def pair(ref_fn, our_fn):
        return alternate(ref_fn, our_fn, repeats)[:2]

    ref_gen = ref_fp32.generate
    ref_vision, vision = pair(lambda: ref_fp32.vision_model(pixel_values=pixels),
                              lambda: model.vision_model(pixel_values=pix))  # fmt: skip
    ref_greedy, greedy = pair(lambda: ref_gen(pixel_values=pixels, **gen), lambda: call(**gen))
    first = median_time(lambda: call(**one), 3)[0]
    ref_beam, beam = pair(lambda: ref_gen(pixel_values=pixels, num_beams=3, **gen),
                          lambda: call(num_beams=3, **gen))  # fmt: skip
    ref_t = {"vision": ref_vision, "greedy": ref_greedy, "beam": ref_beam}
    return ref_t, (vision, greedy, first, beam)


def folder_throughput(directory, jpegs, batch_sizes, new_tokens, device, smoke=False) -> dict:
    """Images/s captioning the JPEG folder (decode + preprocess + generate) per variant."""
    import torch

    import blip_torch
    from blip_apps.pipeline import iter_image_batches
    from blip_core import BlipProcessor

    processor = BlipProcessor.from_pretrained(directory)
    load = blip_torch.BlipForConditionalGeneration.from_pretrained
    variants = {"float32": lambda: load(directory, device=device)}
    variants.update({k: v[0] for k, v in our_variants(directory, device, smoke).items()})
    results: dict = {}
    with torch.no_grad():
        for name, loader in variants.items():
            try:
                model = loader()
            except Exception as exc:  # pragma: no cover - depends on the environment
                results[name] = {"error": f"{type(exc).__name__}: {exc}"}
                continue

            def caption(paths, bs, model=model):
                count = 0
                for batch in iter_image_batches(paths, processor, bs):
                    pix = torch.from_numpy(batch.pixel_values).to(device, model.dtype)
                    model.generate(pix, max_new_tokens=new_tokens)
                    count += len(batch.paths)
                return count

            results[name] = {}
            for bs in batch_sizes:
                caption(jpegs[:bs], bs)  # warm-up at this batch size
                start = time.perf_counter()
                count = caption(jpegs, bs)
                results[name][bs] = count / (time.perf_counter() - start)
                print(f"folder [{name}] batch {bs:2d}: {results[name][bs]:.2f} images/s",
                      flush=True)  # fmt: skip
            del model
            reset_compiler(torch)
    return results


# -- OpenVINO (benchmark-only, optional) ----------------------------------------------------------


def openvino_rows(ref_fp32, pixels, new_tokens, repeats, add) -> dict:
    """OpenVINO f32 and bf16 as its BLIP notebook deploys it: the transformers vision model and
    a decoder-with-past (image states fed every step, so cross-attention keys/values are
    recomputed per step) converted with ``openvino.convert_model``, greedy loop in numpy; each
    timing alternates with transformers fp32's (``add``'s reference column).  Skipped
    (``{"skipped": ...}``) when openvino is not installed."""
    try:
        import openvino as ov
    except ImportError:
        print("openvino not installed: no OpenVINO rows", flush=True)
        return {"skipped": "openvino not installed"}
    import numpy as np
    import torch

    try:
        vision_ir, decoder_ir, layers = _convert_openvino(ov, torch, ref_fp32, pixels)
    except Exception as exc:  # pragma: no cover - depends on the openvino version
        print(f"openvino conversion failed: {type(exc).__name__}: {exc}", flush=True)
        return {"error": f"{type(exc).__name__}: {exc}"}
    core = ov.Core()
    text = ref_fp32.config.text_config
    want = ref_fp32.generate(pixel_values=pixels, max_new_tokens=new_tokens,
                             min_new_tokens=new_tokens)[0].tolist()  # fmt: skip
    results: dict = {"version": ov.__version__}
    heads, head_dim = text.num_attention_heads, text.hidden_size // text.num_attention_heads
    empty = np.zeros((1, heads, 0, head_dim), dtype=np.float32)
    pix = pixels.float().numpy()
    gen = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens)
    for precision in ("f32", "bf16"):
        config = {"INFERENCE_PRECISION_HINT": precision}
        vision = core.compile_model(vision_ir, "CPU", config)
        decoder = core.compile_model(decoder_ir, "CPU", config)

        def encode(vision=vision, pix=pix):
            return vision(pix)[0]

        def caption(decoder=decoder):
            states = encode()
            past = [empty] * (2 * layers)
            ids = [text.bos_token_id]
            token = np.array([[ids[0]]], dtype=np.int64)
            for _ in range(new_tokens):
                mask = np.ones((1, len(ids)), dtype=np.int64)
                position = np.array([[len(ids) - 1]], dtype=np.int64)
                out = decoder([token, mask, position, states, *past])
                logits, past = out[0], [out[i] for i in range(1, 1 + 2 * layers)]
                scores = logits[0, -1].copy()
                scores[text.sep_token_id] = -np.inf  # min_new_tokens, as the reference's call
                ids.append(int(np.argmax(scores)))
                token = np.array([[ids[-1]]], dtype=np.int64)
            return ids

        ref_vision, vision_s, _, _ = alternate(
            lambda: ref_fp32.vision_model(pixel_values=pixels), encode, repeats
        )
        ref_greedy, greedy_s, _, ids = alternate(
            lambda: ref_fp32.generate(pixel_values=pixels, **gen), caption, repeats
        )
        results[precision] = {"vision_s": vision_s, "greedy_s": greedy_s,
                              "same_ids_as_transformers": ids == want,
                              "transformers_fp32": {"vision": ref_vision,
                                                    "greedy": ref_greedy}}  # fmt: skip
        add(f"vision encoder [OpenVINO {precision}]", ref_vision, vision_s)
        add(f"greedy caption ({new_tokens}) [OpenVINO {precision}]", ref_greedy,
            greedy_s, ids == want if precision == "f32" else None)  # fmt: skip
    return results


def _convert_openvino(ov, torch, ref, pixels):
    from transformers.cache_utils import DynamicCache

    layers = ref.config.text_config.num_hidden_layers
    text = ref.config.text_config
    heads, head_dim = text.num_attention_heads, text.hidden_size // text.num_attention_heads

    class DecoderWithPast(torch.nn.Module):
        """(ids, mask, image states, past k/v per layer) -> (logits, new past k/v per layer).
        The cache starts from 4-D past tensors (zero-length on the first step): transformers'
        own cache layers start from a 1-D empty tensor, which the converter cannot concatenate
        onto 4-D ones."""

        def __init__(self, decoder):
            super().__init__()
            self.decoder = decoder

        def forward(self, input_ids, attention_mask, position_ids, encoder_hidden_states, *past):
            cache = DynamicCache.from_legacy_cache(
                tuple((past[2 * i], past[2 * i + 1]) for i in range(layers))
            )
            out = self.decoder(input_ids=input_ids, attention_mask=attention_mask,
                               position_ids=position_ids,  # traced past lengths are constants
                               encoder_hidden_states=encoder_hidden_states,
                               past_key_values=cache, use_cache=True, return_dict=True)  # fmt: skip
            new = out.past_key_values.self_attention_cache
            flat = []
            for i in range(layers):
                flat += [new.layers[i].keys, new.layers[i].values]
            return (out.logits, *flat)

    from transformers.cache_utils import DynamicLayer

    def zero_length_4d(self, key_states):
        """transformers' DynamicLayer starts from 1-D empty tensors, which the converter cannot
        concatenate onto 4-D ones: start from zero-length slices of the first keys instead."""
        self.dtype, self.device = key_states.dtype, key_states.device
        self.keys = key_states[:, :, :0, :]
        self.values = key_states[:, :, :0, :]
        self.is_initialized = True

    original = DynamicLayer.lazy_initialization
    DynamicLayer.lazy_initialization = zero_length_4d
    try:
        return _convert_with(ov, torch, ref, pixels, layers, heads, head_dim, DecoderWithPast)
    finally:
        DynamicLayer.lazy_initialization = original


def _convert_with(ov, torch, ref, pixels, layers, heads, head_dim, DecoderWithPast):
    with torch.no_grad():
        pix = pixels.float()
        vision_ir = ov.convert_model(ref.vision_model.float(), example_input=pix)
        states = ref.vision_model(pixel_values=pix).last_hidden_state
        past = [torch.zeros(1, heads, 1, head_dim) for _ in range(2 * layers)]
        example = (torch.tensor([[30]]), torch.ones(1, 2, dtype=torch.long), torch.tensor([[1]]),
                   states, *past)  # fmt: skip
        decoder_ir = ov.convert_model(DecoderWithPast(ref.text_decoder.float()).eval(),
                                      example_input=example)  # fmt: skip
    return vision_ir, decoder_ir, layers
