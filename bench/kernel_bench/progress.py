"""Progress lines of the kernel benchmark: on stderr, flushed at once, so stdout
keeps only the per-kernel table and the summary."""

from __future__ import annotations

import sys


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
