"""Engine: the daemon's loop and the owner of all serving state.

One thread runs `run()`: drain the inbox of client events → scheduler.plan(now)
→ executor.run(plan) → scheduler.on_complete(...). Every client request that
reaches the engine gets exactly one reply through the `reply` callable. Only this
thread touches the registry, the scheduler and the executor; other threads call
`submit(event)`, `wake()` and `begin_shutdown()`.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from reefd import __version__
from reefd.backends.device import Device
from reefd.errors import Cancelled, InternalError, ReefError, RequestError, ShuttingDown
from reefd.events import (
    CancelRequest,
    ClientBye,
    ClientGone,
    ClientHello,
    Event,
    InferRequest,
    RegisterModel,
    StatusRequest,
    UnregisterModel,
)
from reefd.executor import Executor
from reefd.graph import KernelGraph
from reefd.metrics import Metrics, percentile_us
from reefd.protocol import Message, error, result
from reefd.registry import Registry
from reefd.scheduler.scheduler import Scheduler
from reefd.scheduler.task import Priority, Task, TaskState

log = logging.getLogger("reefd.engine")

Reply = Callable[[int, Message], None]


def monotonic_us() -> int:
    return time.monotonic_ns() // 1000


@dataclass
class _TaskRecord:
    client_id: int
    req: int
    model_id: int
    graph: KernelGraph
    """The graph at this request's batch size (its output shapes)."""
    replied: bool = False


class Engine:
    def __init__(
        self,
        device: Device,
        scheduler: Scheduler,
        executor: Executor,
        reply: Reply,
        *,
        policy_name: str,
        default_slo_ms: float,
        max_models_per_client: int,
        max_queued_per_client: int,
        clock_us: Callable[[], int] = monotonic_us,
    ) -> None:
        self._device = device
        self._scheduler = scheduler
        self._executor = executor
        self._reply = reply
        self._policy_name = policy_name
        self._default_slo_ms = default_slo_ms
        self._clock_us = clock_us
        self._registry = Registry(max_models_per_client, max_queued_per_client)
        self._metrics = Metrics()
        self._tasks: dict[int, _TaskRecord] = {}
        self._next_task_id = 1
        self._inbox: queue.SimpleQueue[Event] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._shutdown_at_us: int | None = None
        self._stopped = threading.Event()
        self._started_us = clock_us()
        self.last_step_us = self._started_us

    # called from other threads --------------------------------------------
    def submit(self, event: Event) -> None:
        self._inbox.put(event)
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    def begin_shutdown(self, grace_ms: int) -> None:
        """Stop admitting work; finish in-flight work within `grace_ms`, then fail
        it."""
        self.submit(_Shutdown(grace_ms))

    def wait_stopped(self, timeout_s: float | None = None) -> bool:
        return self._stopped.wait(timeout_s)

    # the loop -------------------------------------------------------------
    def run(self) -> None:
        try:
            while not self._step():
                self._wake.wait(0.05)
                self._wake.clear()
        finally:
            self._unload_all()
            self._stopped.set()

    def _step(self) -> bool:
        """One pass; returns True when the engine has stopped."""
        self._drain_inbox()
        now = self._clock_us()
        self.last_step_us = now
        self._release(self._scheduler.on_complete(self._executor.poll(), now))
        plan = self._scheduler.plan(now)
        if plan:
            dropped = self._executor.run(plan)
            if dropped:
                self._release(self._scheduler.on_complete(dropped, now))
        return self._shutdown_finished(now)

    def _drain_inbox(self) -> None:
        while True:
            try:
                event = self._inbox.get_nowait()
            except queue.Empty:
                return
            self._dispatch(event)

    def _dispatch(self, event: Event | _Shutdown) -> None:
        handler = _HANDLERS[type(event)]
        try:
            handler(self, event)
        except ReefError as exc:
            self._answer_error(event, exc)
        except Exception as exc:  # a bug must not take the daemon down
            log.exception("internal error handling %s", type(event).__name__)
            self._answer_error(event, InternalError(f"{type(exc).__name__}: {exc}"))

    def _answer_error(self, event: object, exc: ReefError) -> None:
        client_id = getattr(event, "client_id", None)
        req = getattr(event, "req", None)
        if client_id is not None and req is not None:
            self._reply(client_id, error(req, exc.code, str(exc)))

    # handlers ---------------------------------------------------------------
    def on_hello(self, ev: ClientHello) -> None:
        """The server already answered HELLO; the engine only records the client."""
        self._registry.add_client(ev.client_id, ev.name, ev.pid)

    def on_register(self, ev: RegisterModel) -> None:
        self._check_accepting()
        self._registry.check_can_register(ev.client_id)
        handle = self._device.load(ev.graph, ev.weights, ev.digests, ev.compiled)
        slo_ms = ev.slo_ms
        if ev.priority is Priority.RT and slo_ms is None:
            slo_ms = self._default_slo_ms
        entry = self._registry.add_model(
            ev.client_id,
            ev.name,
            ev.graph,
            handle,
            ev.priority,
            slo_ms,
            ev.batch,
            ev.profile_key,
        )
        log.info(
            "client %d registered model %d %r (%s, %d calls, %d weight bytes)",
            ev.client_id,
            entry.model_id,
            ev.name,
            ev.priority,
            len(ev.graph.calls),
            ev.graph.weight_bytes(),
        )
        self._reply(ev.client_id, result(ev.req, model=entry.model_id, slo_ms=slo_ms))

    def on_unregister(self, ev: UnregisterModel) -> None:
        entry = self._registry.model_for(ev.client_id, ev.model_id)
        entry.closing = True
        self._maybe_unload(entry.model_id)
        self._reply(ev.client_id, result(ev.req, model=ev.model_id))

    def on_infer(self, ev: InferRequest) -> None:
        self._check_accepting()
        entry = self._registry.model_for(ev.client_id, ev.model_id)
        self._registry.check_can_queue(ev.client_id, ev.req)
        graph = entry.graph_for([shape for _, shape in ev.inputs])
        _check_inputs(graph, ev.inputs)
        memory = self._device.alloc(entry.handle, ev.frames, graph)
        task_id = self._next_task_id
        self._next_task_id += 1
        arrival = ev.recv_us or self._clock_us()
        deadline = None
        if entry.priority is Priority.RT:
            deadline = arrival + int((entry.slo_ms or self._default_slo_ms) * 1000)
        task = Task(
            task_id=task_id,
            client_id=ev.client_id,
            model_id=entry.model_id,
            priority=entry.priority,
            n_calls=len(entry.graph.calls),
            arrival_us=arrival,
            deadline_us=deadline,
            profile_key=entry.profile_key,
            costs=self._device.call_costs(memory),
        )
        self._executor.bind(task_id, entry.handle, memory)
        self._tasks[task_id] = _TaskRecord(ev.client_id, ev.req, entry.model_id, graph)
        self._registry.clients[ev.client_id].live_tasks[ev.req] = task_id
        entry.live_tasks += 1
        self._scheduler.submit(task, self._clock_us())

    def on_cancel(self, ev: CancelRequest) -> None:
        client = self._registry.client(ev.client_id)
        task_id = client.live_tasks.get(ev.target_req)
        cancelled = task_id is not None and self._cancel_task(
            task_id, "cancelled by client"
        )
        self._reply(ev.client_id, result(ev.req, cancelled=bool(cancelled)))

    def on_status(self, ev: StatusRequest) -> None:
        self._reply(ev.client_id, result(ev.req, status=self.status()))

    def on_bye(self, ev: ClientBye) -> None:
        self._drop_client(ev.client_id, "client said BYE")
        self._reply(ev.client_id, result(ev.req))

    def on_client_gone(self, ev: ClientGone) -> None:
        log.info("client %d gone: %s", ev.client_id, ev.reason)
        self._drop_client(ev.client_id, ev.reason, reply=False)

    def on_shutdown(self, ev: _Shutdown) -> None:
        if self._shutdown_at_us is None:
            self._shutdown_at_us = self._clock_us() + ev.grace_ms * 1000
            log.info(
                "shutting down: finishing in-flight work for up to %d ms", ev.grace_ms
            )

    # task lifecycle -------------------------------------------------------
    def _cancel_task(self, task_id: int, why: str, reply: bool = True) -> bool:
        outcome = self._scheduler.cancel(task_id, self._clock_us())
        if outcome is None:
            return False
        task, released = outcome
        record = self._tasks[task_id]
        if reply and not record.replied:
            self._reply(record.client_id, error(record.req, Cancelled.code, why))
        record.replied = True
        if released:
            self._release([task])
        return True

    def _release(self, tasks: list[Task]) -> None:
        for task in tasks:
            record = self._tasks.pop(task.task_id)
            memory = self._executor.unbind(task.task_id)
            if not record.replied:
                self._answer(task, record, memory)
            self._device.free(memory)
            client = self._registry.clients.get(record.client_id)
            if client is not None:
                client.live_tasks.pop(record.req, None)
                client.done += task.state is TaskState.DONE
                client.failed += task.state is TaskState.FAILED
                client.cancelled += task.state is TaskState.CANCELLED
            entry = self._registry.models[record.model_id]
            entry.live_tasks -= 1
            entry.done += task.state is TaskState.DONE
            self._maybe_unload(record.model_id)

    def _answer(self, task: Task, record: _TaskRecord, memory: object) -> None:
        record.replied = True
        now = self._clock_us()
        if task.state is not TaskState.DONE:
            self._metrics.failed += 1
            msg = f"kernel failed: {task.error}" if task.error else f"task {task.state}"
            self._reply(record.client_id, error(record.req, "backend", msg))
            return
        latency_us = now - task.arrival_us
        if task.priority is Priority.RT:
            met = task.deadline_us is None or now <= task.deadline_us
            self._metrics.on_rt_done(latency_us, met)
        else:
            self._metrics.on_be_done(now)
        outputs = self._device.outputs(memory)
        descs = [[b.dtype, list(b.shape)] for b in record.graph.outputs]
        timing = {
            "latency_us": latency_us,
            "queue_us": (task.started_us or now) - task.arrival_us,
            "preemptions": task.preemptions,
        }
        self._reply(
            record.client_id,
            result(record.req, outputs, outputs_desc=descs, timing=timing),
        )

    def _drop_client(self, client_id: int, why: str, reply: bool = True) -> None:
        client = self._registry.clients.get(client_id)
        if client is None:
            return
        for task_id in list(client.live_tasks.values()):
            self._cancel_task(task_id, why, reply=reply)
        for model_id in list(client.models):
            self._registry.models[model_id].closing = True
            self._maybe_unload(model_id)
        del self._registry.clients[client_id]

    def _maybe_unload(self, model_id: int) -> None:
        if model_id in self._registry.models and self._registry.unloadable(model_id):
            entry = self._registry.remove_model(model_id)
            self._device.unload(entry.handle)
            log.info("model %d %r unloaded", model_id, entry.name)

    def _unload_all(self) -> None:
        for model_id in list(self._registry.models):
            entry = self._registry.remove_model(model_id)
            self._device.unload(entry.handle)

    # shutdown -------------------------------------------------------------
    def _check_accepting(self) -> None:
        if self._shutdown_at_us is not None:
            raise ShuttingDown("the daemon is shutting down and accepts no new work")

    def _shutdown_finished(self, now: int) -> bool:
        if self._shutdown_at_us is None:
            return False
        if now >= self._shutdown_at_us:
            for task_id in list(self._tasks):
                if not self._tasks[task_id].replied:
                    self._fail_for_shutdown(task_id)
        return self._scheduler.idle and not self._tasks

    def _fail_for_shutdown(self, task_id: int) -> None:
        record = self._tasks[task_id]
        self._reply(
            record.client_id,
            error(
                record.req,
                ShuttingDown.code,
                "daemon stopped before the request finished",
            ),
        )
        record.replied = True
        self._cancel_task(task_id, "shutdown", reply=False)

    # status ---------------------------------------------------------------
    def status(self) -> dict:
        now = self._clock_us()
        lat = self._executor.preemption_latencies_us
        return {
            "daemon": {
                "version": __version__,
                "pid": os.getpid(),
                "device": self._device.describe(),
                "policy": self._policy_name,
                "uptime_s": (now - self._started_us) / 1e6,
                "shutting_down": self._shutdown_at_us is not None,
            },
            "clients": [
                {
                    "id": c.client_id,
                    "name": c.name,
                    "pid": c.pid,
                    "models": sorted(c.models),
                    "in_flight": len(c.live_tasks),
                    "done": c.done,
                    "failed": c.failed,
                    "cancelled": c.cancelled,
                }
                for c in self._registry.clients.values()
            ],
            "models": [
                {
                    "id": m.model_id,
                    "name": m.name,
                    "client": m.client_id,
                    "priority": str(m.priority),
                    "slo_ms": m.slo_ms,
                    "calls": len(m.graph.calls),
                    "profile_key": m.profile_key,
                    "weight_bytes": m.graph.weight_bytes(),
                    "in_flight": m.live_tasks,
                    "done": m.done,
                }
                for m in self._registry.models.values()
            ],
            "queues": self._scheduler.depths(),
            "metrics": self._metrics.snapshot(now, self._started_us),
            "preemptions": {
                "count": len(lat),
                "p50_us": percentile_us(lat, 50),
                "p99_us": percentile_us(lat, 99),
                "max_us": max(lat) if lat else None,
            },
            "launches": self._executor.launches,
            "padded_launches": self._executor.padded_launches,
            "weights": self._device.weight_stats(),
        }


@dataclass(frozen=True)
class _Shutdown:
    grace_ms: int


def _check_inputs(graph, inputs: list[tuple[str, tuple[int, ...]]]) -> None:
    want = [(b.dtype, b.shape) for b in graph.inputs]
    if len(inputs) != len(want):
        raise RequestError(f"model takes {len(want)} inputs, got {len(inputs)}")
    for i, (got, (dtype, shape)) in enumerate(zip(inputs, want, strict=True)):
        if got != (dtype, shape):
            raise RequestError(
                f"input {i}: model takes {dtype}{list(shape)}, "
                f"got {got[0]}{list(got[1])}"
            )


_HANDLERS: dict[type, Callable[[Engine, object], None]] = {
    ClientHello: Engine.on_hello,
    RegisterModel: Engine.on_register,
    UnregisterModel: Engine.on_unregister,
    InferRequest: Engine.on_infer,
    CancelRequest: Engine.on_cancel,
    StatusRequest: Engine.on_status,
    ClientBye: Engine.on_bye,
    ClientGone: Engine.on_client_gone,
    _Shutdown: Engine.on_shutdown,
}
