"""Sending answers: JSON bodies, Bedrock's error shape, and paced event streams.

A :class:`Responder` is the one way the runtime and the control plane answer a request. It
hides the HTTP version (``h2c.H2Responder`` is the HTTP/2 one): :class:`Http1Responder` writes
through an ``http.server`` handler
(streams as ``Transfer-Encoding: chunked``, one event frame per chunk, because urllib3 yields
data per chunk and a Content-Length or close-delimited body would hide the pacing).
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any

from .error_codes import ERROR_MESSAGES, ERROR_STATUS, ERROR_TYPE_SUFFIX, STREAM_EXCEPTIONS
from .eventstream import LAST_CHUNK, exception_frame, http_chunk

if TYPE_CHECKING:
    from .pacer import Pacer

__all__ = [
    "PREFACE_LINE",
    "ClientGone",
    "Http1Responder",
    "Responder",
    "Step",
    "pad",
    "sleep_until",
    "stream_exception",
]

#: The first line of the HTTP/2 connection preface, as an HTTP/1.1 reader sees it.
PREFACE_LINE = b"PRI * HTTP/2.0\r\n"

_PAD_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


class ClientGone(Exception):
    """The client closed the connection while we were writing."""


def sleep_until(deadline: float) -> None:
    """Sleep until ``time.perf_counter()`` reaches ``deadline`` (at once if it has)."""
    remaining = deadline - time.perf_counter()
    if remaining > 0:
        time.sleep(remaining)


@dataclass(frozen=True)
class Step:
    """One timed write of a paced stream.

    ``due`` is absolute (``time.perf_counter()`` seconds) before the stream's slip: how late
    the step marked ``sets_slip`` (the first delta) went out, added to it and every later step
    so a late first delta keeps the profile's gaps after it instead of bunching them.
    ``frames`` is called when the step is sent, not before, so what it measures or records
    (latency, the request log) is as of sending.
    """

    due: float
    frames: Callable[[], Sequence[bytes]]
    sets_slip: bool = False


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

    def play(self, steps: Sequence[Step]) -> None:
        """Send every step when due, then end the stream; ``ClientGone`` if the client left.

        This one sleeps in the calling thread (HTTP/2 multiplexes a connection's streams on
        their own threads already); HTTP/1.1 hands the steps to the server's pacer.
        """
        slip = 0.0
        for step in steps:
            due = step.due + slip
            sleep_until(due)
            if step.sets_slip:
                slip = max(0.0, time.perf_counter() - due)
            self.write(*step.frames())
        self.end()

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

    def __init__(self, handler: BaseHTTPRequestHandler, pacer: Pacer | None = None) -> None:
        self._h = handler
        self._pacer = pacer

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

    def play(self, steps: Sequence[Step]) -> None:
        # One pacing thread for every stream: a thread per stream, each waking for every
        # frame, makes thousands of wake-ups a second contend for the GIL and go out late.
        sock = self._h.connection
        if self._pacer is None or not steps or not self._pacer.usable(sock):
            super().play(steps)
            return
        self._h.wfile.flush()  # the headers, before the pacer writes to the socket directly
        self._pacer.play(sock, steps)

    def end(self) -> None:
        try:
            self._h.wfile.write(LAST_CHUNK)
            self._h.wfile.flush()
        except (OSError, ValueError) as exc:  # reset, broken pipe, send timeout, closed file
            raise ClientGone() from exc
