"""Pacing: deltas arrive one by one at their scheduled offsets; jitter; determinism; outliers."""

from __future__ import annotations

import gc
import itertools
import statistics
import threading
import time
from typing import Any

import pytest

from pytest_bedrock_latency.emulator import Emulator

from .conftest import MSGS, TEST_PROFILES, make_client


def timed_stream(
    client: Any, model: str, prompt: str = "timing check"
) -> tuple[float, list[float], int]:
    """(request-sent perf_counter, arrival time of each delta, outputTokens).

    The start is taken in botocore's ``before-send`` hook, i.e. after serialising and signing,
    which is how metrics.md defines "request sent".
    """
    sent: list[float] = []

    def on_send(**kwargs: Any) -> None:
        sent.append(time.perf_counter())

    client.meta.events.register("before-send.bedrock-runtime.ConverseStream", on_send)
    try:
        resp = client.converse_stream(
            modelId=model, messages=[{"role": "user", "content": [{"text": prompt}]}]
        )
        stamps: list[float] = []
        tokens = 0
        for event in resp["stream"]:
            if "contentBlockDelta" in event:
                stamps.append(time.perf_counter())
            elif "metadata" in event:
                tokens = event["metadata"]["usage"]["outputTokens"]
    finally:
        client.meta.events.unregister("before-send.bedrock-runtime.ConverseStream", on_send)
    return sent[-1], stamps, tokens


def test_deltas_arrive_at_emitted_times(emulator: Emulator, client: Any) -> None:
    client.count_tokens(modelId="timing.model", input={"converse": {"messages": MSGS}})  # warm
    start, stamps, tokens = timed_stream(client, "timing.model")
    rec = emulator.requests[-1]
    assert tokens == 25 == len(stamps) == len(rec.token_offsets_ms)
    observed = [(s - start) * 1000 for s in stamps]
    for seen, planned in zip(observed, rec.token_offsets_ms, strict=False):
        assert abs(seen - planned) < 25, (seen, planned)
    assert abs(observed[0] - 200) < 15
    gaps = [b - a for a, b in itertools.pairwise(observed)]
    assert statistics.median(gaps) == pytest.approx(20, rel=0.05)
    # Arrival is incremental, not one burst at the end.
    assert observed[-1] - observed[0] > 400


def test_concurrent_streams_keep_their_pace(emulator: Emulator) -> None:
    results: list[tuple[float, float]] = []
    lock = threading.Lock()

    clients = [make_client(emulator.url) for _ in range(8)]
    for c in clients:  # warm: botocore loads models and opens the pool lazily
        c.count_tokens(modelId="timing.model", input={"converse": {"messages": MSGS}})
    barrier = threading.Barrier(8)

    def worker(i: int) -> None:
        barrier.wait()
        start, stamps, tokens = timed_stream(clients[i], "timing.model", f"prompt {i}")
        with lock:
            results.append(
                ((stamps[0] - start) * 1000, (stamps[-1] - stamps[0]) * 1000 / (tokens - 1))
            )

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    # Client and server share this process: keep a full GC pass of the test session's
    # garbage from stalling every thread in the middle of the measurement.
    gc.collect()
    gc.disable()
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        gc.enable()
    assert len(results) == 8
    assert statistics.median(r[1] for r in results) == pytest.approx(20, rel=0.03)
    # The issue asks for 5 ms (the benchmark shows ~3 ms); allow 10 ms for a busy CI box.
    assert abs(statistics.median(r[0] for r in results) - 200) < 10


def test_jitter_is_applied(emulator: Emulator, client: Any) -> None:
    emulator.set_profile("test.fast", jitter=0.5, ms_per_token=4, answer_tokens=40)
    client.converse(modelId="test.fast", messages=MSGS)
    offsets = emulator.requests[-1].token_offsets_ms
    gaps = [b - a for a, b in itertools.pairwise(offsets)]
    assert statistics.pstdev(gaps) > 0.5
    assert statistics.mean(gaps) == pytest.approx(4, rel=0.35)
    emulator.set_profile("test.fast", jitter=0.0, ms_per_token=4, answer_tokens=40)
    client.converse(modelId="test.fast", messages=MSGS)
    flat = emulator.requests[-1].token_offsets_ms
    assert {round(b - a, 6) for a, b in itertools.pairwise(flat)} == {4.0}


def _texts(profiles: dict[str, Any], n: int = 3) -> list[tuple[str, int]]:
    with Emulator(profiles=profiles) as emu:
        client = make_client(emu.url)
        out = []
        for _ in range(n):
            resp = client.converse(modelId="test.fast", messages=MSGS)
            out.append(
                (resp["output"]["message"]["content"][0]["text"], resp["usage"]["outputTokens"])
            )
        return out


def test_determinism_same_seed_same_answers() -> None:
    profiles: dict[str, Any] = {
        "defaults": TEST_PROFILES["defaults"],
        "models": {
            "test.fast": {
                "family": "nova",
                "seed": 7,
                "answer_tokens_spread": 0.5,
                "prompt_spread": 0.5,
            }
        },
    }
    first, second = _texts(profiles), _texts(profiles)
    assert first == second
    # Samples of one prompt differ from each other (sample number feeds text and length).
    assert len({t for t, _ in first}) == 3
    assert all(len(t.split()) == n for t, n in first)
    profiles["models"]["test.fast"]["seed"] = 8
    assert [n for _, n in _texts(profiles)] != [n for _, n in first]


def test_outliers_are_slower_and_flagged(emulator: Emulator, client: Any) -> None:
    emulator.set_profile("test.fast", outlier_rate=1.0, outlier_factor=3.0)
    client.converse(modelId="test.fast", messages=MSGS)
    rec = emulator.requests[-1]
    assert rec.outlier and rec.ttft_ms == pytest.approx(60.0)
    assert rec.ms_per_token == pytest.approx(6.0)


def test_answer_length_spreads(emulator: Emulator, client: Any) -> None:
    emulator.set_profile(
        "test.fast", answer_tokens=30, answer_tokens_spread=0.3, ms_per_token=0, ttft_ms=0
    )
    lengths = {
        client.converse(modelId="test.fast", messages=MSGS)["usage"]["outputTokens"]
        for _ in range(8)
    }
    assert len(lengths) > 2
