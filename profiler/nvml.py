"""NVML readings for the cuda backend: device facts, clocks, power, GPM.

Owns everything the profiler asks NVML (through pynvml, from the
nvidia-ml-py wheel in reefd's `cuda` extra): the driver and NVML versions, max
clocks and power limit of the device (per run), and over a window of
back-to-back task runs: the SM and memory clocks at its end, the mean board
power (from the total-energy counter), and on Hopper and later the GPM metrics
SM occupancy and DRAM bandwidth utilisation. Anything the device or driver
does not support reads as None; nothing here raises once `Nvml.open` worked.

Imports the standard library and reefd.profiler.records; pynvml is imported in
`Nvml.open` only.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from reefd.profiler.records import GpuReadings


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass
class Window:
    """Filled in when a `Nvml.window()` block exits."""

    readings: GpuReadings = field(default_factory=GpuReadings)


class Nvml:
    """An initialised NVML handle on one device."""

    def __init__(self, nv: Any, handle: Any) -> None:
        self.nv = nv
        self.handle = handle
        self.gpm = self._try(
            lambda: bool(nv.nvmlGpmQueryDeviceSupport(handle).isSupportedDevice)
        )

    @classmethod
    def open(cls, pci_bus_id: str | None, index: int, note: Callable[[str], None]):
        """NVML on the device with this PCI bus id (else this index), or None
        with a note when pynvml or NVML is missing."""
        try:
            import pynvml as nv
        except ImportError:
            note(
                "NVML readings not recorded: pynvml is not installed "
                "(pip install 'reefd[cuda]' brings nvidia-ml-py)"
            )
            return None
        try:
            nv.nvmlInit()
        except nv.NVMLError as exc:
            note(f"NVML readings not recorded: {exc}")
            return None
        try:
            if not pci_bus_id:
                raise nv.NVMLError(nv.NVML_ERROR_INVALID_ARGUMENT)
            handle = nv.nvmlDeviceGetHandleByPciBusId(pci_bus_id.encode())
        except nv.NVMLError:
            try:  # CUDA and NVML number devices alike unless remapped
                handle = nv.nvmlDeviceGetHandleByIndex(index)
            except nv.NVMLError as exc:
                note(f"NVML readings not recorded: {exc}")
                return None
            note(f"NVML found no device at PCI bus {pci_bus_id}; using index {index}")
        return cls(nv, handle)

    @staticmethod
    def _try(read: Callable[[], Any]) -> Any:
        try:
            return read()
        except Exception:  # NVML_ERROR_NOT_SUPPORTED and friends: no reading
            return None

    def facts(self) -> dict[str, Any]:
        """Per-run device facts, as Environment fields."""
        nv, h = self.nv, self.handle
        limit_mw = self._try(lambda: nv.nvmlDeviceGetEnforcedPowerLimit(h))
        return {
            "driver_version": self._try(lambda: _text(nv.nvmlSystemGetDriverVersion())),
            "nvml_version": self._try(lambda: _text(nv.nvmlSystemGetNVMLVersion())),
            "sm_clock_max_mhz": self._try(
                lambda: nv.nvmlDeviceGetMaxClockInfo(h, nv.NVML_CLOCK_SM)
            ),
            "mem_clock_max_mhz": self._try(
                lambda: nv.nvmlDeviceGetMaxClockInfo(h, nv.NVML_CLOCK_MEM)
            ),
            "power_limit_w": None if limit_mw is None else limit_mw / 1000.0,
        }

    def _gpm(self, sample1: Any, sample2: Any) -> tuple[float | None, float | None]:
        nv = self.nv
        request = nv.c_nvmlGpmMetricsGet_t()
        request.version = nv.NVML_GPM_METRICS_GET_VERSION
        request.numMetrics = 2
        request.sample1, request.sample2 = sample1, sample2
        request.metrics[0].metricId = nv.NVML_GPM_METRIC_SM_OCCUPANCY
        request.metrics[1].metricId = nv.NVML_GPM_METRIC_DRAM_BW_UTIL
        nv.nvmlGpmMetricsGet(request)
        values = []
        for metric in request.metrics[:2]:
            ok = metric.nvmlReturn == nv.NVML_SUCCESS
            values.append(float(metric.value) if ok else None)
        return values[0], values[1]

    @contextlib.contextmanager
    def window(self) -> Iterator[Window]:
        """Readings over the block: clocks at its end, mean power, GPM metrics.

        The caller synchronises the GPU before the block ends, so the window
        covers exactly the work it ran.
        """
        nv, h = self.nv, self.handle
        out = Window()
        samples = None
        if self.gpm:
            samples = self._try(
                lambda: (nv.nvmlGpmSampleAlloc(), nv.nvmlGpmSampleAlloc())
            )
        energy0 = self._try(lambda: nv.nvmlDeviceGetTotalEnergyConsumption(h))
        t0 = time.perf_counter()
        if samples:
            self._try(lambda: nv.nvmlGpmSampleGet(h, samples[0]))
        try:
            yield out
        finally:
            gpm: tuple[float | None, float | None] = (None, None)
            if samples:
                if self._try(lambda: nv.nvmlGpmSampleGet(h, samples[1]) or True):
                    gpm = self._try(lambda: self._gpm(*samples)) or (None, None)
                for s in samples:
                    self._try(lambda s=s: nv.nvmlGpmSampleFree(s))
            energy1 = self._try(lambda: nv.nvmlDeviceGetTotalEnergyConsumption(h))
            seconds = time.perf_counter() - t0
            power = None
            if energy0 is not None and energy1 is not None and seconds > 0:
                power = (energy1 - energy0) / 1000.0 / seconds  # mJ -> W
            out.readings = GpuReadings(
                sm_clock_mhz=self._try(
                    lambda: nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM)
                ),
                mem_clock_mhz=self._try(
                    lambda: nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_MEM)
                ),
                power_w=power,
                sm_occupancy_pct=gpm[0],
                dram_bw_util_pct=gpm[1],
            )

    def close(self) -> None:
        self._try(self.nv.nvmlShutdown)
