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
  call's `vb_us` times `slowdown(call, co-running calls)`. `slowdown` is
  pluggable; the default `no_slowdown` (1.0) is a placeholder until the
  interference model exists.
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

Outputs are never computed: the simulator is for timing. Pure and
single-threaded: no wall clock, no threads, no torch.
"""

from __future__ import annotations

import heapq
import math
from collections import deque

from reefd.backends.device import DeviceLaunch
from reefd.scheduler.padding import CallCost, DeviceShape
from reefd.scheduler.plan import Completion, CompletionStatus, Form, Stream
from reefd.sim.records import (
    MAX_CTAS_PER_SM,
    SM_UNITS,
    BlockGroup,
    GpuStats,
    KernelRun,
    SimTaskMemory,
    Slowdown,
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
        self.now_ns = 0
        self._accounted_ns = 0
        self.stats = GpuStats()

    # ---- the Device-facing operations -------------------------------------

    def launch(self, launch: DeviceLaunch) -> None:
        self._queues[launch.stream].append(launch)
        if self._active[launch.stream] is None:
            self._split_all()
        self._settle()

    def drop_queued(self, stream: Stream) -> list[DeviceLaunch]:
        dropped = list(self._queues[stream])
        self._queues[stream].clear()
        return dropped

    def set_preempt(self, flag: bool) -> None:
        if flag and not self._flag:
            self._split_all()
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

    def _begin(self, launch: DeviceLaunch) -> KernelRun | None:
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
        counter = kernel.claim_memory.counters.get(kernel.claim_call, 0)
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
        memory.counters[kernel.claim_call] = (
            memory.counters.get(kernel.claim_call, 0) + blocks
        )
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
            others = self._co_running(kernel)
            round_ns = us_to_ns(cost.vb_us * self._slowdown(cost, others))
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

    def _co_running(self, kernel: KernelRun) -> list[CallCost]:
        others = []
        for k in self._active.values():
            if k is None or k is kernel or not k.groups:
                continue
            for cost in (k.plain_cost, k.claim_cost):
                if cost is not None:
                    others.append(cost)
        return others

    def _finish(self, group: BlockGroup) -> None:
        group.live = False
        self._live_groups -= 1
        kernel = group.kernel
        kernel.groups -= 1
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
        memory.blocks_run[call] = memory.blocks_run.get(call, 0) + blocks

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

    # ---- completions ----------------------------------------------------------

    def _complete(self, stream: Stream, kernel: KernelRun) -> None:
        self._active[stream] = None
        launch = kernel.launch
        start_ns = kernel.started_ns if kernel.started_ns is not None else self.now_ns
        if launch.form is Form.PLAIN or kernel.claim_cost is None:
            self._emit(launch.task_id, launch.call_index, CompletionStatus.OK, start_ns)
            return
        status = self._claim_status(kernel)
        if launch.form is Form.PADDED and launch.pad is not None:
            self._emit(launch.task_id, launch.call_index, CompletionStatus.OK, start_ns)
            self._emit(launch.pad.task_id, launch.pad.call_index, status, start_ns)
        else:
            self._emit(launch.task_id, launch.call_index, status, start_ns)

    def _claim_status(self, kernel: KernelRun) -> CompletionStatus:
        memory, cost = kernel.claim_memory, kernel.claim_cost
        assert memory is not None and cost is not None
        if memory.counters.get(kernel.claim_call, 0) >= cost.n_vb:
            return CompletionStatus.OK
        return CompletionStatus.PREEMPTED

    def _emit(
        self, task_id: int, call: int, status: CompletionStatus, start_ns: int
    ) -> None:
        self._done.append(
            Completion(task_id, call, status, start_ns / 1000, self.now_ns / 1000)
        )

    def _fail(self, launch: DeviceLaunch, why: str) -> None:
        now = self.now_ns / 1000
        failed = CompletionStatus.FAILED
        calls = [(launch.task_id, launch.call_index)]
        if launch.pad is not None:
            calls.append((launch.pad.task_id, launch.pad.call_index))
        for task_id, call in calls:
            self._done.append(Completion(task_id, call, failed, now, now, why))

    def occupancy(self) -> float:
        """Mean fraction of SM capacity held by CTAs since time 0."""
        if self.now_ns <= 0:
            return 0.0
        return self.stats.busy_unit_ns / (self.total_units * self.now_ns)
