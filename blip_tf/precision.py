"""Inference dtypes for the Keras backend: the ``dtype=`` argument, ``"auto"``, policy scopes.

``dtype`` is a Keras dtype policy for the model and every sub-layer:

* ``None`` / ``"float32"``: float32 weights and compute (the library default, as transformers);
* ``"bfloat16"`` / ``"float16"``: weights *and* compute in that dtype (a decode step then reads
  half the weight bytes);
* ``"mixed_bfloat16"`` / ``"mixed_float16"``: float32 variables, compute in the low dtype (Keras
  casts each weight as a layer reads it);
* ``"auto"``: :func:`blip_core.hardware.choose_dtype` (the one rule, shared with every backend)
  for the device TensorFlow runs on: the first visible GPU if any (bfloat16 where its compute
  capability is 8.0 or newer), else the CPU, where it stays float32: XLA:CPU's bfloat16 decode
  step is slower than float32 even on AMX CPUs (``scripts/tf_dtype_probe.py``; README).  Where it
  picks bfloat16 it is the full ``"bfloat16"`` policy, not the mixed one.

Keras gives a policy only to the layer it is passed to; :func:`scoped_init` (applied to every
blip_tf model class) makes it the thread's default policy while that model's constructor runs,
so every sub-layer and child model is built in it.

What stays in float32 under a low-precision policy (checked in
``tests/tf/test_low_precision.py``):

* **LayerNorm statistics**: Keras 3's ``ops.layer_normalization`` (which
  ``keras.layers.LayerNormalization`` calls) converts its input to
  ``result_type(x.dtype, "float32")`` = float32, computes mean, variance, scale and shift in
  float32, and rounds once to the compute dtype at the end;
* **Softmax**: the attention scores are cast to float32 before scaling, the additive mask and
  the softmax, and the probabilities are rounded back to the compute dtype for the value product
  (:func:`blip_tf.attention.attend`, :class:`blip_tf.vision.BlipAttention`);
* **The logits given to the search**: the compiled decode step returns float32 logits; sequence
  scores (``log_probs``), the LM loss and the ITM softmax run in float32;
* attention masks are built in the compute dtype (the ``-10000`` and ``finfo.min`` fills stay
  large negatives) and added to the float32 scores.
"""

from __future__ import annotations

import contextlib
import functools

import keras
import tensorflow as tf

from blip_core import hardware

POLICIES = ("float32", "bfloat16", "float16", "mixed_bfloat16", "mixed_float16")


def gpu_supports_bf16() -> bool | None:
    """Whether the first visible GPU runs bfloat16 natively (compute capability >= 8.0);
    None where TensorFlow does not report a compute capability."""
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return None
    capability = tf.config.experimental.get_device_details(gpus[0]).get("compute_capability")
    return None if capability is None else tuple(capability) >= (8, 0)


def device_kind() -> str:
    """``"gpu"`` when TensorFlow sees a GPU (it places ops there by default), else ``"cpu"``."""
    return "gpu" if tf.config.list_physical_devices("GPU") else "cpu"


def auto_dtype() -> str:
    """The policy name ``"auto"`` resolves to here: ``"bfloat16"`` or ``"float32"``."""
    kind = device_kind()
    if kind == "cpu":
        return hardware.choose_dtype("cpu", hardware.cpu_flags(), framework="tf")
    return hardware.choose_dtype(kind, (), gpu_supports_bf16(), framework="tf")


def resolve_dtype(value, argument: str = "dtype"):
    """``value`` as something :func:`keras.dtype_policies.get` accepts, or None (float32).

    Strings: ``"auto"``, one of :data:`POLICIES`, or an alias (``"bf16"``, ``"fp16"``,
    ``"fp32"``, ``"half"``, ``"float"``); case-insensitive.  A ``keras.DTypePolicy`` or its
    serialised dict (what ``get_config`` writes) is passed through.
    """
    if value is None or isinstance(value, (dict, keras.DTypePolicy)):
        return value
    if isinstance(value, str):
        name = hardware.dtype_name(value)
        if name == "auto":
            return auto_dtype()
        if name in POLICIES:
            return name
    raise ValueError(
        f"{argument}={value!r} is not understood; allowed: 'auto', one of {list(POLICIES)}, "
        f"an alias {sorted(hardware.DTYPE_ALIASES)}, a keras.DTypePolicy, or None (float32)"
    )


@contextlib.contextmanager
def dtype_policy_scope(policy):
    """Make ``policy`` Keras' default dtype policy in this thread while the context is open
    (Keras keeps the default in thread-local state), restoring the previous one after."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(keras.dtype_policies.get(policy))
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def scoped_init(init):
    """Wrap a model constructor so that a ``dtype=`` keyword (resolved by
    :func:`resolve_dtype`; ``"auto"`` included) applies to every layer it builds."""
    if getattr(init, "_blip_dtype_scoped", False):
        return init

    @functools.wraps(init)
    def wrapper(self, *args, **kwargs):
        dtype = resolve_dtype(kwargs.get("dtype"))
        if dtype is None:
            kwargs.pop("dtype", None)
            return init(self, *args, **kwargs)
        kwargs["dtype"] = dtype
        with dtype_policy_scope(dtype):
            return init(self, *args, **kwargs)

    wrapper._blip_dtype_scoped = True
    return wrapper


def hardware_report() -> dict:
    """:func:`blip_core.hardware.hardware_report` for the device TensorFlow runs on, plus what
    TensorFlow sees: its version, Keras' version, the thread pools and the GPUs."""
    kind = device_kind()
    report = hardware.hardware_report(
        kind, gpu_supports_bf16() if kind != "cpu" else None, framework="tf"
    )
    report["tensorflow"] = tf.__version__
    report["keras"] = keras.__version__
    report["tf_intra_op_threads"] = tf.config.threading.get_intra_op_parallelism_threads()
    report["gpus"] = [gpu.name for gpu in tf.config.list_physical_devices("GPU")]
    return report


__all__ = [
    "POLICIES",
    "auto_dtype",
    "device_kind",
    "dtype_policy_scope",
    "gpu_supports_bf16",
    "hardware_report",
    "resolve_dtype",
    "scoped_init",
]
