"""CallRuns: the calls of one task in flight, as runs of consecutive calls.

A launch issues a run of a task's calls (`Launch.n_calls`); the device reports
them back in pieces (`Completion.n_calls`): a whole run, or its first calls OK
and the rest preempted or dropped, or one completion per call on a device that
does not take runs. `CallRuns` keeps what is still out as half-open intervals
`[first, end)` tagged with their stream, and answers how many calls a returned
range covered on which stream; `InFlight` keeps them for every task, with the
calls in flight per stream. Shared by the scheduler's state and the executor.
Pure data: no clocks, sockets, threads or devices.
"""

from __future__ import annotations

from reefd.scheduler.plan import Stream


class CallRuns:
    """Intervals of one task's calls in flight, in call order."""

    __slots__ = ("_runs", "count")

    def __init__(self) -> None:
        self._runs: list[tuple[int, int, Stream]] = []
        self.count = 0
        """Calls in flight."""

    def __bool__(self) -> bool:
        return self.count > 0

    @property
    def end(self) -> int:
        """One past the highest call in flight (0 when none is)."""
        return self._runs[-1][1] if self._runs else 0  # disjoint, sorted

    def streams(self) -> set[Stream]:
        return {stream for _, _, stream in self._runs}

    def covers(self, first: int, n_calls: int = 1) -> bool:
        """Whether any of the calls `first .. first + n_calls - 1` is in flight."""
        stop = first + n_calls
        return any(f < stop and first < e for f, e, _ in self._runs)

    def add(self, first: int, n_calls: int, stream: Stream) -> None:
        """Record a launched run; it must not overlap calls already out."""
        if n_calls < 1:
            raise ValueError(f"a run needs n_calls >= 1, got {n_calls}")
        runs = self._runs
        if runs and first < runs[-1][1]:  # not after the last run: check, sort
            if self.covers(first, n_calls):
                raise ValueError(f"calls {first}..{first + n_calls - 1} already out")
            runs.append((first, first + n_calls, stream))
            runs.sort()
        else:
            runs.append((first, first + n_calls, stream))
        self.count += n_calls

    def remove(self, first: int, n_calls: int) -> tuple[int, Stream | None]:
        """Take calls `first .. first + n_calls - 1` out; returns how many of
        them were in flight and their stream. A returned range lies inside one
        launched run, so it touches at most one interval; calls not in flight
        are ignored."""
        stop = first + n_calls
        for i, (f, e, stream) in enumerate(self._runs):
            lo, hi = max(f, first), min(e, stop)
            if lo >= hi:
                continue
            pieces = [(a, b, stream) for a, b in ((f, lo), (hi, e)) if a < b]
            self._runs[i : i + 1] = pieces
            self.count -= hi - lo
            return hi - lo, stream
        return 0, None


class InFlight:
    """Every task's calls in flight (`by_task`), and how many per stream."""

    __slots__ = ("by_task", "_calls")

    def __init__(self) -> None:
        self.by_task: dict[int, CallRuns] = {}
        self._calls = dict.fromkeys(Stream, 0)

    def calls(self, stream: Stream) -> int:
        return self._calls[stream]

    def total(self) -> int:
        return sum(self._calls.values())

    def add(self, task_id: int, first: int, n_calls: int, stream: Stream) -> None:
        runs = self.by_task.get(task_id)
        if runs is None:
            runs = self.by_task[task_id] = CallRuns()
        runs.add(first, n_calls, stream)
        self._calls[stream] += n_calls

    def remove(
        self, task_id: int, first: int, n_calls: int
    ) -> tuple[int, Stream | None]:
        """Take returned calls out (see `CallRuns.remove`); a task with
        nothing left in flight leaves `by_task`."""
        runs = self.by_task.get(task_id)
        if runs is None:
            return 0, None
        n, stream = runs.remove(first, n_calls)
        if not runs:
            del self.by_task[task_id]
        if stream is not None:
            self._calls[stream] -= n
        return n, stream
