"""The wall-clock-paced sim device the daemon uses (`make_device("sim")`)."""

from __future__ import annotations

import threading

from reefd.backends import make_device
from reefd.backends.device import DeviceLaunch
from reefd.scheduler.padding import CallCost
from reefd.scheduler.plan import CompletionStatus, Form, Stream
from reefd.sim.paced import PacedSimDevice
from tests.sim.helpers import SMALL_GPU, TableCosts, graph


def test_make_device_sim_is_paced() -> None:
    device = make_device("sim")
    assert isinstance(device, PacedSimDevice)
    assert "sim" in device.describe()


def test_paced_device_completes_on_the_wall_clock_and_wakes_the_engine() -> None:
    device = PacedSimDevice(SMALL_GPU, TableCosts({"g": CallCost(8, 32, 0, 2000.0)}))
    woken = threading.Event()
    device.start(woken.set)
    try:
        model = device.load(graph("g", 2), {}, {})
        memory = device.alloc(model, [])
        for i in range(2):
            device.launch(DeviceLaunch(1, i, Stream.RT, Form.PLAIN, model, memory))
        done = []
        while len(done) < 2:
            assert woken.wait(5.0), "the device never woke the engine"
            woken.clear()
            done += device.poll()
        assert [c.status for c in done] == [CompletionStatus.OK] * 2
        assert [c.end_us - c.start_us for c in done] == [2000.0, 2000.0]
        assert done[1].start_us == done[0].end_us
        assert not device.busy()
        assert device.outputs(memory) == [bytearray(1024 * 4)]
    finally:
        device.close()
