"""The virtual-time runner: DISB-style clients against Scheduler + Executor +
SimDevice, with no sockets, threads or wall clock.

Owns `simulate()` and the arrival processes (clients.py holds what a client
is, results.py what a run measured). The daemon's engine loop (reefd/engine.py:
drain the inbox, poll, plan, run) is replayed here directly on the simulated
device's clock instead of through the server, protocol and engine thread: what
the simulator measures is scheduling and device timing, and with no sockets or
wall clock a run is deterministic for a seed and as fast as Python allows
(bench/sim_scale.py measures how fast). Latency is arrival to completion inside
the daemon (what `reef status` reports), not end to end.

Clients follow DISB: one request outstanding per client. Open loop
(`uniform`: every 1/rate s from a seeded random phase; `poisson`: seeded
exponential gaps; `trace`: the client's `trace_s` offsets, looped every
`trace_period_s`) skips an arrival that comes while the previous request is
out, and counts it; closed loop issues the next request the instant the last
one returns. An `observe` callback, if given, sees every completion that ran
on the device with the index of the client it belongs to (the bench draws
kernel timelines from them).

The loop: the next event is the earlier of the next arrival and the device's
next event; advance the device there, fold completions into the
scheduler, release finished tasks (closed-loop clients reissue), admit
arrivals, then plan and run once (one engine step; a plan runs again only
when the next completion or arrival comes, or when the device has gone idle
with work still live, as the engine's timed wake-up would).

Imports reefd's scheduler, executor and sim backend; no torch, no wall clock.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from reefd.backends.sim import SimDevice, SimModel
from reefd.executor import Executor
from reefd.scheduler import make_policy
from reefd.scheduler.padding import DeviceShape
from reefd.scheduler.plan import Completion, CompletionStatus, Stream
from reefd.scheduler.policy import Policy
from reefd.scheduler.scheduler import Scheduler
from reefd.scheduler.task import Priority, Task, TaskState
from reefd.sim.clients import Arrival, ClientSpec
from reefd.sim.costs import CostSource
from reefd.sim.records import SimTaskMemory, Slowdown, no_slowdown
from reefd.sim.results import ClientResult, SimResult, percentile

__all__ = [
    "Arrival",
    "Observer",
    "ClientResult",
    "ClientSpec",
    "SimResult",
    "percentile",
    "simulate",
]


Observer = Callable[[int, Completion], None]
"""Sees (client index, completion) for every run of calls that ran (OK,
PREEMPTED or FAILED; not DROPPED), as the device returns it."""


@dataclass
class _Client:
    spec: ClientSpec
    model: SimModel
    rng: random.Random
    outstanding: int | None = None
    issued: int = 0
    done: int = 0
    skipped: int = 0
    trace_next: int = 0
    """Index of a trace client's next arrival (counting the loops)."""
    slo_met: int = 0
    preemptions: int = 0
    latencies_us: list[float] = field(default_factory=list)


def simulate(
    clients: Sequence[ClientSpec],
    policy: str | Policy,
    device_shape: DeviceShape,
    cost_source: CostSource,
    duration_us: float,
    be_inflight_cap: int,
    seed: int,
    *,
    slowdown: Slowdown = no_slowdown,
    task_costs: bool = True,
    aggregate_waves: bool = True,
    record_blocks: bool = False,
    observe: Observer | None = None,
) -> SimResult:
    """Run `clients` for `duration_us` of virtual time under `policy`.

    `policy` is a name (reef and orion get `device_shape`) or a fresh
    Policy. `task_costs=False` hides call costs from the scheduler (no
    padding). Requests still out at the end are not counted. `observe` sees
    every completion that ran (see `Observer`).
    """
    run = _Run(
        clients,
        policy,
        device_shape,
        cost_source,
        duration_us,
        be_inflight_cap,
        seed,
        slowdown,
        task_costs,
        aggregate_waves,
        record_blocks,
        observe,
    )
    run.loop()
    return run.result()


class _Run:
    """One simulation's state; `simulate` is its only user."""

    def __init__(
        self,
        specs: Sequence[ClientSpec],
        policy: str | Policy,
        shape: DeviceShape,
        cost_source: CostSource,
        duration_us: float,
        be_inflight_cap: int,
        seed: int,
        slowdown: Slowdown,
        task_costs: bool,
        aggregate_waves: bool,
        record_blocks: bool,
        observe: Observer | None = None,
    ) -> None:
        if duration_us <= 0:
            raise ValueError(f"duration_us must be > 0, got {duration_us}")
        if isinstance(policy, str):
            options = {"device": shape}  # make_policy gives it to who takes it
            policy = make_policy(policy, **options)
        self.policy = policy
        self.seed = seed
        self.duration_us = duration_us
        self.end_ns = round(duration_us * 1000)
        self.device = SimDevice(shape, cost_source, slowdown, aggregate_waves)
        self.device.start(lambda: None)
        self.scheduler = Scheduler(policy, be_inflight_cap)
        self.executor = Executor(self.device, lambda: self.device.now_us)
        self.task_costs = task_costs
        self.observe = observe
        self.blocks: dict[tuple[int, int], int] | None = {} if record_blocks else None
        self.block_errors: list[tuple[int, int, int, int]] = []
        self.arrivals_seen = 0
        self.be_drain_us: list[float] = []
        self._drain_from_us: float | None = None
        self._next_task_id = 1
        self._owner: dict[int, int] = {}  # task id -> client index
        self._arrivals: list[tuple[int, int]] = []  # (time ns, client index)
        models: dict[int, SimModel] = {}
        self.clients: list[_Client] = []
        for i, spec in enumerate(specs):
            model = models.get(id(spec.graph))
            if model is None:
                model = models[id(spec.graph)] = self.device.load(spec.graph, {}, {})
            rng = random.Random(seed * 1_000_003 + i)
            self.clients.append(_Client(spec, model, rng))
        for i, client in enumerate(self.clients):
            if client.spec.arrival == "closed":
                self._submit(i)
            else:
                self._schedule_arrival(i, 0, first=True)
        self._plan()

    # ---- arrivals -------------------------------------------------------------

    def _schedule_arrival(self, index: int, now_ns: int, first: bool = False) -> None:
        client = self.clients[index]
        if client.spec.arrival == "trace":
            heapq.heappush(self._arrivals, (self._trace_arrival(client, now_ns), index))
            return
        rate = client.spec.rate_per_s
        assert rate
        if client.spec.arrival == "uniform":
            period_ns = 1e9 / rate
            gap = client.rng.random() * period_ns if first else period_ns
        else:
            gap = client.rng.expovariate(rate) * 1e9
        heapq.heappush(self._arrivals, (now_ns + max(1, round(gap)), index))

    @staticmethod
    def _trace_arrival(client: _Client, now_ns: int) -> int:
        """The client's next trace arrival, in ns (never before now)."""
        spec = client.spec
        assert spec.trace_period_s is not None
        loop, i = divmod(client.trace_next, len(spec.trace_s))
        client.trace_next += 1
        at_s = spec.trace_s[i] + loop * spec.trace_period_s
        return max(now_ns, round(at_s * 1e9))

    def _on_arrival(self, index: int, now_ns: int) -> None:
        self.arrivals_seen += 1
        client = self.clients[index]
        if client.outstanding is not None:
            client.skipped += 1
        else:
            self._submit(index)
        self._schedule_arrival(index, now_ns)

    def _submit(self, index: int) -> None:
        client = self.clients[index]
        spec = client.spec
        now_us = self.device.now_us
        task_id = self._next_task_id
        self._next_task_id += 1
        memory = self.device.alloc(client.model, [])
        deadline = None
        if spec.priority is Priority.RT:
            assert spec.slo_ms is not None
            deadline = now_us + spec.slo_ms * 1000
        task = Task(
            task_id=task_id,
            client_id=index,
            model_id=index,
            priority=spec.priority,
            n_calls=len(spec.graph.calls),
            arrival_us=now_us,  # float us on the simulator
            deadline_us=deadline,
            costs=memory.costs if self.task_costs else None,  # one table a model
        )
        self.executor.bind(task_id, client.model, memory)
        self.scheduler.submit(task, now_us)
        self._owner[task_id] = index
        client.outstanding = task_id
        client.issued += 1
        if (
            spec.priority is Priority.RT
            and self._drain_from_us is None
            and self.device.gpu.stream_busy(Stream.BE)
        ):
            self._drain_from_us = now_us

    # ---- the loop -------------------------------------------------------------

    def loop(self) -> None:
        device = self.device
        while True:
            t_dev = device.next_event_ns()
            if t_dev is None and not self.scheduler.idle:
                self._plan()  # the engine's idle wake-up: nothing else will come
                t_dev = device.next_event_ns()
            t_arr = self._arrivals[0][0] if self._arrivals else None
            if t_dev is None and t_arr is None:
                break
            t = min(t for t in (t_dev, t_arr) if t is not None)
            if t > self.end_ns:
                break
            device.advance(t)
            changed = False
            if device.gpu.has_completions:
                self._on_completions()
                changed = True
            while self._arrivals and self._arrivals[0][0] <= t:
                _, index = heapq.heappop(self._arrivals)
                self._on_arrival(index, t)
                changed = True
            if changed:
                self._plan()
            self._check_drain()
        if device.now_ns < self.end_ns:
            device.advance(self.end_ns)

    def _check_drain(self) -> None:
        start = self._drain_from_us
        if start is not None and not self.device.gpu.stream_busy(Stream.BE):
            self.be_drain_us.append(self.device.now_us - start)
            self._drain_from_us = None

    def _on_completions(self) -> None:
        now_us = self.device.now_us
        done = self.executor.poll()
        if self.observe is not None:
            self._observe(done)
        self._release(self.scheduler.on_complete(done, now_us))

    def _observe(self, done: Sequence[Completion]) -> None:
        assert self.observe is not None
        for c in done:
            if c.status is not CompletionStatus.DROPPED and c.task_id in self._owner:
                self.observe(self._owner[c.task_id], c)

    def _plan(self) -> None:
        """One engine step's plan: plan, run, fold in what a reset dropped."""
        now_us = self.device.now_us
        plan = self.scheduler.plan(now_us)
        if plan:
            dropped = self.executor.run(plan)
            if dropped:
                self._release(self.scheduler.on_complete(dropped, now_us))

    def _release(self, tasks: list[Task]) -> None:
        for task in tasks:
            memory = self.executor.unbind(task.task_id)
            assert isinstance(memory, SimTaskMemory)
            index = self._owner.pop(task.task_id)
            client = self.clients[index]
            client.outstanding = None
            client.preemptions += task.preemptions
            if task.state is TaskState.DONE:
                self._on_done(client, task, memory)
            self.device.free(memory)
            if client.spec.arrival == "closed":
                self._submit(index)

    def _on_done(self, client: _Client, task: Task, memory: SimTaskMemory) -> None:
        assert task.finished_us is not None
        latency_us = task.finished_us - task.arrival_us
        client.done += 1
        client.latencies_us.append(latency_us)
        slo = client.spec.slo_ms
        if slo is not None and latency_us <= slo * 1000:
            client.slo_met += 1
        # Calls below `complete_below` ran whole by construction (a span);
        # count blocks of the others, or of all when they are recorded.
        first = 0 if self.blocks is not None else memory.complete_below
        for call in range(first, len(memory.costs)):
            want = memory.costs[call].n_vb
            ran = memory.blocks(call)
            if ran != want:
                self.block_errors.append((task.task_id, call, ran, want))
            if self.blocks is not None:
                self.blocks[(task.task_id, call)] = ran

    # ---- results --------------------------------------------------------------

    def result(self) -> SimResult:
        self.device.gpu.close_books()
        stats = self.device.gpu.stats
        return SimResult(
            policy=self.policy.name,
            duration_us=self.duration_us,
            seed=self.seed,
            clients=tuple(
                ClientResult(
                    client_id=i,
                    spec=c.spec,
                    issued=c.issued,
                    done=c.done,
                    skipped=c.skipped,
                    slo_met=c.slo_met,
                    preemptions=c.preemptions,
                    latencies_us=tuple(c.latencies_us),
                )
                for i, c in enumerate(self.clients)
            ),
            preemption_latencies_us=tuple(self.executor.preemption_latencies_us),
            be_drain_us=tuple(self.be_drain_us),
            launches=self.executor.launches,
            padded_launches=stats.padded_launches,
            padded_be_blocks=stats.padded_be_blocks,
            kernels=stats.kernels,
            device_events=stats.events,
            spans=stats.spans,
            splits=stats.splits,
            arrivals=self.arrivals_seen,
            occupancy=self.device.gpu.occupancy(),
            block_errors=tuple(self.block_errors),
            blocks_per_call=self.blocks,
        )
