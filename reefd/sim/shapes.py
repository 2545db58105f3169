"""GPU shapes the simulator and the padding rule share.

Owns `h100_shape()`: an H100 SXM's 132 SMs with sm_90's per-SM limits and the
kernel library's occupancy rule (`reefd.kernels.__main__.ctas_per_sm`: 256
threads per CTA, registers in steps of 8, shared memory plus 1 KiB reserved
per CTA). Imports the kernel library's occupancy table only; no NVRTC call.
"""

from __future__ import annotations

import functools

from reefd.kernels.__main__ import SM_LIMITS, ctas_per_sm
from reefd.scheduler.padding import DeviceShape

H100_SMS = 132
"""SMs of an H100 SXM5 (the PCIe card has 114)."""
H100_ARCH = "sm_90"


def device_shape(sms: int, arch: str) -> DeviceShape:
    """`sms` SMs with `arch`'s per-SM limits (occupancy memoised)."""
    if arch not in SM_LIMITS:
        raise ValueError(f"no SM limits for {arch!r}; known: {', '.join(SM_LIMITS)}")
    limits = SM_LIMITS[arch]

    @functools.cache
    def occupancy(registers: int, smem_bytes: int) -> int:
        return ctas_per_sm(registers, smem_bytes, limits)

    return DeviceShape(sms=sms, ctas_per_sm=occupancy)


def h100_shape() -> DeviceShape:
    return device_shape(H100_SMS, H100_ARCH)
