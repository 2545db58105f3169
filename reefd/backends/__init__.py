"""Device backends behind one `Device` interface, picked by name with lazy imports.

`make_device(name, config)` returns an unstarted device; `pick_backend` says which
backend to run and why: `auto` is cuda when the CUDA driver initialises and sees
the GPU asked for (cuInit and a device count, not only a /dev node), else cpu;
`cuda` on a machine that cannot run it is a BackendError naming the reason. The
cpu and sim backends never import CUDA.
"""

from __future__ import annotations

import ctypes.util
import os
from typing import TYPE_CHECKING, Any

from reefd.errors import BackendError, ConfigError

if TYPE_CHECKING:
    from reefd.backends.device import Device
    from reefd.config import DaemonConfig


def cuda_driver_present() -> tuple[bool, str]:
    """Whether a CUDA driver library and a GPU device node exist, with the reason
    (a cheap check that loads nothing; `cuda_usable` is the real one)."""
    lib = ctypes.util.find_library("cuda")
    if lib is None:
        return False, "no CUDA driver library (libcuda) found"
    if not any(os.path.exists(f"/dev/nvidia{i}") for i in range(16)):
        return False, f"CUDA driver {lib} found but no /dev/nvidia* GPU device"
    return True, f"CUDA driver {lib} and a GPU device found"


def cuda_usable(gpu_index: int = 0, driver: Any = None) -> tuple[bool, str]:
    """Whether the cuda backend can serve GPU `gpu_index` here, with the reason:
    the driver initialises and sees that GPU, and NVRTC loads. `driver` stands
    in for cuda.bindings.driver (tests)."""
    from reefd.backends.cuda_driver import probe
    from reefd.errors import CompileError
    from reefd.kernels.nvrtc import nvrtc_version

    ok, why = probe(gpu_index, driver)
    if not ok:
        return ok, why
    try:
        major, minor = nvrtc_version()
    except CompileError as exc:
        return False, f"{why}, but {exc}"
    return True, f"{why}; NVRTC {major}.{minor}"


def pick_backend(
    requested: str, gpu_index: int = 0, driver: Any = None
) -> tuple[str, str]:
    """Resolve `auto`; returns (backend, reason). Asking for `cuda` where it
    cannot run raises BackendError with the reason (`reefd` prints it and exits
    2), so a misconfigured GPU host never falls back silently."""
    if requested == "cuda":
        ok, why = cuda_usable(gpu_index, driver)
        if not ok:
            raise BackendError(f"--backend cuda: {why}; use --backend cpu or auto")
        return "cuda", f"--backend cuda requested; {why}"
    if requested != "auto":
        return requested, f"--backend {requested} requested"
    ok, why = cuda_usable(gpu_index, driver)
    if ok:
        return "cuda", why
    return "cpu", f"{why}; using the cpu backend"


def _profiles(config: DaemonConfig) -> str | None:
    """The state directory's profile store, if `reef-profile` wrote one."""
    from reefd.profiler.store import DB_NAME

    path = config.resolved_state_dir() / DB_NAME
    return str(path) if path.is_file() else None


def make_device(name: str, config: DaemonConfig | None = None) -> Device:
    """An unstarted device of backend `name`, set up from `config`."""
    from reefd.config import DaemonConfig

    config = config or DaemonConfig()
    if name == "cpu":
        from reefd.backends.cpu import CpuDevice

        return CpuDevice(torch_threads=config.torch_threads)
    if name == "cuda":
        from reefd.backends.cuda import CudaDevice

        return CudaDevice(
            gpu_index=config.gpu_index,
            preempt_flag=config.preempt_flag,
            device_memory_limit_bytes=config.device_memory_limit_bytes,
            rt_gpu_queue_launches=config.rt_gpu_queue_launches,
            be_gpu_queue_launches=config.be_gpu_queue_launches,
            profiles_path=_profiles(config),
        )
    if name == "sim":
        from reefd.sim.paced import PacedSimDevice

        return PacedSimDevice()
    raise ConfigError(
        f"unknown backend {name!r}; choose one of ['auto', 'cpu', 'cuda', 'sim']"
    )
