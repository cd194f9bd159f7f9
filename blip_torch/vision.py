"""The BLIP ViT image encoder (PyTorch).  Parameter names equal the transformers state-dict keys."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from blip_core.config import BlipVisionConfig
from blip_core.outputs import BaseModelOutputWithPooling


class BlipVisionEmbeddings(nn.Module):
    """Patchify with a stride-`patch` convolution, prepend the class token, add positions."""

    def __init__(self, config: BlipVisionConfig):
        super().__init__()
        self.config = config
        self.embed_dim = config.hidden_size
        self.patch_size = config.patch_size
        self.class_embedding = nn.Parameter(torch.zeros(1, 1, self.embed_dim))
        self.patch_embedding = nn.Conv2d(
            3, self.embed_dim, kernel_size=self.patch_size, stride=self.patch_size
        )
        self.num_positions = config.num_positions
        self.position_embedding = nn.Parameter(torch.zeros(1, self.num_positions, self.embed_dim))

    def interpolate_pos_encoding(self, num_patches: int, height: int, width: int) -> torch.Tensor:
        """Bicubically resize the patch position grid for a ``height x width`` input."""
        num_positions = self.num_positions - 1
        if num_patches == num_positions and height == width:
            return self.position_embedding
        class_pos, patch_pos = self.position_embedding[:, :1], self.position_embedding[:, 1:]
        side = int(num_positions**0.5)
        grid = patch_pos.reshape(1, side, side, self.embed_dim).permute(0, 3, 1, 2)
        grid = F.interpolate(
            grid,
            size=(height // self.patch_size, width // self.patch_size),
            mode="bicubic",
            align_corners=False,
        )
        patch_pos = grid.permute(0, 2, 3, 1).reshape(1, -1, self.embed_dim)
        return torch.cat([class_pos, patch_pos], dim=1)

    def forward(
        self, pixel_values: torch.Tensor, interpolate_pos_encoding: bool = False
    ) -> torch.Tensor:
        batch, _, height, width = pixel_values.shape
        dtype = self.patch_embedding.weight.dtype
        patches = self.patch_embedding(pixel_values.to(dtype)).flatten(2).transpose(1, 2)
        cls = self.class_embedding.expand(batch, 1, -1).to(dtype)
        embeddings = torch.cat([cls, patches], dim=1)  # (B, 1 + N, D)
        if interpolate_pos_encoding:
            positions = self.interpolate_pos_encoding(embeddings.shape[1] - 1, height, width)
        else:
            if embeddings.shape[1] > self.num_positions:
                raise ValueError(
                    f"pixel_values of {height}x{width} give {embeddings.shape[1] - 1} patches, "
                    f"the model has positions for {self.num_positions - 1} "
                    f"({self.config.image_size}x{self.config.image_size}); resize the image or "
                    "pass interpolate_pos_encoding=True"
                )
            positions = self.position_embedding[:, : embeddings.shape[1]]
        return embeddings + positions.to(dtype)


class BlipAttention(nn.Module):
    """Multi-head self-attention with a fused ``qkv`` projection and no mask."""

    def __init__(self, config: BlipVisionConfig):
        super().__init__()
        self.embed_dim = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.head_dim = self.embed_dim // self.num_heads
        self.scale = self.head_dim**-0.5
        self.dropout = config.attention_dropout
        self.qkv = nn.Linear(self.embed_dim, 3 * self.embed_dim)
        self.projection = nn.Linear(self.embed_dim, self.embed_dim)

    def forward(
        self, hidden_states: torch.Tensor, output_attentions: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch, length, _ = hidden_states.shape
        qkv = self.qkv(hidden_states).reshape(batch, length, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, T, head_dim)
        dropout = self.dropout if self.training else 0.0
        if output_attentions:
            probs = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) * self.scale, dim=-1)
            probs_dropped = F.dropout(probs, dropout, self.training)
            context = torch.matmul(probs_dropped, v)
        else:
            probs = None
            context = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, scale=self.scale)
        context = context.transpose(1, 2).reshape(batch, length, self.embed_dim)
        return self.projection(context), probs


class BlipMLP(nn.Module):
    def __init__(self, config: BlipVisionConfig):
        super().__init__()
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(hidden_states)))  # exact erf GELU


class BlipEncoderLayer(nn.Module):
    """Pre-LN transformer block."""

    def __init__(self, config: BlipVisionConfig):
        super().__init__()
        self.self_attn = BlipAttention(config)
        self.layer_norm1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = BlipMLP(config)
        self.layer_norm2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(
        self, hidden_states: torch.Tensor, output_attentions: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        attn, probs = self.self_attn(self.layer_norm1(hidden_states), output_attentions)
        hidden_states = hidden_states + attn
        hidden_states = hidden_states + self.mlp(self.layer_norm2(hidden_states))
        return hidden_states, probs


class BlipEncoder(nn.Module):
    def __init__(self, config: BlipVisionConfig):
        super().__init__()
        self.layers = nn.ModuleList(
            [BlipEncoderLayer(config) for _ in range(config.num_hidden_layers)]
        )

    def forward(
        self,
        inputs_embeds: torch.Tensor,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> tuple[torch.Tensor, tuple | None, tuple | None]:
        hidden_states = inputs_embeds
        all_hidden = (hidden_states,) if output_hidden_states else None
        all_attn = () if output_attentions else None
        for layer in self.layers:
            hidden_states, probs = layer(hidden_states, output_attentions)
            if output_hidden_states:
                all_hidden = all_hidden + (hidden_states,)
            if output_attentions:
                all_attn = all_attn + (probs,)
        return hidden_states, all_hidden, all_attn


class BlipVisionModel(nn.Module):
    """ViT encoder; ``last_hidden_state`` is post-LayerNormed, the pooler re-applies it to CLS."""

    config_class = BlipVisionConfig
    main_input_name = "pixel_values"

    def __init__(self, config: BlipVisionConfig):
        super().__init__()
        self.config = config
        self.embeddings = BlipVisionEmbeddings(config)
        self.encoder = BlipEncoder(config)
        self.post_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        # Set by blip_torch.quantize(..., parts=("vision",)) on x86 CPUs: the int8 graph that
        # plain calls run (blip_torch.quantization.Int8VisionGraph); not a submodule.
        self.int8_graph = None

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        interpolate_pos_encoding: bool = False,
    ) -> BaseModelOutputWithPooling:
        if pixel_values is None:
            raise ValueError("You have to specify pixel_values")
        if pixel_values.ndim != 4 or pixel_values.shape[1] != 3:
            raise ValueError(
                f"pixel_values must have shape (batch, 3, height, width), got {tuple(pixel_values.shape)}"
            )
        graph = self.int8_graph
        if (
            graph is not None
            and not (output_attentions or output_hidden_states or interpolate_pos_encoding)
            and graph.accepts(pixel_values)
        ):
            last_hidden_state, pooled = graph(pixel_values)
            out = BaseModelOutputWithPooling(
                last_hidden_state=last_hidden_state, pooler_output=pooled
            )
            return out if return_dict is not False else out.to_tuple()
        hidden = self.embeddings(pixel_values, interpolate_pos_encoding=interpolate_pos_encoding)
        hidden, all_hidden, all_attn = self.encoder(
            hidden, bool(output_attentions), bool(output_hidden_states)
        )
        last_hidden_state = self.post_layernorm(hidden)
        pooled = self.post_layernorm(last_hidden_state[:, 0, :])
        out = BaseModelOutputWithPooling(
            last_hidden_state=last_hidden_state,
            pooler_output=pooled,
            hidden_states=all_hidden,
            attentions=all_attn,
        )
        return out if return_dict is not False else out.to_tuple()

    def get_input_embeddings(self) -> nn.Module:
        return self.embeddings


def compile_vision(model: nn.Module, freezing: bool = True) -> nn.Module:
    """``torch.compile`` the vision tower of ``model`` (or ``model`` itself if it is one) in
    place, for inference; returns ``model``.

    Every call site (``generate``, ``rank_answers``, ``encode_images``, forward) then runs the
    compiled tower; state-dict keys are unchanged.  The first call per input shape compiles
    (about 14 s for BLIP-base on 2 CPU cores).  ``freezing=True`` sets inductor's
    process-wide ``freezing`` flag: under ``torch.no_grad()`` the weights become constants of
    the compiled graph (oneDNN-packed linears, fused epilogues) -- measured 0.46 -> 0.41 s for
    a 384 px BLIP-base forward on 2 cores (``python scripts/benchmark.py``); weights changed
    after the first call are then not seen.  Outputs match eager within float rounding
    (~4e-6 on BLIP-base).  The decode step has its own switch,
    :func:`blip_torch.compile_decoder`; ``pipeline(..., compile=True)`` and
    ``blip caption --compile`` turn on both.  A tower quantized to int8
    (``blip_torch.quantize(..., parts=("vision",))``) is left as it is: its int8 graph is
    compiled already.
    """
    if freezing:
        import torch._inductor.config as inductor_config

        inductor_config.freezing = True
    vision = model if isinstance(model, BlipVisionModel) else getattr(model, "vision_model", None)
    if not isinstance(vision, BlipVisionModel):
        raise TypeError(f"{type(model).__name__} has no BLIP vision tower to compile")
    if vision.int8_graph is None:  # an int8 tower's graph is compiled already
        vision.compile()
    return model
