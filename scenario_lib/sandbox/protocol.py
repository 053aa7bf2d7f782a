"""The wire protocol between the host (`scenario_lib.sandbox.pool`) and a sandboxed worker (`runner`).

A frame is a 4-byte big-endian length, a JSON header, then ``payload_bytes`` raw bytes. The host sends
``build`` frames; the worker answers with ``ready`` once and a ``done`` frame per job. The job child
writes its result as one frame too: a JSON header (failure or scenario JSON plus, per body, its
`PartCheck` JSON and STL length) followed by the STL bytes of every body in order. Nothing is pickled.
Light on purpose: the worker imports this before anything else.
"""

from __future__ import annotations

import json
import os
import select
import struct
import time
from collections.abc import Mapping
from enum import Enum
from typing import Any

OUTPUT_TAIL_BYTES = 4096
MAX_HEADER_BYTES = 16 * 1024 * 1024
# The job child exits with this status when it could not even write its result (disk/tmpfs full).
EXIT_RESULT_UNWRITABLE = 97
_FRAME_LENGTH = struct.Struct(">I")


class BuildFailure(str, Enum):
    """Why a sandboxed build produced no scenario."""

    IMPORT = "import"  # the script did not import (syntax error, missing module, error at import time)
    CONTRACT = "contract"  # no build(seed, scale), or it returned something that is not a valid Scenario
    EXCEPTION = "exception"  # build raised
    TIMEOUT = "timeout"  # over the CPU or wall-clock limit
    MEMORY = "memory"  # over the address-space limit
    CRASH = "crash"  # killed by a signal, exited, or killed its worker
    OUTPUT_LIMIT = "output_limit"  # wrote more than the file-size/tmpfs limit


# ---------------------------------------------------------------------------------------------------
# Framing: 4-byte big-endian length, a JSON header, then ``payload_bytes`` raw bytes.


def encode_frame(header: Mapping[str, Any], payload: bytes = b"") -> bytes:
    """One frame: length-prefixed JSON header (with ``payload_bytes`` set) followed by the payload."""
    text = json.dumps({**header, "payload_bytes": len(payload)}).encode("utf-8")
    return _FRAME_LENGTH.pack(len(text)) + text + payload


def decode_frame(data: bytes, max_header_bytes: int = MAX_HEADER_BYTES) -> tuple[dict[str, Any], bytes]:
    """Split one complete frame held in memory; raises ValueError when it is malformed."""
    if len(data) < _FRAME_LENGTH.size:
        raise ValueError(f"frame of {len(data)} bytes is shorter than its length prefix")
    (length,) = _FRAME_LENGTH.unpack_from(data)
    if length > max_header_bytes or _FRAME_LENGTH.size + length > len(data):
        raise ValueError(f"frame header of {length} bytes does not fit (frame is {len(data)} bytes)")
    header = _parse_header(data[_FRAME_LENGTH.size : _FRAME_LENGTH.size + length])
    payload = data[_FRAME_LENGTH.size + length :]
    if len(payload) != header["payload_bytes"]:
        raise ValueError(f"frame payload is {len(payload)} bytes, its header says {header['payload_bytes']}")
    return header, payload


def _parse_header(raw: bytes) -> dict[str, Any]:
    header = json.loads(raw.decode("utf-8"))
    if not isinstance(header, dict) or type(header.get("payload_bytes")) is not int or header["payload_bytes"] < 0:
        raise ValueError("frame header is not a JSON object with a non-negative integer payload_bytes")
    return header


class PipeClosed(Exception):  # noqa: N818 - a condition, not an error
    """The other end closed the pipe (the process died)."""


class Deadline(Exception):
    """The deadline passed before a whole frame arrived."""


def _read_exactly(fd: int, count: int, deadline: float | None) -> bytes:
    chunks: list[bytes] = []
    remaining = count
    while remaining:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Deadline()
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                raise Deadline()
        chunk = os.read(fd, min(remaining, 1 << 20))
        if not chunk:
            raise PipeClosed()
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def read_frame(
    fd: int, deadline: float | None = None, max_header_bytes: int = MAX_HEADER_BYTES, max_payload_bytes: int = 1 << 40
) -> tuple[dict[str, Any], bytes]:
    """Read one frame from a pipe; raises ValueError when it breaks the size caps or is not JSON."""
    (length,) = _FRAME_LENGTH.unpack(_read_exactly(fd, _FRAME_LENGTH.size, deadline))
    if length > max_header_bytes:
        raise ValueError(f"frame header of {length} bytes exceeds the cap of {max_header_bytes}")
    header = _parse_header(_read_exactly(fd, length, deadline))
    if header["payload_bytes"] > max_payload_bytes:
        raise ValueError(f"frame payload of {header['payload_bytes']} bytes exceeds the cap of {max_payload_bytes}")
    return header, _read_exactly(fd, header["payload_bytes"], deadline)


def write_frame(fd: int, header: Mapping[str, Any], payload: bytes = b"") -> None:
    """Write one whole frame to a pipe or file descriptor."""
    view = memoryview(encode_frame(header, payload))
    while view:
        written = os.write(fd, view)
        view = view[written:]


__all__ = [
    "EXIT_RESULT_UNWRITABLE",
    "MAX_HEADER_BYTES",
    "OUTPUT_TAIL_BYTES",
    "BuildFailure",
    "Deadline",
    "PipeClosed",
    "decode_frame",
    "encode_frame",
    "read_frame",
    "write_frame",
]
