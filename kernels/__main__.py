"""`python -m reefd.kernels check`: compile every kernel in every form, report.

Owns the CI check of the kernel library: for each catalog kernel with a CUDA
body it compiles the plain and preemptible entry points at representative
params, and the padded form with that kernel as the BE side beside
representative RT kernels; prints a table of registers, shared memory, spills
and CTAs per SM; exits 1 on any compile failure, spill, or kernel that cannot
fit on an SM. Kernels without a body yet are listed, never silently dropped.

Imports the standard library, reefd.errors and this package only; needs the
NVRTC wheels but no GPU or driver.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any

from reefd.errors import CompileError, GraphError, ReefError
from reefd.kernels import catalog
from reefd.kernels.nvrtc import FunctionResources, nvrtc_version
from reefd.kernels.spec import KernelSpec
from reefd.kernels.wrappers import CTA_THREADS, EntryPoint, build_module

RT_KERNELS = ("linear", "conv2d", "add")
"""RT kernels each BE kernel is padded beside in the check."""

_CONV = {"n": 1, "h": 56, "w": 56, "kh": 3, "kw": 3, "stride": (1, 1)}
_POOL = {"n": 1, "c": 64, "h": 112, "w": 112}
DEFAULT_SAMPLES: dict[str, list[dict[str, Any]]] = {
    "conv2d": [
        {**_CONV, "c_in": 64, "c_out": 64, "padding": (1, 1), "act": "relu"},
        {**_CONV, "c_in": 128, "c_out": 128, "groups": 128, "padding": (1, 1)},
    ],
    "linear": [{"m": 128, "n": 768, "k": 768}],
    "relu": [{"numel": 1 << 20}],
    "add": [{"numel": 1 << 20, "act": "relu"}],
    "copy": [{"numel": 1 << 20}],
    "max_pool2d": [{**_POOL, "kernel": (3, 3), "stride": (2, 2), "padding": (1, 1)}],
    "avg_pool2d": [{**_POOL, "kernel": (3, 3), "stride": (2, 2), "padding": (1, 1)}],
    "adaptive_avg_pool2d": [
        {"n": 1, "c": 2048, "h": 7, "w": 7, "out_h": 1, "out_w": 1}
    ],
    "softmax": [{"rows": 128, "cols": 1000}],
}
"""Params used when a kernel's ops module defines no SAMPLE_PARAMS for it."""


@dataclass(frozen=True)
class SmLimits:
    """Per-SM limits of one arch, for the CTAs-per-SM column."""

    threads: int
    registers: int
    smem_bytes: int
    max_smem_per_cta_bytes: int
    ctas: int
    reserved_smem_per_cta_bytes: int = 1024
    smem_unit_bytes: int = 128
    register_unit: int = 8  # registers per thread are allocated in steps of 8


_KIB = 1024
SM_LIMITS = {
    "sm_80": SmLimits(2048, 65536, 164 * _KIB, 163 * _KIB, 32),
    "sm_86": SmLimits(1536, 65536, 100 * _KIB, 99 * _KIB, 16),
    "sm_89": SmLimits(1536, 65536, 100 * _KIB, 99 * _KIB, 24),
    "sm_90": SmLimits(2048, 65536, 228 * _KIB, 227 * _KIB, 32),
    "sm_100": SmLimits(2048, 65536, 228 * _KIB, 227 * _KIB, 32),
}


def ctas_per_sm(registers: int, smem_bytes: int, limits: SmLimits) -> int:
    """Resident CTAs of REEF_CTA_THREADS threads per SM (0: it cannot launch)."""
    if smem_bytes > limits.max_smem_per_cta_bytes:
        return 0
    unit = limits.register_unit
    regs_per_cta = math.ceil(max(registers, 1) / unit) * unit * CTA_THREADS
    cta_smem = smem_bytes + limits.reserved_smem_per_cta_bytes
    cta_smem = math.ceil(cta_smem / limits.smem_unit_bytes) * limits.smem_unit_bytes
    return min(
        limits.threads // CTA_THREADS,
        limits.registers // regs_per_cta,
        limits.smem_bytes // cta_smem,
        limits.ctas,
    )


# --- what to compile -----------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """One module to compile: a label for progress lines and its entries."""

    label: str
    entries: tuple[EntryPoint, ...]


@dataclass(frozen=True)
class Row:
    """One compiled entry point, as the table shows it."""

    kernel: str
    variant: str
    form: str
    res: FunctionResources
    dynamic_smem_bytes: int
    ctas: int


ONLY = "only_for"
"""A sample's key naming the one kernel it applies to (not a kernel param name)."""


def _applies(spec: KernelSpec, sample: dict[str, Any]) -> bool:
    if ONLY in sample:
        return sample[ONLY] == spec.name
    try:
        spec.shapes(spec.with_defaults(sample))
    except (GraphError, KeyError, TypeError):
        return False
    return True


def sample_params(spec: KernelSpec) -> list[dict[str, Any]]:
    """The ops module's SAMPLE_PARAMS for `spec`, else DEFAULT_SAMPLES.

    SAMPLE_PARAMS may be a list of dicts (each applies to every kernel of the
    module that accepts it, or only to `sample[ONLY]` when given) or a dict
    from kernel name to such a list.
    """
    module = sys.modules.get(spec.reference.__module__)
    samples = getattr(module, "SAMPLE_PARAMS", None)
    if isinstance(samples, dict):
        samples = samples.get(spec.name)
    found = [
        {k: v for k, v in s.items() if k != ONLY}
        for s in samples or []
        if _applies(spec, s)
    ]
    return found or DEFAULT_SAMPLES.get(spec.name, [])


def _describe(params: dict[str, Any]) -> str:
    return " ".join(
        f"{k}={'x'.join(map(str, v)) if isinstance(v, tuple | list) else v}"
        for k, v in params.items()
    )


def plan_jobs(
    specs: Sequence[KernelSpec], rt_specs: Sequence[KernelSpec]
) -> tuple[list[Job], list[str]]:
    """Modules to compile, and problems found before compiling anything."""
    jobs: list[Job] = []
    problems: list[str] = []
    firsts: dict[str, dict[str, Any]] = {}
    for spec in specs:
        samples = sample_params(spec)
        if not samples:
            problems.append(f"{spec.name}: no sample params to compile it with")
            continue
        firsts[spec.name] = samples[0]
        forms = [f for f in ("plain", "preemptible") if f in spec.forms]
        for sample in samples:
            try:
                entries = tuple(getattr(EntryPoint, f)(spec, sample) for f in forms)
            except (GraphError, ValueError) as exc:
                problems.append(f"{spec.name} {_describe(sample)}: {exc}")
                continue
            jobs.append(Job(f"{spec.name} {_describe(sample)}", entries))
    for rt in rt_specs:
        if rt.name not in firsts and (samples := sample_params(rt)):
            firsts[rt.name] = samples[0]
    for be in specs:
        for rt in rt_specs:
            if be.name not in firsts or rt.name not in firsts:
                continue
            if "padded" not in be.forms or "padded" not in rt.forms:
                continue
            try:
                entry = EntryPoint.padded(rt, firsts[rt.name], be, firsts[be.name])
            except (GraphError, ValueError) as exc:
                problems.append(f"padded {rt.name}+{be.name}: {exc}")
                continue
            jobs.append(Job(f"padded rt={rt.name} be={be.name}", (entry,)))
    return jobs, problems


# --- compiling and reporting ---------------------------------------------------


def _row(entry: EntryPoint, res: FunctionResources, limits: SmLimits) -> Row:
    dynamic = entry.dynamic_smem_bytes()
    ctas = ctas_per_sm(res.registers, res.static_smem_bytes + dynamic, limits)
    if entry.form == "padded" and entry.be_spec and entry.be_params is not None:
        be, be_params = entry.be_spec, entry.be_params
        return Row(
            be.name, be.body(be_params), f"padded/{entry.spec.name}", res, dynamic, ctas
        )
    body = entry.spec.body(entry.params)
    return Row(entry.spec.name, body, entry.form, res, dynamic, ctas)


def _compile(job: Job, arch: str) -> tuple[list[FunctionResources], bool]:
    compiled = build_module(job.entries, arch)
    return [compiled.functions[e.name] for e in job.entries], compiled.from_cache


def run_jobs(
    jobs: Sequence[Job], arch: str, n_jobs: int, limits: SmLimits
) -> tuple[list[Row], list[str]]:
    """Compile every job (n_jobs at a time); rows in job order, and failures."""
    results: dict[int, list[Row]] = {}
    failures: list[str] = []
    with ThreadPoolExecutor(max_workers=max(1, n_jobs)) as pool:
        started = time.monotonic()
        futures = {pool.submit(_compile, job, arch): i for i, job in enumerate(jobs)}
        for done, future in enumerate(as_completed(futures), 1):
            i = futures[future]
            job = jobs[i]
            prefix = f"[{done}/{len(jobs)}] {job.label}"
            elapsed = f"{time.monotonic() - started:.1f}s"
            try:
                resources, cached = future.result()
            except (ReefError, OSError, ValueError) as exc:
                print(f"{prefix}: FAILED ({elapsed})", file=sys.stderr)
                failures.append(f"{job.label}: compile failed: {exc}")
                continue
            how = "cached" if cached else "compiled"
            print(f"{prefix}: {how} ({elapsed})", file=sys.stderr)
            results[i] = [
                _row(e, r, limits) for e, r in zip(job.entries, resources, strict=True)
            ]
    rows = [row for i in sorted(results) for row in results[i]]
    for row in rows:
        where = f"{row.kernel} {row.variant} {row.form}"
        if row.res.spill_bytes:
            failures.append(
                f"{where}: spills {row.res.spill_store_bytes} bytes stored, "
                f"{row.res.spill_load_bytes} bytes loaded"
            )
        if row.ctas == 0:
            smem = row.res.static_smem_bytes + row.dynamic_smem_bytes
            failures.append(f"{where}: does not fit on an SM ({smem} bytes smem)")
    return rows, failures


def format_table(rows: Sequence[Row], arch: str) -> str:
    head = (
        "kernel",
        "variant",
        "form",
        "regs",
        "smem B (static+dyn)",
        "stack B",
        "spill B",
        f"CTAs/SM ({arch})",
    )
    cells = [
        (
            r.kernel,
            r.variant,
            r.form,
            str(r.res.registers),
            f"{r.res.static_smem_bytes}+{r.dynamic_smem_bytes}",
            str(r.res.stack_frame_bytes),
            str(r.res.spill_bytes),
            str(r.ctas),
        )
        for r in rows
    ]
    widths = [max(len(c[i]) for c in [head, *cells]) for i in range(len(head))]
    rule = tuple("-" * w for w in widths)
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in [head, rule, *cells]
    )


def check(arch: str, n_jobs: int, kernels: Sequence[str]) -> int:
    """The `check` command; returns the exit status."""
    limits = SM_LIMITS.get(arch, SM_LIMITS["sm_90"])
    names = sorted(set(kernels)) if kernels else catalog.names()
    specs = [catalog.get(k) for k in names]
    without = [s.name for s in specs if not s.source]
    with_body = [s for s in specs if s.source]
    rt_specs = [catalog.get(k) for k in RT_KERNELS if catalog.get(k).source]
    jobs, failures = plan_jobs(with_body, rt_specs)
    if jobs:
        try:
            nvrtc_version()
        except CompileError as exc:
            print(f"FAIL {exc}")
            return 1
    print(
        f"checking {len(with_body)} kernels for {arch}: {len(jobs)} modules, "
        f"{n_jobs} at a time",
        file=sys.stderr,
    )
    rows, compile_failures = run_jobs(jobs, arch, n_jobs, limits)
    failures += compile_failures
    if rows:
        print(format_table(rows, arch))
    if arch not in SM_LIMITS:
        print(f"note: no SM limits for {arch}; CTAs/SM use sm_90's")
    if without:
        print(f"no CUDA body yet (not compiled): {', '.join(without)}")
    if with_body and not rt_specs:
        print(
            f"padded form not checked: no RT kernel ({', '.join(RT_KERNELS)}) "
            "has a CUDA body yet"
        )
    print(f"{len(rows)} entry points compiled, {len(failures)} problems")
    for failure in failures:
        print(f"FAIL {failure}")
    return 1 if failures else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reefd.kernels")
    sub = parser.add_subparsers(dest="command", required=True)
    cmd = sub.add_parser("check", help="compile every kernel in every form")
    cmd.add_argument("--arch", default="sm_90", help="GPU arch (default sm_90)")
    cmd.add_argument("--jobs", type=int, default=2, help="compiles at a time")
    cmd.add_argument(
        "--kernel",
        action="extend",
        nargs="+",
        default=[],
        metavar="NAME",
        help="check only these kernels",
    )
    args = parser.parse_args(argv)
    if unknown := sorted(set(args.kernel) - set(catalog.names())):
        parser.error(f"unknown kernels {unknown}; known: {catalog.names()}")
    return check(args.arch, args.jobs, args.kernel)


if __name__ == "__main__":
    sys.exit(main())
