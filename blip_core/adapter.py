"""The backend adapter: the few tensor operations the task layer needs from a framework.

Everything that decides *what* to compute — prompts, search, ranking, validation, the load/save
sequence — lives once in :mod:`blip_core.tasks` and :mod:`blip_core.loading` and talks to a
framework only through an object of this shape.  Each backend package provides one instance
(``blip_torch.adapter.BACKEND``, ``blip_tf.adapter.BACKEND``, ``blip_onnx.adapter.BACKEND``); the
applications (pipeline, converter verification, demo evaluation) use the same instance.

``T`` below is the backend's tensor type (``torch.Tensor``, ``tf.Tensor``, ``np.ndarray``).
Methods that take ``model`` take one of the backend's public BLIP classes.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Any, Protocol, runtime_checkable

import numpy as np

from blip_core.generation import DecoderSession


@runtime_checkable
class Backend(Protocol):
    """One framework, seen from the task layer."""

    name: str  # "torch", "tf", "onnx"

    # -- tensors --------------------------------------------------------------------------------
    def to_numpy(self, x: Any) -> np.ndarray | None:
        """A numpy array of a tensor, array or nested list (``None`` stays ``None``)."""

    def from_numpy(self, array: np.ndarray, like: Any = None) -> Any:
        """The backend's tensor of ``array`` (on ``like``'s device when given)."""

    def inference(self) -> AbstractContextManager:
        """A context in which no gradients are recorded (``torch.no_grad()``)."""

    def take(self, x: Any, indices: np.ndarray) -> Any:
        """Rows ``indices`` of ``x`` along axis 0."""

    def model_class(self, name: str) -> type:
        """The backend's public class called ``name`` (``"BlipForConditionalGeneration"``)."""

    # -- weights --------------------------------------------------------------------------------
    def build_empty(self, cls: type, config: Any, **kwargs: Any) -> Any:
        """``cls(config)`` with storage that is about to be overwritten (no random fills)."""

    def expected_shapes(self, model: Any) -> dict[str, tuple[int, ...]]:
        """``{canonical key: shape}`` the model's weights need (tied aliases left out)."""

    def assign(self, model: Any, state: Mapping[str, np.ndarray]) -> None:
        """Copy (or adopt) a checked canonical state: every expected key is present."""

    def canonical_state(self, model: Any) -> dict[str, np.ndarray]:
        """The model's weights as canonical float32/int numpy copies (tied aliases dropped)."""

    # -- task operations ------------------------------------------------------------------------
    def image_states(self, model: Any, pixel_values: Any, interpolate_pos_encoding: bool) -> Any:
        """``model.vision_model``'s ``last_hidden_state`` ``(B, L, D)``."""

    def encode_text(
        self,
        text_model: Any,
        input_ids: Any,
        attention_mask: Any,
        encoder_states: Any = None,
    ) -> Any:
        """``text_model``'s ``last_hidden_state`` ``(B, T, D)``; image-grounded when
        ``encoder_states`` ``(B, L, D_enc)`` is given (every encoder position attended)."""

    def open_session(
        self,
        decoder: Any,
        encoder_states: Any,
        encoder_mask: Any,
        expansion: int,
        capacity: int,
    ) -> DecoderSession:
        """A decoder session whose rows are the encoder rows each repeated ``expansion`` times;
        ``capacity``: the longest sequence (prompt + new tokens) it will be asked to hold."""

    def sequence_log_probs(self, session: DecoderSession, ids: np.ndarray, mask: np.ndarray):
        """Next-token log-probabilities ``(N, T, V)`` (numpy float32) of whole sequences."""

    def itc_image(self, model: Any, image_states: Any) -> Any:
        """L2-normalised ``vision_proj`` of the class token ``(N, D_itc)``."""

    def itc_text(self, model: Any, input_ids: Any, attention_mask: Any) -> Any:
        """L2-normalised ``text_proj`` of the unimodal text encoder's ``[CLS]`` ``(M, D_itc)``."""

    def itm_probability(
        self, model: Any, image_states: Any, input_ids: Any, attention_mask: Any
    ) -> np.ndarray:
        """ITM match probability ``(P,)`` of pair ``i``; ``image_states`` ``(P | 1, L, D)``."""
