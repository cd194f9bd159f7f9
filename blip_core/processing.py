"""``BlipProcessor``: the image processor and the tokenizer behind one call, as in transformers."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from blip_core.image_processing import BatchFeature, BlipImageProcessor
from blip_core.tokenization import BlipTokenizer

__all__ = ["BlipProcessor"]

PROCESSOR_CLASS = "BlipProcessor"


class BlipProcessor:
    """Prepares BLIP inputs: ``pixel_values`` from images and ``input_ids`` / ``attention_mask``
    from text (no ``token_type_ids``: BLIP's text model has no token types).

    Args:
        image_processor: a :class:`BlipImageProcessor`.
        tokenizer: a :class:`BlipTokenizer`.
    """

    attributes = ["image_processor", "tokenizer"]

    def __init__(self, image_processor: BlipImageProcessor, tokenizer: BlipTokenizer) -> None:
        if not isinstance(image_processor, BlipImageProcessor):
            raise TypeError(
                "image_processor must be a BlipImageProcessor, "
                f"got {type(image_processor).__name__}"
            )
        if not isinstance(tokenizer, BlipTokenizer):
            raise TypeError(f"tokenizer must be a BlipTokenizer, got {type(tokenizer).__name__}")
        self.image_processor = image_processor
        self.tokenizer = tokenizer

    @property
    def model_input_names(self) -> list[str]:
        return self.tokenizer.model_input_names + self.image_processor.model_input_names

    def __call__(
        self,
        images: Any = None,
        text: str | list[str] | None = None,
        return_tensors: str | None = None,
        padding: bool | str = False,
        truncation: bool | str | None = None,
        max_length: int | None = None,
        add_special_tokens: bool = True,
        pad_to_multiple_of: int | None = None,
        padding_side: str | None = None,
        return_attention_mask: bool | None = True,
        **image_kwargs: Any,
    ) -> BatchFeature:
        """Process ``images`` and/or ``text``.

        Args:
            images: anything :class:`BlipImageProcessor` accepts (PIL images, arrays, tensors,
                paths, lists of them).
            text: a string or a list of strings, for :class:`BlipTokenizer`.
            return_tensors: ``None``, ``"np"``, ``"pt"`` or ``"tf"`` (both outputs).
            padding, truncation, max_length, add_special_tokens, pad_to_multiple_of,
                padding_side, return_attention_mask: tokenizer options.
            **image_kwargs: image-processor overrides (``do_resize``, ``size``, ...).

        Returns:
            ``pixel_values`` ``(B, 3, H, W)`` when images are given, ``input_ids`` and
            ``attention_mask`` ``(B, T)`` when text is given.
        """
        if images is None and text is None:
            raise ValueError("BlipProcessor needs images, text, or both; got neither")
        encoding: BatchFeature = BatchFeature()
        if images is not None:
            encoding.update(
                self.image_processor(images, return_tensors=return_tensors, **image_kwargs)
            )
        elif image_kwargs:
            raise TypeError(f"image options {sorted(image_kwargs)} given without images")
        if text is not None:
            text_encoding = self.tokenizer(
                text,
                padding=padding,
                truncation=truncation,
                max_length=max_length,
                add_special_tokens=add_special_tokens,
                return_tensors=return_tensors,
                return_attention_mask=return_attention_mask,
                pad_to_multiple_of=pad_to_multiple_of,
                padding_side=padding_side,
            )
            if images is None:
                return text_encoding
            encoding.update(text_encoding)
        return encoding

    def decode(self, token_ids: Any, **kwargs: Any) -> str:
        """:meth:`BlipTokenizer.decode`."""
        return self.tokenizer.decode(token_ids, **kwargs)

    def batch_decode(self, sequences: Any, **kwargs: Any) -> list[str]:
        """:meth:`BlipTokenizer.batch_decode`."""
        return self.tokenizer.batch_decode(sequences, **kwargs)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, **tokenizer_kwargs: Any) -> BlipProcessor:
        """Load ``preprocessor_config.json`` and the tokenizer files from a hub directory."""
        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(f"{path}: not a directory (expected a processor directory)")
        return cls(
            BlipImageProcessor.from_pretrained(path),
            BlipTokenizer.from_pretrained(path, **tokenizer_kwargs),
        )

    def save_pretrained(self, directory: str | os.PathLike) -> tuple[Path, ...]:
        """Write the tokenizer files and ``preprocessor_config.json``, each tagged
        ``processor_class: BlipProcessor`` as transformers does; returns the paths."""
        directory = Path(directory)
        saved_ip, saved_tok = (
            self.image_processor.processor_class,
            self.tokenizer.extra.get("processor_class"),
        )
        try:
            self.image_processor.processor_class = PROCESSOR_CLASS
            self.tokenizer.extra["processor_class"] = PROCESSOR_CLASS
            files = self.tokenizer.save_pretrained(directory)
            return (*files, self.image_processor.save_pretrained(directory))
        finally:
            self.image_processor.processor_class = saved_ip
            if saved_tok is None:
                self.tokenizer.extra.pop("processor_class", None)
            else:
                self.tokenizer.extra["processor_class"] = saved_tok

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(image_processor={self.image_processor!r}, "
            f"tokenizer={self.tokenizer!r})"
        )
