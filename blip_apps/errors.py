"""Exit codes of the ``blip`` command and how an exception becomes one line on stderr.

A user error never shows a traceback: it is printed as ``blip: error: <message>`` (one line) and
the command exits with the code of its kind.  Per-file failures are records in the output stream
and do not stop the run.  Only an unexpected exception (a bug) prints its traceback, followed by
a one-line hint, and exits with :data:`EXIT_INTERNAL`.
"""

from __future__ import annotations

import re

from blip_core.config import ConfigError
from blip_core.hub import ModelNotFoundError
from blip_core.weights import WeightLoadError

EXIT_OK = 0
EXIT_SOME_FAILED = 1  # the run finished, but some inputs (images) could not be used
EXIT_USAGE = 2  # bad command line or argument value (argparse's own code)
EXIT_VERIFICATION = 3  # blip convert / export: the written files do not reproduce the source
EXIT_MODEL = 4  # the model directory, its config, tokenizer or weights could not be loaded
EXIT_INTERNAL = 70  # an unexpected error, a bug (EX_SOFTWARE in sysexits.h)
EXIT_INTERRUPTED = 130  # Ctrl-C

EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_SOME_FAILED: (
        "some inputs failed (each has an error record in the output); the rest ran "
        "(blip convert: the conversion failed)"
    ),
    EXIT_USAGE: "bad command line or argument value",
    EXIT_VERIFICATION: "blip convert / blip export: verification of the output failed",
    EXIT_MODEL: "the model (directory, config, tokenizer or weights) could not be loaded",
    EXIT_INTERNAL: "internal error (a bug): a traceback is printed; please report it",
}


class CliError(Exception):
    """An error the user can act on: printed as one line, exit code :attr:`exit_code`."""

    exit_code = EXIT_USAGE


class UsageError(CliError):
    """A bad argument value (the message names the flag, the value and what is allowed)."""

    exit_code = EXIT_USAGE


class ModelError(CliError):
    """The model named by ``--model`` (or the bundled demo model) cannot be loaded."""

    exit_code = EXIT_MODEL


MODEL_ERRORS = (ModelNotFoundError, ConfigError, WeightLoadError)

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_KERAS_WRAP = re.compile(
    r"Exception encountered when calling [^\n]*?\.\s*\n\s*\n(?P<message>.*?)"
    r"(?:\n\s*\nArguments received by .*)?$",
    re.DOTALL,
)


def unwrap(exc: BaseException) -> BaseException:
    """The exception Keras wrapped: a layer's failing ``call`` is re-raised by Keras as a new
    exception (flag ``_keras_call_info_injected``) whose ``__context__`` is the original."""
    seen = set()
    while getattr(exc, "_keras_call_info_injected", False) and id(exc) not in seen:
        seen.add(id(exc))
        inner = exc.__context__
        if inner is None:
            break
        exc = inner
    return exc


def clean_text(text: str) -> str:
    """``text`` without terminal colour codes and without Keras's "Exception encountered when
    calling ..." / "Arguments received by ..." wrapping, on one line."""
    text = _ANSI.sub("", text)
    match = _KERAS_WRAP.search(text)
    if match:
        text = match.group("message")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return "; ".join(lines)


def message(exc: BaseException) -> str:
    """One line for ``exc``: the unwrapped, cleaned message (the type name when it is empty).

    ``KeyError`` carries its key as the message; it is shown as the key's repr, like Python does.
    """
    exc = unwrap(exc)
    text = getattr(exc, "message", None)  # tf.errors.OpError keeps the bare message here
    if not isinstance(text, str):
        text = repr(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    text = clean_text(text)
    return text or type(exc).__name__


def exit_code(exc: BaseException) -> int:
    """The documented exit code of a user error; :data:`EXIT_INTERNAL` for anything else.

    User errors: :class:`CliError` (its code); model, config and weight errors
    (:data:`EXIT_MODEL`); ``ValueError`` and ``OSError`` raised by argument checks or files
    (:data:`EXIT_USAGE`).
    """
    exc = unwrap(exc)
    if isinstance(exc, CliError):
        return exc.exit_code
    if isinstance(exc, MODEL_ERRORS):
        return EXIT_MODEL
    if type(exc).__name__ == "VerificationError":  # the converter's, wherever it lives
        return EXIT_VERIFICATION
    if isinstance(exc, (ValueError, OSError)) and not _is_framework_error(exc):
        return EXIT_USAGE
    return EXIT_INTERNAL


def _is_framework_error(exc: BaseException) -> bool:
    """A TensorFlow op error (``InvalidArgumentError`` ...): raised below our checks, a bug."""
    return type(exc).__module__.startswith(("tensorflow", "jax"))


def epilog() -> str:
    """The "exit codes" paragraph of ``blip --help``."""
    rows = [f"  {code:>3}  {text}" for code, text in EXIT_CODES.items()]
    return (
        "exit codes:\n" + "\n".join(rows) + "\n\n"
        "A user error prints one line 'blip: error: ...' on stderr (no traceback).  An image\n"
        'that cannot be read becomes a record {"path": ..., "error": ...} in the output and\n'
        "the run goes on."
    )


__all__ = [
    "EXIT_CODES",
    "EXIT_INTERNAL",
    "EXIT_INTERRUPTED",
    "EXIT_MODEL",
    "EXIT_OK",
    "EXIT_SOME_FAILED",
    "EXIT_USAGE",
    "EXIT_VERIFICATION",
    "MODEL_ERRORS",
    "CliError",
    "ModelError",
    "UsageError",
    "clean_text",
    "epilog",
    "exit_code",
    "message",
]
