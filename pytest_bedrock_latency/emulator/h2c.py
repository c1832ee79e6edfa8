"""HTTP/2 with prior knowledge (h2c) on the emulator's HTTP/1.1 port, using the ``h2`` library.

The AWS SDK for JavaScript v3 talks HTTP/2 to Bedrock Runtime by default, and on an
``http://`` endpoint that means h2c with prior knowledge: it opens with the
``PRI * HTTP/2.0`` preface and never falls back. The HTTP/1.1 handler hands such a connection
to :func:`serve_h2_connection`.

One thread reads the socket and feeds the ``h2`` state machine; every request (stream) is
served on its own thread, because answers are paced with sleeps and a client multiplexes many
requests on one connection. All access to the state machine and all socket writes hold one
lock. Every event frame goes out in its own DATA frame when it is due (split only when the
peer's flow-control window or frame size is smaller), and a stream waits for the peer's
WINDOW_UPDATE rather than overrun its window.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from email.utils import formatdate
from io import BufferedIOBase
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings

from .control_plane import HttpRequest
from .wire import PREFACE_LINE, ClientGone, Responder

__all__ = ["H2Responder", "serve_h2_connection"]

_PREFACE_REST = b"\r\nSM\r\n\r\n"
# Connection-specific headers are forbidden in HTTP/2 (RFC 9113 8.2.2).
_FORBIDDEN = {"connection", "keep-alive", "transfer-encoding", "upgrade", "proxy-connection"}

#: serve(responder, request, t0, received_at): the emulator's request entry point.
ServeFn = Callable[[Responder, HttpRequest, float, float], object]


class _Stream:
    def __init__(self, headers: Sequence[tuple[str, str]], t0: float, received_at: float) -> None:
        self.headers = headers
        self.body = bytearray()
        self.t0 = t0
        self.received_at = received_at
        self.too_large = False


class _Connection:
    """One h2c connection: the state machine, its lock, and the streams in flight."""

    def __init__(
        self,
        sock: socket.socket,
        rfile: BufferedIOBase,
        serve: ServeFn,
        server_address: tuple[str, int],
        client_host: str,
        idle_timeout: float,
        max_body: int,
    ) -> None:
        self.sock, self.serve = sock, serve
        self.rfile: BufferedIOBase = rfile
        self.server_address, self.client_host = server_address, client_host
        self.idle_timeout, self.max_body = idle_timeout, max_body
        config = h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        self.conn = h2.connection.H2Connection(config=config)
        self.cond = threading.Condition()
        self.pending: dict[int, _Stream] = {}  # headers seen, body still arriving
        self.in_flight: set[int] = set()  # being answered
        self.gone: set[int] = set()  # reset by the peer
        self.closed = False
        self.inbox = bytearray()  # received bytes not yet a whole frame
        self.peer_goaway = False

    # -- writing (callers hold self.cond) ------------------------------------------------------

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            try:
                self.sock.sendall(data)
            except OSError as exc:
                self.closed = True
                raise ClientGone() from exc

    def check_open(self, stream_id: int) -> None:
        if self.closed or stream_id in self.gone:
            raise ClientGone()

    def send_headers(self, stream_id: int, headers: list[tuple[str, str]], end: bool) -> None:
        with self.cond:
            self.check_open(stream_id)
            try:
                self.conn.send_headers(stream_id, headers, end_stream=end)
            except h2.exceptions.StreamClosedError as exc:
                raise ClientGone() from exc
            self.flush()

    def send_data(self, stream_id: int, data: bytes, end: bool) -> None:
        """Send ``data`` now, as one DATA frame when the window and frame size allow."""
        view = memoryview(data)
        with self.cond:
            while True:
                self.check_open(stream_id)
                if not view:
                    if end:
                        self.conn.end_stream(stream_id)
                        self.flush()
                    return
                try:
                    window = self.conn.local_flow_control_window(stream_id)
                except h2.exceptions.StreamClosedError as exc:
                    raise ClientGone() from exc
                if window <= 0:
                    # Wait for the peer's WINDOW_UPDATE; a peer that never sends one is gone.
                    if not self.cond.wait(self.idle_timeout):
                        raise ClientGone()
                    continue
                n = min(window, self.conn.max_outbound_frame_size, len(view))
                self.conn.send_data(
                    stream_id, view[:n].tobytes(), end_stream=end and n == len(view)
                )
                self.flush()
                view = view[n:]
                if not view:
                    return

    # -- reading ----------------------------------------------------------------------------

    def run(self) -> None:
        self.conn.local_settings = h2.settings.Settings(
            client=False,
            initial_values={
                # One client may multiplex many paced streams on one connection.
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 4096,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: 65536,
            },
        )
        with self.cond:
            self.conn.initiate_connection()
            try:
                self.flush()
                self.receive(PREFACE_LINE + _PREFACE_REST, framed=False)
            except ClientGone:
                return
        while True:
            try:
                data = self.rfile.read1(65536)
            except TimeoutError:
                with self.cond:
                    busy = bool(self.in_flight or self.pending)
                if busy:
                    # The client is waiting for answers, not idle. A socket file refuses every
                    # read after a timeout, so read on through a new one (the old one's buffer
                    # was empty: it timed out waiting for bytes).
                    self.rfile = self.sock.makefile("rb")
                    continue
                self.close()
                break
            except (OSError, ValueError):
                break
            if not data:
                break
            with self.cond:
                try:
                    self.receive(data)
                except ClientGone:
                    break
            if self.closed:
                break
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def close(self) -> None:
        with self.cond:
            if not self.closed:
                self.conn.close_connection()
                with contextlib.suppress(ClientGone):
                    self.flush()
            self.closed = True
            self.cond.notify_all()

    def frames_for_h2(self, data: bytes) -> bytes:
        """The whole frames in ``data`` (plus what was buffered), without the peer's GOAWAY.

        A client's GOAWAY means "no new streams"; its streams in flight still get their
        answers (RFC 9113 6.8). ``h2`` closes the whole connection on one, so the emulator
        keeps GOAWAY frames from it and closes once the last stream is answered.
        """
        self.inbox += data
        out = bytearray()
        while len(self.inbox) >= 9:
            length = int.from_bytes(self.inbox[:3], "big")
            if length > self.conn.max_inbound_frame_size:
                out += self.inbox  # h2 will refuse it with the right error
                self.inbox.clear()
                break
            if len(self.inbox) < 9 + length:
                break
            frame = bytes(self.inbox[: 9 + length])
            del self.inbox[: 9 + length]
            if frame[3] == 0x7:  # GOAWAY
                self.peer_goaway = True
                continue
            out += frame
        return bytes(out)

    def receive(self, data: bytes, *, framed: bool = True) -> None:
        """Feed bytes to the state machine and act on its events (caller holds self.cond)."""
        try:
            events = self.conn.receive_data(self.frames_for_h2(data) if framed else data)
        except h2.exceptions.ProtocolError:
            self.flush()  # h2 has queued a GOAWAY naming the error
            self.closed = True
            return
        for event in events:
            self.on_event(event)
        self.flush()
        if self.peer_goaway and not (self.pending or self.in_flight):
            self.close()
        self.cond.notify_all()  # a WINDOW_UPDATE or SETTINGS may unblock a sender

    def on_event(self, event: Any) -> None:
        if isinstance(event, h2.events.RequestReceived):
            self.pending[event.stream_id] = _Stream(
                [(str(k), str(v)) for k, v in event.headers or []],
                time.perf_counter(),
                time.time(),
            )
            if event.stream_ended is not None:
                self.dispatch(event.stream_id)
        elif isinstance(event, h2.events.DataReceived):
            stream = self.pending.get(event.stream_id)
            if event.flow_controlled_length:
                # Give the window back at once: bodies are bounded by max_body, not by the window.
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            if stream is not None:
                if len(stream.body) + len(event.data or b"") > self.max_body:
                    stream.too_large = True
                else:
                    stream.body += event.data or b""
            if event.stream_ended is not None:
                self.dispatch(event.stream_id)
        elif isinstance(event, h2.events.StreamEnded):
            self.dispatch(event.stream_id)
        elif isinstance(event, h2.events.StreamReset):
            self.pending.pop(event.stream_id, None)
            self.gone.add(event.stream_id)
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.closed = True

    def dispatch(self, stream_id: int) -> None:
        stream = self.pending.pop(stream_id, None)
        if stream is None:
            return
        self.in_flight.add(stream_id)
        thread = threading.Thread(
            target=self.answer, args=(stream_id, stream), name="bedrock-emulator-h2", daemon=True
        )
        thread.start()

    def answer(self, stream_id: int, stream: _Stream) -> None:
        out = H2Responder(self, stream_id)
        pseudo = {k: v for k, v in stream.headers if k.startswith(":")}
        headers = [(k, v) for k, v in stream.headers if not k.startswith(":")]
        if pseudo.get(":authority") and not any(k == "host" for k, _ in headers):
            headers.append(("host", pseudo[":authority"]))
        method = pseudo.get(":method", "GET")
        out.head = method == "HEAD"
        try:
            if stream.too_large:
                out.send_error(
                    "ValidationException",
                    "",
                    f"Malformed HTTP request: the body exceeds the emulator's limit of "
                    f"{self.max_body} bytes.",
                )
                return
            request = HttpRequest(
                method=method,
                target=pseudo.get(":path", "/"),
                headers=headers,
                body=bytes(stream.body),
                http_version="HTTP/2.0",
                server_address=self.server_address,
                client_host=self.client_host,
            )
            self.serve(out, request, stream.t0, stream.received_at)
        except (ClientGone, OSError):
            with self.cond:
                if stream_id not in self.gone and not self.closed:
                    try:
                        self.conn.reset_stream(stream_id)
                        self.flush()
                    except (h2.exceptions.ProtocolError, ClientGone):
                        pass
        finally:
            with self.cond:
                self.in_flight.discard(stream_id)
                self.gone.discard(stream_id)
                if self.peer_goaway and not (self.pending or self.in_flight):
                    self.close()


class H2Responder(Responder):
    """Answers one HTTP/2 stream; event frames go out one DATA frame each."""

    def __init__(self, connection: _Connection, stream_id: int) -> None:
        self._c = connection
        self._id = stream_id
        self.head = False

    def _headers(self, status: int, headers: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
        out = [(":status", str(status)), ("date", formatdate(usegmt=True))]
        out += [(name.lower(), value) for name, value in headers if name.lower() not in _FORBIDDEN]
        return out

    def send(
        self,
        status: int,
        headers: Sequence[tuple[str, str]],
        body: bytes,
        reason: str | None = None,
    ) -> None:
        self.started = True
        all_headers = self._headers(
            status, [(k, v) for k, v in headers if k.lower() != "content-length"]
        )
        all_headers.append(("content-length", str(len(body))))
        if self.head or not body:
            self._c.send_headers(self._id, all_headers, end=True)
            return
        self._c.send_headers(self._id, all_headers, end=False)
        self._c.send_data(self._id, body, end=True)

    def start_stream(self, request_id: str, headers: Mapping[str, str]) -> None:
        self.started = self.streaming = True
        base = [("content-type", "application/vnd.amazon.eventstream")]
        base += [("x-amzn-requestid", request_id), *headers.items()]
        self._c.send_headers(self._id, self._headers(200, base), end=False)

    def write(self, *frames: bytes) -> None:
        for frame in frames:
            self._c.send_data(self._id, frame, end=False)

    def end(self) -> None:
        self._c.send_data(self._id, b"", end=True)


def serve_h2_connection(
    sock: socket.socket,
    rfile: BufferedIOBase,
    serve: ServeFn,
    *,
    server_address: tuple[str, int],
    client_host: str,
    idle_timeout: float,
    max_body: int,
) -> None:
    """Serve an h2c connection whose first preface line (:data:`PREFACE_LINE`) was read.

    Returns when the peer closes the connection, breaks the protocol or stays idle (no stream
    in flight) for ``idle_timeout`` seconds.
    """
    rest = rfile.read(len(_PREFACE_REST))
    if rest != _PREFACE_REST:
        return  # "PRI * HTTP/2.0" without the rest of the preface: not HTTP/2, just close
    connection = _Connection(
        sock, rfile, serve, server_address, client_host, idle_timeout, max_body
    )
    connection.run()
