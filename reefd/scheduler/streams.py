"""StreamsPolicy ("streams"): prioritised streams, no preemption.

What CUDA stream priorities give without a scheduler that can stop work: RT
launches go on the high-priority RT stream as soon as their task is first by
deadline, BE launches keep flowing on the BE stream up to the in-flight cap
whether or not RT work is live, and nothing is ever dropped or preempted. The
device picks the RT stream first whenever it starts a kernel. Pure decision
code: must not import clocks, sockets, threads or devices.
"""

from __future__ import annotations

from reefd.scheduler.plan import Form, Launch, Plan, Stream
from reefd.scheduler.policy import Policy, fill_be, next_launches
from reefd.scheduler.state import SchedulerState


class StreamsPolicy(Policy):
    name = "streams"
    caps_be_inflight = True

    def plan(self, state: SchedulerState, now_us: int) -> Plan:
        launches: list[Launch] = []
        task = state.next_rt()
        if task is not None and state.can_issue(task):
            others = state.inflight(Stream.RT) - task.inflight
            if others == 0:  # EDF at task boundaries, as in reef
                launches += next_launches(
                    task, task.remaining_calls, Stream.RT, Form.PLAIN
                )
        return Plan(launches=launches + fill_be(state, Form.PLAIN))
