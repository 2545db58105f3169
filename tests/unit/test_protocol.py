"""Protocol encode/decode round trips and the errors for bad frames."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest

from reefd.errors import ProtocolError
from reefd.protocol import Kind, Message, check_tensor_frames, decode, encode


def test_round_trip_keeps_kind_header_and_frames():
    payload = np.arange(6, dtype=np.float32)
    msg = Message(
        Kind.INFER, {"req": 42, "model": 3, "inputs": [["float32", [2, 3]]]}, [payload]
    )
    frames = encode(msg)
    assert frames[0] == bytes([Kind.INFER])
    assert frames[2] is payload  # tensor frames pass through without a copy
    back = decode([frames[0], frames[1], payload.tobytes()])
    assert back.kind is Kind.INFER and back.req == 42 and back.header["model"] == 3
    descs = check_tensor_frames(back.header["inputs"], back.frames, "INFER")
    assert descs == [("float32", (2, 3))]


@pytest.mark.parametrize(
    ("frames", "needle"),
    [
        ([b"\x03"], "need kind and header"),
        ([b"", b"x"], "kind frame must be 1 byte"),
        ([b"\xfe", msgpack.packb({"req": 1})], "unknown message kind 254"),
        ([b"\x03", b"\xc1"], "not valid msgpack"),
        ([b"\x03", msgpack.packb("str")], "header must be a map"),
        ([b"\x03", msgpack.packb({"req": "1"})], "'req' must be an int"),
        ([b"\x03", msgpack.packb({"req": True})], "'req' must be an int"),
    ],
)
def test_bad_frames_raise_protocol_error(frames, needle):
    with pytest.raises(ProtocolError, match=needle):
        decode(frames)


@pytest.mark.parametrize(
    ("descs", "frames", "needle"),
    [
        (None, [], "not a list"),
        ([["float32", [2]]], [], "describes 1 tensors but 0 frames"),
        ([["float32"]], [b"1234"], "is not \\[dtype, shape\\]"),
        ([["complex64", [1]]], [b"12345678"], "unknown dtype 'complex64'"),
        ([["float32", [3]]], [b"12345678"], "needs 12 bytes, frame has 8"),
    ],
)
def test_bad_tensor_descriptors(descs, frames, needle):
    with pytest.raises(ProtocolError, match=needle):
        check_tensor_frames(descs, frames, "INFER")
