"""How fast cancelling a blocked stream read is, with and without the plugin's measurement.

A reader thread iterates a ConverseStream whose first token is 5 s away (the embedded
emulator); after 0.3 s another thread cancels it the way pydantic-ai does
(``vars(stream)['_raw_stream'].connection.sock.shutdown()``), and the time until the reader
returns is printed, for the raw botocore stream and for the plugin's wrapper, over a few
rounds. Run: ``python benchmarks/cancel.py``.
"""

from __future__ import annotations

import os
import socket
import statistics
import threading
import time
from typing import Any

import boto3
from botocore.config import Config

from pytest_bedrock_latency.emulator import Emulator
from pytest_bedrock_latency.instrument import Instrumentation

ROUNDS = 5
PROFILES = {
    "defaults": {"jitter": 0.0, "prompt_spread": 0.0, "answer_tokens_spread": 0.0},
    "models": {"slow.model": {"family": "nova", "ttft_ms": 5000, "ms_per_token": 5}},
}
MESSAGES = [{"role": "user", "content": [{"text": "Hi"}]}]


def shutdown(stream: Any) -> None:
    vars(stream)["_raw_stream"].connection.sock.shutdown(socket.SHUT_RDWR)


def once(client: Any) -> float:
    """Seconds from the cancel to the reader thread's return."""
    stream = client.converse_stream(modelId="slow.model", messages=MESSAGES)["stream"]

    def read() -> None:
        try:
            for _ in stream:
                pass
        except Exception:  # what the cancelled read raises is the application's to handle
            pass

    reader = threading.Thread(target=read)
    reader.start()
    time.sleep(0.3)
    started = time.perf_counter()
    shutdown(stream)
    reader.join(30)
    return time.perf_counter() - started


def main() -> None:
    with Emulator(profiles=PROFILES) as emulator:
        os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench")
        client = boto3.client(
            "bedrock-runtime",
            region_name="us-east-1",
            endpoint_url=emulator.url,
            config=Config(retries={"total_max_attempts": 1}, read_timeout=60),
        )
        raw = [once(client) for _ in range(ROUNDS)]
        instrumentation = Instrumentation()
        records: list[Any] = []
        instrumentation.sink = records.append
        with instrumentation.active():
            wrapped = [once(client) for _ in range(ROUNDS)]
        states = sorted({r.state for r in records})
    print(f"cancel via vars(stream)['_raw_stream'].connection.sock.shutdown(), {ROUNDS} rounds")
    print(
        f"  without the plugin: median {statistics.median(raw) * 1000:.1f} ms, max {max(raw) * 1000:.1f} ms"
    )
    print(
        f"  with the plugin:    median {statistics.median(wrapped) * 1000:.1f} ms, "
        f"max {max(wrapped) * 1000:.1f} ms (records: {', '.join(states)})"
    )
    print("  (a 5 s first token; without the shutdown the read waits for it, or the 60 s timeout)")


if __name__ == "__main__":
    main()
