"""Sending answers: JSON bodies, Bedrock's error shape, and paced event streams.

A :class:`Responder` is the one way the runtime and the control plane answer a request. It
hides the HTTP version (``h2c.H2Responder`` is the HTTP/2 one): :class:`Http1Responder` writes
through an ``http.server`` handler
(streams as ``Transfer-Encoding: chunked``, one event frame per chunk, because urllib3 yields
data per chunk and a Content-Length or close-delimited body would hide the pacing).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from http.server import BaseHTTPRequestHandler
from typing import Any

from .error_codes import ERROR_MESSAGES, ERROR_STATUS, ERROR_TYPE_SUFFIX, STREAM_EXCEPTIONS
from .eventstream import LAST_CHUNK, exception_frame, http_chunk

__all__ = [
    "PREFACE_LINE",
    "ClientGone",
    "Http1Responder",
    "Responder",
    "pad",
    "stream_exception",
]

#: The first line of the HTTP/2 connection preface, as an HTTP/1.1 reader sees it.
PREFACE_LINE = b"PRI * HTTP/2.0\r\n"

_PAD_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


class ClientGone(Exception):
    """The client closed the connection while we were writing."""


def pad(n: int) -> str:
    """The ``"p"`` padding field of the ``n``-th event payload of a stream."""
    # Real Bedrock pads every event payload with a random-length "p" field; a deterministic
    # length is enough to exercise clients that must ignore it.
    length = 1 + (n * 7) % 23
    return (_PAD_ALPHABET * 2)[n % 31 : n % 31 + length]


def stream_exception(code: str | None, n: int) -> tuple[str, bytes]:
    """The exception member and frame that break a stream (``n``: frames sent before it)."""
    member = code if code in STREAM_EXCEPTIONS else "modelStreamErrorException"
    assert member is not None
    payload: dict[str, Any] = {"message": ERROR_MESSAGES[member[0].upper() + member[1:]]}
    if member == "modelStreamErrorException":
        payload.update(originalStatusCode=500, originalMessage="Model stream interrupted")
    payload["p"] = pad(n)
    return member, exception_frame(member, payload)


class Responder(ABC):
    """Answers one request: a whole body (:meth:`send`) or a stream of event frames.

    ``started`` turns true with the first byte of the answer, so a fault that happens later
    can still be reported the only way left (an exception frame, or closing the connection).
    """

    started = False
    streaming = False

    @abstractmethod
    def send(
        self,
        status: int,
        headers: Sequence[tuple[str, str]],
        body: bytes,
        reason: str | None = None,
    ) -> None:
        """Send a complete response; ``Content-Length`` is added here."""

    @abstractmethod
    def start_stream(self, request_id: str, headers: Mapping[str, str]) -> None:
        """Send the headers of a 200 ``application/vnd.amazon.eventstream`` response."""

    @abstractmethod
    def write(self, *frames: bytes) -> None:
        """Send event frames at once, each in its own transport frame; ``ClientGone`` if gone."""

    @abstractmethod
    def end(self) -> None:
        """End the stream."""

    def send_json(
        self,
        status: int,
        payload: Mapping[str, Any],
        request_id: str,
        headers: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> None:
        """Send ``payload`` as a JSON body with ``x-amzn-RequestId``."""
        data = json.dumps(payload).encode("utf-8")
        all_headers = [("Content-Type", content_type), ("x-amzn-RequestId", request_id)]
        all_headers += list((headers or {}).items())
        self.send(status, all_headers, data)

    def send_error(
        self,
        code: str,
        request_id: str,
        message: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        """Send Bedrock's error shape: the code's status, ``x-amzn-ErrorType``, ``{"message"}``."""
        payload: dict[str, Any] = {"message": message or ERROR_MESSAGES[code]}
        payload.update(extra or {})
        self.send_json(
            ERROR_STATUS[code], payload, request_id, {"x-amzn-ErrorType": code + ERROR_TYPE_SUFFIX}
        )


class Http1Responder(Responder):
    """HTTP/1.1 through a ``BaseHTTPRequestHandler`` (unbuffered ``wfile``: a write is a send)."""

    def __init__(self, handler: BaseHTTPRequestHandler) -> None:
        self._h = handler

    def send(
        self,
        status: int,
        headers: Sequence[tuple[str, str]],
        body: bytes,
        reason: str | None = None,
    ) -> None:
        h = self._h
        self.started = True
        h.send_response(status, reason)  # also sends Server and Date; never add Date again
        for name, value in headers:
            h.send_header(name, value)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(body)

    def start_stream(self, request_id: str, headers: Mapping[str, str]) -> None:
        h = self._h
        self.started = self.streaming = True
        h.send_response(200)
        h.send_header("Content-Type", "application/vnd.amazon.eventstream")
        h.send_header("Transfer-Encoding", "chunked")
        h.send_header("x-amzn-RequestId", request_id)
        for name, value in headers.items():
            h.send_header(name, value)
        h.end_headers()

    def write(self, *frames: bytes) -> None:
        try:
            for frame in frames:
                self._h.wfile.write(http_chunk(frame))
            self._h.wfile.flush()
        except (OSError, ValueError) as exc:  # reset, broken pipe, send timeout, closed file
            raise ClientGone() from exc

    def end(self) -> None:
        try:
            self._h.wfile.write(LAST_CHUNK)
            self._h.wfile.flush()
        except (OSError, ValueError) as exc:  # reset, broken pipe, send timeout, closed file
            raise ClientGone() from exc
