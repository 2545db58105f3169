"""`python -m bench.kernels`: kernel speed on a GPU, ours vs torch eager.

The entry point only: the benchmark is the package bench/kernel_bench/ (its
docstring describes the method, the options and the outputs; `--help` too).

    python -m bench.kernels [--models resnet50 vit_b16] [--batch 8] [--repeat 50]
    python -m bench.kernels --collect-only --out DIR   # CPU: write DIR/shapes.json
    python -m bench.kernels --shapes DIR/shapes.json   # GPU: skip the lowering
    python -m bench.kernels --plot DIR/kernels.json    # PNG from results, any host
"""

from __future__ import annotations

from bench.kernel_bench.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    raise SystemExit(main())
