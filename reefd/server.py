"""Server: the ROUTER socket, its IO thread, and the lifecycle of client sessions.

Owns everything about bytes on the wire: decoding and checking messages (graphs
are validated here, before the engine sees them), HELLO answers, heartbeats and
pidfd liveness, size limits, and delivering the engine's replies. Each client
request either becomes one engine event or gets one ERROR here; never both.
zmq is imported here and in clients/client.py only.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import queue
import socket
import stat
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq

from reefd.batching import BatchRule, validate_all
from reefd.config import DaemonConfig
from reefd.errors import ConfigError, GraphError, ProtocolError, ReefError
from reefd.events import (
    CancelRequest,
    ClientBye,
    ClientGone,
    ClientHello,
    Event,
    InferRequest,
    RegisterModel,
    StatusRequest,
    UnregisterModel,
)
from reefd.graph import KernelGraph, validate
from reefd.profiler.identity import graph_key
from reefd.protocol import (
    PROTOCOL_VERSION,
    Kind,
    Message,
    check_tensor_frames,
    decode,
    encode,
    error,
    frame_nbytes,
    result,
)
from reefd.scheduler.task import Priority
from reefd.weight_pool import digest

log = logging.getLogger("reefd.server")

_POLL_MS = 100


def monotonic_us() -> int:
    return time.monotonic_ns() // 1000


@dataclass
class _Session:
    client_id: int
    identity: bytes
    name: str
    pid: int
    last_seen_us: int
    pidfd: int | None = None
    bye_req: int | None = None


Prepare = Callable[[KernelGraph, BatchRule | None], Any]
"""Compiles a validated graph on the register worker (`Device.prepare`)."""


class Server:
    def __init__(
        self,
        config: DaemonConfig,
        info: dict[str, Any],
        prepare: Prepare | None = None,
    ) -> None:
        self._config = config
        self._info = info
        self._prepare = prepare
        self._sink: Callable[[Event], None] | None = None
        self._outbox: queue.SimpleQueue[tuple[int, Message]] = queue.SimpleQueue()
        self._sessions: dict[bytes, _Session] = {}
        self._by_client: dict[int, _Session] = {}
        self._by_pidfd: dict[int, _Session] = {}
        self._next_client_id = 1
        self._stop = threading.Event()
        self._dead_reason = ""
        self._thread: threading.Thread | None = None
        self._ctx: zmq.Context | None = None
        self._router: zmq.Socket | None = None
        self._wake_r, self._wake_w = -1, -1
        self._register_pool: ThreadPoolExecutor | None = None
        self.address = f"ipc://{config.socket_path}"

    # lifecycle --------------------------------------------------------------
    def attach(self, sink: Callable[[Event], None]) -> None:
        """Where decoded client events go (the engine's submit)."""
        self._sink = sink

    def start(self) -> None:
        """Bind the socket (refusing if another daemon serves it) and start the IO
        thread."""
        path = Path(self._config.socket_path)
        _prepare_socket_path(path)
        self._ctx = zmq.Context()
        router = self._ctx.socket(zmq.ROUTER)
        router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        router.setsockopt(zmq.MAXMSGSIZE, self._config.max_message_bytes)
        router.setsockopt(zmq.LINGER, 1000)
        router.bind(self.address)
        self._router = router
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        # one worker: registrations are prepared in arrival order
        self._register_pool = ThreadPoolExecutor(1, "reefd-register")
        self._thread = threading.Thread(target=self._run, name="reefd-io", daemon=True)
        self._thread.start()
        log.info("listening on %s", self.address)

    def post(self, client_id: int, msg: Message) -> None:
        """Queue a message for a client; safe from any thread."""
        self._outbox.put((client_id, msg))
        self._poke()

    def stop(self, reason: str = "daemon stopped") -> None:
        """Flush queued replies, send DEAD to every client, close and unlink."""
        self._dead_reason = reason
        if self._register_pool is not None:  # DEAD answers what was not prepared
            self._register_pool.shutdown(wait=True, cancel_futures=True)
        self._stop.set()
        self._poke()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._ctx is not None:
            self._ctx.term()
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._config.socket_path)

    def _poke(self) -> None:
        # the pipe may be full (a wake-up is pending anyway) or closed
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_w, b"\0")

    # IO thread --------------------------------------------------------------
    def _run(self) -> None:
        assert self._router is not None
        poller = zmq.Poller()
        poller.register(self._router, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        pidfds: set[int] = set()
        try:
            while not self._stop.is_set():
                for fd in set(self._by_pidfd) - pidfds:
                    poller.register(fd, zmq.POLLIN)
                for fd in pidfds - set(self._by_pidfd):
                    poller.unregister(fd)
                pidfds = set(self._by_pidfd)
                ready = dict(poller.poll(_POLL_MS))
                if self._router in ready:
                    self._receive_all()
                if self._wake_r in ready:
                    _drain(self._wake_r)
                self._flush()
                self._check_liveness(ready)
            self._flush()
            self._send_dead()
        except Exception:
            log.exception("server IO thread crashed")
        finally:
            for session in list(self._sessions.values()):
                self._close_pidfd(session)
            self._router.close(linger=1000)

    def _receive_all(self) -> None:
        assert self._router is not None
        for _ in range(1000):
            try:
                frames = self._router.recv_multipart(copy=False, flags=zmq.NOBLOCK)
            except zmq.Again:
                return
            identity = frames[0].bytes
            self._on_frames(identity, frames[1:])

    def _on_frames(self, identity: bytes, frames: list[Any]) -> None:
        session = self._sessions.get(identity)
        if session is not None:
            session.last_seen_us = monotonic_us()
        req = 0
        try:
            size = sum(frame_nbytes(f) for f in frames)
            if size > self._config.max_message_bytes:
                raise ProtocolError(
                    f"message of {size} bytes exceeds max_message_bytes="
                    f"{self._config.max_message_bytes}"
                )
            msg = decode(frames)
            req = msg.req
            self._on_message(identity, session, msg)
        except ReefError as exc:
            self._send(identity, error(req, exc.code, str(exc)))
        except Exception as exc:  # a bug must cost one answer, not the daemon
            log.exception("error decoding a message")
            self._send(identity, error(req, "internal", f"{type(exc).__name__}: {exc}"))

    def _on_message(
        self, identity: bytes, session: _Session | None, msg: Message
    ) -> None:
        if msg.kind is Kind.HELLO:
            self.on_hello(identity, session, msg)
            return
        if msg.kind is Kind.HEARTBEAT:
            return
        if msg.kind not in (
            Kind.REGISTER,
            Kind.UNREGISTER,
            Kind.INFER,
            Kind.CANCEL,
            Kind.STATUS,
            Kind.BYE,
        ):
            raise ProtocolError(f"clients may not send {msg.kind.name} messages")
        if session is None:
            raise ProtocolError(f"{msg.kind.name} before HELLO: say HELLO first")
        if session.bye_req is not None:
            raise ProtocolError(f"{msg.kind.name} after BYE")
        event = _EVENT_BUILDERS[msg.kind](self, session, msg)
        if event is not None:  # REGISTER emits later, from the register worker
            self._emit(event)

    def _emit(self, event: Event) -> None:
        assert self._sink is not None, "server started without an engine attached"
        self._sink(event)

    # message handlers -------------------------------------------------------
    def on_hello(self, identity: bytes, session: _Session | None, msg: Message) -> None:
        h = msg.header
        version = h.get("protocol", PROTOCOL_VERSION)
        if version != PROTOCOL_VERSION:
            raise ProtocolError(
                f"client speaks protocol {version}, daemon speaks {PROTOCOL_VERSION}"
            )
        if session is not None:
            self._forget(session, "client said HELLO again (reconnect)")
        name, pid = str(h.get("name", "")), h.get("pid", 0)
        if not isinstance(pid, int) or isinstance(pid, bool) or pid < 0:
            raise ProtocolError(f"HELLO: pid must be a non-negative int, got {pid!r}")
        client_id = self._next_client_id
        self._next_client_id += 1
        session = _Session(client_id, identity, name, pid, monotonic_us())
        session.pidfd = _open_pidfd(pid)
        self._sessions[identity] = session
        self._by_client[client_id] = session
        if session.pidfd is not None:
            self._by_pidfd[session.pidfd] = session
        self._emit(ClientHello(client_id, msg.req, name, pid))
        self._send(
            identity,
            result(
                msg.req,
                client_id=client_id,
                protocol=PROTOCOL_VERSION,
                heartbeat_ms=self._config.heartbeat_ms,
                heartbeat_timeout_ms=self._config.heartbeat_timeout_ms,
                max_message_bytes=self._config.max_message_bytes,
                pid_watched=session.pidfd is not None,
                **self._info,
            ),
        )

    def on_register(self, session: _Session, msg: Message) -> None:
        """Check the header here; validate the graph and hash the weights on the
        register worker, so a big model does not hold up other clients."""
        h = msg.header
        priority = h.get("priority", "be")
        if priority not in ("rt", "be"):
            raise ProtocolError(
                f"REGISTER: priority must be 'rt' or 'be', got {priority!r}"
            )
        slo_ms = h.get("slo_ms")
        if slo_ms is not None and (
            not isinstance(slo_ms, (int, float))
            or isinstance(slo_ms, bool)
            or slo_ms <= 0
        ):
            raise ProtocolError(
                f"REGISTER: slo_ms must be a positive number, got {slo_ms!r}"
            )
        assert self._register_pool is not None
        self._register_pool.submit(self._prepare_register, session.client_id, msg)

    def _prepare_register(self, client_id: int, msg: Message) -> None:
        """On the register worker: emit RegisterModel, or answer with an error."""
        try:
            self._emit(_register_event(client_id, msg, self._prepare))
        except ReefError as exc:
            self.post(client_id, error(msg.req, exc.code, str(exc)))
        except Exception as exc:  # a bug must cost one answer, not the daemon
            log.exception("error preparing a REGISTER")
            self.post(
                client_id, error(msg.req, "internal", f"{type(exc).__name__}: {exc}")
            )

    def on_infer(self, session: _Session, msg: Message) -> InferRequest:
        model = _int_field(msg, "model")
        descs = check_tensor_frames(msg.header.get("inputs"), msg.frames, "INFER")
        return InferRequest(
            session.client_id, msg.req, model, descs, list(msg.frames), monotonic_us()
        )

    def on_cancel(self, session: _Session, msg: Message) -> CancelRequest:
        return CancelRequest(session.client_id, msg.req, _int_field(msg, "target"))

    def on_unregister(self, session: _Session, msg: Message) -> UnregisterModel:
        return UnregisterModel(session.client_id, msg.req, _int_field(msg, "model"))

    def on_status(self, session: _Session, msg: Message) -> StatusRequest:
        return StatusRequest(session.client_id, msg.req)

    def on_bye(self, session: _Session, msg: Message) -> ClientBye:
        session.bye_req = msg.req
        return ClientBye(session.client_id, msg.req)

    # sending ----------------------------------------------------------------
    def _flush(self) -> None:
        while True:
            try:
                client_id, msg = self._outbox.get_nowait()
            except queue.Empty:
                return
            session = self._by_client.get(client_id)
            if session is None:
                continue  # the client is gone; nobody is left to answer
            self._send(session.identity, msg)
            if session.bye_req is not None and msg.req == session.bye_req:
                self._forget(session, None)

    def _send(self, identity: bytes, msg: Message) -> None:
        assert self._router is not None
        try:
            self._router.send_multipart([identity, *encode(msg)], copy=False)
        except zmq.ZMQError as exc:
            if exc.errno != errno.EHOSTUNREACH:
                raise
            session = self._sessions.get(identity)
            if session is not None:
                self._forget(session, "client disconnected (unreachable)")

    def _send_dead(self) -> None:
        for session in list(self._sessions.values()):
            msg = Message(Kind.DEAD, {"req": 0, "reason": self._dead_reason})
            self._send(session.identity, msg)

    # liveness -------------------------------------------------------------
    def _check_liveness(self, ready: dict[Any, int]) -> None:
        for fd in [fd for fd in ready if isinstance(fd, int) and fd in self._by_pidfd]:
            session = self._by_pidfd[fd]
            self._forget(session, f"process {session.pid} exited")
        now = monotonic_us()
        limit_us = self._config.heartbeat_timeout_ms * 1000
        for session in list(self._sessions.values()):
            if now - session.last_seen_us > limit_us:
                self._forget(
                    session,
                    f"no message for {(now - session.last_seen_us) // 1000} ms "
                    f"(heartbeat_timeout_ms={self._config.heartbeat_timeout_ms})",
                )

    def _forget(self, session: _Session, reason: str | None) -> None:
        """Drop a session; with a reason, tell the engine the client is gone."""
        self._sessions.pop(session.identity, None)
        self._by_client.pop(session.client_id, None)
        self._close_pidfd(session)
        if reason is not None:
            log.info("client %d (%s) gone: %s", session.client_id, session.name, reason)
            self._emit(ClientGone(session.client_id, reason))

    def _close_pidfd(self, session: _Session) -> None:
        if session.pidfd is not None:
            self._by_pidfd.pop(session.pidfd, None)
            os.close(session.pidfd)
            session.pidfd = None


_EVENT_BUILDERS: dict[Kind, Callable[[Server, _Session, Message], Event | None]] = {
    Kind.REGISTER: Server.on_register,
    Kind.UNREGISTER: Server.on_unregister,
    Kind.INFER: Server.on_infer,
    Kind.CANCEL: Server.on_cancel,
    Kind.STATUS: Server.on_status,
    Kind.BYE: Server.on_bye,
}


def _register_event(
    client_id: int, msg: Message, prepare: Prepare | None = None
) -> RegisterModel:
    """Validate a REGISTER's graph and weight frames; hash the weights; compile
    the graph with `prepare` (the device's, passed in by the composition root)."""
    h = msg.header
    graph = KernelGraph.from_wire(h.get("graph"))
    rule = None if h.get("batch") is None else BatchRule.from_wire(h["batch"])
    if rule is None:
        validate(graph)
    else:  # every batch size, the registered maximum included
        validate_all(graph, rule)
    weights = graph.weights
    if len(msg.frames) != len(weights):
        raise GraphError(
            f"graph has {len(weights)} weight buffers but "
            f"{len(msg.frames)} weight frames came"
        )
    for buf, frame in zip(weights, msg.frames, strict=True):
        if frame_nbytes(frame) != buf.nbytes:
            raise GraphError(
                f"weight {buf.name!r} needs {buf.nbytes} bytes, its frame has "
                f"{frame_nbytes(frame)}"
            )
    slo_ms = h.get("slo_ms")
    compiled = None if prepare is None else prepare(graph, rule)
    return RegisterModel(
        client_id,
        msg.req,
        graph,
        {b.name: f for b, f in zip(weights, msg.frames, strict=True)},
        Priority(h.get("priority", "be")),
        None if slo_ms is None else float(slo_ms),
        str(h.get("name", graph.name)),
        {
            b.name: digest(_frame_buffer(f))
            for b, f in zip(weights, msg.frames, strict=True)
        },
        rule,
        compiled,
        graph_key(graph),
    )


def _frame_buffer(frame: Any) -> Any:
    """The bytes-like content of a zmq frame (or of plain bytes in tests)."""
    return frame.buffer if hasattr(frame, "buffer") else frame


def _int_field(msg: Message, name: str) -> int:
    value = msg.header.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ProtocolError(
            f"{msg.kind.name}: header field {name!r} must be an int, got {value!r}"
        )
    return value


def _open_pidfd(pid: int) -> int | None:
    """A pidfd for a local client, or None (pid 0, another pid namespace, old
    kernel)."""
    if pid <= 0 or not hasattr(os, "pidfd_open"):
        return None
    try:
        return os.pidfd_open(pid)
    except OSError:
        return None


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


def _prepare_socket_path(path: Path) -> None:
    """Create the socket's directory; refuse a live socket, remove a stale one."""
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True)
    if not path.exists():
        return
    if not stat.S_ISSOCK(path.stat().st_mode):
        raise ConfigError(f"{path} exists and is not a socket; refusing to replace it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except (ConnectionRefusedError, FileNotFoundError):
        path.unlink(missing_ok=True)  # stale socket of a daemon that died
        return
    finally:
        probe.close()
    raise ConfigError(f"another daemon is already serving {path}")
