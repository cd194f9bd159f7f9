"""The heads of the BLIP text model (PyTorch): pooler, LM prediction head and the LM loss;
mirrors blip_tf/text_heads.py."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from blip_core.config import BlipTextConfig
from blip_core.constants import IGNORE_INDEX


class BlipTextPooler(nn.Module):
    def __init__(self, config: BlipTextConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(hidden_states[:, 0]))


class BlipTextPredictionHeadTransform(nn.Module):
    def __init__(self, config: BlipTextConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(F.gelu(self.dense(hidden_states)))


class BlipTextLMPredictionHead(nn.Module):
    """Transform, then the vocabulary projection; ``decoder.weight`` is tied to the word embeddings
    by the owning :class:`BlipTextLMHeadModel`; ``bias`` is ``cls.predictions.bias``."""

    def __init__(self, config: BlipTextConfig):
        super().__init__()
        self.transform = BlipTextPredictionHeadTransform(config)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return F.linear(self.transform(hidden_states), self.decoder.weight, self.bias)


class BlipTextOnlyMLMHead(nn.Module):
    def __init__(self, config: BlipTextConfig):
        super().__init__()
        self.predictions = BlipTextLMPredictionHead(config)

    def forward(self, sequence_output: torch.Tensor) -> torch.Tensor:
        return self.predictions(sequence_output)


def lm_loss(
    logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float, reduction: str = "mean"
) -> torch.Tensor:
    """Next-token cross-entropy: logits ``(B, T, V)`` at t predict labels at t+1; -100 ignored."""
    shifted = logits[:, :-1, :].contiguous()
    targets = labels[:, 1:].contiguous().to(shifted.device)
    loss = F.cross_entropy(
        shifted.view(-1, shifted.shape[-1]),
        targets.view(-1),
        ignore_index=IGNORE_INDEX,
        reduction=reduction,
        label_smoothing=label_smoothing,
    )
    if reduction == "none":
        loss = loss.view(logits.shape[0], -1).sum(1)
    return loss


__all__ = [
    "BlipTextLMPredictionHead",
    "BlipTextOnlyMLMHead",
    "BlipTextPooler",
    "BlipTextPredictionHeadTransform",
    "lm_loss",
]
