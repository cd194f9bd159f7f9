"""Word + position embeddings of the BLIP text model (PyTorch); mirrors blip_tf/text_embeddings.py."""

from __future__ import annotations

import torch
from torch import nn

from blip_core.config import BlipTextConfig


class BlipTextEmbeddings(nn.Module):
    """Word + absolute position embeddings, then LayerNorm (BLIP has no token types)."""

    def __init__(self, config: BlipTextConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(
            config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id
        )
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.max_positions = config.max_position_embeddings

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        past_key_values_length: int = 0,
    ) -> torch.Tensor:
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)
        length = inputs_embeds.shape[1]
        if position_ids is None:
            if past_key_values_length + length > self.max_positions:
                raise ValueError(
                    f"sequence of {past_key_values_length + length} tokens exceeds "
                    f"max_position_embeddings={self.max_positions}"
                )
            position_ids = torch.arange(
                past_key_values_length, past_key_values_length + length, device=inputs_embeds.device
            )[None]
        embeddings = inputs_embeds + self.position_embeddings(position_ids)
        return self.dropout(self.LayerNorm(embeddings))


__all__ = ["BlipTextEmbeddings"]
