"""GPU utilisation of a live cuda run, sampled through NVML.

Owns `UtilSampler`: a thread that reads `nvmlDeviceGetUtilizationRates`
(the share of the last sample period in which any kernel ran: busy time, not
SM occupancy) every 100 ms for the whole run, and `mean_between` to average
the samples of one case's measured window. Without nvidia-ml-py (`pynvml`)
or a driver it records nothing and says why; the suite then prints "n/a".
"""

from __future__ import annotations

import threading
import time
from typing import Any


class UtilSampler:
    def __init__(self, gpu_index: int = 0, period_s: float = 0.1) -> None:
        self.gpu_index = gpu_index
        self.period_s = period_s
        self.samples: list[tuple[float, float]] = []
        """(wall-clock time, utilisation fraction)."""
        self.why_not = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> UtilSampler:
        try:
            import pynvml

            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(self.gpu_index)
        except Exception as exc:  # no module, no driver, no GPU: say so
            self.why_not = f"n/a (NVML: {type(exc).__name__}: {exc})"
            return self
        self._thread = threading.Thread(
            target=self._run, args=(pynvml, handle), name="nvml-util", daemon=True
        )
        self._thread.start()
        return self

    def _run(self, pynvml: Any, handle: Any) -> None:
        while not self._stop.wait(self.period_s):
            try:
                rates = pynvml.nvmlDeviceGetUtilizationRates(handle)
            except Exception as exc:
                self.why_not = f"n/a (NVML stopped: {exc})"
                return
            self.samples.append((time.time(), rates.gpu / 100.0))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def mean_between(self, start_s: float, end_s: float) -> float | None:
        xs = [u for t, u in self.samples if start_s <= t <= end_s]
        return sum(xs) / len(xs) if xs else None
