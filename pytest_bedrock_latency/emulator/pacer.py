"""One thread that paces every HTTP/1.1 event stream of a server.

With a thread per connection sleeping until each frame is due, 1,000 streams at one token per
delta wake 50,000 times a second and fight over the GIL; the deltas then go out late and a
client measures a slower ms/token than the profile's. Here the handler thread hands its
planned stream (a list of :class:`~.wire.Step`: absolute due time, frames built when sent) to
the :class:`Pacer` and waits; one thread keeps a heap of due times and sends each step when it
is due.

The pacer never blocks on one client: sockets are written without blocking (their file
descriptors are non-blocking, since the server gives every connection a timeout), the unsent
rest of a step is kept and sent when a selector reports the socket writable, and a socket that
takes nothing for the connection's timeout fails its stream with :class:`~.wire.ClientGone`,
as a blocking send with that timeout would.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import selectors
import socket
import threading
import time
from collections.abc import Sequence

from .eventstream import LAST_CHUNK, http_chunk
from .wire import ClientGone, Step

__all__ = ["Pacer"]

# Heap entry kinds: a step is due, or a blocked socket's send timeout runs out.
_DUE = 0
_SEND_TIMEOUT = 1


class _Stream:
    """One stream being paced: its steps, where it is, and the bytes not yet sent."""

    __slots__ = (
        "blocked_at",
        "done",
        "error",
        "fd",
        "finished",
        "index",
        "pending",
        "registered",
        "slip",
        "steps",
        "timeout",
    )

    def __init__(self, sock: socket.socket, steps: Sequence[Step]) -> None:
        self.fd = sock.fileno()
        self.timeout = sock.gettimeout() or 0.0
        self.steps = steps
        self.index = 0  # the next step to send
        self.slip = 0.0  # how late the first delta went out; later steps keep their gaps
        self.pending = memoryview(b"")
        self.registered = False
        self.blocked_at = 0.0  # when the socket last stopped taking bytes
        self.finished = False  # sent in full or failed; ``done`` is set a little later
        self.done = threading.Event()
        self.error: BaseException | None = None


class Pacer:
    """Sends the steps of many event streams when due, from a few threads (see the module doc).

    Each stream is paced by one of ``lanes`` threads (chosen by its socket; a lane's thread
    starts with its first stream, so a server that streams little pays for few threads).
    More than one, because on a busy machine the OS shares CPU per thread, and because the
    send system calls, most of the work, run without the GIL: at 1,000 streams and one token
    per delta under heavy load, 16 lanes held ms/token within about 30% where 4 lanes were
    off by 150-240% (and a thread per stream by 150-170%), at the same CPU time as 4.
    """

    def __init__(self, name: str = "bedrock-emulator-pacer", lanes: int = 16) -> None:
        self._name = name
        self._lanes: list[_Lane | None] = [None] * max(1, lanes)
        self._lock = threading.Lock()
        self._stopped = False

    @staticmethod
    def usable(sock: socket.socket) -> bool:
        """Whether ``sock`` can be paced here (a timeout makes its descriptor non-blocking)."""
        timeout = sock.gettimeout()
        return timeout is not None and timeout > 0

    def play(self, sock: socket.socket, steps: Sequence[Step]) -> None:
        """Send ``steps`` on ``sock`` as chunks, then the last chunk; block until done.

        Raises :class:`~.wire.ClientGone` if the client went away (or took nothing for the
        socket's timeout), or whatever building a step's frames raised.
        """
        i = sock.fileno() % len(self._lanes)
        with self._lock:
            if self._stopped:
                raise ClientGone()
            lane = self._lanes[i]
            if lane is None:
                lane = self._lanes[i] = _Lane(f"{self._name}-{i}")
        lane.play(sock, steps)

    def stop(self) -> None:
        """Stop the threads; streams still playing fail with :class:`~.wire.ClientGone`."""
        with self._lock:
            self._stopped = True
            lanes, self._lanes = self._lanes, [None] * len(self._lanes)
        for lane in lanes:
            if lane is not None:
                lane.stop()


class _Lane:
    """One pacing thread: a heap of due steps and a selector for sockets that are full."""

    def __init__(self, name: str) -> None:
        self._lock = threading.Lock()
        self._heap: list[tuple[float, int, int, _Stream, float]] = []
        self._order = itertools.count()  # ties on the due time keep submission order
        self._streams: set[_Stream] = set()
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._sleeping_until = float("inf")  # the pacer's next wake-up; earlier ones must wake it
        self._stopped = False
        # Streams sent in full (or failed) whose handler threads are not yet woken: they are
        # woken when the lane is about to sleep, because a handler thread finishing its
        # request holds the GIL that the lane needs back after every send.
        self._finished: list[_Stream] = []
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def play(self, sock: socket.socket, steps: Sequence[Step]) -> None:
        """:meth:`Pacer.play` on this lane's thread."""
        stream = _Stream(sock, steps)
        with self._lock:
            if self._stopped:
                raise ClientGone()
            self._streams.add(stream)
            self._push(steps[0].due if steps else 0.0, _DUE, stream)
        stream.done.wait()
        if stream.error is not None:
            raise stream.error

    def stop(self) -> None:
        """Stop the thread; streams still playing fail with :class:`~.wire.ClientGone`."""
        with self._lock:
            self._stopped = True
        self._wake()
        self._thread.join(timeout=5)
        with self._lock:
            left, self._streams = self._streams, set()
        for stream in left:
            stream.error = ClientGone()
            stream.done.set()
        for stream in self._finished:  # the thread has stopped: nothing else touches it
            stream.done.set()
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    # -- the pacer thread ----------------------------------------------------------------------

    def _push(self, when: float, kind: int, stream: _Stream, token: float = 0.0) -> None:
        """Queue an entry (lock held); wake the thread if it sleeps past ``when``."""
        heapq.heappush(self._heap, (when, next(self._order), kind, stream, token))
        if when < self._sleeping_until:
            self._sleeping_until = when
            self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # full (a wake-up is already pending) or closed
            self._wake_w.send(b"x")

    def _run(self) -> None:
        while True:
            with self._lock:
                if self._stopped:
                    return
                now = time.perf_counter()
                ready = []
                while self._heap and self._heap[0][0] <= now:
                    ready.append(heapq.heappop(self._heap))
                if not ready:
                    wake_at = self._heap[0][0] if self._heap else float("inf")
                    self._sleeping_until = wake_at
            if ready:
                for _, _, kind, stream, token in ready:
                    if kind == _DUE:
                        self._advance(stream)
                    elif stream.registered and stream.blocked_at == token:
                        gone = ClientGone()
                        gone.__cause__ = TimeoutError("the client took nothing for the timeout")
                        self._finish(stream, gone)
                continue
            finished, self._finished = self._finished, []
            for stream in finished:
                stream.done.set()
            timeout = None if wake_at == float("inf") else max(0.0, wake_at - now)
            for key, _ in self._selector.select(timeout):
                if key.data is None:
                    with contextlib.suppress(OSError):
                        self._wake_r.recv(4096)
                else:
                    self._flush(key.data)

    def _advance(self, stream: _Stream) -> None:
        """Send the stream's next step (it is due and nothing of the last one is left)."""
        if stream.finished:
            return
        step = stream.steps[stream.index]
        if step.sets_slip:
            # A first delta sent late (a machine too busy) shifts the rest of the stream:
            # the gaps between deltas stay the profile's instead of bunching to catch up.
            stream.slip = max(0.0, time.perf_counter() - step.due)
        try:
            frames = step.frames()
        except Exception as exc:  # an emulator fault: the handler thread reports it
            self._finish(stream, exc)
            return
        data = b"".join(http_chunk(frame) for frame in frames)
        stream.index += 1
        if stream.index == len(stream.steps):
            data += LAST_CHUNK
        stream.pending = memoryview(data)
        self._flush(stream)

    def _flush(self, stream: _Stream) -> None:
        """Write what the socket takes now; wait for writability or queue the next step."""
        if stream.finished:
            return
        progressed = False
        try:
            while stream.pending:
                n = os.write(stream.fd, stream.pending)
                stream.pending = stream.pending[n:]
                progressed = True
        except BlockingIOError:
            now = time.perf_counter()
            if not stream.registered:
                self._selector.register(stream.fd, selectors.EVENT_WRITE, stream)
                stream.registered = True
            if progressed or stream.blocked_at == 0.0:
                stream.blocked_at = now
                with self._lock:
                    self._push(now + stream.timeout, _SEND_TIMEOUT, stream, now)
            return
        except OSError as exc:  # reset, broken pipe, closed by the server's shutdown
            gone = ClientGone()
            gone.__cause__ = exc
            self._finish(stream, gone)
            return
        if stream.registered:
            self._selector.unregister(stream.fd)
            stream.registered = False
        stream.blocked_at = 0.0
        if stream.index == len(stream.steps):
            self._finish(stream, None)
            return
        with self._lock:
            self._push(stream.steps[stream.index].due + stream.slip, _DUE, stream)

    def _finish(self, stream: _Stream, error: BaseException | None) -> None:
        if stream.registered:
            with contextlib.suppress(KeyError, ValueError, OSError):
                self._selector.unregister(stream.fd)
            stream.registered = False
        with self._lock:
            self._streams.discard(stream)
        stream.error = error
        stream.finished = True
        self._finished.append(stream)
