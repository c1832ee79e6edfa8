"""Hostile and malformed input: every bad request gets an HTTP answer in Bedrock's error shape,
never a closed connection or a traceback, and the server keeps serving afterwards."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from pytest_bedrock_latency.emulator import Emulator

from .conftest import MSGS, TEST_PROFILES, make_client

PATH = "/model/test.fast/converse"


def _request(head: str, body: bytes = b"") -> bytes:
    return head.replace("\n", "\r\n").encode("latin-1") + b"\r\n" + body


def _post(path: str, body: bytes, extra: str = "") -> bytes:
    head = f"POST {path} HTTP/1.1\nHost: x\nContent-Type: application/json\n{extra}"
    if "Content-Length" not in extra and "Transfer-Encoding" not in extra:
        head += f"Content-Length: {len(body)}\n"
    return _request(head, body)


def _exchange(emu: Emulator, raw: bytes, timeout: float = 10.0) -> tuple[int, dict[str, str], Any]:
    """Send raw bytes, read one whole HTTP response (status, lower-cased headers, JSON body)."""
    with socket.create_connection((emu.host, emu.port), timeout=timeout) as sock:
        sock.sendall(raw)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed without an answer (got {data!r})"
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers["content-length"])
        while len(rest) < length:
            chunk = sock.recv(65536)
            assert chunk, "connection closed mid-body"
            rest += chunk
    return status, headers, json.loads(rest[:length])


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator(profiles=TEST_PROFILES, idle_timeout=1.0) as emulator:
        yield emulator


def _still_serves(emu: Emulator) -> None:
    out = make_client(emu.url).converse(modelId="test.fast", messages=MSGS)
    assert out["stopReason"] == "end_turn"
    assert emu.errors == []


def _assert_validation(answer: tuple[int, dict[str, str], Any], *words: str) -> None:
    status, headers, body = answer
    assert status == 400, body
    assert headers["x-amzn-errortype"].startswith("ValidationException:")
    for word in words:
        assert word in body["message"], body["message"]


MALFORMED_HTTP = {
    "content-length abc": (_post(PATH, b"{}", "Content-Length: abc\n"), "Content-Length"),
    "content-length -5": (_post(PATH, b"{}", "Content-Length: -5\n"), "Content-Length"),
    "content-length huge": (_post(PATH, b"", "Content-Length: 99999999999\n"), "limit"),
    "two content-lengths": (
        _post(PATH, b"{}", "Content-Length: 2\nContent-Length: 3\n"),
        "conflicting Content-Length",
    ),
    "bad chunk size": (
        _post(PATH, b"zz\r\n{}\r\n0\r\n\r\n", "Transfer-Encoding: chunked\n"),
        "chunk size",
    ),
    "chunk without CRLF": (
        _post(PATH, b"2\r\n{}XX0\r\n\r\n", "Transfer-Encoding: chunked\n"),
        "CRLF",
    ),
    "unknown transfer-encoding": (
        _post(PATH, b"{}", "Transfer-Encoding: gzip\n"),
        "Transfer-Encoding",
    ),
    "bad request line": (b"HELLO\r\n\r\n", "Malformed HTTP request"),
    "bad http version": (b"GET / HTTP/9\r\n\r\n", "Malformed HTTP request"),
    "header line too long": (
        _request("GET / HTTP/1.1\nX-Long: " + "a" * 70000 + "\n"),
        "Malformed HTTP request",
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED_HTTP))
def test_malformed_http_is_a_400(emu: Emulator, case: str) -> None:
    raw, word = MALFORMED_HTTP[case]
    status, headers, body = _exchange(emu, raw)
    assert 400 <= status < 500, body
    assert headers["x-amzn-errortype"].startswith("ValidationException:")
    assert word in body["message"]
    _still_serves(emu)


def _converse(**fields: Any) -> dict[str, Any]:
    return {"messages": MSGS, **fields}


DEEP = b'{"messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
BAD_BODIES: dict[str, tuple[bytes, tuple[str, ...]]] = {
    "not json": (b"{nope", ("not valid JSON",)),
    "not utf-8": (b'{"messages": "\xff\xfe"}', ("UTF-8",)),
    "deeply nested": (DEEP, ("nested too deeply",)),
    "5000-digit integer": (
        b'{"messages": [], "inferenceConfig": {"maxTokens": ' + b"9" * 5000 + b"}}",
        ("not valid JSON",),
    ),
    "array body": (b"[]", ("JSON object",)),
    "performanceConfig as a string": (
        json.dumps(_converse(performanceConfig="optimized")).encode(),
        ("performanceConfig",),
    ),
    "serviceTier as a list": (
        json.dumps(_converse(serviceTier=["priority"])).encode(),
        ("serviceTier",),
    ),
    "serviceTier unknown type": (
        json.dumps(_converse(serviceTier={"type": "gold"})).encode(),
        ("serviceTier.type",),
    ),
    "inferenceConfig as a list": (
        json.dumps(_converse(inferenceConfig=[1])).encode(),
        ("inferenceConfig",),
    ),
    "maxTokens as a string": (
        json.dumps(_converse(inferenceConfig={"maxTokens": "10"})).encode(),
        ("inferenceConfig.maxTokens",),
    ),
    "temperature NaN": (
        b'{"messages": [{"role": "user", "content": [{"text": "hi"}]}],'
        b' "inferenceConfig": {"temperature": NaN}}',
        ("inferenceConfig.temperature",),
    ),
    "messages as an object": (json.dumps({"messages": {"role": "user"}}).encode(), ("messages",)),
    "message as a string": (json.dumps({"messages": ["hi"]}).encode(), ("messages.0",)),
    "content as a string": (
        json.dumps({"messages": [{"role": "user", "content": "hi"}]}).encode(),
        ("messages.0.content",),
    ),
    "content block with two members": (
        json.dumps(
            {"messages": [{"role": "user", "content": [{"text": "a", "image": {}}]}]}
        ).encode(),
        ("exactly one member",),
    ),
    "text as a number": (
        json.dumps({"messages": [{"role": "user", "content": [{"text": 5}]}]}).encode(),
        ("messages.0.content.0.text",),
    ),
    "system as a string": (json.dumps(_converse(system="be brief")).encode(), ("system",)),
    "stopSequences with an empty string": (
        json.dumps(_converse(inferenceConfig={"stopSequences": [""]})).encode(),
        ("stopSequences",),
    ),
}


@pytest.mark.parametrize("case", list(BAD_BODIES))
def test_malformed_body_is_a_validation_exception(emu: Emulator, case: str) -> None:
    body, words = BAD_BODIES[case]
    _assert_validation(_exchange(emu, _post(PATH, body)), *words)
    _still_serves(emu)


def test_a_5000_digit_attempt_is_a_validation_exception(emu: Emulator) -> None:
    raw = _post(PATH, json.dumps(_converse()).encode(), f"amz-sdk-request: attempt={'7' * 5000}\n")
    _assert_validation(_exchange(emu, raw), "amz-sdk-request", "attempt")
    _still_serves(emu)


def test_bad_invoke_headers_are_validation_exceptions(emu: Emulator) -> None:
    body = json.dumps({"inputText": "hi"}).encode()
    path = "/model/amazon.titan-text-express-v1/invoke"
    raw = _post(path, body, "X-Amzn-Bedrock-PerformanceConfig-Latency: fastest\n")
    _assert_validation(_exchange(emu, raw), "performanceConfigLatency")
    raw = _post(path, body, "X-Amzn-Bedrock-Service-Tier: gold\n")
    _assert_validation(_exchange(emu, raw), "serviceTier")
    _still_serves(emu)


def test_deeply_nested_native_body(emu: Emulator) -> None:
    raw = _post("/model/amazon.titan-text-express-v1/invoke", b"[" * 100_000 + b"]" * 100_000)
    _assert_validation(_exchange(emu, raw), "not valid JSON")


def test_idle_and_half_sent_connections_time_out(emu: Emulator) -> None:
    started = time.monotonic()
    with (
        socket.create_connection((emu.host, emu.port), timeout=10) as idle,
        socket.create_connection((emu.host, emu.port), timeout=10) as half,
    ):
        half.sendall(_post(PATH, b"{}", "Content-Length: 100\n")[:-2])  # promises 100 bytes
        assert idle.recv(1) == b""  # closed by the server after idle_timeout
        assert half.recv(1) == b""
    assert time.monotonic() - started < 8  # 1 s timeout; wide margin for a busy machine
    _still_serves(emu)


def test_many_pending_connections_are_all_answered(emu: Emulator) -> None:
    # The backlog holds a burst: open many connections before any request is sent.
    socks = [socket.create_connection((emu.host, emu.port), timeout=30) for _ in range(300)]
    try:
        for sock in socks:
            sock.sendall(_post("/model/test.fast/count-tokens", b'{"input": {}}'))
        for sock in socks:
            assert sock.recv(12).startswith(b"HTTP/1.1 400")
    finally:
        for sock in socks:
            sock.close()
    _still_serves(emu)


def test_idle_timeout_is_validated() -> None:
    with pytest.raises(ValueError, match="idle_timeout"):
        Emulator(idle_timeout=float("inf"))
    with pytest.raises(ValueError, match="port"):
        Emulator(port=99999)
