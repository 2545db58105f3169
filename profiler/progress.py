"""A plain-text progress bar on stderr, for long profiling runs.

Owns drawing progress: redrawn in place on a terminal
(`label [#######.......] 12/40 3.1s eta 7s`), or one such line at most every
`every_s` seconds (and at the end) when stderr is a file or a pipe, so logs
stay readable. Thread-safe; quiet when disabled. Imports the standard library
only.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO


class Progress:
    """Progress of `total` steps of one phase, labelled `label`."""

    def __init__(
        self,
        total: int,
        label: str,
        *,
        stream: TextIO | None = None,
        enabled: bool = True,
        width: int = 24,
        every_s: float = 5.0,
    ) -> None:
        self.total = max(1, total)
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.width = width
        self.every_s = every_s
        self.done_steps = 0
        self._lock = threading.Lock()
        self._start = time.monotonic()
        self._last_print = -1e9
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def line(self) -> str:
        """The bar as it reads now."""
        done = min(self.done_steps, self.total)
        filled = round(self.width * done / self.total)
        elapsed = time.monotonic() - self._start
        text = (
            f"{self.label} [{'#' * filled}{'.' * (self.width - filled)}] "
            f"{done}/{self.total} {elapsed:.1f}s"
        )
        if 0 < done < self.total:
            text += f" eta {elapsed * (self.total - done) / done:.0f}s"
        return text

    def advance(self, steps: int = 1) -> None:
        with self._lock:
            self.done_steps += steps
            if not self.enabled:
                return
            now = time.monotonic()
            if self._tty:
                self.stream.write("\r" + self.line() + "\x1b[K")
                self.stream.flush()
            elif (
                self.done_steps < self.total and now - self._last_print >= self.every_s
            ):
                self._last_print = now
                self.stream.write(self.line() + "\n")
                self.stream.flush()

    def finish(self, note: str = "") -> None:
        """Draw the final state (and `note`), end the line."""
        with self._lock:
            if not self.enabled:
                return
            end = f" {note}" if note else ""
            prefix = "\r" if self._tty else ""
            self.stream.write(f"{prefix}{self.line()}{end}\n")
            self.stream.flush()
