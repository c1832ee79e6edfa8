"""HTTP/2 with prior knowledge (h2c) on the emulator's port: the JS SDK's default transport.

httpx with ``http1=False`` opens with the ``PRI * HTTP/2.0`` preface, like the JS SDK's
NodeHttp2Handler does on an ``http://`` endpoint.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import Any

import pytest

from pytest_bedrock_latency.emulator import Emulator

from .conftest import MSGS

httpx = pytest.importorskip("httpx")
pytest.importorskip("h2")

BODY = {"messages": MSGS}


@pytest.fixture
def h2client() -> Any:
    with httpx.Client(http1=False, http2=True, timeout=30) as client:
        yield client


def _frames(data: bytes) -> list[tuple[dict[str, str], dict[str, Any]]]:
    """Decode event-stream messages (headers, JSON payload) from raw bytes."""
    out = []
    while data:
        total, headers_len = int.from_bytes(data[:4], "big"), int.from_bytes(data[4:8], "big")
        raw, headers, i = data[12 : 12 + headers_len], {}, 0
        while i < len(raw):
            n = raw[i]
            name = raw[i + 1 : i + 1 + n].decode()
            i += 1 + n + 1
            length = int.from_bytes(raw[i : i + 2], "big")
            headers[name] = raw[i + 2 : i + 2 + length].decode()
            i += 2 + length
        out.append((headers, json.loads(data[12 + headers_len : total - 4])))
        data = data[total:]
    return out


def test_converse_over_h2c(emulator: Emulator, h2client: Any) -> None:
    response = h2client.post(f"{emulator.url}/model/test.fast/converse", json=BODY)
    assert response.http_version == "HTTP/2"
    assert response.status_code == 200
    assert response.json()["usage"]["outputTokens"] == 20
    assert response.headers["x-amzn-requestid"]
    (record,) = emulator.requests
    assert record.operation == "Converse" and record.status == 200


def test_errors_over_h2c_have_bedrock_shape(emulator: Emulator, h2client: Any) -> None:
    response = h2client.post(f"{emulator.url}/model/nope.model/converse", json=BODY)
    assert response.status_code == 404
    assert response.headers["x-amzn-errortype"].startswith("ResourceNotFoundException")
    bad = h2client.post(f"{emulator.url}/model/test.fast/converse", content=b"{nope")
    assert bad.status_code == 400 and "not valid JSON" in bad.json()["message"]


def test_stream_frames_arrive_one_data_frame_each_when_due(
    emulator: Emulator, h2client: Any
) -> None:
    emulator.set_profile("test.fast", ttft_ms=100, ms_per_token=20, answer_tokens=10)
    start = time.perf_counter()
    arrivals: list[tuple[float, bytes]] = []
    with h2client.stream(
        "POST", f"{emulator.url}/model/test.fast/converse-stream", json=BODY
    ) as response:
        assert response.headers["content-type"] == "application/vnd.amazon.eventstream"
        for chunk in response.iter_raw():
            arrivals.append(((time.perf_counter() - start) * 1000, chunk))
    frames = _frames(b"".join(chunk for _, chunk in arrivals))
    kinds = [h[":event-type"] for h, _ in frames]
    assert kinds == [
        "messageStart",
        *["contentBlockDelta"] * 10,
        "contentBlockStop",
        "messageStop",
        "metadata",
    ]
    # Each delta is its own DATA frame, so it reaches the client by itself, when due.
    delta_times = [t for t, chunk in arrivals if b"contentBlockDelta" in chunk]
    assert len(delta_times) == 10
    # None before it is due (100 ms, then every 20 ms) and not all at the end; the margins
    # hold on a machine whose cores are all busy (a stall only delays, by up to ~100 ms).
    due = [100 + 20 * i for i in range(10)]
    assert all(t > d - 1 for t, d in zip(delta_times, due, strict=True)), delta_times
    assert delta_times[-1] - delta_times[0] > 60, delta_times


def test_flow_control_is_respected_for_large_answers(emulator: Emulator, h2client: Any) -> None:
    # ~200 KB of JSON: more than the client's initial 64 KiB window, so the server must wait
    # for WINDOW_UPDATE frames (h2 raises if a sender overruns the window).
    emulator.set_profile(
        "test.fast",
        ttft_ms=0,
        ms_per_token=0,
        answer_tokens=30000,
        max_output_tokens=40000,
        tokens_per_chunk=1000,
    )
    response = h2client.post(f"{emulator.url}/model/test.fast/converse", json=BODY)
    assert response.status_code == 200
    text = response.json()["output"]["message"]["content"][0]["text"]
    assert len(text.split()) == 30000 and len(response.content) > 150_000
    with h2client.stream(
        "POST", f"{emulator.url}/model/test.fast/converse-stream", json=BODY
    ) as stream:
        data = b"".join(stream.iter_raw())
    assert len(_frames(data)) == 30 + 4 and len(data) > 150_000


def test_concurrent_streams_share_one_connection(emulator: Emulator) -> None:
    emulator.set_profile("test.fast", ttft_ms=300, ms_per_token=10, answer_tokens=10)
    url = f"{emulator.url}/model/test.fast"

    async def streams() -> tuple[list[float], float]:
        # asyncio tasks on one AsyncClient: httpx's sync Client is not safe to share between
        # threads over HTTP/2 (two threads can open streams with the same id when the
        # machine is busy, and the client's h2 then refuses its own request).
        async with httpx.AsyncClient(http1=False, http2=True, timeout=30) as client:
            await client.post(f"{url}/count-tokens", json={"input": {"converse": BODY}})

            async def one() -> float:
                start = time.perf_counter()
                async with client.stream("POST", f"{url}/converse-stream", json=BODY) as response:
                    assert response.http_version == "HTTP/2"
                    async for _ in response.aiter_raw():
                        pass
                return time.perf_counter() - start

            started = time.perf_counter()
            durations = await asyncio.gather(*(one() for _ in range(8)))
            return list(durations), time.perf_counter() - started

    durations, took = asyncio.run(streams())
    assert len(durations) == 8
    # Served side by side, not one after another (8 x 0.39 s = 3.1 s).
    assert took < 2.0, durations


def test_control_plane_over_h2c(emulator: Emulator, h2client: Any) -> None:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest("GET", f"{emulator.url}/custom-models")
    SigV4Auth(Credentials("testing", "testing"), "bedrock", "us-east-1").add_auth(request)
    response = h2client.get(request.url, headers=dict(request.headers.items()))
    assert response.status_code == 200
    assert "modelSummaries" in response.json()


def test_a_protocol_error_is_a_goaway_and_the_server_keeps_serving(
    emulator: Emulator, h2client: Any
) -> None:
    started = time.monotonic()
    with socket.create_connection((emulator.host, emulator.port), timeout=10) as sock:
        sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x01\x00\x00\x00\x00\x00\x00x")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    frames = []
    while len(data) >= 9:
        length = int.from_bytes(data[:3], "big")
        frames.append(data[3])
        data = data[9 + length :]
    assert 0x7 in frames  # GOAWAY (a DATA frame on stream 0 is a PROTOCOL_ERROR)
    assert time.monotonic() - started < 3  # closed at once, not after the idle timeout
    assert h2client.post(f"{emulator.url}/model/test.fast/converse", json=BODY).status_code == 200
    assert emulator.errors == []


def test_an_answer_slower_than_the_idle_timeout_is_not_cut(h2client: Any) -> None:
    # Idle means "no request in flight": a client waiting for a slow answer is not idle.
    profile = {"slow": {"family": "nova", "ttft_ms": 1200, "ms_per_token": 0, "answer_tokens": 3}}
    with Emulator(profiles=profile, idle_timeout=0.3) as emu:
        # One request only: a second one sent after the first answer would race the idle
        # close it is entitled to (a client that loses that race sees a broken pipe).
        started = time.monotonic()
        answer = h2client.post(f"{emu.url}/model/slow/converse", json=BODY)
        waited = time.monotonic() - started
        assert emu.errors == []
    assert answer.status_code == 200
    assert answer.json()["output"]["message"]["content"]
    assert waited >= 1.2  # the answer outlived four idle timeouts on one connection
