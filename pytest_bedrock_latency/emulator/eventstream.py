"""Encoder for the ``application/vnd.amazon.eventstream`` framing Bedrock streams use.

botocore only ships a decoder, so the emulator owns this small encoder. Only
string headers (type 7) are needed by Bedrock Runtime streams.
"""

from __future__ import annotations

import binascii
import functools
import json
import struct
from collections.abc import Mapping
from typing import Any

__all__ = ["LAST_CHUNK", "encode_message", "event_frame", "exception_frame", "http_chunk"]

_STRING_TYPE = 7
#: The terminating chunk of a ``Transfer-Encoding: chunked`` body.
LAST_CHUNK = b"0\r\n\r\n"


def _encode_headers(headers: Mapping[str, str]) -> bytes:
    out = bytearray()
    for name, value in headers.items():
        raw_name = name.encode("utf-8")
        raw_value = value.encode("utf-8")
        out += struct.pack(">B", len(raw_name)) + raw_name
        out += struct.pack(">BH", _STRING_TYPE, len(raw_value)) + raw_value
    return bytes(out)


def encode_message(headers: Mapping[str, str], payload: bytes) -> bytes:
    """Encode one event-stream message: prelude, prelude CRC, headers, payload, message CRC."""
    return _encode(_encode_headers(headers), payload)


def _encode(raw_headers: bytes, payload: bytes) -> bytes:
    total_len = 12 + len(raw_headers) + len(payload) + 4
    prelude = struct.pack(">II", total_len, len(raw_headers))
    prelude += struct.pack(">I", binascii.crc32(prelude) & 0xFFFFFFFF)
    body = prelude + raw_headers + payload
    return body + struct.pack(">I", binascii.crc32(body) & 0xFFFFFFFF)


_COMPACT = json.JSONEncoder(separators=(",", ":"))


def _json(payload: Mapping[str, Any]) -> bytes:
    return _COMPACT.encode(payload).encode("utf-8")


@functools.lru_cache(maxsize=64)
def _event_headers(event_type: str) -> bytes:
    # The same few event types make every frame of a stream: encode their headers once.
    return _encode_headers(
        {
            ":event-type": event_type,
            ":content-type": "application/json",
            ":message-type": "event",
        }
    )


def event_frame(event_type: str, payload: Mapping[str, Any]) -> bytes:
    """An ``:message-type=event`` frame, e.g. ``contentBlockDelta`` or ``chunk``."""
    return _encode(_event_headers(event_type), _json(payload))


def exception_frame(exception_type: str, payload: Mapping[str, Any]) -> bytes:
    """An ``:message-type=exception`` frame; botocore raises ``EventStreamError`` on it.

    ``exception_type`` is the camelCase union member name, e.g. ``modelStreamErrorException``.
    """
    return encode_message(
        {
            ":exception-type": exception_type,
            ":content-type": "application/json",
            ":message-type": "exception",
        },
        _json(payload),
    )


def http_chunk(data: bytes) -> bytes:
    """Wrap ``data`` as one HTTP/1.1 chunk (one event frame per chunk, so urllib3 yields it at once)."""
    return b"%x\r\n%s\r\n" % (len(data), data)
