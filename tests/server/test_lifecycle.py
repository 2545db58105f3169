"""Client lifecycle against an in-process daemon: heartbeats, BYE, cancel, status."""

from __future__ import annotations

import time

import msgpack
import pytest
import torch
import zmq

from reefd.clients.client import Client
from reefd.clients.lower import lower
from reefd.demo_models import mlp, wide_cnn
from reefd.errors import Cancelled, DaemonUnavailable
from reefd.protocol import PROTOCOL_VERSION, Kind


def _models(status: dict) -> list[int]:
    return [m["id"] for m in status["models"]]


def test_silent_client_is_dropped_and_its_models_freed(daemon, sock_path):
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, 5000)
    sock.connect(daemon.server.address)
    model, inputs = mlp()
    low = lower(model, inputs)
    # HELLO with pid 0: no pidfd, so only the heartbeat timeout can notice it.
    sock.send_multipart(
        [
            bytes([Kind.HELLO]),
            msgpack.packb({"req": 1, "pid": 0, "protocol": PROTOCOL_VERSION}),
        ]
    )
    assert sock.recv_multipart()[0][0] == Kind.RESULT
    frames = [w.numpy() for w in (low.weights[b.name] for b in low.graph.weights)]
    header = {"req": 2, "graph": low.graph.to_wire(), "priority": "be"}
    sock.send_multipart([bytes([Kind.REGISTER]), msgpack.packb(header), *frames])
    reply = sock.recv_multipart()
    assert reply[0][0] == Kind.RESULT
    model_id = msgpack.unpackb(reply[1])["model"]
    with Client(sock_path) as watcher:
        assert model_id in _models(watcher.status())
        deadline = time.monotonic() + 3.0  # heartbeat_timeout_ms=600 in the fixture
        while model_id in _models(watcher.status()):
            assert time.monotonic() < deadline, "silent client's model was never freed"
            time.sleep(0.05)
    sock.close()
    ctx.term()


def test_heartbeats_keep_an_idle_client_alive(daemon, sock_path):
    model, inputs = mlp()
    low = lower(model, inputs)
    with Client(sock_path) as client:
        model_id = client.register(low.graph, low.weights)
        time.sleep(1.5)  # 2.5x the heartbeat timeout, idle
        out = client.infer(model_id, list(inputs))[0]
        torch.testing.assert_close(out, model(*inputs), rtol=1e-5, atol=1e-5)


def test_bye_frees_models(daemon, sock_path):
    model, inputs = mlp()
    low = lower(model, inputs)
    client = Client(sock_path)
    model_id = client.register(low.graph, low.weights)
    client.close()
    with Client(sock_path) as watcher:
        assert model_id not in _models(watcher.status())
    with pytest.raises(DaemonUnavailable, match="closed"):
        client.status()


def test_cancel_gets_exactly_one_answer(daemon, sock_path):
    model, inputs = wide_cnn()
    low = lower(model, inputs)
    with Client(sock_path) as client:
        model_id = client.register(low.graph, low.weights)
        futures = [client.infer_async(model_id, list(inputs)) for _ in range(4)]
        assert client.cancel(futures[-1]) is True
        with pytest.raises(Cancelled):
            client.wait(futures[-1], 30)
        expected = model(*inputs)
        for f in futures[:-1]:
            torch.testing.assert_close(
                client.wait(f, 60)[0], expected, rtol=1e-5, atol=1e-5
            )
        assert client.cancel(futures[0]) is False  # already answered
        status = client.status()
        (me,) = [c for c in status["clients"] if c["id"] == client.client_id]
        assert me["done"] == 3 and me["cancelled"] == 1 and me["in_flight"] == 0


def test_no_daemon_is_a_clear_error(tmp_path):
    with pytest.raises(DaemonUnavailable, match="is the daemon running"):
        Client(str(tmp_path / "nothing.sock"))


def test_stale_socket_file_is_a_clear_error(tmp_path):
    import socket

    path = tmp_path / "stale.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.close()  # the file stays; nobody listens
    with pytest.raises(DaemonUnavailable, match="no daemon answered"):
        Client(str(path), connect_timeout_s=0.5)
