"""What a results file records about its run: the device, the versions, the
command and the settings; and `missing_gpu_support`, why this machine cannot
time kernels (None when it can)."""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import platform
import shlex
import subprocess
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

import reefd
from bench.kernel_bench.rows import TOLERANCE
from bench.kernel_bench.timing import TIMING
from bench.kernel_bench.torch_side import TF32_SETTING

if TYPE_CHECKING:
    from reefd.kernels.launcher import Launcher


def missing_gpu_support() -> str | None:
    """Why the timing cannot run here (None when it can)."""
    try:
        import cuda.bindings.driver  # noqa: F401
    except ImportError as exc:
        return (
            f"cuda.bindings is not importable ({exc}); install the driver bindings "
            "with `pip install 'reefd[cuda]'`"
        )
    if not torch.cuda.is_available():
        return (
            f"torch {torch.__version__} sees no CUDA device (built for CUDA "
            f"{torch.version.cuda or 'none: a CPU-only build'})"
        )
    from reefd.errors import CompileError
    from reefd.kernels.nvrtc import nvrtc_version

    try:
        nvrtc_version()
    except CompileError as exc:
        return str(exc)
    return None


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _nvidia_driver() -> str:
    try:
        import pynvml

        pynvml.nvmlInit()
        version = pynvml.nvmlSystemGetDriverVersion()
        return version.decode() if isinstance(version, bytes) else str(version)
    except Exception:  # pynvml is optional: fall back to nvidia-smi
        pass
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        )
        return out.stdout.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "unknown"


def device_meta(launcher: Launcher) -> dict[str, Any]:
    from reefd.kernels.nvrtc import nvrtc_version

    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    cuda_driver = launcher.driver_version()
    return {
        "device": {
            "name": props.name,
            "arch": launcher.arch,
            "sms": launcher.sms,
            "l2_bytes": launcher.l2_bytes,
            "memory_bytes": props.total_memory,
            "driver": _nvidia_driver(),
            "cuda_driver_api": f"{cuda_driver // 1000}.{cuda_driver % 1000 // 10}",
        },
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torch_cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
            "reefd": reefd.__version__,
            "cuda_bindings": _version("cuda-bindings"),
            "nvrtc": ".".join(map(str, nvrtc_version())),
            "matplotlib": _version("matplotlib"),
        },
    }


def run_meta(args: argparse.Namespace, argv: Sequence[str]) -> dict[str, Any]:
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": shlex.join(["python", "-m", "bench.kernels", *argv]),
        "host": platform.node(),
        "models": args.models,
        "batch": args.batch,
        "settings": {
            "repeat": args.repeat,
            "warmup": args.warmup,
            "budget_s_per_measurement": args.budget,
            "kernels": args.kernels,
            "max_per_kernel": args.max_per_kernel,
            "limit": args.limit,
            "l2_flush": not args.no_flush,
            "torch_tf32": TF32_SETTING + " (TF32 on only for tf32 calls)",
            "torch_cudnn_benchmark": torch.backends.cudnn.benchmark,
            "timing": TIMING,
            "preemptible_grid": "min(SMs x CTAs/SM from ptxas resources, n_vb)",
            "tolerance_rel_l2": TOLERANCE,
        },
    }
