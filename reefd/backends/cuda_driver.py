"""The CUDA driver API as the cuda backend reaches it: loading it, checking calls.

Owns `CheckedDriver`, the one `check()` every driver call of the backend goes
through: a `cu*` function reached through it raises `CudaError` (a BackendError)
naming the call and its CUresult, and on success returns the call's values
unpacked (None, one value, or a tuple), so no caller ever looks at a CUresult.
Also owns `probe`, which says whether a driver and a usable GPU are present
(cuInit and the device count, not only a /dev node) for backend selection.

Imports the standard library and reefd.errors only; `cuda.bindings.driver` is
imported lazily (`load_driver`), so this module loads on machines without it.
Tests hand `CheckedDriver` a fake driver module instead of the real one.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from reefd.errors import BackendError

DEVICE_ORDER = "PCI_BUS_ID"
"""CUDA_DEVICE_ORDER the daemon uses, so `--gpu N` means what nvidia-smi shows."""


class CudaError(BackendError):
    """A driver call returned an error; names the call and the CUresult."""

    def __init__(self, call: str, result_name: str, text: str = "") -> None:
        detail = f" ({text})" if text else ""
        super().__init__(f"CUDA driver call {call} failed: {result_name}{detail}")
        self.call = call
        self.result_name = result_name


def load_driver() -> Any:
    """The `cuda.bindings.driver` module, or a BackendError saying how to get it."""
    try:
        from cuda.bindings import driver
    except ImportError as exc:
        raise BackendError(
            f"cuda.bindings is not importable ({exc}); install the CUDA extra: "
            "pip install 'reefd[cuda]'"
        ) from None
    return driver


def use_pci_bus_order() -> None:
    """Number GPUs in PCI bus order (as nvidia-smi does) unless the environment
    says otherwise; must run before the first cuInit of the process."""
    os.environ.setdefault("CUDA_DEVICE_ORDER", DEVICE_ORDER)


class CheckedDriver:
    """A driver module whose `cu*` functions check their CUresult.

    `drv.cuMemAlloc(n)` returns the pointer or raises CudaError naming
    `cuMemAlloc` and the CUresult; anything else (enums, types, constants) is
    the wrapped module's attribute, unchanged. Wrappers are cached on first use.
    """

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self._success = raw.CUresult.CUDA_SUCCESS

    def __getattr__(self, name: str) -> Any:
        value = getattr(self.raw, name)
        if name.startswith("cu") and callable(value):
            value = self._checked(name, value)
        setattr(self, name, value)  # later lookups skip __getattr__
        return value

    def _checked(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any) -> Any:
            try:
                result = fn(*args)
            except Exception as exc:  # the bindings failed before the driver ran
                raise BackendError(
                    f"CUDA driver call {name} failed: {type(exc).__name__}: {exc}"
                ) from exc
            return self.check(name, result)

        call.__name__ = name
        return call

    def check(self, call: str, result: Any) -> Any:
        """Unpack a driver call's `(CUresult, values...)`, raising on an error."""
        err, *values = result if isinstance(result, tuple) else (result,)
        if err != self._success:
            raise CudaError(call, *self.describe(err))
        if not values:
            return None
        return values[0] if len(values) == 1 else tuple(values)

    def describe(self, err: Any) -> tuple[str, str]:
        """(name, text) of a CUresult, e.g. ('CUDA_ERROR_ILLEGAL_ADDRESS',
        'an illegal memory access was encountered')."""
        name = getattr(err, "name", str(err))
        text = ""
        try:
            got, raw_name = self.raw.cuGetErrorName(err)
            if got == self._success and raw_name:
                name = _text(raw_name)
            got, raw_text = self.raw.cuGetErrorString(err)
            if got == self._success and raw_text:
                text = _text(raw_text)
        except Exception:  # a broken driver must not hide the first error
            pass
        return name, text


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.split(b"\0", 1)[0].decode(errors="replace")
    return str(value)


def version_text(version: int) -> str:
    """cuDriverGetVersion's 12080 as '12.8'."""
    return f"{version // 1000}.{version % 1000 // 10}"


def probe(gpu_index: int, driver: Any | None = None) -> tuple[bool, str]:
    """Whether the driver initialises and GPU `gpu_index` exists, with the reason.

    Calls cuInit (after `use_pci_bus_order`) and counts devices, so a machine
    with a driver library but no usable GPU (a container without the device
    nodes, a driver/kernel-module mismatch) is told apart from a working one.
    """
    use_pci_bus_order()
    if driver is None:
        try:
            driver = load_driver()
        except BackendError as exc:
            return False, str(exc)
    drv = CheckedDriver(driver)
    try:
        drv.cuInit(0)
    except CudaError as exc:
        return False, f"the CUDA driver did not initialise: {exc}"
    except BackendError as exc:  # the bindings found no libcuda to call
        cause = exc.__cause__ or exc
        return False, f"no CUDA driver library could be loaded ({cause})"
    try:
        version = version_text(drv.cuDriverGetVersion())
        count = drv.cuDeviceGetCount()
        if count < 1:
            return False, f"CUDA driver {version} initialised but sees no GPU"
        if not 0 <= gpu_index < count:
            return False, (
                f"GPU {gpu_index} does not exist: the CUDA driver sees {count} "
                f"GPU(s), numbered 0..{count - 1} in PCI bus order"
            )
        name = _text(drv.cuDeviceGetName(256, drv.cuDeviceGet(gpu_index)))
    except BackendError as exc:
        return False, f"the CUDA driver initialised but failed: {exc}"
    return True, f"CUDA driver {version} sees {count} GPU(s); GPU {gpu_index} is {name}"
