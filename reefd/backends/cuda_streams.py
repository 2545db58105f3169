"""Launching on the GPU streams and completing launches, for the cuda backend.

Owns `GpuStreams`: the RT and BE streams' host queues (StreamQueue), pushing a
launch to its GPU stream when there is room, the completion thread of each
stream, the event pool, the pinned counter slots and the clock anchor.

Pushing a launch (any thread, under the lock): order the stream after the
task arena's input copies (once per stream), record a start event if the
stream is idle, launch, record the end event, then for a preemptible or padded
launch copy the block counter into a pinned slot and record a `done` event.

Completing (one thread per stream): cuEventSynchronize on the oldest launch in
flight (the bindings release the GIL while the driver waits), read times and
counters, build Completions (cuda_queue.completions), push what now fits, call
the waker. A driver error fails that launch's call with the CUresult's text.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from reefd.backends.cuda_kernels import CallPlan, KernelParams, KernelTable, param_array
from reefd.backends.cuda_memory import CudaTaskMemory, PinnedSlots
from reefd.backends.cuda_queue import (
    Anchor,
    Inflight,
    Readback,
    StreamQueue,
    bracket_us,
    completions,
    failed,
    to_host_us,
)
from reefd.backends.device import DeviceLaunch
from reefd.errors import BackendError
from reefd.kernels.launcher import i32, ptr
from reefd.kernels.wrappers import CTA_THREADS, EntryPoint
from reefd.scheduler.plan import Completion, Form, Stream

log = logging.getLogger("reefd.cuda")

ANCHOR_RENEW_S = 1.0
"""Renew the clock anchor when it is this old and a stream is idle."""
ANCHOR_FORCE_S = 10.0
"""Renew it even between launches of a stream that is never idle."""
ANCHOR_TRIES = 3
"""Anchor measurements per renewal; the tightest bracket wins."""


@dataclass(frozen=True)
class Ready:
    """A launch prepared on the engine thread, pushed later by any thread."""

    fn: Any
    grid: int
    smem_bytes: int
    params: KernelParams
    memories: tuple[CudaTaskMemory, ...]
    counters: tuple[tuple[int, int, int, int], ...] = ()
    """(task id, call index, counter address, n_vb) to read back."""
    zero_claims: int = 0
    """Device address of a padded launch's claim counter (0: none)."""


class GpuStreams:
    """Host queues, GPU streams and completions (see the module docstring)."""

    def __init__(
        self,
        drv: Any,
        streams: dict[Stream, Any],
        clock_stream: Any,
        depths: dict[Stream, int],
        kernels: KernelTable,
        flag_ptr: int,
        claims_ptr: int,
        clock_us: Callable[[], int],
    ) -> None:
        self._drv = drv
        self._streams = streams
        self._clock_stream = clock_stream
        self._queues = {s: StreamQueue(s, depths[s]) for s in Stream}
        self._kernels = kernels
        self._flag_ptr = flag_ptr
        self._claims_ptr = claims_ptr
        self._clock_us = clock_us
        self._lock = threading.Condition()
        self._anchor_lock = threading.Lock()
        self._events: list[Any] = []
        self._slots = PinnedSlots(drv, sum(depths.values()))
        self._done: list[Completion] = []
        self._closing = False
        self._threads: list[threading.Thread] = []
        self._waker: Callable[[], None] = lambda: None
        self._anchor = self._measure_anchor()

    @property
    def lock(self) -> threading.Condition:
        """Held while stream work is enqueued (the device flag's writes too)."""
        return self._lock

    def start(self, waker: Callable[[], None], bind: Callable[[], None]) -> None:
        """Start one completion thread per stream; `bind` makes the context
        current on a thread."""
        self._waker = waker
        for stream in Stream:
            thread = threading.Thread(
                target=self._run_completions,
                args=(stream, bind),
                name=f"reefd-cuda-{stream}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)

    # the engine's side ----------------------------------------------------------
    def launch(self, launch: DeviceLaunch) -> None:
        ready = self._prepare(launch)
        with self._lock:
            queue = self._queues[launch.stream]
            queue.waiting.append((launch, ready))
            before = len(self._done)
            self._pump(queue)
            failures = len(self._done) > before
            self._lock.notify_all()
        if failures:
            self._waker()

    def drop_queued(self, stream: Stream) -> list[DeviceLaunch]:
        with self._lock:
            return self._queues[stream].drop()

    def poll(self) -> list[Completion]:
        with self._lock:
            done, self._done = self._done, []
        return done

    def busy(self) -> bool:
        with self._lock:
            return any(q.busy() for q in self._queues.values())

    # preparing launches (engine thread) -------------------------------------------
    def _params(self, memory: CudaTaskMemory, index: int, form: Form) -> KernelParams:
        """A call's kernelParams in a task arena, packed once per arena."""
        arena, plan = memory.arena, memory.plan
        params = arena.params.get((index, form))
        if params is None:
            call = plan.calls[index]
            parts = [call.args_for(plan.layout.offsets, arena.base)]
            if form is Form.PREEMPTIBLE:
                counter = plan.layout.counter(arena.base, index)
                parts += [i32(call.n_vb), ptr(counter), ptr(self._flag_ptr)]
            params = arena.params[(index, form)] = param_array(parts)
        return params

    def _prepare(self, launch: DeviceLaunch) -> Ready:
        memory: CudaTaskMemory = launch.memory
        index = launch.call_index
        call = memory.plan.calls[index]
        if launch.form is Form.PLAIN:
            params = self._params(memory, index, Form.PLAIN)
            return Ready(call.plain_fn, call.n_vb, call.smem_bytes, params, (memory,))
        if launch.form is Form.PREEMPTIBLE:
            params = self._params(memory, index, Form.PREEMPTIBLE)
            counter = memory.plan.layout.counter(memory.arena.base, index)
            return Ready(
                call.preemptible_fn,
                call.persistent_ctas,
                call.smem_bytes,
                params,
                (memory,),
                ((launch.task_id, index, counter, call.n_vb),),
            )
        return self._prepare_padded(launch, memory, call)

    def _prepare_padded(
        self, launch: DeviceLaunch, rt: CudaTaskMemory, rt_call: CallPlan
    ) -> Ready:
        """RT blocks plus up to `budget_vbs` BE blocks in one launch. The padded
        entry is compiled and loaded on first use (see docs/gpu-owed.md)."""
        pad = launch.pad
        if pad is None:
            raise BackendError(f"task {launch.task_id}: a padded launch without pad")
        be: CudaTaskMemory = pad.memory
        be_call = be.plan.calls[pad.call_index]
        rt_spec, rt_params = rt_call.plain.spec, rt_call.plain.params
        be_spec, be_params = be_call.plain.spec, be_call.plain.params
        entry = EntryPoint.padded(rt_spec, rt_params, be_spec, be_params)
        if not self._kernels.loaded(entry.name):
            log.warning("compiling padded entry %s on the engine thread", entry.name)
        fn, smem = self._kernels.function(entry)
        be_ctas = self._kernels.persistent_grid(entry, be_call.n_vb)
        be_counter = be.plan.layout.counter(be.arena.base, pad.call_index)
        claims = self._claims_ptr + 4 * list(Stream).index(launch.stream)
        params = param_array(
            [
                rt_call.args_for(rt.plan.layout.offsets, rt.arena.base),
                i32(rt_call.n_vb),
                be_call.args_for(be.plan.layout.offsets, be.arena.base),
                i32(be_call.n_vb),
                ptr(be_counter),
                ptr(claims),
                i32(pad.budget_vbs),
                ptr(self._flag_ptr),
            ]
        )
        return Ready(
            fn,
            rt_call.n_vb + max(1, min(pad.budget_vbs, be_ctas)),
            smem,
            params,
            (rt, be),
            ((pad.task_id, pad.call_index, be_counter, be_call.n_vb),),
            zero_claims=claims,
        )

    # pushing to the GPU (any thread, lock held) -------------------------------------
    def _pump(self, queue: StreamQueue) -> None:
        while queue.waiting and queue.room() and not self._closing:
            launch, ready = queue.waiting.popleft()
            try:
                queue.inflight.append(self._push(queue, launch, ready))
            except BackendError as exc:
                where = f"task {launch.task_id} call {launch.call_index}"
                log.error("launch of %s failed: %s", where, exc)
                self._done.extend(failed(launch, str(exc), self._clock_us()))

    def _event(self, taken: list[Any]) -> Any:
        if self._events:
            event = self._events.pop()
        else:
            event = self._drv.cuEventCreate(self._drv.CUevent_flags.CU_EVENT_DEFAULT)
        taken.append(event)
        return event

    def _push(self, queue: StreamQueue, launch: DeviceLaunch, ready: Ready) -> Inflight:
        drv, stream = self._drv, self._streams[queue.stream]
        events: list[Any] = []
        readbacks: list[Readback] = []
        try:
            for memory in ready.memories:
                if queue.stream not in memory.waited:
                    drv.cuStreamWaitEvent(stream, memory.arena.ready, 0)
                    memory.waited.add(queue.stream)
            start = None
            if not queue.inflight:
                start = self._event(events)
                drv.cuEventRecord(start, stream)
            if ready.zero_claims:
                drv.cuMemsetD32Async(ready.zero_claims, 0, 1, stream)
            drv.cuLaunchKernel(
                ready.fn,
                ready.grid,
                1,
                1,
                CTA_THREADS,
                1,
                1,
                ready.smem_bytes,
                stream,
                ready.params.address,
                0,
            )
            end = done = self._event(events)
            drv.cuEventRecord(end, stream)
            for task_id, call_index, counter, n_vb in ready.counters:
                slot = self._slots.take()
                readbacks.append(Readback(task_id, call_index, slot, n_vb))
                drv.cuMemcpyDtoHAsync(self._slots.address(slot), counter, 4, stream)
            if readbacks:
                done = self._event(events)
                drv.cuEventRecord(done, stream)
        except BaseException:
            self._events.extend(events)
            for rb in readbacks:
                self._slots.give(rb.slot)
            raise
        self._anchor.refs += 1
        pushed_us = self._clock_us()
        return Inflight(
            launch, self._anchor, pushed_us, start, end, done, tuple(readbacks)
        )

    def _release(self, record: Inflight) -> None:
        self._events.extend(record.events())
        for rb in record.readbacks:
            self._slots.give(rb.slot)
        anchor = record.anchor
        anchor.refs -= 1
        if anchor.retired and anchor.refs == 0:
            self._drv.cuEventDestroy(anchor.event)

    # completion threads ------------------------------------------------------------
    def _run_completions(self, stream: Stream, bind: Callable[[], None]) -> None:
        bind()
        queue = self._queues[stream]
        while True:
            with self._lock:
                if not queue.inflight:
                    if self._closing:
                        return
                    self._lock.wait(ANCHOR_RENEW_S)
                head = queue.inflight[0] if queue.inflight else None
            if head is None:
                self._renew_anchor(ANCHOR_RENEW_S)
                continue
            self.complete_head(queue)
            self._renew_anchor(ANCHOR_FORCE_S)

    def complete_head(self, queue: StreamQueue) -> None:
        """Wait for the oldest launch in flight on `queue`, then complete it."""
        head = queue.inflight[0]
        error: BackendError | None = None
        try:
            self._drv.cuEventSynchronize(head.done)
        except BackendError as exc:
            error = exc
        done = self._finish(queue, head, error)
        with self._lock:
            queue.inflight.popleft()
            self._release(head)
            self._done.extend(done)
            self._pump(queue)
        self._waker()

    def _finish(
        self, queue: StreamQueue, head: Inflight, error: BackendError | None
    ) -> list[Completion]:
        launch = head.launch
        if error is not None:
            where = f"task {launch.task_id} call {launch.call_index}"
            log.error("%s failed on the GPU: %s", where, error)
            return failed(launch, str(error), self._clock_us())
        try:
            end_us = self._host_us(head.anchor, head.end)
            if head.start is not None:
                start_us = self._host_us(head.anchor, head.start)
            else:  # pushed behind another launch: starts when that one ends
                start_us = max(queue.last_end_us, head.pushed_us)
            counters = {rb.slot: self._slots.read(rb.slot) for rb in head.readbacks}
        except BackendError as exc:
            return failed(launch, str(exc), self._clock_us())
        queue.last_end_us = end_us
        return completions(head, min(start_us, end_us), end_us, counters)

    # the clock anchor --------------------------------------------------------------
    def _host_us(self, anchor: Anchor, event: Any) -> int:
        return to_host_us(anchor, self._drv.cuEventElapsedTime(anchor.event, event))

    def _measure_anchor(self) -> Anchor:
        """The tightest of ANCHOR_TRIES host brackets around an event recorded
        on the idle clock stream (see cuda_queue.py)."""
        drv = self._drv
        best: Anchor | None = None
        for _ in range(ANCHOR_TRIES):
            event = drv.cuEventCreate(drv.CUevent_flags.CU_EVENT_DEFAULT)
            t0 = self._clock_us()
            drv.cuEventRecord(event, self._clock_stream)
            drv.cuEventSynchronize(event)
            host_us, error_us = bracket_us(t0, self._clock_us())
            if best is None or error_us < best.error_us:
                if best is not None:
                    drv.cuEventDestroy(best.event)
                best = Anchor(event, host_us, error_us)
            else:
                drv.cuEventDestroy(event)
        assert best is not None
        return best

    def _renew_anchor(self, age_s: float) -> None:
        if self._clock_us() - self._anchor.host_us < age_s * 1e6:
            return
        if not self._anchor_lock.acquire(blocking=False):
            return
        try:
            fresh = self._measure_anchor()
            with self._lock:
                old, self._anchor = self._anchor, fresh
                old.retired = True
                if old.refs == 0:
                    self._drv.cuEventDestroy(old.event)
        except BackendError as exc:
            log.warning("clock anchor not renewed: %s", exc)
        finally:
            self._anchor_lock.release()

    # shutting down ---------------------------------------------------------------
    def stop(self) -> None:
        """Let the completion threads finish what is in flight, then end them."""
        with self._lock:
            self._closing = True
            self._lock.notify_all()
        for thread in self._threads:
            thread.join(timeout=30)
            if thread.is_alive():
                log.warning("%s did not stop within 30 s", thread.name)

    def destroy(self) -> None:
        """Free the events and pinned slots (after `stop` and a synchronize)."""
        events, self._events = self._events, []
        for event in [*events, self._anchor.event]:
            self._drv.cuEventDestroy(event)
        self._slots.close()
