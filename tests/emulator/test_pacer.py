"""The pacer that sends every HTTP/1.1 stream: on time, never held up by one stuck reader.

Driven over real socket pairs: the server end is what a handler hands the pacer (a socket
with a timeout, so non-blocking underneath), the other end is the client.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from pytest_bedrock_latency.emulator.eventstream import LAST_CHUNK, http_chunk
from pytest_bedrock_latency.emulator.pacer import Pacer
from pytest_bedrock_latency.emulator.wire import ClientGone, Step


@pytest.fixture
def pacer() -> Iterator[Pacer]:
    p = Pacer("test-pacer", lanes=1)  # one lane: a stuck stream shares the thread with the rest
    yield p
    p.stop()


def pair(timeout: float = 5.0, sndbuf: int | None = None) -> tuple[socket.socket, socket.socket]:
    server, client = socket.socketpair()
    if sndbuf is not None:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, sndbuf)
    server.settimeout(timeout)
    return server, client


def play_in_thread(pacer: Pacer, sock: socket.socket, steps: list[Step]) -> dict[str, object]:
    """Run ``pacer.play`` as a handler thread would; the outcome lands in the dict."""
    result: dict[str, object] = {}

    def run() -> None:
        try:
            pacer.play(sock, steps)
            result["ok"] = time.perf_counter()
        except BaseException as exc:
            result["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    result["thread"] = thread
    return result


def read_all(sock: socket.socket, deadline_s: float = 10.0) -> tuple[bytes, list[float]]:
    """Everything up to the last chunk, and when each read returned."""
    sock.settimeout(deadline_s)
    data, times = b"", []
    while not data.endswith(LAST_CHUNK):
        got = sock.recv(65536)
        if not got:
            break
        data += got
        times.append(time.perf_counter())
    return data, times


def test_steps_go_out_at_their_due_times_then_the_last_chunk(pacer: Pacer) -> None:
    server, client = pair()
    t0 = time.perf_counter()
    steps = [Step(t0 + i * 0.1, lambda i=i: [b"frame%d" % i]) for i in range(4)]
    result = play_in_thread(pacer, server, steps)
    received = b""
    arrivals = []
    client.settimeout(5)
    while not received.endswith(LAST_CHUNK):
        got = client.recv(65536)
        assert got, "the pacer closed the stream early"
        received += got
        arrivals.append(time.perf_counter() - t0)
    thread = result["thread"]
    assert isinstance(thread, threading.Thread)
    thread.join(5)
    assert "ok" in result
    assert received == b"".join(http_chunk(b"frame%d" % i) for i in range(4)) + LAST_CHUNK
    # Four separate arrivals spread over ~0.3 s (wide margins: both cores are busy).
    assert len(arrivals) >= 4
    assert arrivals[-1] >= 0.29
    assert arrivals[0] < 0.25


def test_a_stuck_reader_does_not_delay_other_streams_and_times_out(pacer: Pacer) -> None:
    stuck_server, stuck_client = pair(timeout=1.0, sndbuf=4096)
    big = b"x" * 65536  # far more than the socket pair buffers: the pacer cannot send it all
    now = time.perf_counter()
    stuck = play_in_thread(pacer, stuck_server, [Step(now, lambda: [big]) for _ in range(8)])
    time.sleep(0.05)  # the stuck stream is now waiting for writability

    server, client = pair()
    t0 = time.perf_counter()
    steps = [Step(t0 + i * 0.05, lambda: [b"small"]) for i in range(6)]
    other = play_in_thread(pacer, server, steps)
    data, _ = read_all(client)
    took = time.perf_counter() - t0
    assert data.endswith(LAST_CHUNK)
    assert took < 0.9, f"a stuck reader held another stream up for {took:.2f} s"

    # The reader that took nothing for the socket's timeout is gone, as with a blocking send.
    stuck_thread = stuck["thread"]
    assert isinstance(stuck_thread, threading.Thread)
    stuck_thread.join(10)
    assert isinstance(stuck.get("error"), ClientGone)
    assert "ok" in other
    stuck_client.close()


def test_a_closed_client_fails_its_stream_with_client_gone(pacer: Pacer) -> None:
    server, client = pair()
    client.close()
    t0 = time.perf_counter()
    with pytest.raises(ClientGone):
        pacer.play(server, [Step(t0 + i * 0.01, lambda: [b"frame" * 1000]) for i in range(50)])


def test_an_error_building_frames_reaches_the_handler_thread(pacer: Pacer) -> None:
    server, client = pair()

    def broken() -> list[bytes]:
        raise RuntimeError("frame builder broke")

    with pytest.raises(RuntimeError, match="frame builder broke"):
        pacer.play(server, [Step(time.perf_counter(), lambda: [b"ok"]), Step(0.0, broken)])
    assert client.recv(100) == http_chunk(b"ok")


def test_a_late_first_delta_keeps_the_gaps_after_it(
    pacer: Pacer,
) -> None:
    server, client = pair()
    t0 = time.perf_counter()
    late = t0 - 1.0  # the first delta is a second late when it goes out
    steps = [
        Step(late, lambda: [b"first"], sets_slip=True),
        Step(late + 0.3, lambda: [b"second"]),  # keeps its 0.3 s gap after the first
    ]
    play_in_thread(pacer, server, steps)
    _, times = read_all(client)
    assert times[-1] - t0 >= 0.25, "the gap after a late first delta was not kept"


def test_stop_releases_streams_still_playing() -> None:
    p = Pacer("test-pacer-stop", lanes=1)
    server, client = pair()
    result = play_in_thread(p, server, [Step(time.perf_counter() + 60, lambda: [b"later"])])
    time.sleep(0.05)
    p.stop()
    thread = result["thread"]
    assert isinstance(thread, threading.Thread)
    thread.join(5)
    assert isinstance(result.get("error"), ClientGone)
    client.close()
