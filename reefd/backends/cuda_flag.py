"""The preempt flag of the cuda backend, in mapped host or device memory.

Running preemptible kernels read the flag before claiming each virtual block.
`MappedFlag` keeps it in mapped, page-locked host memory: a host store is seen
by the next read of every running kernel, whatever the streams are doing, and
each read crosses PCIe. `DeviceFlag` keeps it in device memory, written in
stream order: raised on the RT stream, lowered on the BE stream after the raise.
Which is faster is measured on a GPU (config `preempt_flag`, docs/gpu-owed.md).

Imports reefd only; driver calls go through the CheckedDriver it is given.
"""

from __future__ import annotations

import ctypes
from typing import Any

from reefd.backends.cuda_driver import CudaError
from reefd.backends.cuda_memory import DeviceMemory
from reefd.config import PREEMPT_FLAGS as PLACEMENTS

__all__ = ["PLACEMENTS", "DeviceFlag", "MappedFlag"]


class MappedFlag:
    """The flag in mapped, page-locked host memory.

    A host store is seen by the next flag read of every running preemptible
    kernel, whatever the streams are doing; each read crosses PCIe, which is
    the cost to measure against `DeviceFlag`.
    """

    placement = "mapped"

    def __init__(self, drv: Any) -> None:
        self._drv = drv
        flags = drv.CU_MEMHOSTALLOC_DEVICEMAP | drv.CU_MEMHOSTALLOC_PORTABLE
        self._host = int(drv.cuMemHostAlloc(4, flags))
        self._word = ctypes.c_int32.from_address(self._host)
        self._word.value = 0
        self.device_ptr = int(drv.cuMemHostGetDevicePointer(self._host, 0))

    def set(self, raised: bool) -> None:
        self._word.value = int(raised)

    def close(self) -> None:
        self._drv.cuMemFreeHost(self._host)


class DeviceFlag:
    """The flag in device memory, written in stream order.

    Raised on the RT stream (lands before the RT work launched after it);
    lowered on the BE stream after waiting for the raise (so the next BE launch
    never sees a stale 1, and a lower cannot overtake a raise). The write is
    cuStreamWriteValue32, done by the GPU's front end without an SM (a full
    persistent BE grid cannot delay it); where the driver does not support
    stream memory operations it is cuMemsetD32Async.
    """

    placement = "device"

    def __init__(self, drv: Any, memory: DeviceMemory, rt: Any, be: Any) -> None:
        self._drv = drv
        self._memory = memory
        self._rt, self._be = rt, be
        self.device_ptr = memory.alloc(4, "the preempt flag")
        self._raised = drv.cuEventCreate(drv.CUevent_flags.CU_EVENT_DISABLE_TIMING)
        self.write_call = "cuStreamWriteValue32"
        try:
            self._write(0, be)
        except CudaError as exc:
            if exc.result_name != "CUDA_ERROR_NOT_SUPPORTED":
                raise
            self.write_call = "cuMemsetD32Async"
            self._write(0, be)
        drv.cuStreamSynchronize(be)

    def _write(self, value: int, stream: Any) -> None:
        drv = self._drv
        if self.write_call == "cuStreamWriteValue32":
            flags = drv.CUstreamWriteValue_flags.CU_STREAM_WRITE_VALUE_DEFAULT
            drv.cuStreamWriteValue32(stream, self.device_ptr, value, flags)
        else:
            drv.cuMemsetD32Async(self.device_ptr, value, 1, stream)

    def set(self, raised: bool) -> None:
        if raised:
            self._write(1, self._rt)
            self._drv.cuEventRecord(self._raised, self._rt)
        else:
            self._drv.cuStreamWaitEvent(self._be, self._raised, 0)
            self._write(0, self._be)

    def close(self) -> None:
        self._drv.cuEventDestroy(self._raised)
        self._memory.free(self.device_ptr)
