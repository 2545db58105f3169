"""GPU timing: the `Timer` (CUDA events, warm-up, L2 flush, the host kept ahead
of the GPU, the median of N runs; .library/device/METHOD.md), the measured
ceilings (copy bandwidth, matmul rates per precision) and the floor of a call
they give."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from bench.kernel_bench.torch_side import torch_tf32

TIMING = (
    "CUDA events around each run on torch's current stream; L2 flushed before "
    "every run (a buffer of 2x L2 zeroed); host kept ahead of the GPU; median"
)


@dataclass(frozen=True)
class Timing:
    median_us: float
    p10_us: float
    p90_us: float
    runs: int


class Timer:
    """Median GPU time of a callable: warm-up runs, then up to `repeat` runs
    (fewer when one run is long: about `budget_s` in all, at least `min_runs`),
    each between two CUDA events, after an L2 flush.

    The host is kept ahead of the GPU: before each chunk of runs the GPU sleeps
    (torch.cuda._sleep) 1.5x as long as the host took to queue that many runs
    in the warm-up, so every run's kernels are queued before its start event
    executes and host launch costs stay out of the times.
    """

    CHUNK = 16

    def __init__(
        self,
        repeat: int,
        warmup: int,
        flush_bytes: int,
        budget_s: float = 0.5,
        min_runs: int = 10,
    ) -> None:
        self.repeat, self.warmup = repeat, max(1, warmup)
        self.budget_s, self.min_runs = budget_s, min(min_runs, repeat)
        self.cache = (
            torch.empty(flush_bytes // 4, dtype=torch.int32, device="cuda")
            if flush_bytes
            else None
        )
        self.cycles_per_us = self._calibrate_sleep()

    @staticmethod
    def _calibrate_sleep() -> float:
        """GPU clock cycles per us of torch.cuda._sleep (0: not available)."""
        sleep = getattr(torch.cuda, "_sleep", None)
        if sleep is None:
            return 0.0
        cycles = 1_000_000
        elapsed = []
        for _ in range(3):
            start, end = (torch.cuda.Event(enable_timing=True) for _ in range(2))
            start.record()
            sleep(cycles)
            end.record()
            torch.cuda.synchronize()
            elapsed.append(start.elapsed_time(end) * 1000.0)
        return cycles / max(min(elapsed), 1.0)

    @property
    def host_ahead(self) -> str:
        if not self.cycles_per_us:
            return "no torch.cuda._sleep: host launch gaps may be in the times"
        return (
            f"torch.cuda._sleep before every {self.CHUNK} runs, 1.5x the host's "
            f"queueing time ({self.cycles_per_us:.0f} cycles/us)"
        )

    def flush(self) -> None:
        if self.cache is not None:
            self.cache.zero_()

    def sleep(self, us: float) -> None:
        if self.cycles_per_us:
            cycles = int(min(us, 20_000.0) * self.cycles_per_us)
            torch.cuda._sleep(cycles)

    def measure(
        self, fn: Callable[[], Any], before: Callable[[], Any] | None = None
    ) -> Timing:
        start = time.perf_counter()
        for _ in range(self.warmup):
            if before:
                before()
            self.flush()
            fn()
        host_us = (time.perf_counter() - start) * 1e6 / self.warmup
        torch.cuda.synchronize()
        one = self._run(fn, before, 1, host_us)[0]
        runs = max(self.min_runs, min(self.repeat, int(self.budget_s * 1e6 / one)))
        times = sorted(self._run(fn, before, runs, host_us))
        q = statistics.quantiles(times, n=10) if len(times) > 1 else times * 9
        return Timing(statistics.median(times), q[0], q[-1], len(times))

    def _run(
        self,
        fn: Callable[[], Any],
        before: Callable[[], Any] | None,
        runs: int,
        host_us: float,
    ) -> list[float]:
        events = [
            (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
            for _ in range(runs)
        ]
        for i, (start, end) in enumerate(events):
            if i % self.CHUNK == 0:
                self.sleep(1.5 * host_us * min(self.CHUNK, runs - i) + 20.0)
            if before:
                before()
            self.flush()
            start.record()
            fn()
            end.record()
        torch.cuda.synchronize()
        return [max(start.elapsed_time(end) * 1000.0, 1e-3) for start, end in events]


def measure_ceilings(timer: Timer, n: int = 8192) -> dict[str, float]:
    """Device-to-device copy bandwidth (bytes read + written per s) and dense
    matmul rates (flop/s) per precision, through torch on random data."""
    out: dict[str, float] = {}
    src = torch.randn(1 << 27, device="cuda")  # 512 MiB
    dst = torch.empty_like(src)
    t = timer.measure(lambda: dst.copy_(src)).median_us
    out["copy_bytes_per_s"] = 2 * src.nbytes / (t * 1e-6)
    src = dst = torch.empty(0)
    for name, dtype, tf32 in (
        ("fp32", torch.float32, False),
        ("tf32", torch.float32, True),
        ("bf16", torch.bfloat16, False),
        ("f16", torch.float16, False),
    ):
        a = torch.randn(n, n, device="cuda").to(dtype)
        b = torch.randn(n, n, device="cuda").to(dtype)
        with torch_tf32(tf32):
            t = timer.measure(lambda a=a, b=b: torch.mm(a, b)).median_us
        out[f"{name}_flop_per_s"] = 2 * n**3 / (t * 1e-6)
    return out


def floor_us(flops: int, nbytes: int, rate: float, bandwidth: float) -> float:
    """The larger of the arithmetic time and the memory time, in us."""
    return max(flops / rate, nbytes / bandwidth) * 1e6
