"""The PyTorch backend adapter (:class:`blip_core.adapter.Backend`): tensors, weights, task ops."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from blip_torch.cache import empty_self_kv
from blip_torch.checkpoint import assign_state, expected_shapes, skip_init, state_to_numpy
from blip_torch.generation import TorchDecoderSession


class TorchBackend:
    """:class:`blip_core.adapter.Backend` for ``blip_torch``."""

    name = "torch"

    # -- tensors --------------------------------------------------------------------------------
    @staticmethod
    def to_numpy(x) -> np.ndarray | None:
        if x is None:
            return None
        if isinstance(x, torch.Tensor):
            if x.dtype in (torch.bfloat16, torch.float16):  # numpy has no bfloat16
                x = x.float()
            return x.detach().cpu().numpy()
        return np.asarray(x)

    @staticmethod
    def from_numpy(array: np.ndarray, like=None) -> torch.Tensor:
        tensor = torch.from_numpy(np.ascontiguousarray(array))
        return tensor if like is None else tensor.to(like.device)

    @staticmethod
    def check_device(device) -> str:
        """``device`` checked (:func:`blip_torch.precision.check_device`), as its name."""
        from blip_torch.precision import check_device

        return str(check_device(device))

    @staticmethod
    def inference():
        return torch.no_grad()

    @staticmethod
    def as_tensor(x, like=None) -> torch.Tensor:
        """``x`` as a tensor (a list or numpy array converted; on ``like``'s device)."""
        if not isinstance(x, torch.Tensor):
            x = torch.as_tensor(np.asarray(x))
        return x if like is None else x.to(like.device)

    @staticmethod
    def take(x, indices: np.ndarray) -> torch.Tensor:
        return x.index_select(0, torch.as_tensor(np.asarray(indices), device=x.device))

    @staticmethod
    def model_class(name: str) -> type:
        import blip_torch

        try:
            return getattr(blip_torch, name)
        except AttributeError:
            raise ValueError(f"blip_torch has no model class {name!r}") from None

    # -- weights --------------------------------------------------------------------------------
    @staticmethod
    def build_empty(cls: type, config, **kwargs) -> nn.Module:
        with torch.device("meta"), skip_init():  # every weight comes from the checkpoint
            model = cls(config, **kwargs)
        return model.eval()

    @staticmethod
    def expected_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
        return expected_shapes(model)

    @staticmethod
    def assign(model: nn.Module, state: Mapping[str, np.ndarray]) -> None:
        assign_state(model, state)

    @staticmethod
    def canonical_state(model: nn.Module) -> dict[str, np.ndarray]:
        return state_to_numpy(model)

    # -- task operations ------------------------------------------------------------------------
    @staticmethod
    def image_states(model, pixel_values, interpolate_pos_encoding: bool) -> torch.Tensor:
        pixel_values = TorchBackend.as_tensor(
            pixel_values, model.vision_model.embeddings.patch_embedding.weight
        )
        return model.vision_model(
            pixel_values=pixel_values, interpolate_pos_encoding=interpolate_pos_encoding
        ).last_hidden_state

    @staticmethod
    def encode_text(text_model, input_ids, attention_mask, encoder_states=None) -> torch.Tensor:
        device = text_model.embeddings.word_embeddings.weight.device
        input_ids = TorchBackend.as_tensor(input_ids).to(device)
        if attention_mask is not None:
            attention_mask = TorchBackend.as_tensor(attention_mask).to(device)
        encoder_mask = None
        if encoder_states is not None:
            encoder_mask = torch.ones(encoder_states.shape[:2], dtype=torch.long, device=device)
        return text_model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            encoder_hidden_states=encoder_states,
            encoder_attention_mask=encoder_mask,
        ).last_hidden_state

    @staticmethod
    def open_session(decoder, encoder_states, encoder_mask, expansion: int, capacity: int):
        if encoder_mask is not None:
            encoder_mask = TorchBackend.as_tensor(encoder_mask, encoder_states)
        return TorchDecoderSession(decoder, encoder_states, encoder_mask, expansion, capacity)

    @staticmethod
    def sequence_log_probs(session, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return session.log_probs(ids, mask).cpu().numpy()

    @staticmethod
    def itc_image(model, image_states) -> torch.Tensor:
        return F.normalize(model.vision_proj(image_states[:, 0, :]), dim=-1)

    @staticmethod
    def itc_text(model, input_ids, attention_mask) -> torch.Tensor:
        states = TorchBackend.encode_text(model.text_encoder, input_ids, attention_mask)
        return F.normalize(model.text_proj(states[:, 0, :]), dim=-1)

    @staticmethod
    def itm_probability(model, image_states, input_ids, attention_mask) -> np.ndarray:
        """One image against ``P`` texts projects its cross keys/values once and shares them."""
        device = image_states.device
        input_ids = TorchBackend.as_tensor(input_ids).to(device)
        if attention_mask is not None:
            attention_mask = TorchBackend.as_tensor(attention_mask).to(device)
        rows = input_ids.shape[0]
        past = []
        for k, v in model.text_encoder.cross_key_values(image_states):
            # one image's keys/values are not repeated per text: its texts attend as one block
            empty = empty_self_kv(k, rows)
            past.append((empty, empty, k, v))
        states = model.text_encoder(
            input_ids=input_ids,
            attention_mask=attention_mask,
            encoder_attention_mask=torch.ones(
                image_states.shape[:2], dtype=torch.long, device=device
            ),
            past_key_values=tuple(past),
        ).last_hidden_state
        logits = model.itm_head(states[:, 0, :]).float()
        return torch.softmax(logits, dim=-1)[:, 1].cpu().numpy()

    @staticmethod
    def compile_model(model: nn.Module) -> nn.Module:
        """``torch.compile`` what pays for ``model`` (in place): its vision tower
        (:func:`~blip_torch.vision.compile_vision`) and, if it has one, its decode step
        (:func:`~blip_torch.generation.compile_decoder`).  The first call per input shape
        compiles (tens of seconds on a small CPU)."""
        from blip_torch.generation import compile_decoder
        from blip_torch.vision import compile_vision

        compile_vision(model)
        if getattr(model, "text_decoder", None) is not None:
            compile_decoder(model)
        return model


BACKEND = TorchBackend()

__all__ = ["BACKEND", "TorchBackend"]
