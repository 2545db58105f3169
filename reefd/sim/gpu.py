"""The simulated GPU: a discrete-event model of CTAs on SMs, on a virtual clock.

Owns the timing model behind `reefd.backends.sim.SimDevice`:

- Clock: integer nanoseconds (`now_ns`), so event times add exactly; the
  Device boundary (Completion times, `now_us`) is float microseconds.
- Capacity: `sms` SMs, pooled (fluid across SMs: no per-SM placement). One CTA
  of a kernel takes 1/ctas_per_sm(registers, smem) of an SM, counted exactly in
  integer units (`SM_UNITS` per SM).
- Streams: RT and BE, each with a host queue of launches and at most one kernel
  running (stream order). When capacity frees, the RT kernel's pending CTAs are
  placed first, then the BE kernel's (block-level stream priority, strict: BE
  gets nothing while an RT CTA waits for room). `drop_queued` empties a host
  queue; running kernels are not touched by it.
- Blocks: CTAs placed at the same instant form a group that finishes after the
  call's `vb_us`, times `slowdown(this call, the work co-running)` when other
  work runs (other kernels, or the other half of a padded launch). The
  default `no_slowdown` is 1.0; `reefd.sim.interference.ModelSlowdown` takes
  it from the trained interference model.
- Forms: a plain kernel runs one CTA per virtual block, all of them, whatever
  the preempt flag says. A preemptible kernel runs `min(slots, n_vb)`
  persistent CTAs that claim blocks from the task memory's per-call counter and
  keep their SM slot between blocks; once the flag is raised they stop
  claiming, and when their claimed blocks are done the kernel completes:
  PREEMPTED if the counter is short of `n_vb`, else OK. Relaunching resumes at
  the counter, so no block runs twice. A padded launch places its RT blocks
  first, then `min(budget, slots)` CTAs that claim up to `budget_vbs` blocks of
  the BE call from the same counter, every CTA with the merged resources (max
  registers, max shared memory); it holds the RT stream until every block is
  done and yields two Completions.
- Wave aggregation: a kernel alone on the device (no other kernel running, no
  other blocks in flight) is one event per kernel instead of one per wave:
  its waves are a single group of `rounds` back-to-back rounds. When anything
  could change that (a launch that starts a kernel on the other stream, the
  preempt flag rising) the group is split at the current instant into the
  rounds already done, the round in flight and the blocks not yet placed, so
  results equal per-wave simulation (`aggregate_waves=False`).

- Runs: a launch may carry a run of calls (`DeviceLaunch.n_calls`); they start
  one after another on its stream, and their OK completions come back as one
  Completion when the run ends (or before a stopped call's). A reset's
  `drop_queued` also drops the calls of the running run not yet started.
- Spans: a run alone on the device (plain, or preemptible with the flag down;
  nothing else running or queued) is one event for all its calls: their solo
  times are prefix sums per cost table. Anything that could change that
  (as for wave aggregation) cuts the span at the current instant: the calls
  already over complete, the call in flight restarts as a wave-aggregated
  kernel from the instant it began, and the rest of the run stays queued, so
  results equal call-by-call simulation. This is what makes an hour of
  virtual time with thousands of clients affordable.

Outputs are never computed: the simulator is for timing. Pure and
single-threaded: no wall clock, no threads, no torch.
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections import deque
from dataclasses import replace

from reefd.backends.device import DeviceLaunch
from reefd.scheduler.padding import CallCost, DeviceShape
from reefd.scheduler.plan import Completion, CompletionStatus, Form, Stream
from reefd.sim.records import (
    MAX_CTAS_PER_SM,
    SM_UNITS,
    BlockGroup,
    GpuStats,
    KernelRun,
    Running,
    RunSpan,
    SimTaskMemory,
    Slowdown,
    SoloTimes,
    no_slowdown,
    us_to_ns,
)

STREAMS = (Stream.RT, Stream.BE)
"""Block-dispatch priority order."""


class SimGpu:
    """The discrete-event GPU (see the module docstring)."""

    def __init__(
        self,
        shape: DeviceShape,
        slowdown: Slowdown = no_slowdown,
        aggregate_waves: bool = True,
    ) -> None:
        if shape.sms < 1:
            raise ValueError(f"sms must be >= 1, got {shape.sms}")
        self.shape = shape
        self._slowdown = slowdown
        self._aggregate = aggregate_waves
        self.total_units = shape.sms * SM_UNITS
        self._free = self.total_units
        self._queues: dict[Stream, deque[DeviceLaunch]] = {s: deque() for s in STREAMS}
        self._active: dict[Stream, KernelRun | None] = {s: None for s in STREAMS}
        self._heap: list[tuple[int, int, BlockGroup]] = []
        self._seq = 0
        self._live_groups = 0
        self._flag = False
        self._done: list[Completion] = []
        # Per stream: OK calls of the current run not yet reported, as
        # [task id, first call, n calls, start ns, end ns].
        self._pending: dict[Stream, list | None] = {s: None for s in STREAMS}
        self._solo: dict[int, tuple[tuple[CallCost, ...], SoloTimes]] = {}
        self.now_ns = 0
        self._accounted_ns = 0
        self.stats = GpuStats()

    # ---- the Device-facing operations -------------------------------------

    def launch(self, launch: DeviceLaunch) -> None:
        self._queues[launch.stream].append(launch)
        if self._active[launch.stream] is None:
            self._interrupt()
        self._settle()

    def drop_queued(self, stream: Stream) -> list[DeviceLaunch]:
        """Empty the stream's host queue, and cut its running run after the
        call in flight; returns what was dropped."""
        self._unspan(stream)
        dropped = list(self._queues[stream])
        self._queues[stream].clear()
        kernel = self._active[stream]
        if kernel is not None and kernel.launch.n_calls > 1:
            dropped.insert(0, _rest(kernel.launch))
            kernel.launch = replace(kernel.launch, n_calls=1)
        return dropped

    def set_preempt(self, flag: bool) -> None:
        if flag and not self._flag:
            self._interrupt()
        self._flag = flag
        self._settle()

    def poll(self) -> list[Completion]:
        done, self._done = self._done, []
        return done

    @property
    def has_completions(self) -> bool:
        return bool(self._done)

    def stream_busy(self, stream: Stream) -> bool:
        """Whether `stream` has a kernel running or launches queued."""
        return self._active[stream] is not None or bool(self._queues[stream])

    def busy(self) -> bool:
        return any(self._queues.values()) or any(
            k is not None for k in self._active.values()
        )

    # ---- virtual time -------------------------------------------------------

    def next_event_ns(self) -> int | None:
        """When the next thing happens: now if completions wait to be polled,
        else the end of the earliest group in flight, else None."""
        if self._done:
            return self.now_ns
        return self.next_group_end_ns()

    def next_group_end_ns(self) -> int | None:
        """When the earliest group of blocks in flight ends (None: none)."""
        heap = self._heap
        while heap and not heap[0][2].live:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def advance(self, until_ns: int) -> None:
        """Process every event at or before `until_ns`; the clock ends there."""
        if until_ns < self.now_ns:
            raise ValueError(f"cannot go back from {self.now_ns} ns to {until_ns} ns")
        heap = self._heap
        while heap:
            end, _, group = heap[0]
            if not group.live:
                heapq.heappop(heap)
                continue
            if end > until_ns:
                break
            heapq.heappop(heap)
            self._clock(end)
            self.stats.events += 1
            self._finish(group)
        self._clock(until_ns)

    def _clock(self, t_ns: int) -> None:
        used = self.total_units - self._free
        self.stats.busy_unit_ns += used * (t_ns - self._accounted_ns)
        self._accounted_ns = t_ns
        self.now_ns = t_ns

    # ---- kernels: start, place blocks, finish -------------------------------

    def _settle(self) -> None:
        """Start queued kernels on idle streams, complete finished ones, and
        place blocks, until nothing changes."""
        active = self._active
        while True:
            changed = False
            for stream in STREAMS:
                kernel = active[stream]
                if kernel is None:
                    queue = self._queues[stream]
                    if queue:
                        active[stream] = self._begin(queue.popleft())
                        changed = True
                elif self._finished(kernel):
                    self._complete(stream, kernel)
                    changed = True
            if changed:
                continue
            done = False
            for stream in STREAMS:
                kernel = active[stream]
                if kernel is None:
                    continue
                placed = self._place(kernel)
                done = done or self._finished(kernel)
                if not placed:
                    break  # strict priority: a waiting RT CTA blocks BE
            if not done:
                return

    def _begin(self, launch: DeviceLaunch, span: bool = True) -> KernelRun | None:
        if span and self._spannable(launch):
            return self._span(launch)
        self.stats.kernels += 1
        memory: SimTaskMemory = launch.memory
        own = memory.costs[launch.call_index]
        pad = launch.pad if launch.form is Form.PADDED else None
        if pad is None:
            cps = self.shape.ctas_per_sm(own.registers, own.smem_bytes)
            kernel = self._kernel(launch, cps)
            if kernel is not None and launch.form is Form.PREEMPTIBLE:
                self._claims(kernel, own, memory, launch.call_index, own.n_vb, cps)
            elif kernel is not None:
                self._plain(kernel, own)
            return kernel
        self.stats.padded_launches += 1
        be_memory: SimTaskMemory = pad.memory
        be = be_memory.costs[pad.call_index]
        cps = self.shape.ctas_per_sm(
            max(own.registers, be.registers), max(own.smem_bytes, be.smem_bytes)
        )
        kernel = self._kernel(launch, cps)
        if kernel is not None:
            self._plain(kernel, own)
            self._claims(kernel, be, be_memory, pad.call_index, pad.budget_vbs, cps)
        return kernel

    def _kernel(self, launch: DeviceLaunch, cps: int) -> KernelRun | None:
        if cps < 1:
            why = "does not fit on an SM (0 CTAs per SM)"
            self._fail(launch, why)
            return None
        if cps > MAX_CTAS_PER_SM:
            raise ValueError(f"ctas_per_sm={cps} > {MAX_CTAS_PER_SM}")
        return KernelRun(launch, SM_UNITS // cps)

    def _plain(self, kernel: KernelRun, cost: CallCost) -> None:
        kernel.plain_cost = cost
        kernel.plain_pending = cost.n_vb
        kernel.plain_ns = us_to_ns(cost.vb_us)

    def _claims(
        self,
        kernel: KernelRun,
        cost: CallCost,
        memory: SimTaskMemory,
        call: int,
        budget: int,
        cps: int,
    ) -> None:
        kernel.claim_cost = cost
        kernel.claim_memory = memory
        kernel.claim_call = call
        kernel.claim_ns = us_to_ns(cost.vb_us)
        kernel.budget_left = budget
        kernel.ctas_left = max(1, min(self.shape.sms * cps, cost.n_vb, budget))

    def _claimable(self, kernel: KernelRun) -> int:
        """Blocks the kernel's claiming CTAs could still claim now."""
        if self._flag or kernel.claim_memory is None or kernel.claim_cost is None:
            return 0
        counter = kernel.claim_memory.counter(kernel.claim_call)
        return max(0, min(kernel.claim_cost.n_vb - counter, kernel.budget_left))

    def _finished(self, kernel: KernelRun) -> bool:
        if kernel.groups or kernel.plain_pending:
            return False
        return not kernel.ctas_left or not self._claimable(kernel)

    def _alone(self, kernel: KernelRun) -> bool:
        return (
            self._aggregate
            and self._live_groups == 0
            and all(k is None or k is kernel for k in self._active.values())
        )

    def _place(self, kernel: KernelRun) -> bool:
        """Place as many of the kernel's CTAs as fit; False if some must wait."""
        room = self._free // kernel.units
        if kernel.plain_pending:
            n = min(kernel.plain_pending, room)
            if n == 0:
                return False
            rounds = 1
            if self._alone(kernel):
                if kernel.claim_cost is None:
                    rounds = math.ceil(kernel.plain_pending / n)
                else:  # padded: leave the last round to share with BE blocks
                    rounds = max(1, (kernel.plain_pending - 1) // n)
            blocks = min(kernel.plain_pending, n * rounds)
            kernel.plain_pending -= blocks
            self._add_group(kernel, False, n, blocks, rounds)
            if kernel.plain_pending:
                return False
            room -= n
        if kernel.ctas_left and kernel.claim_memory is not None:
            n = min(kernel.ctas_left, room)
            if n == 0:
                return self._claimable(kernel) == 0
            kernel.ctas_left -= n  # those that find nothing to claim exit at once
            self._start_claims(kernel, n)
        return True

    def _start_claims(self, kernel: KernelRun, ctas: int) -> None:
        """`ctas` resident claiming CTAs each claim a block (if any is left)."""
        claimable = self._claimable(kernel)
        n = min(ctas, claimable)
        if n == 0:
            return
        rounds = 1
        blocks = n
        if self._alone(kernel):
            blocks = claimable
            rounds = math.ceil(claimable / n)
        memory = kernel.claim_memory
        assert memory is not None
        memory.counters[kernel.claim_call] = memory.counter(kernel.claim_call) + blocks
        kernel.budget_left -= blocks
        self._add_group(kernel, True, n, blocks, rounds)

    def _add_group(
        self, kernel: KernelRun, claim: bool, ctas: int, blocks: int, rounds: int
    ) -> None:
        cost = kernel.claim_cost if claim else kernel.plain_cost
        assert cost is not None
        base_ns = kernel.claim_ns if claim else kernel.plain_ns
        round_ns = base_ns
        if self._slowdown is not no_slowdown:
            others = self._co_running(kernel, claim)
            if others:
                own = self._running(kernel, claim)
                round_ns = us_to_ns(cost.vb_us * self._slowdown(own, others))
        now = self.now_ns
        end = now + rounds * round_ns
        group = BlockGroup(kernel, claim, ctas, blocks, now, round_ns, rounds, end)
        self._free -= ctas * kernel.units
        assert self._free >= 0
        kernel.groups += 1
        if kernel.started_ns is None:
            kernel.started_ns = self.now_ns
        self._live_groups += 1
        self.stats.groups += 1
        self._seq += 1
        heapq.heappush(self._heap, (end, self._seq, group))

    def _co_running(self, kernel: KernelRun, claim: bool) -> list[Running]:
        """What runs beside one half of `kernel`: the other kernels with blocks
        on the device, and the kernel's own other half if it is padded."""
        others = []
        if kernel.plain_cost is not None and kernel.claim_cost is not None:
            others.append(self._running(kernel, not claim))
        for k in self._active.values():
            if k is None or k is kernel or not k.groups:
                continue
            if k.plain_cost is not None:
                others.append(self._running(k, False))
            if k.claim_cost is not None:
                others.append(self._running(k, True))
        return others

    @staticmethod
    def _running(kernel: KernelRun, claim: bool) -> Running:
        if claim:
            memory, cost, rt = kernel.claim_memory, kernel.claim_cost, False
        else:
            memory = kernel.launch.memory
            cost, rt = kernel.plain_cost, kernel.launch.stream is Stream.RT
        assert memory is not None and cost is not None
        return Running(memory.profile_key, rt, cost)

    def _finish(self, group: BlockGroup) -> None:
        group.live = False
        self._live_groups -= 1
        kernel = group.kernel
        kernel.groups -= 1
        if kernel.span is not None:
            self._end_span(kernel, kernel.span.end)
            self._settle()
            return
        self._free += group.ctas * kernel.units
        self._count_blocks(kernel, group.claim, group.blocks)
        if group.rounds > 1:  # its last round held fewer CTAs than the others
            last = group.blocks - (group.rounds - 1) * group.ctas
            idle = (group.ctas - last) * kernel.units * group.round_ns
            self.stats.busy_unit_ns -= idle
        if group.claim:
            # Persistent CTAs keep their slot and claim again before any other
            # kernel is given the room back; those that find nothing exit.
            self._start_claims(kernel, group.ctas)
        self._settle()

    def _count_blocks(self, kernel: KernelRun, claim: bool, blocks: int) -> None:
        if claim:
            memory, call = kernel.claim_memory, kernel.claim_call
            if kernel.plain_cost is not None:
                self.stats.padded_be_blocks += blocks
        else:
            memory, call = kernel.launch.memory, kernel.launch.call_index
        assert memory is not None
        memory.blocks_run[call] = memory.blocks(call) + blocks

    def _interrupt(self) -> None:
        """Something may now share the device: cut spans and split aggregated
        groups at the current instant."""
        for stream in STREAMS:
            self._unspan(stream)
        self._split_all()

    def _split_all(self) -> None:
        """Split every aggregated group at now (see the module docstring)."""
        for group in [g for _, _, g in self._heap if g.live and g.rounds > 1]:
            self._split(group)

    def _split(self, group: BlockGroup) -> None:
        self.stats.splits += 1
        kernel = group.kernel
        done_rounds = (self.now_ns - group.start_ns) // group.round_ns
        done = done_rounds * group.ctas
        current = min(group.ctas, group.blocks - done)
        rest = group.blocks - done - current
        group.live = False
        self._live_groups -= 1
        kernel.groups -= 1
        self._free += group.ctas * kernel.units
        self._count_blocks(kernel, group.claim, done)
        if group.claim:
            memory = kernel.claim_memory
            assert memory is not None
            memory.counters[kernel.claim_call] -= rest
            kernel.budget_left += rest
        else:
            kernel.plain_pending += rest
        start = group.start_ns + done_rounds * group.round_ns
        idle = (group.ctas - current) * kernel.units * (self.now_ns - start)
        self.stats.busy_unit_ns -= idle
        end = start + group.round_ns
        piece = BlockGroup(
            kernel, group.claim, current, current, start, group.round_ns, 1, end
        )
        self._free -= current * kernel.units
        kernel.groups += 1
        self._live_groups += 1
        self._seq += 1
        heapq.heappush(self._heap, (end, self._seq, piece))

    # ---- spans: a run alone, fast-forwarded ------------------------------------

    def _spannable(self, launch: DeviceLaunch) -> bool:
        if not self._aggregate or launch.n_calls < 2 or self._live_groups:
            return False
        if launch.form is Form.PADDED or (
            launch.form is Form.PREEMPTIBLE and self._flag
        ):
            return False
        other = Stream.BE if launch.stream is Stream.RT else Stream.RT
        if self._active[other] is not None or self._queues[other]:
            return False
        memory: SimTaskMemory = launch.memory
        call = launch.call_index
        if memory.counter(call) or memory.blocks(call):
            return False  # a resumed call runs on its own first
        return self._solo_times(memory.costs).ns is not None

    def _span(self, launch: DeviceLaunch) -> KernelRun:
        memory: SimTaskMemory = launch.memory
        solo = self._solo_times(memory.costs)
        assert solo.ns is not None
        first, end = launch.call_index, launch.call_index + launch.n_calls
        kernel = KernelRun(launch, 1)  # holds no CTAs: its time is the span's
        duration = solo.ns[end] - solo.ns[first]
        end_ns = self.now_ns + duration
        group = BlockGroup(kernel, False, 0, 0, self.now_ns, duration, 1, end_ns)
        kernel.span = RunSpan(first, end, self.now_ns, solo, group)
        kernel.started_ns = self.now_ns
        kernel.groups = 1
        self._live_groups += 1
        self.stats.spans += 1
        self._seq += 1
        heapq.heappush(self._heap, (end_ns, self._seq, group))
        return kernel

    def _end_span(self, kernel: KernelRun, stop: int) -> None:
        """Calls `span.first .. stop - 1` are over: count them, report them OK,
        and end the kernel if they were the whole run."""
        span = kernel.span
        assert span is not None
        launch = kernel.launch
        memory: SimTaskMemory = launch.memory
        ns, unit_ns = span.solo.ns, span.solo.unit_ns
        assert ns is not None
        kernel.span = None
        if stop > span.first:
            # Calls run in order, so every call below `stop` is complete.
            memory.complete_below = max(memory.complete_below, stop)
            self.stats.kernels += stop - span.first
            self.stats.busy_unit_ns += unit_ns[stop] - unit_ns[span.first]
            end_ns = span.start_ns + ns[stop] - ns[span.first]
            self._ok(launch, span.first, stop - span.first, span.start_ns, end_ns)
        if stop == launch.call_index + launch.n_calls:
            self._flush(launch.stream)
            self._active[launch.stream] = None

    def _unspan(self, stream: Stream) -> None:
        """Cut the stream's span at now: the calls over complete, the call in
        flight restarts as an ordinary kernel from the instant it began."""
        kernel = self._active[stream]
        if kernel is None or kernel.span is None:
            return
        span = kernel.span
        self.stats.splits += 1
        ns = span.solo.ns
        assert ns is not None
        now = self.now_ns
        at = ns[span.first] + now - span.start_ns
        call = min(max(bisect.bisect_right(ns, at) - 1, span.first), span.end - 1)
        span.group.live = False  # the span's one event: its heap entry is skipped
        self._live_groups -= 1
        self._end_span(kernel, call)
        began = span.start_ns + ns[call] - ns[span.first]
        launch = kernel.launch
        rest = replace(
            launch, call_index=call, n_calls=launch.call_index + launch.n_calls - call
        )
        # Replay the call from the instant it began: it has been alone since.
        self.now_ns = self._accounted_ns = began
        current = self._begin(rest, span=False)
        self._active[stream] = current
        if current is not None:
            self._place(current)
        self._clock(now)

    def _solo_times(self, costs: tuple[CallCost, ...]) -> SoloTimes:
        hit = self._solo.get(id(costs))
        if hit is not None and hit[0] is costs:
            return hit[1]
        ns, unit_ns = [0], [0]
        fits = True
        for cost in costs:
            cps = self.shape.ctas_per_sm(cost.registers, cost.smem_bytes)
            if not 1 <= cps <= MAX_CTAS_PER_SM:
                fits = False
                cps = 1
            units = SM_UNITS // cps
            room = self.total_units // units
            round_ns = us_to_ns(cost.vb_us)  # alone: solo speed
            ns.append(ns[-1] + math.ceil(cost.n_vb / room) * round_ns)
            unit_ns.append(unit_ns[-1] + cost.n_vb * units * round_ns)
        solo = SoloTimes(tuple(ns) if fits else None, tuple(unit_ns))
        self._solo[id(costs)] = (costs, solo)
        return solo

    # ---- completions ----------------------------------------------------------

    def _complete(self, stream: Stream, kernel: KernelRun) -> None:
        self._active[stream] = None
        launch = kernel.launch
        start_ns = kernel.started_ns if kernel.started_ns is not None else self.now_ns
        status = CompletionStatus.OK
        if launch.form is not Form.PLAIN and kernel.claim_cost is not None:
            status = self._claim_status(kernel)
        if launch.form is Form.PADDED and launch.pad is not None:
            self._ok(launch, launch.call_index, 1, start_ns, self.now_ns)
            self._flush(stream)
            self._emit(launch.pad.task_id, launch.pad.call_index, status, start_ns)
            return
        if status is CompletionStatus.OK:
            self._ok(launch, launch.call_index, 1, start_ns, self.now_ns)
            if launch.n_calls > 1:  # the run's next call starts next
                self._queues[stream].appendleft(_rest(launch))
            else:
                self._flush(stream)
            return
        self._flush(stream)
        self._emit(launch.task_id, launch.call_index, status, start_ns)
        if launch.n_calls > 1:  # never run calls after a stopped one
            rest = _rest(launch)
            self._emit(
                rest.task_id,
                rest.call_index,
                CompletionStatus.DROPPED,
                self.now_ns,
                rest.n_calls,
            )

    def _claim_status(self, kernel: KernelRun) -> CompletionStatus:
        memory, cost = kernel.claim_memory, kernel.claim_cost
        assert memory is not None and cost is not None
        if memory.counter(kernel.claim_call) >= cost.n_vb:
            return CompletionStatus.OK
        return CompletionStatus.PREEMPTED

    def _ok(
        self, launch: DeviceLaunch, first: int, n_calls: int, start_ns: int, end_ns: int
    ) -> None:
        """Calls that ran OK join the stream's pending report when they follow
        on from it (same task, next call), else start a new one."""
        pending = self._pending[launch.stream]
        if pending is not None and (
            pending[0] != launch.task_id or pending[1] + pending[2] != first
        ):
            self._flush(launch.stream)
            pending = None
        if pending is None:
            self._pending[launch.stream] = [
                launch.task_id,
                first,
                n_calls,
                start_ns,
                end_ns,
            ]
        else:
            pending[2] += n_calls
            pending[4] = end_ns

    def _flush(self, stream: Stream) -> None:
        pending = self._pending[stream]
        if pending is None:
            return
        self._pending[stream] = None
        task_id, first, n_calls, start_ns, end_ns = pending
        self._done.append(
            Completion(
                task_id,
                first,
                CompletionStatus.OK,
                start_ns / 1000,
                end_ns / 1000,
                n_calls=n_calls,
            )
        )

    def _emit(
        self,
        task_id: int,
        call: int,
        status: CompletionStatus,
        start_ns: int,
        n_calls: int = 1,
    ) -> None:
        self._done.append(
            Completion(
                task_id,
                call,
                status,
                start_ns / 1000,
                self.now_ns / 1000,
                n_calls=n_calls,
            )
        )

    def _fail(self, launch: DeviceLaunch, why: str) -> None:
        self._flush(launch.stream)
        now = self.now_ns / 1000
        failed = CompletionStatus.FAILED
        calls = [(launch.task_id, launch.call_index, launch.n_calls)]
        if launch.pad is not None:
            calls.append((launch.pad.task_id, launch.pad.call_index, 1))
        for task_id, call, n_calls in calls:
            self._done.append(
                Completion(task_id, call, failed, now, now, why, n_calls=n_calls)
            )

    def close_books(self) -> None:
        """Make `stats` exact at this instant: cut spans and split aggregated
        groups (their capacity is otherwise counted when they end). For the
        end of a run; the simulation can go on afterwards. Not counted in
        `stats.splits`."""
        splits = self.stats.splits
        self._interrupt()
        self._settle()
        self.stats.splits = splits

    def occupancy(self) -> float:
        """Mean fraction of SM capacity held by CTAs since time 0."""
        if self.now_ns <= 0:
            return 0.0
        return self.stats.busy_unit_ns / (self.total_units * self.now_ns)


def _rest(launch: DeviceLaunch) -> DeviceLaunch:
    """The calls of a run after its first."""
    return replace(launch, call_index=launch.call_index + 1, n_calls=launch.n_calls - 1)
