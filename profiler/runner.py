"""The measuring backends: one interface, picked by name with a lazy import.

Owns the `Backend` and `TaskRunner` interfaces the solo and pair measurements
are written against, the `Measured` record a runner returns, the co-run of two
in-process runners from two host threads (`corun_in_threads`, for backends whose
runners release the GIL while they wait, as CUDA's do), and `open_backend`,
which resolves `auto` the way the daemon does (cuda where a driver and a GPU are
found, else cpu) and fails with a BackendError saying what is missing when
`cuda` is asked for on a machine without one. The cpu backend never imports
CUDA; the cuda backend is imported only when picked.

Imports the standard library and reefd only.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from reefd.backends import pick_backend
from reefd.errors import ConfigError
from reefd.profiler.records import Environment, GpuReadings

if TYPE_CHECKING:
    import torch

    from reefd.clients.lower import Lowered

BACKENDS = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class Measured:
    """What `TaskRunner.measure` returns: every repeat's durations."""

    task_us: tuple[float, ...]
    """Whole-task durations, one per repeat."""
    call_us: tuple[tuple[float, ...], ...]
    """Per call index, that call's duration in each repeat."""
    gpu: GpuReadings = GpuReadings()


Span = tuple[float, float]
"""(start_us, end_us) of one task run, on a clock shared by one backend's
runners (so two runners' spans can be compared)."""


class TaskRunner(Protocol):
    """One lowered model at one batch, loaded on a backend, ready to run."""

    n_calls: int

    def warm_up(self, runs: int) -> None:
        """Run the whole task `runs` times, untimed."""

    def measure(self, repeat: int, on_run: Callable[[], None]) -> Measured:
        """Time `repeat` runs of the task and of each call; `on_run` after each."""

    def corun(self, keep_going: Callable[[Sequence[Span]], bool]) -> list[Span]:
        """Run the task back to back while `keep_going(spans of the runs
        finished so far)`; the spans of every run (a runner may finish runs
        already under way after `keep_going` said stop: they are included)."""

    def close(self) -> None:
        """Free what the runner holds."""


class Backend(Protocol):
    """Where tasks run: makes runners, describes the environment."""

    name: str
    corun_method: str
    """How `pairs` runs two tasks at once on this backend, in words."""
    default_arch: str | None
    """GPU arch to compile for resources (registers, shared memory)."""

    def environment(self, resources_arch: str | None) -> Environment: ...

    def runner(
        self, lowered: Lowered, inputs: Sequence[torch.Tensor]
    ) -> TaskRunner: ...

    def pair_runners(
        self, tasks: Sequence[tuple[Lowered, Sequence[torch.Tensor]]]
    ) -> tuple[TaskRunner, TaskRunner]:
        """Runners for the two sides of a pair (`tasks`: RT, BE), set up the
        way `corun` runs them, so their runs alone and together compare."""

    def start_corun(self) -> None:
        """Set the shared clock for the runners' spans (before a co-run)."""

    def corun(
        self,
        runners: tuple[TaskRunner, TaskRunner],
        on_run: Callable[[int, Span], bool],
    ) -> tuple[list[Span], list[Span]]:
        """Both `pair_runners` at once, each back to back from a common start,
        until `on_run(side, span)` (called once per finished run, in order for
        each side, from any thread) returns False; both stop soon after. The
        spans of every run of each side, on one clock."""

    def close(self) -> None: ...


def corun_in_threads(
    runners: tuple[TaskRunner, TaskRunner], on_run: Callable[[int, Span], bool]
) -> tuple[list[Span], list[Span]]:
    """`Backend.corun` for in-process runners: each side from a host thread of
    its own. Fair only where the runners release the GIL while they wait (a
    CUDA stream: yes; torch on the CPU: not enough, see cpu_corun.py)."""
    stop = threading.Event()
    spans: list[list[Span]] = [[], []]
    errors: list[BaseException] = []

    def worker(side: int, runner: TaskRunner) -> None:
        seen = 0

        def keep_going(done: Sequence[Span]) -> bool:
            nonlocal seen
            for span in done[seen:]:
                if not on_run(side, span):
                    stop.set()
            seen = len(done)
            return not stop.is_set()

        try:
            spans[side] = runner.corun(keep_going)
        except BaseException as exc:  # re-raised in the calling thread
            errors.append(exc)
            stop.set()

    threads = [
        threading.Thread(target=worker, args=(i, r), name=f"reef-profile-{n}")
        for i, (r, n) in enumerate(zip(runners, ("rt", "be"), strict=True))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return spans[0], spans[1]


def open_backend(
    name: str, *, threads: int = 1, form: str = "plain", note: Callable[[str], None]
) -> Backend:
    """The backend called `name` (auto, cpu or cuda), ready to make runners."""
    if name not in BACKENDS:
        raise ConfigError(f"--backend {name!r}: choose one of {', '.join(BACKENDS)}")
    if threads < 1:
        raise ConfigError(f"--threads {threads}: must be >= 1")
    resolved, why = pick_backend(name)
    if name == "auto" and resolved == "cuda":
        from reefd.profiler.cuda_runner import missing_support

        if missing := missing_support():
            resolved, why = "cpu", f"a GPU driver is here, but {missing}"
    if name == "auto":
        note(f"backend {resolved} ({why})")
    if resolved == "cuda":
        from reefd.profiler.cuda_runner import CudaBackend

        return CudaBackend.open(threads=threads, form=form, note=note)
    from reefd.profiler.cpu_runner import CpuBackend

    return CpuBackend.open(threads=threads, note=note)
