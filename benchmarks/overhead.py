#!/usr/bin/env python3
"""What the plugin costs: measurement accuracy and the price of being installed.

(a) ms/token as the plugin measures it (``ModelHandle.converse``, through the botocore
    patch and the timed event stream) against a hand-written ``perf_counter`` loop over a
    raw boto3 ``converse_stream`` of the same emulator profile, interleaved in one run.
    Target: medians within 1%.
(b) Wall time of 2,000 trivial tests without markers, plugin on versus
    ``-p no:bedrock_latency`` (several alternating runs, best of each). Target: ratio <= 1.05.

    python3 benchmarks/overhead.py     # about a minute on 2 cores
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pytest_bedrock_latency.emulator import Emulator
from pytest_bedrock_latency.handle import ModelHandle
from pytest_bedrock_latency.instrument import Instrumentation

MODEL = "bench-model"
PROFILE = {
    "models": {
        MODEL: {
            "family": "titan",
            "ttft_ms": 100,
            "ms_per_token": 20,
            "answer_tokens": 50,
            "prompt_spread": 0,
            "answer_tokens_spread": 0,
            "jitter": 0,
        }
    }
}
MESSAGES = [{"role": "user", "content": [{"text": "How do I reset my password?"}]}]


def raw_ms_per_token(client: object) -> float:
    """The reference: perf_counter around a raw boto3 stream, same definition as the plugin."""
    sent = time.perf_counter()
    response = client.converse_stream(modelId=MODEL, messages=MESSAGES)  # type: ignore[attr-defined]
    first = last = None
    tokens = 0
    for event in response["stream"]:
        now = time.perf_counter()
        if first is None and "contentBlockDelta" in event:
            first = now
        if "metadata" in event:
            tokens = event["metadata"]["usage"]["outputTokens"]
        last = now
    assert first is not None and last is not None and sent < first
    return (last - first) * 1000 / (tokens - 1)


def accuracy(rounds: int = 15) -> None:
    with Emulator(profiles=PROFILE) as emulator:
        client = boto3.client(
            "bedrock-runtime",
            endpoint_url=emulator.url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        handle = ModelHandle(MODEL, client, Instrumentation())
        raw, plugin = [], []
        raw_ms_per_token(client)  # warm-up: connection, imports
        for _ in range(rounds):
            raw.append(raw_ms_per_token(client))
            measured = handle.converse(MESSAGES).ms_per_token
            assert measured is not None
            plugin.append(measured)
    r, p = statistics.median(raw), statistics.median(plugin)
    print(
        "(a) ms/token, profile 20.0 ms/token, 50 tokens, no jitter, "
        f"{rounds} interleaved calls each"
    )
    print(f"    raw boto3 perf_counter loop : median {r:.3f} ms")
    print(f"    plugin (ModelHandle)        : median {p:.3f} ms")
    print(f"    difference                  : {100 * (p - r) / r:+.2f}%  (target within 1%)")


def overhead(tests: int = 2000, repeats: int = 3) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder)
        (path / "test_many.py").write_text(
            "import pytest\n\n"
            f"@pytest.mark.parametrize('i', range({tests}))\n"
            "def test_trivial(i):\n    assert i >= 0\n"
        )
        (path / "pytest.ini").write_text("[pytest]\n")
        base = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_many.py"]
        variants = {"plugin on": base, "plugin off": [*base, "-p", "no:bedrock_latency"]}
        times: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(repeats):
            for name, command in variants.items():
                started = time.perf_counter()
                subprocess.run(command, cwd=path, check=True, capture_output=True)
                times[name].append(time.perf_counter() - started)
    on, off = min(times["plugin on"]), min(times["plugin off"])
    print(f"(b) {tests} trivial tests without markers, best of {repeats} alternating runs")
    print(f"    plugin on   : {on:.2f} s")
    print(f"    plugin off  : {off:.2f} s")
    print(f"    ratio       : {on / off:.3f}  (target <= 1.05)")


if __name__ == "__main__":
    accuracy()
    overhead()
