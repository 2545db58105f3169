"""The sim device paced by the wall clock, so the daemon can serve on it.

Owns `PacedSimDevice`: the same simulated GPU, but its virtual clock is
`time.monotonic_ns()` (the engine's clock), a thread advances it as wall time
passes and calls the engine's waker when completions are ready, and every
Device call first brings the simulation up to now. `reefd --backend sim` uses
it: real clients, real protocol, simulated kernel timing, zero-filled outputs.
The virtual-time runner (`reefd.sim.runner`) does not: it drives `SimDevice`
directly and needs no threads.

Imports the sim backend and the standard library's threading and time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from reefd.backends.device import DeviceLaunch
from reefd.backends.sim import SimDevice
from reefd.scheduler.plan import Completion, Stream


class PacedSimDevice(SimDevice):
    name = "sim"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._cond = threading.Condition()
        self._closing = False
        self._thread: threading.Thread | None = None

    def describe(self) -> str:
        return super().describe().replace("virtual clock", "paced by the wall clock")

    def start(self, waker: Callable[[], None]) -> None:
        super().start(waker)
        with self._cond:
            self.gpu.advance(time.monotonic_ns())
        self._thread = threading.Thread(
            target=self._run, name="reefd-sim-device", daemon=True
        )
        self._thread.start()

    def _catch_up(self) -> None:
        """Run the simulation up to now (the caller holds the lock)."""
        now = time.monotonic_ns()
        if now > self.gpu.now_ns:
            self.gpu.advance(now)

    def _run(self) -> None:
        with self._cond:
            while not self._closing:
                self._catch_up()
                if self.gpu.has_completions:
                    self._waker()
                next_ns = self.gpu.next_group_end_ns()
                timeout = None
                if next_ns is not None:
                    timeout = max(0.0, (next_ns - time.monotonic_ns()) / 1e9)
                self._cond.wait(timeout)

    def launch(self, launch: DeviceLaunch) -> None:
        with self._cond:
            self._catch_up()
            self.gpu.launch(launch)
            self._cond.notify()

    def drop_queued(self, stream: Stream) -> list[DeviceLaunch]:
        with self._cond:
            self._catch_up()
            return self.gpu.drop_queued(stream)

    def set_preempt(self, flag: bool) -> None:
        with self._cond:
            self._catch_up()
            self.gpu.set_preempt(flag)
            self._cond.notify()

    def poll(self) -> list[Completion]:
        with self._cond:
            self._catch_up()
            return self.gpu.poll()

    def busy(self) -> bool:
        with self._cond:
            self._catch_up()
            return self.gpu.busy()

    def close(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout=5)
