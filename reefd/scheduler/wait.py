"""WaitPolicy ("wait"): stop issuing BE on RT arrival, wait for what is out.

The simplest priority scheme: while RT work is live no new BE launch is issued,
but BE launches already handed to the device (queued or running) are neither
dropped nor preempted, so RT waits for them. BE kernels are plain. Otherwise as
`reef`. Pure decision code: must not import clocks, sockets, threads or devices.
"""

from __future__ import annotations

from reefd.scheduler.plan import Form
from reefd.scheduler.reef import ReefPolicy


class WaitPolicy(ReefPolicy):
    name = "wait"
    drops_be = False
    preempts_be = False
    be_form = Form.PLAIN
