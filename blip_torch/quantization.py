"""int8 inference for the PyTorch backend through torchao (an optional dependency).

:func:`quantize` replaces the weights of the chosen towers' ``nn.Linear`` layers by torchao
int8 tensors (per-output-row scales) with ``torchao.quantization.quantize_``:

* ``"int8"`` -- :class:`torchao.quantization.Int8WeightOnlyConfig`: int8 weights, activations in
  the model dtype (bfloat16 unless told otherwise).  Halves the bytes a decode step streams.
* ``"int8-dynamic"`` -- :class:`torchao.quantization.Int8DynamicActivationInt8WeightConfig`:
  activations quantized per token at run time too (int8 x int8 products, VNNI/AMX-INT8).

On CPU these kernels pay only under ``torch.compile`` with bfloat16 activations (eager int8
weight-only is slower than float32 there), so :func:`quantize` casts to bfloat16 and opts in
to the compiled decode step (:func:`blip_torch.compile_decoder`) by default.

The vision tower (``parts=("text", "vision")``) is compute bound, not weight bound: int8
weights alone do not help it, int8 x int8 products do.  On x86 CPUs it goes through torchao's
PT2E flow with the ``X86InductorQuantizer`` (dynamic per-tensor activations, per-channel
weights; inductor lowers the pairs to oneDNN int8 linears with fused epilogues).  Measured
for a 384 px BLIP-base image on 2 AVX512-VNNI cores (``python scripts/vision_int8_probe.py``,
``benchmarks/2026-12-03/vision_int8_probe.json``): PT2E 263 ms; torchao's
``Int8DynamicActivationInt8WeightConfig`` 295 ms compiled, 403 ms eager; weight-only int8
800 ms compiled; bfloat16 389 ms compiled, 409 ms eager.  The tower is exported once per
``quantize`` call and compiled on its first call per batch shape (about 17 s for BLIP-base on
2 cores).  Plain calls (``pixel_values`` at the configured size, no attentions or hidden
states asked for) run the int8 graph; any other call runs the tower's float weights, which are
kept (the int8 graph holds its own copies, taken when it was built: weights changed later are
not seen by plain calls).  On other devices the vision tower uses
``Int8DynamicActivationInt8WeightConfig``.

The cross-attention key/value projections of the image states are compute bound too (every
image's ``N`` states through ``2 x layers`` square products, projected once before decoding or
ITM ranking).  With ``compile=True`` on x86 CPUs they become one PT2E int8 graph
(:class:`Int8CrossKeyValues`) for the caption decoder and the retrieval model's text encoder:
measured for 12 BLIP-base layers and one 384 px image, 23 ms vs 52 ms bf16 (8 images: 195 ms
vs 400 ms; ``python scripts/cross_kv_probe.py``, ``benchmarks/2026-12-03/cross_kv_probe.json``).
VQA's decoder reads question states of varying length and keeps its projections.

Embeddings, LayerNorms and the attention products stay in the activation dtype; the tied LM-head weight
is quantized for the head only (the word embeddings keep their float copy).  Linear layers whose
``in_features`` is not a multiple of 8 keep float weights (see ``_IN_FEATURES_MULTIPLE``).

A quantized model is for inference: ``save_pretrained`` / ``state_dict`` round trips are not
supported (save before quantizing).
"""

from __future__ import annotations

import contextlib
import logging
import warnings

import torch
from torch import nn

from blip_core.hardware import is_x86

SCHEMES = ("int8", "int8-dynamic")
PARTS = {"text": ("text_decoder", "text_encoder"), "vision": ("vision_model",)}


@contextlib.contextmanager
def _quiet_import():
    """Silence what importing torchao logs on a CPU-only torch: it tries its CUDA kernel
    libraries (``Failed to load ..._C_cutlass_90a.so``) and registers an Enum with torch's
    pytree (a deprecation warning); neither concerns the CPU paths used here."""
    loggers = [logging.getLogger(name) for name in ("torchao", "torch.utils._pytree")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _torchao(scheme: str):
    try:
        with _quiet_import():
            from torchao.quantization import (
                Int8DynamicActivationInt8WeightConfig,
                Int8WeightOnlyConfig,
                quantize_,
            )
    except ImportError as error:
        raise ImportError(
            f"quantization={scheme!r} needs torchao, which is not installed: "
            "pip install 'blip-twin[fast]' (or pip install torchao)"
        ) from error
    config = Int8WeightOnlyConfig() if scheme == "int8" else Int8DynamicActivationInt8WeightConfig()
    return quantize_, config


# Compiled on CPU (torch 2.13, torchao 0.18), inductor's int8 weight-only product crashes the
# process (SIGSEGV) when a Linear's in_features is not a multiple of 8 (36 and 37 do; 32, 40 and
# every BLIP-base width do not): such layers keep their float weights.
_IN_FEATURES_MULTIPLE = 8


def _quantizable(module: nn.Module, name: str) -> bool:
    return isinstance(module, nn.Linear) and module.in_features % _IN_FEATURES_MULTIPLE == 0


def _towers(model: nn.Module, parts) -> list[nn.Module]:
    from blip_torch.text import BlipTextLMHeadModel, BlipTextModel
    from blip_torch.vision import BlipVisionModel

    if isinstance(model, (BlipTextLMHeadModel, BlipTextModel, BlipVisionModel)):
        return [model]  # a bare tower: quantize all of it
    towers = []
    for part in parts:
        if part not in PARTS:
            raise ValueError(f"quantize parts={parts!r}: {part!r} is not one of {sorted(PARTS)}")
        towers += [getattr(model, name) for name in PARTS[part] if hasattr(model, name)]
    if not towers:
        raise TypeError(f"{type(model).__name__} has no BLIP tower named by parts={parts!r}")
    return towers


def _export_int8(module: nn.Module, example: torch.Tensor, name: str):
    """``module`` (float, eval) exported with a dynamic batch axis, quantized with torchao's
    PT2E flow for x86 CPUs (``X86InductorQuantizer``, dynamic per-tensor activations,
    per-channel weights) and wrapped in ``torch.compile`` (compiled on first call per shape)."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as x86

    with torch.no_grad():
        exported = torch.export.export(
            module, (example,), dynamic_shapes={name: {0: torch.export.Dim.AUTO}}
        ).module()
        quantizer = x86.X86InductorQuantizer()
        quantizer.set_global(x86.get_default_x86_inductor_quantization_config(is_dynamic=True))
        prepared = prepare_pt2e(exported, quantizer)
        prepared(example)  # dynamic activations: no calibration statistics are kept
        graph = torch.compile(convert_pt2e(prepared))
    _freeze_weights()
    return graph


class _Int8Graph:
    """A float module's int8 graph (:func:`_export_int8`), run under autocast to ``dtype``.
    Not an ``nn.Module``: the tower it is attached to keeps its parameters and state-dict
    keys; the graph holds its own int8 copies of the weights (taken when it was built)."""

    def __init__(self, module: nn.Module, example: torch.Tensor, name: str, dtype: torch.dtype):
        self.input_shape = tuple(example.shape[1:])
        self.dtype = dtype
        self.graph = _export_int8(module, example, name)

    def accepts(self, inputs: torch.Tensor) -> bool:
        return inputs.device.type == "cpu" and tuple(inputs.shape[1:]) == self.input_shape

    def _run(self, inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        autocast = torch.autocast("cpu", dtype=self.dtype, enabled=self.dtype != torch.float32)
        with torch.no_grad(), autocast:
            outputs = self.graph(inputs.float())
        return tuple(out.to(self.dtype) for out in outputs)


class Int8VisionGraph(_Int8Graph):
    """A BLIP vision tower's plain call as an int8 graph for x86 CPUs.

    Called with ``pixel_values`` ``(batch, 3, H, W)`` at the exported image size; returns
    ``(last_hidden_state, pooler_output)`` in ``dtype``.
    """

    def __init__(self, vision: nn.Module, dtype: torch.dtype):
        import copy

        size = vision.config.image_size
        float_tower = copy.deepcopy(vision).float().eval()
        example = torch.zeros(2, 3, size, size)
        super().__init__(_PlainVision(float_tower), example, "pixel_values", dtype)

    def __call__(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self._run(pixel_values)


class Int8CrossKeyValues(_Int8Graph):
    """Every cross-attention layer's key and value projections of a BLIP text tower as one
    int8 graph for x86 CPUs: like the vision tower, they are compute bound (each image's
    ``N`` states through ``2 x layers`` square products, 8 GFLOP for BLIP-base at 384 px).

    Called with encoder states ``(batch, tokens, width)`` of the exported ``tokens`` (the
    vision tower's patches + 1); returns ``[(keys, values), ...]`` per layer, each
    ``(batch, heads, tokens, head_dim)`` in ``dtype``.
    """

    def __init__(self, text: nn.Module, tokens: int, dtype: torch.dtype):
        import copy

        layers = [layer.crossattention.self for layer in text.encoder.layer]
        projections = _CrossProjections(copy.deepcopy(nn.ModuleList(layers)).float().eval())
        example = torch.zeros(2, tokens, text.config.encoder_hidden_size)
        super().__init__(projections, example, "states", dtype)

    def __call__(self, states: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        outputs = self._run(states)
        return list(zip(outputs[0::2], outputs[1::2]))


class _PlainVision(nn.Module):
    """The vision tower's plain call, as a module returning a tuple (what export traces)."""

    def __init__(self, vision: nn.Module):
        super().__init__()
        self.vision = vision

    def forward(self, pixel_values: torch.Tensor):
        out = self.vision(pixel_values=pixel_values)
        return out.last_hidden_state, out.pooler_output


class _CrossProjections(nn.Module):
    """Cross-attention layers' key/value projections as one module returning a flat tuple."""

    def __init__(self, layers: nn.ModuleList):
        super().__init__()
        self.layers = layers

    def forward(self, states: torch.Tensor):
        return tuple(t for layer in self.layers for t in layer.project_key_value(states))


def _freeze_weights() -> None:
    """Inductor's ``freezing``: weights become constants of the compiled graph, which lets it
    pre-pack the int8 weights for oneDNN (the same process-wide switch
    :func:`blip_torch.compile_vision` sets).  Passing it for this graph only
    (``torch.compile(..., options={"freezing": True})``) fails to compile in torch 2.13:
    ``UnsupportedOperatorException: onednn.qlinear_prepack.default``."""
    import torch._inductor.config as inductor_config

    inductor_config.freezing = True


def _image_cross_towers(model: nn.Module, towers: list[nn.Module]) -> list[tuple[nn.Module, int]]:
    """``(text model, image tokens)`` for the towers being quantized whose cross-attention keys
    and values are projected once from the image states: the caption decoder and the
    retrieval model's text encoder (VQA's decoder reads question states, of varying length)."""
    from blip_torch.models import BlipForConditionalGeneration, BlipForImageTextRetrieval

    if isinstance(model, BlipForConditionalGeneration):
        text, tower = model.text_decoder.bert, model.text_decoder
    elif isinstance(model, BlipForImageTextRetrieval):
        text = tower = model.text_encoder
    else:
        return []
    vision = model.config.vision_config
    tokens = (vision.image_size // vision.patch_size) ** 2 + 1
    return [(text, tokens)] if any(tower is t for t in towers) else []


def quantize(
    model: nn.Module,
    scheme: str = "int8",
    dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
    parts: tuple[str, ...] = ("text",),
    compile: bool = True,
) -> nn.Module:
    """Quantize ``model``'s Linear layers to int8 in place (see the module notes); returns it.

    ``scheme``: ``"int8"`` or ``"int8-dynamic"`` (for the text towers; the vision tower always
    gets int8 x int8 products, see the module notes); ``dtype``: the activation dtype (default
    bfloat16; float32 works but is slow on CPU); ``device``: moved there first; ``parts``:
    ``"text"`` (decoder and text encoder, the default), ``"vision"`` (compiled on first call
    whatever ``compile`` says: its int8 graph only pays compiled); ``compile``: opt in to the
    compiled decode step (:func:`blip_torch.compile_decoder`) when the model has a decoder and,
    on x86 CPUs, to the int8 graph of the cross-attention key/value projections
    (:class:`Int8CrossKeyValues`) of the caption decoder or the retrieval text encoder.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"quantization={scheme!r} is not supported; allowed: {SCHEMES}")
    quantize_, config = _torchao(scheme)
    # torch.compile's cache asks every tensor subclass for a stable hash; torchao's int8 tensors
    # have none, so the first compiled step warns (the cache key falls back; results unchanged).
    warnings.filterwarnings("ignore", message=r".*does not implement _stable_hash_for_caching")
    # inductor's oneDNN int8 lowering copies a zero-point tensor with torch.tensor(tensor),
    # which warns once per linear at compile time (its code, not ours; results unchanged).
    warnings.filterwarnings(
        "ignore", message=r"To copy construct from a tensor", module=r"torch\._inductor"
    )
    towers = _towers(model, parts)
    target = dtype if dtype is not None else torch.bfloat16
    if device is not None:
        model.to(device)
    device = next(model.parameters()).device
    from blip_torch.vision import BlipVisionModel

    visions = [t for t in towers if isinstance(t, BlipVisionModel)]
    plan = [(t, config) for t in towers if not isinstance(t, BlipVisionModel)]
    int8_graphs = device.type == "cpu" and is_x86()
    if visions and int8_graphs:
        for vision in visions:  # exported from the weights as they are, before the cast
            vision.int8_graph = None  # a graph built earlier must not be traced into this one
            vision.int8_graph = Int8VisionGraph(vision, target)
    elif visions:
        plan += [(vision, _torchao("int8-dynamic")[1]) for vision in visions]
    for text, tokens in _image_cross_towers(model, towers):
        text.int8_cross_kv = None  # nor may an earlier graph outlive a re-quantization
        if compile and int8_graphs:
            text.int8_cross_kv = Int8CrossKeyValues(text, tokens, target)
    model.to(target)
    for tower, tower_config in plan:
        quantize_(tower, tower_config, filter_fn=_quantizable)
    if compile:
        from blip_torch.generation import compile_decoder
        from blip_torch.text import BlipTextLMHeadModel

        if isinstance(model, BlipTextLMHeadModel) or hasattr(model, "text_decoder"):
            compile_decoder(model)
    return model


__all__ = ["SCHEMES", "Int8CrossKeyValues", "Int8VisionGraph", "quantize"]
