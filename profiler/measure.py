"""Solo measurement: one model at one batch, its task and every kernel call.

Owns the sequence of one solo profile: lower the model (clients/lower.py),
name it (content hash of its graph at batch 1), gather each call's static
facts (facts.py), load it on the backend, warm up, time `repeat` runs of the
task and of each call, and summarise them as a TaskProfile. How a backend
times is its runner's business (cpu_runner.py, cuda_runner.py).

Imports torch and reefd; no SQL (the caller stores the result).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch

from reefd.clients.lower import Lowered, lower
from reefd.errors import ConfigError
from reefd.profiler.facts import Resources, call_facts
from reefd.profiler.identity import graph_key
from reefd.profiler.progress import Progress
from reefd.profiler.records import CallProfile, ModelIdentity, TaskProfile, utc_now
from reefd.profiler.runner import Backend
from reefd.profiler.stats import Stats
from reefd.profiler.target import Target


@dataclass(frozen=True)
class Settings:
    """How solo and pair measurements run."""

    warmup: int = 3
    """Untimed whole-task runs first."""
    repeat: int = 20
    """Timed runs (samples per task, per call and per pair side)."""
    form: str = "plain"
    """Entry point form whose resources are recorded (and timed on cuda)."""
    progress: bool = True
    """Draw progress bars on stderr."""

    def check(self) -> Settings:
        if self.warmup < 0:
            raise ConfigError(f"--warmup {self.warmup}: must be >= 0")
        if self.repeat < 1:
            raise ConfigError(f"--repeat {self.repeat}: must be >= 1")
        if self.form not in ("plain", "preemptible"):
            raise ConfigError(f"--form {self.form!r}: choose plain or preemptible")
        return self


def lower_at(target: Target, batch: int) -> tuple[Lowered, tuple[torch.Tensor, ...]]:
    """The target built and lowered at `batch` (UnsupportedOp names the op)."""
    model, inputs = target.make(batch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", UserWarning)
        return lower(model, inputs, name=target.name), inputs


class Identities:
    """Model identities by target name: the hash of the graph at batch 1,
    lowered once more only when batch 1 is not profiled anyway."""

    def __init__(self) -> None:
        self._found: dict[str, ModelIdentity] = {}

    def of(self, target: Target, batch: int, lowered: Lowered) -> ModelIdentity:
        if target.name not in self._found:
            graph = lowered.graph if batch == 1 else lower_at(target, 1)[0].graph
            self._found[target.name] = ModelIdentity(
                graph_key(graph), target.name, target.source, dict(target.overrides)
            )
        return self._found[target.name]


@dataclass(frozen=True)
class Loaded:
    """A target lowered at one batch, with its inputs and identity."""

    lowered: Lowered
    inputs: tuple[torch.Tensor, ...]
    identity: ModelIdentity


class Lowerings:
    """Targets lowered once per batch (pairs reuse them across partners)."""

    def __init__(self) -> None:
        self._identities = Identities()
        self._found: dict[tuple[str, int], Loaded] = {}

    def get(self, target: Target, batch: int) -> Loaded:
        key = (target.name, batch)
        if key not in self._found:
            lowered, inputs = lower_at(target, batch)
            identity = self._identities.of(target, batch, lowered)
            self._found[key] = Loaded(lowered, inputs, identity)
        return self._found[key]


def profile_task(
    backend: Backend,
    target: Target,
    batch: int,
    settings: Settings,
    resources: Resources,
    identities: Identities,
    log: Callable[[str], None],
) -> TaskProfile:
    """Measure `target` at `batch` alone on `backend`."""
    started = time.monotonic()
    lowered, inputs = lower_at(target, batch)
    graph = lowered.graph
    identity = identities.of(target, batch, lowered)
    facts = call_facts(graph, resources, settings.form)
    log(
        f"{target.name} batch {batch}: {len(graph.calls)} calls, lowered and "
        f"compiled in {time.monotonic() - started:.1f}s"
    )
    runner = backend.runner(lowered, inputs)
    try:
        bar = Progress(
            settings.repeat,
            f"{target.name} b{batch}",
            enabled=settings.progress,
        )
        runner.warm_up(settings.warmup)
        measured = runner.measure(settings.repeat, bar.advance)
    finally:
        runner.close()
    duration = Stats.of(measured.task_us)
    bar.finish(f"median {duration.median_us / 1000:.2f} ms")
    calls = tuple(
        CallProfile(fact, Stats.of(samples))
        for fact, samples in zip(facts, measured.call_us, strict=True)
    )
    return TaskProfile(
        model=identity,
        batch=batch,
        graph_key=graph_key(graph),
        duration=duration,
        samples_us=measured.task_us,
        calls=calls,
        warmup=settings.warmup,
        weight_bytes=lowered.weight_bytes,
        scratch_bytes=lowered.scratch_bytes,
        gpu=measured.gpu,
        measured_at=utc_now(),
    )
