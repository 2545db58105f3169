"""Measuring calls on one GPU: `Bench` compiles every call's entries and turns a
call into a `Row` (correctness checked first, then every form timed); `Forms`
holds one call's operands and the ways to run it; `measure_all` walks the calls,
rewriting the results file as it goes.

`DEVICE` is read from the package (bench/kernel_bench/__init__.py) when used.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from bench import kernel_bench as kb
from bench.kernel_bench.progress import log
from bench.kernel_bench.report import num, results_json, write_json
from bench.kernel_bench.rows import DATA_MOVEMENT, Row, derive
from bench.kernel_bench.shapes import ZooCall, describe
from bench.kernel_bench.timing import Timer, floor_us
from bench.kernel_bench.torch_side import (
    TORCH_OVERRIDES,
    bitwise_equal,
    make_operands,
    precision,
    rel_err,
    sync,
    torch_tf32,
)
from reefd.kernels import catalog
from reefd.kernels.spec import KernelSpec

if TYPE_CHECKING:
    from reefd.kernels.launcher import Launcher
    from reefd.kernels.wrappers import EntryPoint


class Bench:
    """Measures calls on one GPU: compiles their entries, times every form."""

    def __init__(
        self, launcher: Launcher, timer: Timer, ceilings: dict[str, float]
    ) -> None:
        self.gpu, self.timer, self.ceilings = launcher, timer, ceilings
        self.compile_errors: dict[str, str] = {}
        self.flag = torch.zeros(1, dtype=torch.int32, device=kb.DEVICE)
        self.counter = torch.zeros(1, dtype=torch.int32, device=kb.DEVICE)

    def compile(self, calls: Sequence[ZooCall], jobs: int) -> None:
        """Compile every call's plain and preemptible entries, `jobs` at a time."""
        from reefd.kernels.wrappers import EntryPoint

        groups: dict[str, list[EntryPoint]] = {}
        for call in calls:
            spec = catalog.get(call.kernel)
            plain = EntryPoint.plain(spec, call.params)
            groups.setdefault(
                plain.name, [plain, EntryPoint.preemptible(spec, call.params)]
            )
        start = time.perf_counter()

        def progress(done: int, total: int, group: Sequence[EntryPoint]) -> None:
            log(
                f"  compiled [{done}/{total}] {group[0].name} "
                f"({time.perf_counter() - start:.0f} s)"
            )

        log(f"compiling {len(groups)} modules for {self.gpu.arch}, {jobs} at a time")
        for group, exc in self.gpu.load(groups.values(), jobs, progress):
            for entry in group:
                self.compile_errors[entry.name] = f"compile failed: {exc}"

    def row(self, call: ZooCall, flag_mapped: int) -> Row:
        """Check and time one call; errors end up in `row.error`."""
        spec = catalog.get(call.kernel)
        row = Row(
            kernel=call.kernel,
            shape=describe(spec, call.params, call.bound),
            params=call.params,
            bound=list(call.bound),
            count=call.count,
            models=call.models,
            kind="move" if call.kernel in DATA_MOVEMENT else "compute",
        )
        try:
            self._measure(spec, call, row, flag_mapped)
        except Exception as exc:  # recorded in the row; run() stops if fatal
            row.error = f"{type(exc).__name__}: {exc}"
        return derive(row)

    def _measure(self, spec: KernelSpec, call: ZooCall, row: Row, mapped: int) -> None:
        from reefd.kernels.wrappers import EntryPoint

        params = spec.with_defaults(call.params)
        plain = EntryPoint.plain(spec, params)
        if plain.name in self.compile_errors:
            row.error = self.compile_errors[plain.name]
            return
        pre = EntryPoint.preemptible(spec, params)
        self._launch_facts(spec, params, call.bound, pre, row)
        forms = Forms(self, spec, params, call.bound, plain, pre, row)
        note = TORCH_OVERRIDES.get(spec.name, (None, ""))[1]
        if row.kind == "move":
            note = "data movement: torch's op is the copy itself"
        if row.precision == "tf32":
            note = f"{note}; torch in TF32 too".strip("; ")
        row.note = note
        with torch_tf32(row.precision == "tf32"):
            row.rel_err, row.preempt_exact = forms.check()
            timings = {
                "ours": self.timer.measure(forms.plain),
                "preempt": self.timer.measure(
                    forms.preemptible(self.flag.data_ptr()), self.counter.zero_
                ),
                "preempt_mapped": self.timer.measure(
                    forms.preemptible(mapped), self.counter.zero_
                ),
                "torch": self.timer.measure(forms.torch),
                "copy": self.timer.measure(forms.copy_out),
            }
        row.ours_us = timings["ours"].median_us
        row.preempt_us = timings["preempt"].median_us
        row.preempt_mapped_us = timings["preempt_mapped"].median_us
        row.torch_us = timings["torch"].median_us
        row.copy_us = timings["copy"].median_us
        row.spread_us = {k: [t.p10_us, t.p90_us] for k, t in timings.items()}
        row.runs = min(t.runs for t in timings.values())

    def _launch_facts(
        self,
        spec: KernelSpec,
        params: Mapping[str, Any],
        bound: Sequence[str],
        pre: EntryPoint,
        row: Row,
    ) -> None:
        """Blocks, persistent grid, occupancy, resources, work and floor."""
        res = self.gpu.resources(pre)
        row.variant, row.n_vb = spec.body(params), spec.virtual_blocks(params)
        row.grid = self.gpu.persistent_grid(pre, row.n_vb)
        row.ctas_per_sm = self.gpu.ctas_per_sm(pre)
        row.driver_ctas_per_sm = self.gpu.driver_ctas_per_sm(pre)
        row.registers = res.registers
        row.smem_bytes = res.static_smem_bytes + pre.dynamic_smem_bytes()
        dtypes = {o.name: o.dtypes[0] for o in spec.operands if o.name in bound}
        row.flops, row.bytes = spec.flops(params), spec.bytes_moved(params, dtypes)
        row.precision = precision(spec, params)
        row.floor_us = floor_us(
            row.flops,
            row.bytes,
            self.ceilings[f"{row.precision}_flop_per_s"],
            self.ceilings["copy_bytes_per_s"],
        )


class Forms:
    """One call's operands on the GPU and the ways to run it: our plain and
    preemptible forms, torch's reference, torch's copy into the outputs."""

    def __init__(
        self,
        bench: Bench,
        spec: KernelSpec,
        params: Mapping[str, Any],
        bound: Sequence[str],
        plain_entry: EntryPoint,
        pre_entry: EntryPoint,
        row: Row,
    ) -> None:
        from reefd.kernels.wrappers import pack_args

        self.gpu, self.counter = bench.gpu, bench.counter
        self.spec, self.params = spec, params
        self.plain_entry, self.pre_entry = plain_entry, pre_entry
        self.n_vb, self.grid = row.n_vb, row.grid
        self.tensors = make_operands(spec, params, bound)
        self.outputs = [o.name for o in spec.operands if o.access == "write"]
        self.inputs = {k: t for k, t in self.tensors.items() if k not in self.outputs}
        self.expected = {k: torch.empty_like(self.tensors[k]) for k in self.outputs}
        self.reference = TORCH_OVERRIDES.get(spec.name, (spec.reference, ""))[0]
        pointers = {k: t.data_ptr() for k, t in self.tensors.items()}
        self.args = pack_args(spec, params, pointers)

    def plain(self) -> None:
        self.gpu.launch_plain(self.plain_entry, self.args, self.n_vb)

    def preemptible(self, flag: int) -> Callable[[], None]:
        """A launch of the preemptible form reading the preempt flag at `flag`
        (the counter must be zeroed before each)."""

        def launch() -> None:
            self.gpu.launch_preemptible(
                self.pre_entry,
                self.grid,
                self.args,
                self.n_vb,
                self.counter.data_ptr(),
                flag,
            )

        return launch

    def torch(self) -> None:
        self.reference({**self.inputs, **self.expected}, self.params)

    def copy_out(self) -> None:
        for k in self.outputs:
            self.tensors[k].copy_(self.expected[k])

    def _poison(self) -> None:
        for k in self.outputs:
            t = self.tensors[k]
            t.fill_(math.nan if t.is_floating_point() else -1)

    def check(self) -> tuple[float, bool]:
        """(plain's relative L2 error vs torch, preemptible bit-equal to plain),
        each run on poisoned outputs (the preemptible one on a zero flag)."""
        self.torch()
        self._poison()
        self.plain()
        sync()
        err = max(rel_err(self.tensors[k], self.expected[k]) for k in self.outputs)
        plain = {k: self.tensors[k].clone() for k in self.outputs}
        self._poison()
        self.counter.zero_()
        flag = torch.zeros(1, dtype=torch.int32, device=kb.DEVICE)
        self.preemptible(flag.data_ptr())()
        sync()
        same = all(bitwise_equal(self.tensors[k], plain[k]) for k in self.outputs)
        return err, same


def measure_all(
    bench: Bench, calls: Sequence[ZooCall], meta: Mapping[str, Any], path: Path
) -> list[Row]:
    """Every call in turn (progress on stderr, the JSON rewritten every 15 s);
    stops early if a launch fault broke the CUDA context."""
    rows: list[Row] = []
    written = time.monotonic()
    with bench.gpu.mapped_flag() as (_, mapped):
        for i, call in enumerate(calls, 1):
            row = bench.row(call, mapped)
            rows.append(row)
            log(
                f"[{i}/{len(calls)}] {row.kernel} {row.shape}: ours "
                f"{num(row.ours_us)} us, torch {num(row.torch_us)} us, ratio "
                f"{num(row.ratio, 2)}, preempt {num(row.preempt_ratio, 3)}"
                + (f"  ERROR {row.error}" if row.error else "")
            )
            if time.monotonic() - written > 15:
                write_json(path, results_json(meta, rows, complete=False))
                written = time.monotonic()
            if row.error and not _context_alive():
                log("the CUDA context is broken (a launch faulted): stopping here")
                break
    return rows


def _context_alive() -> bool:
    try:
        torch.cuda.synchronize()
    except RuntimeError:
        return False
    return True
