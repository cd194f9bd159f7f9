"""Self- and cross-attention of the BLIP text tower (PyTorch): per-head projections, the
cached / slot-cache key-value paths, and the fused query/key/value product used for inference."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from blip_core.config import BlipTextConfig
from blip_torch.cache import SelfSlots


class BlipTextSelfAttention(nn.Module):
    def __init__(self, config: BlipTextConfig, is_cross_attention: bool):
        super().__init__()
        self.num_attention_heads = config.num_attention_heads
        self.attention_head_size = config.hidden_size // config.num_attention_heads
        self.all_head_size = config.hidden_size
        kv_width = config.encoder_hidden_size if is_cross_attention else config.hidden_size
        self.query = nn.Linear(config.hidden_size, self.all_head_size)
        self.key = nn.Linear(kv_width, self.all_head_size)
        self.value = nn.Linear(kv_width, self.all_head_size)
        self.dropout = config.attention_probs_dropout_prob
        self.is_cross_attention = is_cross_attention
        self._qkv: tuple | None = None  # (weight, bias, data pointers): fuse_projections()

    def fuse_projections(self) -> bool:
        """Store the query/key/value weights (and biases) as row blocks of one ``(3D, D)``
        tensor, so inference runs one product instead of three; returns whether they are fused.

        The three ``nn.Linear`` parameters stay (same names, same state-dict keys) and become
        views of the fused storage: no extra memory, and an in-place weight update is seen by
        both.  Self-attention only (cross-attention keys/values are projected once per image).
        Float weights only: torchao-quantized or otherwise wrapped weights stay unfused.  If a
        later ``.to()`` or assignment replaces a weight, :meth:`_fused` notices and the layer
        falls back to three products.
        """
        if self.is_cross_attention:
            return False
        if self._fused() is not None:
            return True
        linears = (self.query, self.key, self.value)
        tensors = [t for lin in linears for t in (lin.weight, lin.bias)]
        if any(t is None or type(t.data) is not torch.Tensor for t in tensors):
            return False
        with torch.no_grad():
            weight = torch.cat([lin.weight.detach() for lin in linears])
            bias = torch.cat([lin.bias.detach() for lin in linears])
        rows = self.all_head_size
        for i, lin in enumerate(linears):
            lin.weight.data = weight[i * rows : (i + 1) * rows]
            lin.bias.data = bias[i * rows : (i + 1) * rows]
        self._qkv = (weight, bias, self._pointers())
        return True

    def _pointers(self) -> tuple[int, ...]:
        return tuple(
            t.data_ptr()
            for lin in (self.query, self.key, self.value)
            for t in (lin.weight, lin.bias)
        )

    def _fused(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The fused ``(weight, bias)`` if the three Linear layers still view it, else None."""
        if self._qkv is None:
            return None
        weight, bias, pointers = self._qkv
        if torch.compiler.is_compiling():  # checked eagerly when the decoder session opens
            return weight, bias
        try:
            same = self._pointers() == pointers and self.query.weight.dtype == weight.dtype
        except (RuntimeError, NotImplementedError):  # a wrapped tensor without storage
            same = False
        if not same:
            self._qkv = None  # replaced since (.to(), assignment, quantization): unfused
            return None
        return weight, bias

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape  # (B, T, D) -> (B, heads, T, head_dim)
        return x.view(batch, length, self.num_attention_heads, self.attention_head_size).transpose(
            1, 2
        )

    def project_key_value(self, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values ``(B, heads, T, head_dim)`` for ``states`` ``(B, T, D_kv)``."""
        return self._heads(self.key(states)), self._heads(self.value(states))

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        past_key_value: tuple[torch.Tensor, torch.Tensor] | None = None,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None, tuple[torch.Tensor, torch.Tensor]]:
        fused = None
        if not self.is_cross_attention and self._qkv is not None and not torch.is_grad_enabled():
            fused = self._fused()  # inference only: the fused product has no parameter grads
        if fused is not None:
            query, new_key, new_value = (
                self._heads(x)
                for x in F.linear(hidden_states, *fused).split(self.all_head_size, dim=-1)
            )
        else:
            query = self._heads(self.query(hidden_states))
        if self.is_cross_attention:
            if past_key_value is not None:  # computed once per generate call
                key, value = past_key_value
            else:
                key, value = self.project_key_value(encoder_hidden_states)
        elif past_key_value is not None and isinstance(past_key_value[0], SelfSlots):
            cache = past_key_value[0]  # write the new keys/values into their slots
            if fused is None:
                new_key, new_value = self.project_key_value(hidden_states)
            cache.key.index_copy_(2, cache.slots, new_key)
            cache.value.index_copy_(2, cache.slots, new_value)
            key, value = cache.key, cache.value
        else:
            if fused is None:
                new_key, new_value = self.project_key_value(hidden_states)
            key, value = new_key, new_value
            if past_key_value is not None:
                key = torch.cat([past_key_value[0], key], dim=2)
                value = torch.cat([past_key_value[1], value], dim=2)
        dropout = self.dropout if self.training else 0.0
        scale = self.attention_head_size**-0.5
        explicit = output_attentions or (query.shape[2] == 1 and not self.training)
        rows, heads, length, dim = query.shape
        groups = rows // key.shape[0] if self.is_cross_attention else 1
        if groups > 1 and (
            output_attentions or _mask_rows(attention_mask) not in (1, key.shape[0])
        ):
            # per-row probabilities or masks: one copy of the image's keys/values per row
            if _mask_rows(attention_mask) == key.shape[0] != 1:
                attention_mask = attention_mask.repeat_interleave(groups, 0)
            key, value = key.repeat_interleave(groups, 0), value.repeat_interleave(groups, 0)
            groups = 1
        if groups > 1:  # rows i*g .. i*g+g-1 (beams, samples) share image i's keys/values:
            # their queries attend as one block, so the keys/values are read once per image
            query = query.reshape(key.shape[0], groups, heads, length, dim).transpose(1, 2)
            query = query.reshape(key.shape[0], heads, groups * length, dim)
        if explicit:
            # The explicit product: always when the probabilities are asked for, and for one
            # query (every decode step), where it is 1.3-1.6x cheaper than SDPA's CPU flash
            # kernel (scripts/bench_lowp.py's step rows).  Softmax in float32.
            scores = torch.matmul(query, key.transpose(-1, -2)) * scale
            if attention_mask is not None:
                scores = scores + attention_mask
            probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(value.dtype)
            context = torch.matmul(F.dropout(probs, dropout, self.training), value)
            probs = probs if output_attentions else None
        else:
            probs = None
            context = F.scaled_dot_product_attention(
                query, key, value, attn_mask=attention_mask, dropout_p=dropout, scale=scale
            )
        if groups > 1:  # back to one row per query row
            context = context.reshape(key.shape[0], heads, groups, length, dim).transpose(1, 2)
            context = context.reshape(rows, heads, length, dim)
        context = context.transpose(1, 2).reshape(rows, length, self.all_head_size)
        return context, probs, (key, value)


def _mask_rows(mask: torch.Tensor | None) -> int:
    return 1 if mask is None else mask.shape[0]


def fuse_projections(model: nn.Module) -> int:
    """Fuse the query/key/value projections of every text self-attention in ``model``
    (:meth:`BlipTextSelfAttention.fuse_projections`); returns how many are fused.  The decoder
    session calls it on the text decoder; state-dict keys and memory are unchanged."""
    with torch.no_grad():
        return sum(
            module.fuse_projections()
            for module in model.modules()
            if isinstance(module, BlipTextSelfAttention)
        )
