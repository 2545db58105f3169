"""Client: one connection to a reefd daemon over a DEALER socket.

An IO thread owns the socket: it sends requests, heartbeats every
`heartbeat_ms`, and resolves each request's Future when its one answer arrives.
The public methods are blocking and thread-safe; `infer_async` returns a Future.
The daemon's address: the `socket=` argument, else $REEFD_SOCKET, else the
default path for GPU 0.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import queue
import threading
import time
import warnings
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any

import numpy as np
import torch
import zmq

from reefd.batching import BatchRule
from reefd.config import default_socket_path
from reefd.errors import DaemonUnavailable, ProtocolError, RequestTimeout, from_wire
from reefd.graph import KernelGraph
from reefd.kernels.spec import DTYPE_NAME, TORCH_DTYPE
from reefd.protocol import PROTOCOL_VERSION, Kind, Message, decode, encode

SOCKET_ENV = "REEFD_SOCKET"


def resolve_socket(socket: str | None = None) -> str:
    return socket or os.environ.get(SOCKET_ENV) or default_socket_path(0)


class Client:
    def __init__(
        self,
        socket: str | None = None,
        *,
        name: str | None = None,
        timeout_s: float = 60.0,
        connect_timeout_s: float = 5.0,
    ) -> None:
        self.socket_path = resolve_socket(socket)
        self.timeout_s = timeout_s
        if not Path(self.socket_path).exists():
            raise DaemonUnavailable(
                f"no reefd socket at {self.socket_path}: is the daemon running? "
                f"Start it with `reefd --socket {self.socket_path}`, or point "
                f"{SOCKET_ENV} at the socket it serves"
            )
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.DEALER)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.connect(f"ipc://{self.socket_path}")
        self._outbox: queue.SimpleQueue[list[Any]] = queue.SimpleQueue()
        self._pending: dict[int, Future[Message]] = {}
        self._lock = threading.Lock()
        self._reqs = itertools.count(1)
        self._dead: str | None = None
        self._closing = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._heartbeat_s = 0.5
        self._thread = threading.Thread(
            target=self._run, name="reef-client-io", daemon=True
        )
        self._thread.start()
        try:
            hello = self._request(
                Kind.HELLO,
                {
                    "name": name or f"pid{os.getpid()}",
                    "pid": os.getpid(),
                    "protocol": PROTOCOL_VERSION,
                },
                timeout_s=connect_timeout_s,
            )
        except RequestTimeout:
            self._shutdown()
            raise DaemonUnavailable(
                f"no daemon answered at {self.socket_path} within "
                f"{connect_timeout_s} s (a stale socket file, or the daemon is hung)"
            ) from None
        self.info: dict[str, Any] = hello.header
        self.client_id: int = int(hello.header["client_id"])
        self._heartbeat_s = hello.header.get("heartbeat_ms", 500) / 1000

    # public API -------------------------------------------------------------
    def register(
        self,
        graph: KernelGraph,
        weights: Mapping[str, Any],
        *,
        priority: str = "be",
        slo_ms: float | None = None,
        name: str | None = None,
        batch: BatchRule | None = None,
    ) -> int:
        """Send a graph and its weights once; returns the model id.

        With `batch` (a dynamic-batch rule from lowering) the model serves any
        batch size up to `batch.max_batch`.
        """
        frames = [_tensor_frame(weights[b.name])[1] for b in graph.weights]
        header = {
            "graph": graph.to_wire(),
            "priority": priority,
            "name": name or graph.name,
        }
        if slo_ms is not None:
            header["slo_ms"] = slo_ms
        if batch is not None:
            header["batch"] = batch.to_wire()
        reply = self._request(Kind.REGISTER, header, frames)
        return int(reply.header["model"])

    def unregister(self, model_id: int) -> None:
        self._request(Kind.UNREGISTER, {"model": model_id})

    def infer(
        self, model_id: int, inputs: Sequence[Any], timeout_s: float | None = None
    ) -> list[torch.Tensor]:
        """Run one request; returns the outputs in graph order."""
        future = self.infer_async(model_id, inputs)
        return self.wait(future, timeout_s)

    def infer_async(self, model_id: int, inputs: Sequence[Any]) -> Future[Message]:
        descs, frames = [], []
        for tensor in inputs:
            desc, frame = _tensor_frame(tensor)
            descs.append(desc)
            frames.append(frame)
        return self._send_request(
            Kind.INFER, {"model": model_id, "inputs": descs}, frames
        )

    def wait(
        self, future: Future[Message], timeout_s: float | None = None
    ) -> list[torch.Tensor]:
        reply = self._await(future, timeout_s)
        return _outputs(reply)

    def cancel(self, future: Future[Message]) -> bool:
        """Ask the daemon to cancel a request; its Future then fails with Cancelled."""
        req = getattr(future, "reef_req", None)
        if req is None:
            return False
        return bool(self._request(Kind.CANCEL, {"target": req}).header.get("cancelled"))

    def status(self) -> dict[str, Any]:
        return self._request(Kind.STATUS, {}).header["status"]

    def close(self) -> None:
        """Say BYE (the daemon frees this client's models) and stop the IO thread."""
        if self._closing.is_set():
            return
        if self._dead is None:
            with contextlib.suppress(DaemonUnavailable, RequestTimeout):
                self._request(Kind.BYE, {}, timeout_s=5.0)
        self._shutdown()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # requests ---------------------------------------------------------------
    def _request(
        self,
        kind: Kind,
        header: dict[str, Any],
        frames: list[Any] | None = None,
        timeout_s: float | None = None,
    ) -> Message:
        return self._await(self._send_request(kind, header, frames or []), timeout_s)

    def _send_request(
        self, kind: Kind, header: dict[str, Any], frames: list[Any]
    ) -> Future[Message]:
        if self._dead is not None:
            raise DaemonUnavailable(
                f"the daemon at {self.socket_path} is gone: {self._dead}"
            )
        if self._closing.is_set():
            raise DaemonUnavailable("this client is closed")
        req = next(self._reqs)
        future: Future[Message] = Future()
        future.reef_req = req  # type: ignore[attr-defined]
        with self._lock:
            self._pending[req] = future
        self._outbox.put(encode(Message(kind, {**header, "req": req}, frames)))
        self._poke()
        return future

    def _await(self, future: Future[Message], timeout_s: float | None) -> Message:
        timeout = self.timeout_s if timeout_s is None else timeout_s
        try:
            return future.result(timeout)
        except FutureTimeout:
            req = getattr(future, "reef_req", 0)
            with self._lock:
                self._pending.pop(req, None)
            raise RequestTimeout(
                f"request {req} got no answer from {self.socket_path} "
                f"within {timeout} s"
            ) from None

    # IO thread --------------------------------------------------------------
    def _poke(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_w, b"\0")

    def _run(self) -> None:
        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        next_beat = time.monotonic() + self._heartbeat_s
        while not self._closing.is_set():
            wait_ms = max(0, int((next_beat - time.monotonic()) * 1000))
            ready = dict(poller.poll(min(wait_ms, 200)))
            if self._sock in ready:
                self._receive_all()
            if self._wake_r in ready:
                with contextlib.suppress(BlockingIOError):
                    os.read(self._wake_r, 4096)
            self._send_all()
            if time.monotonic() >= next_beat:
                if self._dead is None:
                    self._sock.send_multipart(
                        encode(Message(Kind.HEARTBEAT, {"req": 0}))
                    )
                next_beat = time.monotonic() + self._heartbeat_s

    def _send_all(self) -> None:
        while True:
            try:
                frames = self._outbox.get_nowait()
            except queue.Empty:
                return
            self._sock.send_multipart(frames, copy=False)

    def _receive_all(self) -> None:
        while True:
            try:
                frames = self._sock.recv_multipart(copy=False, flags=zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                msg = decode(frames)
            except ProtocolError:
                continue  # nothing to match it to; the request will time out
            self._on_message(msg)

    def _on_message(self, msg: Message) -> None:
        if msg.kind is Kind.DEAD:
            self._dead = str(msg.header.get("reason", "daemon stopped"))
            with self._lock:
                pending, self._pending = self._pending, {}
            for future in pending.values():
                future.set_exception(DaemonUnavailable(f"daemon stopped: {self._dead}"))
            return
        with self._lock:
            future = self._pending.pop(msg.req, None)
        if future is None:
            return  # an answer to a request that already timed out
        if msg.kind is Kind.ERROR:
            future.set_exception(
                from_wire(
                    str(msg.header.get("code", "")), str(msg.header.get("message", ""))
                )
            )
        else:
            future.set_result(msg)

    def _shutdown(self) -> None:
        self._closing.set()
        self._poke()
        self._thread.join(timeout=5)
        self._sock.close(linger=0)
        self._ctx.term()
        for fd in (self._wake_r, self._wake_w):
            os.close(fd)
        with self._lock:
            pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(DaemonUnavailable("client closed"))


def _tensor_frame(value: Any) -> tuple[list[Any], Any]:
    """([dtype, shape], zero-copy frame) for a CPU tensor or numpy array."""
    if isinstance(value, torch.Tensor):
        tensor = value.detach()
        if tensor.device.type != "cpu":
            tensor = tensor.cpu()
        tensor = tensor.contiguous()
        dtype = DTYPE_NAME.get(tensor.dtype)
        if dtype is None:
            raise ValueError(f"unsupported tensor dtype {tensor.dtype}")
        if dtype == "bfloat16":
            return [dtype, list(tensor.shape)], tensor.view(torch.int16).numpy()
        return [dtype, list(tensor.shape)], tensor.numpy()
    array = np.ascontiguousarray(value)
    return [str(array.dtype), list(array.shape)], array


def _outputs(reply: Message) -> list[torch.Tensor]:
    descs = reply.header.get("outputs_desc", [])
    outs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zmq frames are read-only views
        for (dtype, shape), frame in zip(descs, reply.frames, strict=True):
            buf = frame.buffer if hasattr(frame, "buffer") else frame
            tensor = (
                torch.frombuffer(buf, dtype=TORCH_DTYPE[dtype])
                if len(buf)
                else torch.empty(0)
            )
            outs.append(tensor.view(*shape))
    return outs
