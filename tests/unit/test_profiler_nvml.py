"""profiler/nvml.py against a fake pynvml (no GPU here): device facts, the
window's clocks, mean power from the energy counter and GPM metrics, and None
wherever the device does not support a reading."""

from __future__ import annotations

import sys
import types
from types import SimpleNamespace

import pytest

from reefd.profiler.nvml import Nvml


class NVMLError(Exception):
    def __init__(self, value: int = 0) -> None:
        super().__init__(f"NVML error {value}")


def fake_pynvml(gpm: bool = True, bus_ok: bool = True) -> types.ModuleType:
    nv = types.ModuleType("pynvml")
    nv.NVMLError = NVMLError
    nv.NVML_ERROR_INVALID_ARGUMENT = 2
    nv.NVML_SUCCESS = 0
    nv.NVML_CLOCK_SM, nv.NVML_CLOCK_MEM = 1, 2
    nv.NVML_GPM_METRICS_GET_VERSION = 1
    nv.NVML_GPM_METRIC_SM_OCCUPANCY, nv.NVML_GPM_METRIC_DRAM_BW_UTIL = 3, 10
    energy = iter([1_000_000, 1_000_000 + 150_000])  # mJ: 150 J over the window
    freed: list[object] = []
    nv.freed = freed

    def by_bus(bus: bytes) -> str:
        if not bus_ok:
            raise NVMLError(13)
        return f"handle:{bus.decode()}"

    def unsupported(*_: object) -> None:
        raise NVMLError(3)

    def metrics_get(request: SimpleNamespace) -> SimpleNamespace:
        for m in request.metrics[: request.numMetrics]:
            m.value = {3: 61.5, 10: 42.25}[m.metricId]
            m.nvmlReturn = 0
        return request

    nv.nvmlInit = lambda: None
    nv.nvmlShutdown = lambda: None
    nv.nvmlDeviceGetHandleByPciBusId = by_bus
    nv.nvmlDeviceGetHandleByIndex = lambda i: f"handle:{i}"
    nv.nvmlSystemGetDriverVersion = lambda: b"575.51"
    nv.nvmlSystemGetNVMLVersion = lambda: "12.575.51"
    nv.nvmlDeviceGetMaxClockInfo = lambda h, k: {1: 1980, 2: 2619}[k]
    nv.nvmlDeviceGetClockInfo = lambda h, k: {1: 1755, 2: 2619}[k]
    nv.nvmlDeviceGetEnforcedPowerLimit = lambda h: 700_000
    nv.nvmlDeviceGetTotalEnergyConsumption = lambda h: next(energy)
    nv.nvmlGpmQueryDeviceSupport = (
        (lambda h: SimpleNamespace(isSupportedDevice=1)) if gpm else unsupported
    )
    nv.nvmlGpmSampleAlloc = object
    nv.nvmlGpmSampleGet = lambda h, s: None
    nv.nvmlGpmSampleFree = freed.append
    nv.c_nvmlGpmMetricsGet_t = lambda: SimpleNamespace(
        version=0,
        numMetrics=0,
        sample1=None,
        sample2=None,
        metrics=[
            SimpleNamespace(metricId=0, value=0.0, nvmlReturn=1) for _ in range(98)
        ],
    )
    nv.nvmlGpmMetricsGet = metrics_get
    return nv


def test_facts_and_a_window_on_hopper(monkeypatch: pytest.MonkeyPatch) -> None:
    nv = fake_pynvml()
    monkeypatch.setitem(sys.modules, "pynvml", nv)
    notes: list[str] = []
    nvml = Nvml.open("0000:3b:00.0", 0, notes.append)
    assert nvml is not None and nvml.handle == "handle:0000:3b:00.0" and not notes
    assert nvml.facts() == {
        "driver_version": "575.51",
        "nvml_version": "12.575.51",
        "sm_clock_max_mhz": 1980,
        "mem_clock_max_mhz": 2619,
        "power_limit_w": 700.0,
    }
    with nvml.window() as window:
        pass
    r = window.readings
    assert (r.sm_clock_mhz, r.mem_clock_mhz) == (1755, 2619)
    assert (r.sm_occupancy_pct, r.dram_bw_util_pct) == (61.5, 42.25)
    assert r.power_w is not None and r.power_w > 0  # 150 J / the window's seconds
    assert len(nv.freed) == 2


def test_without_gpm_or_bus_id_readings_degrade_to_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(gpm=False, bus_ok=False))
    notes: list[str] = []
    nvml = Nvml.open("0000:3b:00.0", 1, notes.append)
    assert nvml is not None and nvml.handle == "handle:1"
    assert "using index 1" in notes[0]
    with nvml.window() as window:
        pass
    assert window.readings.sm_occupancy_pct is None
    assert window.readings.dram_bw_util_pct is None
    assert window.readings.sm_clock_mhz == 1755


def test_without_pynvml_there_is_a_note(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails
    notes: list[str] = []
    assert Nvml.open(None, 0, notes.append) is None
    assert "pynvml is not installed" in notes[0]
