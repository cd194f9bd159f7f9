"""Byte progress of the converter's writes on stderr (tqdm when installed, else a counter)."""

from __future__ import annotations

import sys

# Show progress when writing at least this many bytes.
PROGRESS_MIN_BYTES = 64 * 2**20


class Progress:
    """Byte progress on stderr: tqdm when installed, else a counter printed every ~10%.

    Silent below :data:`PROGRESS_MIN_BYTES` unless ``enabled`` says otherwise.  The weights
    writers write a file in one library call, so a file's bytes are reported when it is done.
    """

    def __init__(self, total: int, desc: str, enabled: bool | None = None, stream=None):
        self.total, self.desc, self.done = total, desc, 0
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = total >= PROGRESS_MIN_BYTES if enabled is None else enabled
        self._bar = None
        self._next_report = 0.0
        if self.enabled:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self._bar = tqdm(
                    total=total, desc=desc, unit="B", unit_scale=True, file=self.stream, leave=True
                )

    def update(self, nbytes: int) -> None:
        self.done += nbytes
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(nbytes)
        elif self.done >= self._next_report or self.done >= self.total:
            pct = 100.0 * self.done / self.total if self.total else 100.0
            print(
                f"{self.desc}: {self.done / 2**20:.0f}/{self.total / 2**20:.0f} MiB ({pct:.0f}%)",
                file=self.stream,
                flush=True,
            )
            self._next_report = self.done + self.total / 10

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


__all__ = ["PROGRESS_MIN_BYTES", "Progress"]
