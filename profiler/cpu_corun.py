"""CPU pairs in worker processes: one process per side, alone and together.

Owns the two worker processes a cpu `pairs` run measures in (started with the
'spawn' context on first use, kept for the backend's life; slot 0 runs the RT
task, slot 1 the BE task), the messages to them, and `WorkerRunner`, the
parent's TaskRunner for a task loaded in a worker.

Why processes: two Python threads in one process share one GIL. A thread
back from a torch call must wait for its partner to give the GIL up, as late
as the 5 ms switch interval each time, so thread co-runs measured the GIL:
an MLP of 0.21 ms took 14-16 ms (68-78x) beside small partners, and now and
then one side got no run inside the other's whole co-run ("kept no overlapped
runs"). A worker has its own interpreter and torch with the backend's intra-op
threads, loads its task from raw bytes as the daemon does, and runs it with
CpuRunner's own loop (the same for its runs alone and together, so a ratio
reflects only the partner). Together, both workers leave a start barrier
shared by the two, check a stop flag in shared memory between runs, and send
their spans in batches every FLUSH_S: the parent wakes rarely and never holds
a worker up. Spans are CLOCK_MONOTONIC microseconds, one clock for every
process of the host; `run` checks that every span lies between the parent's
own readings before and after. A worker also reports how much CPU it got
(process time over wall time): where both sides' threads fit the host's CPUs,
a worker held off them was held off by some other process, and the backend's
`note` says so (the store's schema has no place for it).

Imports the standard library, torch and reefd only; never CUDA.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection, wait
from typing import Any

import torch

from reefd.backends.cpu import CpuDevice
from reefd.errors import BackendError, ReefError
from reefd.profiler.cpu_runner import CpuRunner, TaskBytes
from reefd.profiler.runner import Measured, Span, TaskRunner

FLUSH_S = 0.02
"""A running worker sends its finished spans at most this often (and at the end)."""
START_S = 300.0
"""Longest wait for a spawned worker to import torch and say it is ready."""
BARRIER_S = 60.0
"""Longest wait at the start barrier for the partner of a co-run."""
MIN_CORE_SHARE = 0.8
"""A worker that ran on less of its cores than this was held off the CPU by
something, noted when the two sides' threads fit the host's CPUs (else it is
the partner, and what a co-run measures)."""
SIDES = ("rt", "be")


# --- the worker process -------------------------------------------------------------


def _runs(
    conn: Connection,
    runner: CpuRunner,
    stop: Any,
    barrier: threading.Barrier | None,
) -> None:
    """Run back to back until `stop` is set, sending spans as they finish."""
    if barrier is not None:
        barrier.wait(BARRIER_S)
    sent, flushed = 0, time.monotonic()
    began_cpu_s, began_s = time.process_time(), flushed

    def keep_going(spans: Sequence[Span]) -> bool:
        nonlocal sent, flushed
        if time.monotonic() - flushed >= FLUSH_S:
            conn.send(("spans", spans[sent:]))
            sent, flushed = len(spans), time.monotonic()
        return not stop.value

    spans = runner.corun(keep_going)
    cores = (time.process_time() - began_cpu_s) / max(time.monotonic() - began_s, 1e-9)
    conn.send(("spans", spans[sent:]))
    conn.send(("done", cores))


def _answer_requests(
    conn: Connection, device: CpuDevice, stop: Any, barrier: Any
) -> None:
    """One request at a time, one answer each, until `close`."""
    runner: CpuRunner | None = None
    while (request := conn.recv())[0] != "close":
        kind, *args = request
        try:
            if kind == "load":
                if runner is not None:
                    runner.close()
                    runner = None
                runner = CpuRunner.from_bytes(device, args[0])
                conn.send(("ok", runner.n_calls))
                continue
            if runner is None:
                raise BackendError(f"{kind!r} before a task was loaded")
            if kind == "unload":
                runner.close()
                runner = None
                conn.send(("ok",))
            elif kind == "warm":
                runner.warm_up(args[0])
                conn.send(("ok",))
            elif kind == "measure":
                conn.send(("ok", runner.measure(args[0], lambda: None)))
            elif kind == "run":
                _runs(conn, runner, stop, barrier if args[0] else None)
            else:
                raise BackendError(f"unknown request {kind!r}")
        except (BrokenPipeError, ConnectionResetError):
            raise  # the parent is gone: nobody to answer
        except ReefError as exc:  # answered; the parent raises it
            conn.send(("error", str(exc)))
        except Exception as exc:
            conn.send(("error", f"{type(exc).__name__}: {exc}"))


def _serve(conn: Connection, stop: Any, barrier: Any, threads: int) -> None:
    """A worker process: its torch, its device, its requests; it exits when
    the parent says close or is gone (EOF or a broken pipe, within FLUSH_S
    of a run loop)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    torch.set_num_threads(threads)
    device = CpuDevice(torch_threads=threads)
    with contextlib.suppress(BrokenPipeError, ConnectionResetError, EOFError):
        conn.send(("ready", os.getpid()))
        _answer_requests(conn, device, stop, barrier)  # until close, or no parent
    device.close()
    conn.close()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # skips tearing torch down: about a second, for nothing


# --- the parent's side --------------------------------------------------------------


class Workers:
    """The two worker processes of one cpu backend (slot 0 RT, slot 1 BE)."""

    def __init__(
        self,
        processes: list[Any],
        conns: list[Connection],
        stops: list[Any],
        barrier: Any,
        threads: int,
        note: Callable[[str], None],
    ) -> None:
        self._processes = processes
        self._conns = conns
        self._stops = stops
        self._barrier = barrier
        self._threads = threads
        self._note = note

    @classmethod
    def start(cls, threads: int, note: Callable[[str], None]) -> Workers:
        """Spawn both workers (each imports torch: seconds) and wait for them."""
        ctx = multiprocessing.get_context("spawn")
        barrier = ctx.Barrier(2)
        processes, conns, stops = [], [], []
        for side in SIDES:
            mine, theirs = ctx.Pipe()
            stop = ctx.RawValue("b", 0)
            process = ctx.Process(
                target=_serve,
                args=(theirs, stop, barrier, threads),
                name=f"reef-profile-{side}",
                daemon=True,
            )
            process.start()
            theirs.close()
            processes.append(process)
            conns.append(mine)
            stops.append(stop)
        workers = cls(processes, conns, stops, barrier, threads, note)
        if (cpus := len(os.sched_getaffinity(0))) < 2 * threads:
            note(
                f"two sides of {threads} torch thread(s) each oversubscribe this "
                f"machine's {cpus} CPU(s): co-run slowdowns include threads waiting "
                "for descheduled partners (--threads 1 gives each side its own core)"
            )
        try:
            for slot in (0, 1):
                workers._answer(slot, "ready", timeout_s=START_S)
        except BaseException:
            workers.close()
            raise
        return workers

    def alive(self) -> bool:
        return all(p.is_alive() for p in self._processes)

    def _name(self, slot: int) -> str:
        process = self._processes[slot]
        return f"cpu worker {process.name} (pid {process.pid})"

    def _receive(self, slot: int, timeout_s: float | None = None) -> tuple:
        """The worker's next message; BackendError if it died or went quiet."""
        conn, process = self._conns[slot], self._processes[slot]
        ready = conn.poll() or bool(wait([conn, process.sentinel], timeout_s))
        if ready and conn.poll():
            try:
                return conn.recv()
            except EOFError:
                pass
        if ready:  # its end of the pipe closed: it is gone, or going
            process.join(5.0)
        if process.is_alive():
            raise BackendError(f"{self._name(slot)}: no answer in {timeout_s}s")
        raise BackendError(f"{self._name(slot)} exited with code {process.exitcode}")

    def _answer(self, slot: int, want: str, timeout_s: float | None = None) -> tuple:
        """The worker's answer to one request: `want` or a BackendError."""
        message = self._receive(slot, timeout_s)
        if message[0] == "error":
            raise BackendError(f"{self._name(slot)}: {message[1]}")
        if message[0] != want:
            raise BackendError(f"{self._name(slot)}: answered {message[0]!r}")
        return message

    def request(self, slot: int, *message: Any) -> tuple:
        """Send one request to a worker and wait for its answer."""
        self._conns[slot].send(message)
        return self._answer(slot, "ok")

    def runner(self, slot: int, task: TaskBytes) -> WorkerRunner:
        """`task` loaded in worker `slot` (replacing what it held)."""
        (_, n_calls) = self.request(slot, "load", task)
        return WorkerRunner(self, slot, n_calls)

    def run(
        self, slots: Sequence[int], on_run: Callable[[int, Span], bool]
    ) -> list[list[Span]]:
        """Workers `slots` run their tasks back to back (two: from the shared
        barrier) until `on_run(slot, span)` says stop; every span of each."""
        for slot in slots:
            self._stops[slot].value = 0
        before_us = time.monotonic_ns() / 1000.0
        for slot in slots:
            self._conns[slot].send(("run", len(slots) == 2))
        spans: dict[int, list[Span]] = {slot: [] for slot in slots}
        cores: dict[int, float] = {}
        running, failures = set(slots), []
        try:
            while running:
                ready = wait([self._conns[s] for s in running])
                for slot in [s for s in running if self._conns[s] in ready]:
                    try:
                        message = self._receive(slot)
                    except BackendError as exc:  # it died
                        message = ("failed", str(exc))
                    if message[0] == "spans":
                        for span in message[1]:
                            spans[slot].append(span)
                            if not on_run(slot, span):
                                self._stop(slots)
                        continue
                    running.discard(slot)
                    if message[0] == "done":
                        cores[slot] = message[1]
                    else:
                        failures.append(self._failure(slot, message))
                        self._stop(slots)
                        self._barrier.abort()  # a partner waiting there gives up
        except BaseException:
            self._stop(slots)
            self._barrier.abort()
            self._drain(running)
            raise
        finally:
            if self._barrier.broken:
                self._barrier.reset()
        if failures:
            raise BackendError("; ".join(failures))
        self._check_clock(spans, before_us, time.monotonic_ns() / 1000.0)
        self._check_cores(cores, len(slots) == 2)
        return [spans[slot] for slot in slots]

    def _check_cores(self, cores: dict[int, float], together: bool) -> None:
        """Note a worker that got less CPU than its threads could use."""
        if 2 * self._threads > len(os.sched_getaffinity(0)):
            return  # the sides' threads share cores: that is the partner's doing
        for slot, used in cores.items():
            if used < MIN_CORE_SHARE * self._threads:
                where = "beside its partner" if together else "alone"
                self._note(
                    f"{self._name(slot)} ran {where} on {used / self._threads:.0%} "
                    f"of its {self._threads} core(s): other processes are busy on "
                    "this machine's CPUs, and its timings include them"
                )

    def _failure(self, slot: int, message: tuple) -> str:
        if message[0] == "failed":
            return message[1]
        return f"{self._name(slot)}: {message[1]}"

    def _drain(self, running: set[int]) -> None:
        """Read what stopped workers still send, up to their last message."""
        for slot in running:
            with contextlib.suppress(BackendError):
                while self._receive(slot, timeout_s=BARRIER_S)[0] == "spans":
                    pass

    def _stop(self, slots: Sequence[int]) -> None:
        for slot in slots:
            self._stops[slot].value = 1

    def _check_clock(
        self, spans: dict[int, list[Span]], before_us: float, after_us: float
    ) -> None:
        """Every worker span lies within the parent's readings around the run."""
        for slot, found in spans.items():
            if found and (found[0][0] < before_us or found[-1][1] > after_us):
                raise BackendError(
                    f"{self._name(slot)}: spans [{found[0][0]:.0f}, "
                    f"{found[-1][1]:.0f}] us lie outside the run [{before_us:.0f}, "
                    f"{after_us:.0f}] us: the processes do not share a clock"
                )

    def corun(
        self,
        runners: tuple[TaskRunner, TaskRunner],
        on_run: Callable[[int, Span], bool],
    ) -> tuple[list[Span], list[Span]]:
        """`Backend.corun` for the runners `runner` made (slot = side)."""
        for side, runner in enumerate(runners):
            if not (
                isinstance(runner, WorkerRunner)
                and runner.workers is self
                and runner.slot == side
            ):
                raise BackendError("a cpu co-run takes the runners of pair_runners")
        rt, be = self.run((0, 1), on_run)
        return rt, be

    def close(self) -> None:
        """Stop both workers (politely, then by force)."""
        self._stop((0, 1))
        for conn in self._conns:
            with contextlib.suppress(OSError):  # a worker that is gone already
                conn.send(("close",))
        for conn, process in zip(self._conns, self._processes, strict=True):
            process.join(5.0)
            if process.is_alive():
                process.terminate()
                process.join(5.0)
            conn.close()


class WorkerRunner:
    """The parent's handle on the task loaded in one worker process."""

    def __init__(self, workers: Workers, slot: int, n_calls: int) -> None:
        self.workers = workers
        self.slot = slot
        self.n_calls = n_calls

    def warm_up(self, runs: int) -> None:
        self.workers.request(self.slot, "warm", runs)

    def measure(self, repeat: int, on_run: Callable[[], None]) -> Measured:
        (_, measured) = self.workers.request(self.slot, "measure", repeat)
        for _ in range(repeat):
            on_run()
        return measured

    def corun(self, keep_going: Callable[[Sequence[Span]], bool]) -> list[Span]:
        """Runs alone, back to back; `keep_going` sees them as they arrive."""
        done: list[Span] = []
        if not keep_going(done):
            return done

        def on_run(_: int, span: Span) -> bool:
            done.append(span)
            return keep_going(done)

        return self.workers.run((self.slot,), on_run)[0]

    def close(self) -> None:
        self.workers.request(self.slot, "unload")
