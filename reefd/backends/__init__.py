"""Device backends behind one `Device` interface, picked by name with lazy imports.

`make_device(name)` returns an unstarted device; `pick_backend("auto")` says which
backend a machine supports and why. The cpu and sim backends never import CUDA.
"""

from __future__ import annotations

import ctypes.util
import os

from reefd.errors import ConfigError


def cuda_driver_present() -> tuple[bool, str]:
    """Whether a CUDA driver library and a GPU device node exist, with the reason."""
    lib = ctypes.util.find_library("cuda")
    if lib is None:
        return False, "no CUDA driver library (libcuda) found"
    if not any(os.path.exists(f"/dev/nvidia{i}") for i in range(16)):
        return False, f"CUDA driver {lib} found but no /dev/nvidia* GPU device"
    return True, f"CUDA driver {lib} and a GPU device found"


def pick_backend(requested: str) -> tuple[str, str]:
    """Resolve `auto`; returns (backend, reason)."""
    if requested != "auto":
        return requested, f"--backend {requested} requested"
    ok, why = cuda_driver_present()
    if ok:
        return "cuda", why
    return "cpu", f"{why}; using the cpu backend"


def make_device(name: str, *, torch_threads: int = 1):  # -> Device
    if name == "cpu":
        from reefd.backends.cpu import CpuDevice

        return CpuDevice(torch_threads=torch_threads)
    if name in ("cuda", "sim"):
        raise ConfigError(
            f"backend {name!r} is not built yet (see docs/gpu-owed.md and the open "
            "issues); use --backend cpu"
        )
    raise ConfigError(
        f"unknown backend {name!r}; choose one of ['auto', 'cpu', 'cuda', 'sim']"
    )
