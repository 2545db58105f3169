"""The figures of each case and their ratios to the alone cases.

Owns `CaseFigures` (one row of the summary table) and `case_figures`, which
computes them from CaseRecords: RT latency percentiles over every RT
request of the case, SLO attainment over every RT request offered, BE
throughput (BE requests done per second), the preemptions and utilisation as
recorded, and each figure's ratio to the rt-alone case (latencies) or the
be-alone case (throughput) of the same run. Pure data; no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bench.suite.records import CaseRecord
from reefd.sim.results import percentile

QUANTILES = (50.0, 99.0, 99.9)


@dataclass(frozen=True)
class CaseFigures:
    label: str
    policy: str
    rt_ms: tuple[float | None, ...] = (None, None, None)
    """RT latency p50, p99, p99.9, ms."""
    rt_x_alone: tuple[float | None, ...] = (None, None, None)
    """Those over the rt-alone case's."""
    rt_slo_attainment: float | None = None
    rt_done: int | None = None
    rt_skipped: int | None = None
    be_per_s: float | None = None
    be_x_alone: float | None = None
    preemptions: int | None = None
    preempt_us: tuple[float | None, ...] = (None, None, None)
    """Preemption latency p50, p99, max, us."""
    util: float | None = None
    error: str | None = None


def ratio(value: float | None, base: float | None) -> float | None:
    if value is None or not base:
        return None
    return value / base


def rt_latencies_ms(case: CaseRecord) -> list[float]:
    return [x for c in case.by_priority("rt") for x in c.latencies_ms]


def be_per_s(case: CaseRecord) -> float | None:
    be = case.by_priority("be")
    if not be or case.error:
        return None
    return sum(c.done for c in be) / case.duration_s


def case_figures(cases: Sequence[CaseRecord]) -> list[CaseFigures]:
    by_label = {c.label: c for c in cases}
    rt_alone = by_label.get("rt-alone")
    be_alone = by_label.get("be-alone")
    alone_ms = _rt_percentiles(rt_alone) if rt_alone else (None, None, None)
    alone_be = be_per_s(be_alone) if be_alone else None
    return [_figures(c, alone_ms, alone_be) for c in cases]


def _rt_percentiles(case: CaseRecord) -> tuple[float | None, ...]:
    lat = rt_latencies_ms(case)
    return tuple(percentile(lat, q) for q in QUANTILES)


def _figures(
    case: CaseRecord, alone_ms: tuple[float | None, ...], alone_be: float | None
) -> CaseFigures:
    if case.error:
        return CaseFigures(case.label, case.policy, error=case.error)
    rt = case.by_priority("rt")
    rt_ms = _rt_percentiles(case)
    offered = sum(c.done + c.skipped + c.errors for c in rt)
    with_slo = [c for c in rt if c.slo_ms is not None]
    attainment = None
    if with_slo and offered:
        attainment = sum(c.slo_met for c in with_slo) / offered
    be = be_per_s(case)
    p = case.preempt
    return CaseFigures(
        label=case.label,
        policy=case.policy,
        rt_ms=rt_ms if rt else (None, None, None),
        rt_x_alone=tuple(ratio(v, a) for v, a in zip(rt_ms, alone_ms, strict=True)),
        rt_slo_attainment=attainment if len(with_slo) == len(rt) else None,
        rt_done=sum(c.done for c in rt) if rt else None,
        rt_skipped=sum(c.skipped for c in rt) if rt else None,
        be_per_s=be,
        be_x_alone=ratio(be, alone_be),
        preemptions=None if p is None else p.count,
        preempt_us=(None, None, None) if p is None else (p.p50_us, p.p99_us, p.max_us),
        util=case.util,
    )
