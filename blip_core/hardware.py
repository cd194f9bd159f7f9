"""What the machine offers for low-precision inference, and the one rule that picks a dtype.

``dtype="auto"`` in every backend resolves through :func:`choose_dtype`, so the rule lives once:

* a GPU that supports bfloat16 (the backend says so: ``gpu_supports_bf16``) -> ``"bfloat16"``;
  a GPU without it (or unknown) -> ``"float32"``;
* a CPU with AMX-BF16 (``amx_bf16``) -> ``"bfloat16"``, *known* faster: the matrix units
  multiply bf16 tiles natively (measured 3.5-7x on matrix products, 3.9x on the vision tower);
* a CPU with AVX-512 BF16 but no AMX (``avx512_bf16`` alone) -> *measured*: the backend times a
  small bf16 and float32 workload once per process (``bf16_speedup``, float32 seconds / bf16
  seconds) and ``"bfloat16"`` is chosen when it is at least :data:`MIN_BF16_SPEEDUP`.  Such CPUs
  differ: one measured bf16 at 0.55x float32 (vision), an AMD EPYC (Zen 4) at 2x.  Without a
  measurement the rule stays in float32;
* any other CPU -> ``"float32"``: without native bf16 instructions, bf16 tensors are converted
  to fp32 around every product, which is slower than staying in fp32;
* frameworks listed in :data:`BF16_SLOW_ON_CPU` stay in float32 on every CPU (measured).

This module reads ``/proc/cpuinfo`` (Linux) and the standard library only; it imports no
framework, so applications can print :func:`hardware_report` before choosing a backend.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Iterable

CPUINFO = "/proc/cpuinfo"

# Flags that matter for inference, in the order the report lists them.
RELEVANT_FLAGS = (
    "amx_bf16",
    "amx_int8",
    "amx_fp16",
    "amx_tile",
    "avx512_bf16",
    "avx512_fp16",
    "avx512_vnni",
    "avx_vnni",
    "avx512f",
    "avx2",
    "fma",
    "f16c",
)
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
# bf16 is known to pay with these (matrix units); with only the others it is measured.
BF16_KNOWN_FAST_FLAGS = ("amx_bf16",)
# The measured bf16 speed-up (float32 seconds / bfloat16 seconds of the backend's probe) at or
# above which "auto" picks bfloat16 where the flags alone do not settle it: bf16 costs some
# accuracy, so it has to buy a clear gain.
MIN_BF16_SPEEDUP = 1.2
INT8_CPU_FLAGS = ("amx_int8", "avx512_vnni", "avx_vnni")
DEVICE_KINDS = ("cpu", "cuda", "gpu", "mps", "xpu")
DTYPES = ("float32", "bfloat16")


def _read_cpuinfo(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return ""


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    """The CPU feature flags of the first processor in ``/proc/cpuinfo`` (``flags`` line on
    x86, ``Features`` on ARM); empty where the file is missing (macOS, Windows).

    ``cpuinfo``: the file's text (tests pass their own); read from :data:`CPUINFO` if None.
    """
    text = _read_cpuinfo(CPUINFO) if cpuinfo is None else cpuinfo
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() in ("flags", "features"):
            return frozenset(value.split())
    return frozenset()


def cpu_model(cpuinfo: str | None = None) -> str:
    """The ``model name`` of the first processor, or :func:`platform.processor` as a fallback."""
    text = _read_cpuinfo(CPUINFO) if cpuinfo is None else cpuinfo
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() == "model name":
            return value.strip()
    return platform.processor() or platform.machine() or "unknown"


def is_x86(machine: str | None = None) -> bool:
    """Whether this machine (or ``machine``, a :func:`platform.machine` string) is x86."""
    return (machine or platform.machine()).lower() in ("x86_64", "amd64", "i386", "i686")


def usable_threads() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


# Frameworks whose CPU bfloat16 path is slower end to end even on AMX / AVX512-BF16 CPUs
# (XLA:CPU's one-row bf16 products in the decode step; scripts/tf_dtype_probe.py measures it,
# figures in the README): "auto" keeps them in float32 on CPUs.
BF16_SLOW_ON_CPU = ("tf",)


def needs_bf16_probe(device_kind: str, cpu_flags_found: Iterable[str], framework=None) -> bool:
    """Whether :func:`choose_dtype` needs a measured ``bf16_speedup`` for this device: a CPU
    with bf16 instructions but no matrix units (and a framework not known slow there)."""
    kind = str(device_kind).split(":")[0].lower()
    flags = set(cpu_flags_found)
    return (
        kind == "cpu"
        and framework not in BF16_SLOW_ON_CPU
        and not any(f in flags for f in BF16_KNOWN_FAST_FLAGS)
        and any(f in flags for f in BF16_CPU_FLAGS)
    )


def _explain(device_kind, cpu_flags_found, gpu_supports_bf16, framework=None,
             bf16_speedup=None) -> tuple[str, str]:  # fmt: skip
    kind = str(device_kind).split(":")[0].lower()
    if kind not in DEVICE_KINDS:
        raise ValueError(f"device_kind={device_kind!r} is not one of {DEVICE_KINDS}")
    if kind == "cpu" and framework in BF16_SLOW_ON_CPU:
        return "float32", (
            f"{framework} on CPU: bfloat16 decoding is slower than float32 under XLA:CPU "
            "(measured by scripts/tf_dtype_probe.py), staying in float32"
        )
    if kind != "cpu":
        if gpu_supports_bf16:
            return "bfloat16", f"{kind} device supports bfloat16"
        if gpu_supports_bf16 is None:
            return "float32", f"{kind} device: bfloat16 support unknown, staying in float32"
        return "float32", f"{kind} device has no bfloat16 support"
    flags = set(cpu_flags_found)
    known = [f for f in BF16_KNOWN_FAST_FLAGS if f in flags]
    if known:
        return "bfloat16", f"CPU has bfloat16 matrix units ({', '.join(known)})"
    found = [f for f in BF16_CPU_FLAGS if f in flags]
    if not found:
        return "float32", (
            "CPU has no native bfloat16 instructions (neither amx_bf16 nor avx512_bf16): "
            "bfloat16 would be emulated and slower"
        )
    what = f"CPU has {', '.join(found)} but no AMX"
    if bf16_speedup is None:
        return "float32", f"{what}, and bfloat16 was not measured here: staying in float32"
    verdict = "bfloat16" if bf16_speedup >= MIN_BF16_SPEEDUP else "float32"
    return verdict, (
        f"{what}: bfloat16 measured {bf16_speedup:.2f}x float32 here "
        f"({'>=' if verdict == 'bfloat16' else '<'} {MIN_BF16_SPEEDUP}x)"
    )


# Short names of the inference dtypes, accepted by both backends' ``dtype=`` arguments.
DTYPE_ALIASES = {
    "fp32": "float32",
    "float": "float32",
    "bf16": "bfloat16",
    "fp16": "float16",
    "half": "float16",
}


def dtype_name(text: str) -> str:
    """A dtype argument's text in canonical form: lower case, a ``torch.`` prefix dropped, an
    alias of :data:`DTYPE_ALIASES` resolved (``"BF16"`` -> ``"bfloat16"``; ``"auto"`` stays)."""
    name = text.lower().removeprefix("torch.")
    return DTYPE_ALIASES.get(name, name)


def choose_dtype(
    device_kind: str,
    cpu_flags: Iterable[str] = (),
    gpu_supports_bf16: bool | None = None,
    framework: str | None = None,
    bf16_speedup: float | None = None,
) -> str:
    """``"bfloat16"`` or ``"float32"`` for inference on ``device_kind`` (see the module rule).

    ``device_kind``: ``"cpu"``, ``"cuda"`` (``"cuda:1"`` accepted), ``"gpu"``, ``"mps"``, ``"xpu"``;
    ``cpu_flags``: the flags of :func:`cpu_flags` (used for ``"cpu"`` only);
    ``gpu_supports_bf16``: the backend's answer for an accelerator (``None``: unknown -> fp32);
    ``framework``: ``"torch"``, ``"tf"``, ... (:data:`BF16_SLOW_ON_CPU` stay float32 on CPUs);
    ``bf16_speedup``: the backend's measurement where :func:`needs_bf16_probe` says it counts.
    """
    return _explain(device_kind, cpu_flags, gpu_supports_bf16, framework, bf16_speedup)[0]


def hardware_report(
    device_kind: str = "cpu",
    gpu_supports_bf16: bool | None = None,
    cpuinfo: str | None = None,
    framework: str | None = None,
    bf16_speedup: float | None = None,
) -> dict:
    """What was found and what ``dtype="auto"`` chooses: ``cpu_model``, ``cpu_flags`` (the
    relevant ones present), ``bf16_native``, ``int8_native`` (VNNI/AMX-INT8), ``threads``,
    ``device``, ``bf16_speedup`` (measured, or None), ``auto_dtype`` and ``reason``;
    JSON-serialisable."""
    flags = cpu_flags(cpuinfo)
    dtype, reason = _explain(device_kind, flags, gpu_supports_bf16, framework, bf16_speedup)
    return {
        "cpu_model": cpu_model(cpuinfo),
        "machine": platform.machine(),
        "cpu_flags": [f for f in RELEVANT_FLAGS if f in flags],
        "bf16_native": any(f in flags for f in BF16_CPU_FLAGS),
        "int8_native": any(f in flags for f in INT8_CPU_FLAGS),
        "threads": usable_threads(),
        "device": str(device_kind),
        "bf16_speedup": None if bf16_speedup is None else round(float(bf16_speedup), 2),
        "auto_dtype": dtype,
        "reason": reason,
    }


def format_report(report: dict) -> str:
    """:func:`hardware_report` as aligned ``key: value`` lines (for ``blip env``)."""
    lines = []
    for key, value in report.items():
        if isinstance(value, list):
            value = " ".join(value) or "(none of interest)"
        lines.append(f"{key + ':':<13} {value}")
    return "\n".join(lines)


__all__ = [
    "DTYPE_ALIASES",
    "dtype_name",
    "BF16_CPU_FLAGS",
    "BF16_KNOWN_FAST_FLAGS",
    "MIN_BF16_SPEEDUP",
    "INT8_CPU_FLAGS",
    "RELEVANT_FLAGS",
    "choose_dtype",
    "cpu_flags",
    "cpu_model",
    "format_report",
    "hardware_report",
    "needs_bf16_probe",
    "usable_threads",
]
