"""The wire protocol: message kinds, headers and tensor frames.

A message is `[kind, header, *tensor_frames]` (a ROUTER adds the peer identity in
front). `kind` is one byte, `header` a msgpack map that always carries `req`, the
client's request id, echoed in the answer. Tensors travel as raw frames, described
in the header by `[dtype, shape]` pairs in frame order.

Imports msgpack, numpy and reefd.errors only; no zmq (frames are bytes-like).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import msgpack

from reefd.errors import ProtocolError

PROTOCOL_VERSION = 1


class Kind(IntEnum):
    HELLO = 1
    REGISTER = 2
    INFER = 3
    CANCEL = 4
    STATUS = 5
    BYE = 6
    HEARTBEAT = 7
    RESULT = 8
    ERROR = 9
    DEAD = 10
    UNREGISTER = 11


REQUEST_KINDS = frozenset(
    {
        Kind.HELLO,
        Kind.REGISTER,
        Kind.INFER,
        Kind.CANCEL,
        Kind.STATUS,
        Kind.BYE,
        Kind.UNREGISTER,
    }
)

ITEMSIZE = {"float32": 4, "float16": 2, "bfloat16": 2, "int64": 8, "int32": 4}


@dataclass
class Message:
    kind: Kind
    header: dict[str, Any]
    frames: list[Any] = field(default_factory=list)

    @property
    def req(self) -> int:
        return int(self.header.get("req", 0))


def encode(msg: Message) -> list[Any]:
    """Frames ready for `send_multipart` (tensor frames passed through untouched)."""
    header = msgpack.packb(msg.header, use_bin_type=True)
    return [bytes([msg.kind]), header, *msg.frames]


def decode(frames: Sequence[Any]) -> Message:
    """Parse received frames; any defect raises ProtocolError naming it.

    The header must be a map with an int `req`.
    """
    if len(frames) < 2:
        raise ProtocolError(f"message has {len(frames)} frame(s); need kind and header")
    kind_bytes = _as_bytes(frames[0])
    if len(kind_bytes) != 1:
        raise ProtocolError(f"kind frame must be 1 byte, got {len(kind_bytes)}")
    try:
        kind = Kind(kind_bytes[0])
    except ValueError:
        raise ProtocolError(f"unknown message kind {kind_bytes[0]}") from None
    try:
        header = msgpack.unpackb(_as_bytes(frames[1]), raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several unrelated types
        raise ProtocolError(
            f"header is not valid msgpack: {type(exc).__name__}"
        ) from None
    if not isinstance(header, dict):
        raise ProtocolError(f"header must be a map, got {type(header).__name__}")
    req = header.get("req", 0)
    if not isinstance(req, int) or isinstance(req, bool):
        raise ProtocolError(f"header field 'req' must be an int, got {req!r}")
    return Message(kind, header, list(frames[2:]))


def _as_bytes(frame: Any) -> bytes:
    if isinstance(frame, bytes):
        return frame
    if hasattr(frame, "bytes"):
        return frame.bytes  # zmq.Frame
    return bytes(frame)


def frame_nbytes(frame: Any) -> int:
    if hasattr(frame, "buffer"):
        return frame.buffer.nbytes
    return memoryview(frame).nbytes


def check_tensor_frames(
    descs: Any, frames: Sequence[Any], what: str
) -> list[tuple[str, tuple[int, ...]]]:
    """Validate `[[dtype, shape], ...]` against the frames; returns parsed descs."""
    if not isinstance(descs, list):
        raise ProtocolError(f"{what}: tensor list missing or not a list")
    if len(descs) != len(frames):
        raise ProtocolError(
            f"{what}: header describes {len(descs)} tensors but "
            f"{len(frames)} frames came"
        )
    out = []
    for i, (desc, frame) in enumerate(zip(descs, frames, strict=True)):
        try:
            dtype, shape = str(desc[0]), tuple(int(d) for d in desc[1])
        except (TypeError, ValueError, IndexError):
            raise ProtocolError(
                f"{what}: tensor {i} descriptor {desc!r} is not [dtype, shape]"
            ) from None
        if dtype not in ITEMSIZE:
            raise ProtocolError(f"{what}: tensor {i} has unknown dtype {dtype!r}")
        want = math.prod(shape) * ITEMSIZE[dtype]
        got = frame_nbytes(frame)
        if want != got:
            raise ProtocolError(
                f"{what}: tensor {i} {dtype}{list(shape)} "
                f"needs {want} bytes, frame has {got}"
            )
        out.append((dtype, shape))
    return out


def error(req: int, code: str, message: str) -> Message:
    return Message(Kind.ERROR, {"req": req, "code": code, "message": message})


def result(req: int, frames: list[Any] | None = None, **fields: Any) -> Message:
    return Message(Kind.RESULT, {"req": req, **fields}, frames or [])
