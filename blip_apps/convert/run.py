"""A conversion with the backend-based checks: the numpy core plus key check, progress and
numeric verification."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable

from blip_apps.convert.progress import Progress
from blip_apps.convert.verify import DEFAULT_ATOL, expected_shapes, verify_conversion
from blip_core.config import BlipConfig
from blip_core.weights import convert as core
from blip_core.weights.convert import ConversionResult


def convert_checkpoint(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    to: str,
    *,
    task: str = "auto",
    config: str | os.PathLike | BlipConfig | None = None,
    tokenizer: str | os.PathLike | None = None,
    force: bool = False,
    verify: bool = True,
    atol: float = DEFAULT_ATOL,
    log: Callable[[str], None] = print,
) -> ConversionResult:
    """:func:`blip_core.weights.convert.convert_checkpoint` with the keys checked against a
    ``blip_torch`` model of the target class (when torch is installed), byte progress on stderr,
    and -- unless ``verify`` is false -- the outputs compared within ``atol``
    (:func:`~blip_apps.convert.verify.verify_conversion`; raises
    :class:`~blip_apps.convert.verify.VerificationError`)."""
    return core.convert_checkpoint(
        src,
        dst,
        to,
        task=task,
        config=config,
        tokenizer=tokenizer,
        force=force,
        expected_shapes=expected_shapes,
        verify=functools.partial(verify_conversion, atol=atol, log=log) if verify else None,
        progress=Progress,
        log=log,
    )


__all__ = ["convert_checkpoint"]
