"""blip_core.hardware: the dtype="auto" rule on fake flag sets, and the report's shape."""

from __future__ import annotations

import json

import pytest

from blip_core import hardware

SAPPHIRE = "fpu avx2 avx512f avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8"
CASCADE = "fpu avx2 avx512f avx512_vnni"  # VNNI, no bf16 instructions
CPUINFO = (
    "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Fake Xeon 9000\n"
    f"flags\t\t: {SAPPHIRE}\n\nprocessor\t: 1\nflags\t\t: fpu\n"
)


@pytest.mark.parametrize(
    "flags, want",
    [
        (SAPPHIRE.split(), "bfloat16"),
        (["avx2", "amx_bf16"], "bfloat16"),
        (["avx2", "avx512_bf16"], "float32"),  # bf16 instructions without AMX: not measured
        (CASCADE.split(), "float32"),
        (["avx2", "amx_int8"], "float32"),  # int8 matrix units alone do not make bf16 native
        ([], "float32"),
    ],
)
def test_cpu_rule(flags, want):
    assert hardware.choose_dtype("cpu", flags) == want


@pytest.mark.parametrize(
    "flags, speedup, want",
    [
        (["avx512_bf16"], 2.06, "bfloat16"),  # measured on an AMD EPYC (Zen 4) here
        (["avx512_bf16"], hardware.MIN_BF16_SPEEDUP, "bfloat16"),
        (["avx512_bf16"], 1.1, "float32"),  # faster, but not enough to pay for bf16 rounding
        (["avx512_bf16"], 0.55, "float32"),  # slower (a Xeon without AMX, measured earlier)
        (SAPPHIRE.split(), 0.5, "bfloat16"),  # AMX is known: a measurement is not asked for
        (CASCADE.split(), 3.0, "float32"),  # no bf16 instructions: emulated, whatever was timed
    ],
)
def test_cpu_rule_with_a_measurement(flags, speedup, want):
    assert hardware.choose_dtype("cpu", flags, bf16_speedup=speedup) == want
    report = hardware.hardware_report("cpu", cpuinfo=f"flags : {' '.join(flags)}\n",
                                      bf16_speedup=speedup)  # fmt: skip
    assert report["auto_dtype"] == want and report["bf16_speedup"] == speedup


def test_which_cpus_need_the_probe():
    assert hardware.needs_bf16_probe("cpu", ["avx512_bf16"])
    assert not hardware.needs_bf16_probe("cpu", ["avx512_bf16", "amx_bf16"])  # known
    assert not hardware.needs_bf16_probe("cpu", CASCADE.split())  # no bf16 at all
    assert not hardware.needs_bf16_probe("cuda", ["avx512_bf16"])
    assert not hardware.needs_bf16_probe("cpu", ["avx512_bf16"], framework="tf")  # known slow


@pytest.mark.parametrize(
    "kind, bf16, want",
    [
        ("cuda", True, "bfloat16"),
        ("cuda:1", True, "bfloat16"),
        ("cuda", False, "float32"),
        ("cuda", None, "float32"),
        ("mps", False, "float32"),
    ],
)
def test_gpu_rule_ignores_cpu_flags(kind, bf16, want):
    assert hardware.choose_dtype(kind, SAPPHIRE.split(), gpu_supports_bf16=bf16) == want
    assert hardware.choose_dtype(kind, [], gpu_supports_bf16=bf16) == want


def test_unknown_device_kind_is_named():
    with pytest.raises(ValueError, match=r"device_kind='tpu' is not one of"):
        hardware.choose_dtype("tpu", [])


def test_flags_and_model_from_cpuinfo_text():
    assert hardware.cpu_flags(CPUINFO) == frozenset(SAPPHIRE.split())  # first processor
    assert hardware.cpu_model(CPUINFO) == "Fake Xeon 9000"
    assert hardware.cpu_flags("") == frozenset()
    arm = "processor\t: 0\nFeatures\t: fp asimd bf16 i8mm\n"
    assert hardware.cpu_flags(arm) == {"fp", "asimd", "bf16", "i8mm"}
    assert hardware.choose_dtype("cpu", hardware.cpu_flags(arm)) == "float32"


def test_report_says_what_was_found_and_chosen():
    report = hardware.hardware_report("cpu", cpuinfo=CPUINFO)
    assert report["cpu_model"] == "Fake Xeon 9000"
    assert report["cpu_flags"] == [
        "amx_bf16", "amx_int8", "amx_tile", "avx512_bf16", "avx512_vnni", "avx512f", "avx2",
    ]  # fmt: skip
    assert report["bf16_native"] and report["int8_native"]
    assert report["auto_dtype"] == "bfloat16" and "amx_bf16" in report["reason"]
    assert report["threads"] >= 1
    json.dumps(report)
    plain = hardware.hardware_report("cpu", cpuinfo=f"flags : {CASCADE}\n")
    assert plain["auto_dtype"] == "float32" and not plain["bf16_native"] and plain["int8_native"]
    text = hardware.format_report(plain)
    assert "auto_dtype:   float32" in text


def test_this_machine_report_runs():
    report = hardware.hardware_report()
    assert report["auto_dtype"] in hardware.DTYPES


def test_tf_stays_float32_on_cpus_but_not_on_gpus():
    """XLA:CPU's bf16 decode step is slower than float32 even with AMX: "auto" keeps TF in
    float32 on CPUs; torch (and TF on a bf16 GPU) take bfloat16."""
    amx = {"amx_bf16", "avx512_bf16"}
    assert hardware.choose_dtype("cpu", amx, framework="tf") == "float32"
    assert hardware.choose_dtype("cpu", amx, framework="torch") == "bfloat16"
    assert hardware.choose_dtype("gpu", (), True, framework="tf") == "bfloat16"
    report = hardware.hardware_report(framework="tf")
    assert report["auto_dtype"] == "float32" and "XLA" in report["reason"]


def test_is_x86_names_the_x86_machines():
    assert hardware.is_x86("x86_64") and hardware.is_x86("AMD64") and hardware.is_x86("i686")
    assert not hardware.is_x86("aarch64") and not hardware.is_x86("arm64")
