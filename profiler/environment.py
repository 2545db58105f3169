"""The environment a profiling run measures in: host and versions.

Owns collecting what every stored figure is tagged with that does not need a
GPU (CPU model, logical CPUs, torch / reefd / Python / CUDA runtime versions,
host name, torch threads). The GPU facts (name, driver, clocks, power limit)
come from the cuda runner and nvml.py.

Imports the standard library, torch and reefd only.
"""

from __future__ import annotations

import os
import platform
from typing import Any

import torch

import reefd
from reefd.profiler.records import Environment


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux), else what platform says."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def environment(
    backend: str,
    *,
    device_name: str | None = None,
    resources_arch: str | None,
    **gpu: Any,
) -> Environment:
    """The environment of a run on `backend`; `gpu` adds the GPU-only fields
    (driver_version, nvml_version, sm_count, clocks, power limit)."""
    cpu = cpu_model()
    return Environment(
        backend=backend,
        device_name=device_name or cpu,
        torch_version=torch.__version__,
        reefd_version=reefd.__version__,
        python_version=platform.python_version(),
        hostname=platform.node(),
        cpu_model=cpu,
        cpu_count=os.cpu_count() or 0,
        torch_threads=torch.get_num_threads(),
        resources_arch=resources_arch,
        cuda_version=torch.version.cuda,
        **gpu,
    )
