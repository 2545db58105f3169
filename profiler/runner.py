"""The measuring backends: one interface, picked by name with a lazy import.

Owns the `Backend` and `TaskRunner` interfaces the solo and pair measurements
are written against, the `Measured` record a runner returns, and
`open_backend`, which resolves `auto` the way the daemon does (cuda where a
driver and a GPU are found, else cpu) and fails with a BackendError saying what
is missing when `cuda` is asked for on a machine without one. The cpu backend
never imports CUDA; the cuda backend is imported only when picked.

Imports the standard library and reefd only.
"""

from __future__ import annotations

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

    def corun(self, keep_going: Callable[[int], bool]) -> list[Span]:
        """Run the task back to back while `keep_going(runs finished so far)`;
        the spans of every run. Called from a thread of its own in pairs."""

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

    def start_corun(self) -> None:
        """Set the shared clock for the runners' spans (before a co-run)."""

    def close(self) -> None: ...


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

    return CpuBackend.open(threads=threads)
