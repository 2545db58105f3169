"""FifoPolicy ("fifo"): baseline with one queue in arrival order, no priority.

Every launch goes on `Stream.BE` as a plain kernel, oldest unfinished task first,
with at most `be_inflight_cap` launches in flight in total (RT included). It never
resets. Pure decision code: must not import clocks, sockets, threads or devices.
"""

from __future__ import annotations

from reefd.scheduler.plan import Form, Launch, Plan, Stream
from reefd.scheduler.policy import Policy, next_launches
from reefd.scheduler.state import SchedulerState


class FifoPolicy(Policy):
    name = "fifo"
    caps_be_inflight = True

    def plan(self, state: SchedulerState, now_us: int) -> Plan:
        room = state.be_inflight_cap - state.inflight_total()
        launches: list[Launch] = []
        for task in state.in_arrival_order():
            if room <= 0:
                break
            if state.can_issue(task):
                batch = next_launches(task, room, Stream.BE, Form.PLAIN)
                launches += batch
                room -= sum(launch.n_calls for launch in batch)
        return Plan(launches=launches)
