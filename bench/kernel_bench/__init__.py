"""Kernel speed on a GPU: every (kernel, shape) the zoo uses, ours vs torch eager.

The kernel benchmark, run as `python -m bench.kernels` (bench/kernels.py calls
`cli.main`). It lowers every zoo model (full size, batch 8 by default,
DistilBERT at seq 128) with `reefd.clients.lower.lower` on the CPU and collects
the distinct calls (kernel, params, bound operands) with how often
each occurs. Then, for each call on the GPU, on random operands:

- ours: the plain form (one CTA per virtual block) and the preemptible form on
  the persistent grid the daemon would use (SMs x CTAs per SM at full
  occupancy, CTAs/SM from ptxas's registers and shared memory as
  `python -m reefd.kernels check` computes them, capped at the block count),
  with the preempt flag in device memory and in mapped host memory;
- torch eager: the spec's torch `reference` on CUDA tensors, which ends with a
  copy into the output buffer, and that copy alone (`y.copy_(tmp)`), so the
  ratio is reported with and without it; for the data-movement kernels
  (copy, strided_copy, cast_i64) the copy is the op, so both ratios are equal;
- a correctness check first: plain vs torch (relative L2 error), preemptible
  vs plain (bit for bit); a wrong call is timed but left out of the means.

Timing follows .library/device/METHOD.md: CUDA events around each run, warm-up
runs first, the median of N runs, the L2 cache flushed (a buffer of twice its
size zeroed) before every run so operands come from device memory, and the
host kept ahead of the GPU (a GPU sleep before each chunk of runs; see
`Timer`), so host launch costs stay out. float32 matmuls and convolutions in
torch run with TF32 off (torch.backends.cuda.matmul.allow_tf32 =
torch.backends.cudnn.allow_tf32 = False); a call our library runs in TF32 (bmm
precision "tf32") is compared with torch in TF32. A floor per call comes from
measured ceilings (a 512 MiB device-to-device copy, an 8192^3 matmul per
precision): max(flops / rate, bytes / bandwidth).

    python -m bench.kernels [--models resnet50 vit_b16] [--batch 8] [--repeat 50]
    python -m bench.kernels --collect-only --out DIR   # CPU: write DIR/shapes.json
    python -m bench.kernels --shapes DIR/shapes.json   # GPU: skip the lowering
    python -m bench.kernels --plot DIR/kernels.json    # PNG from results, any host

Writes OUT/kernels.json (device, versions, command, settings, ceilings, every
row, the summary; also rewritten every 15 s while measuring, so a run cut short
keeps what it measured), OUT/kernels.md (every call, per kernel, summary) and
OUT/kernels.png (needs matplotlib; without it the JSON is still written and
`--plot` draws it on another machine). Progress goes to stderr; the per-kernel
table and the summary to stdout, last. Without a GPU, cuda.bindings or NVRTC it
exits 2 with a message naming what is missing.

The modules, one noun each:

- shapes.py: the zoo's calls (lowering, collecting, the shapes file, filters);
- torch_side.py: operands, precision, TF32 switches, torch's code, comparisons;
- timing.py: the `Timer`, the measured ceilings and a call's floor;
- measurement.py: `Bench` and `Forms` (one call checked and timed), `measure_all`;
- rows.py: a result `Row`, its ratios, the summary, targets and tolerances;
- report.py: the markdown tables, the summary text, the results JSON;
- plot.py: the PNG; meta.py: device, versions, command, settings;
- cli.py: the options, `main` and `run`; progress.py: progress on stderr.

This namespace re-exports the names a caller uses (what bench/kernels.py held,
less the helpers of one step), and is where a dry run swaps parts: `DEVICE`
below, and `Timer`, `measure_ceilings`, `device_meta` and `missing_gpu_support`,
are looked up here when used (tests/unit/test_bench_kernels.py sets them to CPU
fakes).
"""

from __future__ import annotations

from bench.kernel_bench.cli import DEFAULT_OUT, main, parse_args, report, run
from bench.kernel_bench.measurement import Bench, Forms, measure_all
from bench.kernel_bench.meta import device_meta, missing_gpu_support, run_meta
from bench.kernel_bench.plot import plot, try_plot
from bench.kernel_bench.report import (
    SCHEMA,
    finite,
    format_by_kernel,
    format_summary,
    format_table,
    results_json,
    write_json,
)
from bench.kernel_bench.rows import (
    DATA_MOVEMENT,
    TARGET_PREEMPT,
    TARGET_RATIO,
    TOLERANCE,
    Row,
    by_kernel,
    derive,
    geomean,
    summarize,
)
from bench.kernel_bench.shapes import (
    SHAPES_SCHEMA,
    ZooCall,
    call_key,
    canonical_params,
    collect,
    describe,
    first_per_kernel,
    lower_model,
    lower_zoo,
    read_shapes,
    restrict,
    shapes_json,
)
from bench.kernel_bench.timing import TIMING, Timer, Timing, floor_us, measure_ceilings
from bench.kernel_bench.torch_side import (
    TF32_SETTING,
    TORCH_OVERRIDES,
    make_operands,
    precision,
    torch_tf32,
)

DEVICE = "cuda"
"""Where operands live (a CPU dry run of the row logic in tests sets "cpu")."""

_write_json = write_json
"""bench/kernels.py's name for `write_json`."""

__all__ = [
    "DATA_MOVEMENT",
    "DEFAULT_OUT",
    "DEVICE",
    "SCHEMA",
    "SHAPES_SCHEMA",
    "TARGET_PREEMPT",
    "TARGET_RATIO",
    "TF32_SETTING",
    "TIMING",
    "TOLERANCE",
    "TORCH_OVERRIDES",
    "Bench",
    "Forms",
    "Row",
    "Timer",
    "Timing",
    "ZooCall",
    "by_kernel",
    "call_key",
    "canonical_params",
    "collect",
    "derive",
    "describe",
    "device_meta",
    "finite",
    "first_per_kernel",
    "floor_us",
    "format_by_kernel",
    "format_summary",
    "format_table",
    "geomean",
    "lower_model",
    "lower_zoo",
    "main",
    "make_operands",
    "measure_all",
    "measure_ceilings",
    "missing_gpu_support",
    "parse_args",
    "plot",
    "precision",
    "read_shapes",
    "report",
    "restrict",
    "results_json",
    "run",
    "run_meta",
    "shapes_json",
    "summarize",
    "torch_tf32",
    "try_plot",
    "write_json",
]
