"""ExclusivePolicy ("exclusive"): baseline where one task owns the device.

A task owns the device from its first kernel to its last: no co-running, no
preemption. When nothing is in flight it picks the earliest-deadline RT task,
else the best BE candidate (most progress first, so resumed tasks go first, then
the oldest), and issues all its calls at once as plain kernels on its own stream.
Pure decision code: must not import clocks, sockets, threads or devices.
"""

from __future__ import annotations

from reefd.scheduler.plan import Form, Plan, Stream
from reefd.scheduler.policy import Policy, next_launches
from reefd.scheduler.state import SchedulerState
from reefd.scheduler.task import Priority, Task


class ExclusivePolicy(Policy):
    name = "exclusive"
    caps_be_inflight = False

    def plan(self, state: SchedulerState, now_us: int) -> Plan:
        if state.inflight_total() > 0:
            return Plan()
        owner = self._pick(state)
        if owner is None:
            return Plan()
        stream = Stream.RT if owner.priority is Priority.RT else Stream.BE
        return Plan(
            launches=next_launches(owner, owner.remaining_calls, stream, Form.PLAIN)
        )

    @staticmethod
    def _pick(state: SchedulerState) -> Task | None:
        rt = state.next_rt()
        if rt is not None and state.can_issue(rt):
            return rt
        return next(state.iter_be_candidates(), None)
