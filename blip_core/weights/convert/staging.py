"""Where a conversion is assembled: a hidden ``.<DST>.<random>.partial`` folder beside ``DST``.

The output is written and verified there and renamed onto ``DST`` only when complete, so an
interrupted or failed run never leaves a ``DST``.  Each partial folder holds an owner marker
(:data:`OWNER_MARKER`: pid, process start time, host) so that a later run can tell a folder
left by a converter that was killed (``SIGKILL``, power loss) from one still being written, and
removes only the former (:func:`remove_stale_partials`).  ``DST`` gets the usual directory
permissions (``0o777`` less the umask), not the ``0o700`` of ``mkdtemp``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path

from blip_core.weights.convert.source import ConversionError
from blip_core.weights.io import default_mode

PARTIAL_SUFFIX = ".partial"
OWNER_MARKER = ".blip-convert-owner.json"


def check_destination(src: Path, dst: Path, force: bool) -> None:
    """``dst`` must not exist (unless ``force`` and it is a real directory) nor hold ``src``."""
    if dst.exists() or dst.is_symlink():
        if not force:
            raise ConversionError(f"{dst} already exists; pass --force to replace it")
        if not dst.is_dir() or dst.is_symlink():
            raise ConversionError(f"{dst} exists and is not a directory; refusing to replace it")
    src_abs, dst_abs = src.resolve(), dst.resolve()
    if src_abs == dst_abs or dst_abs in src_abs.parents:
        raise ConversionError(f"{dst} holds the source {src}; choose another destination")


def _start_time(pid: int) -> str | None:
    """The kernel's start time of process ``pid`` (Linux ``/proc``), or None where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22 (starttime); the command name (field 2) may contain spaces, so split after it.
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def _owner() -> dict:
    return {"pid": os.getpid(), "start": _start_time(os.getpid()), "host": socket.gethostname()}


def _owner_is_gone(owner: dict) -> bool:
    """Whether the process that wrote ``owner`` has certainly ended (same host only)."""
    if owner.get("host") != socket.gethostname():
        return False  # another machine's process: its liveness cannot be checked from here
    pid = owner.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, another user's
    if _is_zombie(pid):
        return True
    start = owner.get("start")
    return start is not None and _start_time(pid) not in (None, start)  # the pid was reused


def make_partial_dir(dst: Path) -> Path:
    """A new hidden partial folder beside ``dst``, marked as this process's, with the usual
    directory permissions."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=PARTIAL_SUFFIX, dir=dst.parent))
    os.chmod(tmp, default_mode(directory=True))
    (tmp / OWNER_MARKER).write_text(json.dumps(_owner()), encoding="utf-8")
    return tmp


def remove_stale_partials(
    parent: Path, log: Callable[[str], None] = lambda line: None
) -> list[Path]:
    """Remove the partial folders in ``parent`` that a converter made and whose process has
    ended; returns them.  Folders without a readable marker, or whose owner may still be
    running, are left alone."""
    removed: list[Path] = []
    if not parent.is_dir():
        return removed
    for folder in sorted(parent.glob(f".*{PARTIAL_SUFFIX}")):
        if folder.is_symlink() or not folder.is_dir():
            continue
        try:
            owner = json.loads((folder / OWNER_MARKER).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(owner, dict) and _owner_is_gone(owner):
            shutil.rmtree(folder, ignore_errors=True)
            if not folder.exists():
                removed.append(folder)
                log(f"removed {folder}, left by an earlier conversion that was killed")
    return removed


def install(tmp: Path, dst: Path) -> None:
    """Rename the finished partial folder ``tmp`` to ``dst`` (its owner marker removed first;
    an existing ``dst`` is moved aside, and deleted once ``tmp`` is in place)."""
    with contextlib.suppress(FileNotFoundError):
        (tmp / OWNER_MARKER).unlink()
    backup = None
    if dst.exists():
        backup = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".old", dir=dst.parent))
        backup.rmdir()
        os.replace(dst, backup)
    try:
        os.replace(tmp, dst)
    except BaseException:
        if backup is not None:
            os.replace(backup, dst)
        raise
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)


__all__ = [
    "OWNER_MARKER",
    "PARTIAL_SUFFIX",
    "check_destination",
    "install",
    "make_partial_dir",
    "remove_stale_partials",
]
