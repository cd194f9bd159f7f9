"""Inference dtypes for the PyTorch backend: ``torch_dtype``/``dtype`` arguments, ``"auto"``.

``"auto"`` applies :func:`blip_core.hardware.choose_dtype` (the one rule, shared with every
backend) to the device the model will run on: bfloat16 on CPUs with AMX-BF16 and on GPUs that
support bf16; on CPUs with AVX-512 BF16 but no AMX, bfloat16 where :func:`bf16_speedup` (about
half a second, once per process) measures it at least 1.2x faster than float32; float32
elsewhere.  The library default stays float32 (``torch_dtype=None``), as in transformers.

What stays in float32 when the weights are bfloat16/float16 (PyTorch's kernels, verified in
``tests/torch/test_low_precision.py``):

* **LayerNorm statistics**: ``layer_norm`` on bf16 tensors computes mean and variance in
  float32 (ATen's ``opmath_t``) and rounds only the normalised output: a bf16 LayerNorm equals
  the float32 LayerNorm of the same inputs rounded to bf16, bit for bit, on CPU.
* **Softmax accumulation**: ``softmax`` and CPU ``scaled_dot_product_attention`` accumulate
  exponentials and the value product in float32; outputs are within one bf16 rounding of the
  float32 result of the same inputs.
* **The logits given to the search**: the LM head's product accumulates in float32 and its
  output is rounded to the model dtype (as in transformers); the decoder session converts it to
  float32 before the search (softmax, log-softmax, processors, beam scores all run in float32
  numpy).  Sequence scores (``log_probs``) take log-softmax in float32 too.
* Attention masks are built in the model dtype, as transformers does (the additive ``-10000``
  and ``finfo.min`` fills stay large negatives in bf16).
"""

from __future__ import annotations

import functools
import time

import torch

from blip_core import hardware

_NAMES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_ALLOWED = (torch.float32, torch.bfloat16, torch.float16)


def gpu_supports_bf16(device: torch.device) -> bool | None:
    """Whether ``device`` (an accelerator) runs bfloat16 natively; None where torch cannot say."""
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device.type == "xpu" and hasattr(torch, "xpu"):
        return bool(torch.xpu.is_available() and torch.xpu.is_bf16_supported())
    return None


def check_device(device: str | torch.device) -> torch.device:
    """``device`` as a :class:`torch.device` this process can run on.

    Raises:
        ValueError: not a device name torch knows, or an accelerator this torch build or
            machine lacks (the message says what is there: ``cpu`` always).
    """
    try:
        place = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"device={device!r} is not a torch device ({exc}); e.g. 'cpu', 'cuda', 'cuda:1'"
        ) from None
    if place.type == "cpu" or place.type == "meta":
        return place
    module = getattr(torch, place.type, None)
    available = getattr(module, "is_available", None)
    if available is None or not available():
        build = f"torch {torch.__version__}"
        if place.type == "cuda" and torch.version.cuda is None:
            build += ", a CPU-only build"
        raise ValueError(f"device={device!r}: {place.type} is not available here ({build}); "
                         "use device='cpu'")  # fmt: skip
    count = module.device_count() if hasattr(module, "device_count") else 1
    if place.index is not None and place.index >= count:
        raise ValueError(
            f"device={device!r}: this machine has {count} {place.type} device(s), "
            f"indices 0..{count - 1}"
        )
    return place


@functools.lru_cache(maxsize=1)
def bf16_speedup() -> float:
    """float32 seconds / bfloat16 seconds of a small BLIP-shaped CPU workload, measured once
    per process (about 0.5 s on 2 cores): a 577-row MLP product (the vision tower's shape,
    compute-bound) plus one-row products through 12 ``768 x 3072`` matrices (a decode step's
    shape, bound by reading weights: 113 MB in float32, more than a CPU cache holds).  Best
    of 3 per dtype."""
    gen = torch.Generator().manual_seed(0)
    w_in = torch.randn(3072, 768, generator=gen) * 0.02
    w_out = torch.randn(768, 3072, generator=gen) * 0.02
    stream = [torch.randn(3072, 768, generator=gen) * 0.02 for _ in range(12)]
    x = torch.randn(577, 768, generator=gen)
    seconds = {}
    with torch.no_grad():
        for dtype in (torch.float32, torch.bfloat16):
            a, b, ws, rows = (
                w_in.to(dtype),
                w_out.to(dtype),
                [w.to(dtype) for w in stream],
                x.to(dtype),
            )

            def work(a=a, b=b, ws=ws, rows=rows):
                torch.nn.functional.linear(torch.nn.functional.linear(rows, a), b)
                for w in ws:
                    torch.nn.functional.linear(rows[:1], w)

            work()  # warm-up: kernel selection, first touch
            best = float("inf")
            for _ in range(3):
                start = time.perf_counter()
                work()
                best = min(best, time.perf_counter() - start)
            seconds[dtype] = best
    return seconds[torch.float32] / seconds[torch.bfloat16]


def _cpu_rule() -> tuple[frozenset, float | None]:
    """The CPU's flags, and the measured bf16 speed-up where the rule needs it."""
    flags = hardware.cpu_flags()
    needed = hardware.needs_bf16_probe("cpu", flags, "torch")
    return flags, (bf16_speedup() if needed else None)


def auto_dtype(device: str | torch.device | None = None) -> torch.dtype:
    """The dtype ``"auto"`` picks for ``device`` (default CPU)."""
    device = torch.device(device if device is not None else "cpu")
    if device.type == "cpu":
        flags, speedup = _cpu_rule()
        name = hardware.choose_dtype("cpu", flags, framework="torch", bf16_speedup=speedup)
    else:
        name = hardware.choose_dtype(device.type, (), gpu_supports_bf16(device))
    return _NAMES[name]


def resolve_dtype(
    value: str | torch.dtype | None, device: str | torch.device | None = None, argument="dtype"
) -> torch.dtype | None:
    """``value`` as a floating torch dtype (None stays None: keep the checkpoint's float32).

    Accepts a torch dtype (float32, bfloat16, float16), its name (``"bfloat16"``, ``"bf16"``,
    ``"torch.bfloat16"``, ...) or ``"auto"`` (:func:`auto_dtype` for ``device``).
    """
    if value is None or isinstance(value, torch.dtype):
        if value is not None and value not in _ALLOWED:
            raise ValueError(f"{argument}={value} is not a floating dtype; allowed: {_ALLOWED}")
        return value
    if isinstance(value, str):
        name = hardware.dtype_name(value)
        if name == "auto":
            return auto_dtype(device)
        if name in _NAMES:
            return _NAMES[name]
    raise ValueError(
        f"{argument}={value!r} is not understood; allowed: a torch dtype, 'auto', "
        f"one of {sorted(_NAMES)} or an alias {sorted(hardware.DTYPE_ALIASES)}"
    )


def pick_dtype_argument(torch_dtype, dtype):
    """Merge transformers' two names for one argument (``torch_dtype`` and the newer ``dtype``)."""
    if torch_dtype is not None and dtype is not None and torch_dtype != dtype:
        raise ValueError(
            f"from_pretrained got torch_dtype={torch_dtype!r} and dtype={dtype!r}; give one"
        )
    return ("dtype", dtype) if dtype is not None else ("torch_dtype", torch_dtype)


def hardware_report(device: str | torch.device | None = None) -> dict:
    """:func:`blip_core.hardware.hardware_report` for ``device`` plus what torch sees: its
    version, intra-op threads, oneDNN availability and the accelerator's name."""
    device = torch.device(device if device is not None else "cpu")
    speedup = _cpu_rule()[1] if device.type == "cpu" else None
    report = hardware.hardware_report(
        device.type, gpu_supports_bf16(device), framework="torch", bf16_speedup=speedup
    )
    report["torch"] = torch.__version__
    report["torch_threads"] = torch.get_num_threads()
    report["mkldnn"] = bool(torch.backends.mkldnn.is_available())
    if device.type == "cuda" and torch.cuda.is_available():
        report["gpu"] = torch.cuda.get_device_name(device)
    return report


__all__ = ["auto_dtype", "bf16_speedup", "gpu_supports_bf16", "hardware_report", "resolve_dtype"]
