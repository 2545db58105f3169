"""Bad bytes and bad graphs each get one ERROR naming the problem; serving goes on."""

from __future__ import annotations

import msgpack
import pytest
import torch
import zmq

from reefd.clients.client import Client
from reefd.clients.lower import lower
from reefd.demo_models import mlp
from reefd.errors import GraphError, ProtocolError, UnknownModel
from reefd.graph import Buffer, KernelCall, KernelGraph, Role
from reefd.protocol import Kind

TIMEOUT_MS = 5000


@pytest.fixture
def raw(daemon):
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, TIMEOUT_MS)
    sock.connect(daemon.server.address)
    yield sock
    sock.close()
    ctx.term()


def _reply(sock) -> tuple[int, dict]:
    frames = sock.recv_multipart()
    return frames[0][0], msgpack.unpackb(frames[1], strict_map_key=False)


def _expect_error(sock, frames, needle: str) -> dict:
    sock.send_multipart(frames)
    kind, header = _reply(sock)
    assert kind == Kind.ERROR, header
    assert needle in header["message"], header["message"]
    return header


def test_garbage_frames_get_errors(daemon, raw):
    _expect_error(raw, [b"\x00\x01garbage"], "frame")
    _expect_error(raw, [b"garbage", b"more"], "kind frame must be 1 byte")
    _expect_error(
        raw, [bytes([99]), msgpack.packb({"req": 1})], "unknown message kind 99"
    )
    header = msgpack.packb({"req": 7, "name": "x" * 50})
    err = _expect_error(raw, [bytes([Kind.HELLO]), header[:-10]], "not valid msgpack")
    assert err["code"] == "protocol"
    _expect_error(raw, [bytes([Kind.HELLO]), msgpack.packb([1, 2])], "must be a map")
    _expect_error(raw, [bytes([Kind.INFER]), msgpack.packb({"req": 3})], "HELLO first")
    _expect_error(
        raw, [bytes([Kind.RESULT]), msgpack.packb({"req": 4})], "may not send RESULT"
    )


def test_daemon_keeps_serving_after_garbage(daemon, raw, sock_path):
    for _ in range(20):
        raw.send_multipart([b"\xff" * 3])
    for _ in range(20):
        assert _reply(raw)[0] == Kind.ERROR
    with Client(sock_path) as client:
        model, inputs = mlp()
        low = lower(model, inputs)
        model_id = client.register(low.graph, low.weights, priority="rt", slo_ms=100)
        out = client.infer(model_id, list(inputs))[0]
        torch.testing.assert_close(out, model(*inputs), rtol=1e-5, atol=1e-5)


def _graph(calls, buffers) -> KernelGraph:
    return KernelGraph("bad", tuple(buffers), tuple(calls))


def test_graph_with_unknown_kernel_is_refused(daemon, sock_path):
    bufs = [
        Buffer("in0", "float32", (4,), Role.INPUT),
        Buffer("out0", "float32", (4,), Role.OUTPUT),
    ]
    graph = _graph(
        [KernelCall("launch_missiles", {"x": "in0", "y": "out0"}, {"numel": 4})], bufs
    )
    with (
        Client(sock_path) as client,
        pytest.raises(GraphError, match="unknown kernel 'launch_missiles'"),
    ):
        client.register(graph, {})


def test_graph_reading_past_a_buffer_is_refused(daemon, sock_path):
    bufs = [
        Buffer("in0", "float32", (2, 8), Role.INPUT),
        Buffer("w", "float32", (4, 8), Role.WEIGHT),
        Buffer("out0", "float32", (2, 4), Role.OUTPUT),
    ]
    # k=16 makes the kernel read 2x16 floats of a 2x8 input: past its end.
    call = KernelCall(
        "linear", {"x": "in0", "w": "w", "y": "out0"}, {"m": 2, "n": 4, "k": 16}
    )
    weights = {"w": torch.zeros(64)}
    with Client(sock_path) as client:
        with pytest.raises(GraphError, match="past its end"):
            client.register(_graph([call], bufs), weights)
        # A weight frame of the wrong size is refused too, naming the weight.
        ok = KernelCall(
            "linear", {"x": "in0", "w": "w", "y": "out0"}, {"m": 2, "n": 4, "k": 8}
        )
        with pytest.raises(GraphError, match="weight 'w' needs 128 bytes"):
            client.register(_graph([ok], bufs), {"w": torch.zeros(3)})
        model_id = client.register(_graph([ok], bufs), {"w": torch.ones(4, 8)})
        x = torch.ones(2, 8)
        assert torch.equal(client.infer(model_id, [x])[0], torch.full((2, 4), 8.0))


def test_bad_infer_requests(daemon, sock_path):
    model, inputs = mlp()
    low = lower(model, inputs)
    with Client(sock_path) as a, Client(sock_path) as b:
        model_id = a.register(low.graph, low.weights)
        with pytest.raises(UnknownModel):
            b.infer(model_id, list(inputs))  # not b's model
        with pytest.raises(UnknownModel):
            a.infer(model_id + 100, list(inputs))
        with pytest.raises(Exception, match=r"input 0: model takes float32\[1, 256\]"):
            a.infer(model_id, [torch.zeros(2, 256)])
        with pytest.raises(Exception, match="model takes 1 inputs, got 2"):
            a.infer(model_id, [inputs[0], inputs[0]])
        out = a.infer(model_id, list(inputs))[0]
        torch.testing.assert_close(out, model(*inputs), rtol=1e-5, atol=1e-5)


def test_malformed_register_headers(daemon, sock_path):
    with Client(sock_path) as client:
        fut = client._send_request(Kind.REGISTER, {"graph": {"name": 3}}, [])
        with pytest.raises(GraphError, match="malformed graph"):
            client._await(fut, 5)
        fut = client._send_request(Kind.INFER, {"model": "one"}, [])
        with pytest.raises(ProtocolError, match="'model' must be an int"):
            client._await(fut, 5)
        fut = client._send_request(
            Kind.INFER, {"model": 1, "inputs": [["float32", [4]]]}, [b"abc"]
        )
        with pytest.raises(ProtocolError, match="needs 16 bytes, frame has 3"):
            client._await(fut, 5)
        assert client.status()["daemon"]["policy"] == "reef"
