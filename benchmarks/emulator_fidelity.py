"""Timing fidelity of the embedded Bedrock Runtime emulator, as a boto3 client observes it.

Starts an Emulator with a 200 ms TTFT / 20 ms per token / 50-token profile, runs 1, 8 and 32
concurrent ConverseStream streams (one thread and one boto3 client each), and compares the
client-side TTFT (request sent, at botocore's before-send, to first contentBlockDelta) and ms/token ((last delta - first delta)/(tokens-1))
with what the profile emits. Then it searches the largest concurrency whose median ms/token
stays within 5 % of the profile. Run: ``python3 benchmarks/emulator_fidelity.py``.
"""

from __future__ import annotations

import gc
import statistics
import sys
import threading
import time
from typing import Any

import boto3
from botocore.config import Config

from pytest_bedrock_latency.emulator import Emulator

MODEL = "bench.model-v1"
TTFT_MS = 200.0
MS_PER_TOKEN = 20.0
TOKENS = 50
PROFILE = {
    MODEL: {
        "family": "nova",
        "ttft_ms": TTFT_MS,
        "ms_per_token": MS_PER_TOKEN,
        "answer_tokens": TOKENS,
        "prompt_spread": 0.0,
        "answer_tokens_spread": 0.0,
        "jitter": 0.0,
    }
}


def _client(url: str) -> Any:
    return boto3.client(
        "bedrock-runtime",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"total_max_attempts": 1}, max_pool_connections=4),
    )


def _one_stream(client: Any, prompt: str) -> tuple[float, float]:
    """(ttft_ms, ms_per_token) measured on the client for one ConverseStream."""
    sent: list[float] = []

    def on_send(**kwargs: Any) -> None:  # "request sent": after serialising and signing
        sent.append(time.perf_counter())

    client.meta.events.register("before-send.bedrock-runtime.ConverseStream", on_send)
    resp = client.converse_stream(
        modelId=MODEL, messages=[{"role": "user", "content": [{"text": prompt}]}]
    )
    client.meta.events.unregister("before-send.bedrock-runtime.ConverseStream", on_send)
    start = sent[-1]
    stamps: list[float] = []
    tokens = 0
    for event in resp["stream"]:
        if "contentBlockDelta" in event:
            stamps.append(time.perf_counter())
        elif "metadata" in event:
            tokens = event["metadata"]["usage"]["outputTokens"]
    ttft = (stamps[0] - start) * 1000.0
    return ttft, (stamps[-1] - stamps[0]) * 1000.0 / (tokens - 1)


def run(url: str, concurrency: int, rounds: int = 1) -> tuple[list[float], list[float]]:
    """Run ``concurrency`` simultaneous streams ``rounds`` times; return TTFTs and ms/token."""
    clients = [_client(url) for _ in range(concurrency)]
    for c in clients:  # warm up: connection pools and botocore's lazy loaders
        c.count_tokens(
            modelId=MODEL,
            input={"converse": {"messages": [{"role": "user", "content": [{"text": "warm up"}]}]}},
        )
    ttfts: list[float] = []
    tpots: list[float] = []
    lock = threading.Lock()

    def worker(i: int, r: int) -> None:
        ttft, tpot = _one_stream(clients[i], f"benchmark prompt {r} {i}")
        with lock:
            ttfts.append(ttft)
            tpots.append(tpot)

    for r in range(rounds):
        threads = [threading.Thread(target=worker, args=(i, r)) for i in range(concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    return ttfts, tpots


def p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10)[-1] if len(values) > 1 else values[0]


def main() -> int:
    # Client and server share one process here; a full GC pass would stall both.
    gc.collect()
    gc.disable()
    with Emulator(profiles=PROFILE) as emu:
        print(
            f"Emulator fidelity: profile ttft_ms={TTFT_MS:g}, ms_per_token={MS_PER_TOKEN:g}, "
            f"answer_tokens={TOKENS}, jitter=0 (ConverseStream, boto3, "
            f"{sys.platform}, Python {sys.version.split()[0]})"
        )
        header = (
            f"{'streams':>7} | {'n':>3} | {'TTFT emit':>9} | {'TTFT med':>8} | {'TTFT p90':>8} |"
            f" {'err ms':>6} | {'ms/tok emit':>11} | {'ms/tok med':>10} | {'ms/tok p90':>10} |"
            f" {'err med':>7}"
        )
        print(header)
        print("-" * len(header))
        for conc, rounds in ((1, 5), (8, 2), (32, 1)):
            ttfts, tpots = run(emu.url, conc, rounds)
            t_med, m_med = statistics.median(ttfts), statistics.median(tpots)
            print(
                f"{conc:>7} | {len(ttfts):>3} | {TTFT_MS:>9.1f} | {t_med:>8.1f} | {p90(ttfts):>8.1f} |"
                f" {t_med - TTFT_MS:>+6.1f} | {MS_PER_TOKEN:>11.2f} |"
                f" {m_med:>10.2f} | {p90(tpots):>10.2f} |"
                f" {100 * (m_med - MS_PER_TOKEN) / MS_PER_TOKEN:>6.1f}%"
            )
        best = 0
        tried = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
        for conc in tried:
            ttfts, tpots = run(emu.url, conc)
            err = abs(statistics.median(tpots) - MS_PER_TOKEN) / MS_PER_TOKEN
            print(
                f"  search: {conc:>3} streams -> median ms/token {statistics.median(tpots):.2f} "
                f"({100 * err:.1f}% off), median TTFT {statistics.median(ttfts):.1f} ms"
            )
            if err > 0.05:
                break
            best = conc
        at_least = " (the largest tried)" if best == tried[-1] else ""
        print(f"Largest concurrency holding median ms/token within 5%: {best}{at_least}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
