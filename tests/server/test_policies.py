"""Every policy serves a mixed RT + BE load on a real in-process daemon: each
request gets its one correct answer (what each policy drops or preempts is
checked in tests/unit/test_scheduler.py)."""

from __future__ import annotations

import pytest
import torch

from reefd.__main__ import build
from reefd.clients.client import Client
from reefd.clients.lower import lower
from reefd.config import POLICIES, load
from reefd.demo_models import mlp, small_cnn


@pytest.mark.parametrize("policy", POLICIES)
def test_policy_answers_every_request_correctly(sock_path, policy):
    config = load(None, socket_path=sock_path, backend="cpu", policy=policy)
    daemon = build(config)
    daemon.start()
    try:
        rt_model, rt_in = small_cnn()
        be_model, be_in = mlp()
        rt_low, be_low = lower(rt_model, rt_in), lower(be_model, be_in)
        with Client(sock_path) as client:
            assert client.status()["daemon"]["policy"] == policy
            rt_id = client.register(
                rt_low.graph, rt_low.weights, priority="rt", slo_ms=1000
            )
            be_id = client.register(be_low.graph, be_low.weights)
            be_futures = [client.infer_async(be_id, be_in) for _ in range(6)]
            rt_futures = [client.infer_async(rt_id, rt_in) for _ in range(3)]
            want_rt, want_be = rt_model(*rt_in), be_model(*be_in)
            for f in rt_futures:
                got = client.wait(f, 60)[0]
                torch.testing.assert_close(got, want_rt, rtol=1e-4, atol=1e-5)
            for f in be_futures:
                got = client.wait(f, 60)[0]
                torch.testing.assert_close(got, want_be, rtol=1e-4, atol=1e-5)
            metrics = client.status()["metrics"]
            assert metrics["rt_done"] == 3 and metrics["be_done"] == 6
    finally:
        daemon.stop(config.shutdown_grace_ms)
