"""Inference dtypes for the PyTorch backend: ``torch_dtype``/``dtype`` arguments, ``"auto"``.

``"auto"`` applies :func:`blip_core.hardware.choose_dtype` (the one rule, shared with every
backend) to the device the model will run on: bfloat16 on CPUs with AMX-BF16 / AVX-512 BF16
and on GPUs that support bf16, float32 elsewhere.  The library default stays float32
(``torch_dtype=None``), as in transformers.

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


def auto_dtype(device: str | torch.device | None = None) -> torch.dtype:
    """The dtype ``"auto"`` picks for ``device`` (default CPU)."""
    device = torch.device(device if device is not None else "cpu")
    if device.type == "cpu":
        name = hardware.choose_dtype("cpu", hardware.cpu_flags())
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
    report = hardware.hardware_report(device.type, gpu_supports_bf16(device))
    report["torch"] = torch.__version__
    report["torch_threads"] = torch.get_num_threads()
    report["mkldnn"] = bool(torch.backends.mkldnn.is_available())
    if device.type == "cuda" and torch.cuda.is_available():
        report["gpu"] = torch.cuda.get_device_name(device)
    return report


__all__ = ["auto_dtype", "gpu_supports_bf16", "hardware_report", "resolve_dtype"]
