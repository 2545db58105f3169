"""`reef-profile`: placeholder until the profiler lands (see the open issues)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    print(
        "reef-profile: profiling (solo and pair timings into a SQLite store) is not "
        "built yet; it arrives with the profiler issue.",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
