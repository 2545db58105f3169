"""ResetHqPolicy ("reset_hq"): the REEF-N baseline, host-queue reset only.

REEF's NVIDIA variant cannot stop a running kernel: on RT arrival it clears the
BE launches still waiting in host queues, and BE kernels already on the GPU run
to completion. BE kernels are plain (not preemptible). Otherwise as `reef`. Pure
decision code: must not import clocks, sockets, threads or devices.
"""

from __future__ import annotations

from reefd.scheduler.plan import Form
from reefd.scheduler.reef import ReefPolicy


class ResetHqPolicy(ReefPolicy):
    name = "reset_hq"
    drops_be = True
    preempts_be = False
    be_form = Form.PLAIN
