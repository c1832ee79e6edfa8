"""What the measuring proxy adds: TTFT and ms/token through it against direct, interleaved.

One emulator (200 ms TTFT, 10 ms per token, 40 tokens, no jitter) and one measuring proxy in
front of it; a boto3 client for each. The runs alternate - direct, proxied, direct, ... with
the order swapped every pair - so machine load hits both sides alike. TTFT is measured on
the client from before the call to the first contentBlockDelta, ms/token as (last delta -
first delta) / (tokens - 1). Goal: at most 1 ms added TTFT and ms/token within 1%.

Run: ``python3 benchmarks/proxy_overhead.py [pairs]`` (default 40 pairs, about 40 s).
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Any

import boto3
from botocore.config import Config

from pytest_bedrock_latency.emulator import Emulator
from pytest_bedrock_latency.emulator.proxy import Proxy

MODEL = "bench.model-v1"
TTFT_MS, MS_PER_TOKEN, TOKENS = 200.0, 10.0, 40
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


def client(url: str) -> Any:
    return boto3.client(
        "bedrock-runtime",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
        config=Config(retries={"max_attempts": 1}),
    )


def one_stream(rt: Any, i: int) -> tuple[float, float]:
    messages = [{"role": "user", "content": [{"text": f"benchmark question {i}"}]}]
    start = time.perf_counter()
    response = rt.converse_stream(modelId=MODEL, messages=messages)
    stamps = [time.perf_counter() for event in response["stream"] if "contentBlockDelta" in event]
    ttft = (stamps[0] - start) * 1000.0
    speed = (stamps[-1] - stamps[0]) * 1000.0 / (len(stamps) - 1)
    return ttft, speed


def main(pairs: int) -> None:
    with Emulator(profiles={"models": PROFILE}) as emulator, Proxy(emulator.url) as proxy:
        direct, proxied = client(emulator.url), client(proxy.url)
        one_stream(direct, -1), one_stream(proxied, -2)  # connections and imports warm
        figures: dict[str, list[tuple[float, float]]] = {"direct": [], "proxy": []}
        for i in range(pairs):
            order = [("direct", direct), ("proxy", proxied)]
            for name, rt in order if i % 2 == 0 else reversed(order):
                figures[name].append(one_stream(rt, i))
        measured = statistics.median(
            r.generation().ttft_ms or 0.0 for r in proxy.records if r.complete
        )
    ttft = {k: statistics.median(t for t, _ in v) for k, v in figures.items()}
    speed = {k: statistics.median(s for _, s in v) for k, v in figures.items()}
    print(f"{pairs} interleaved pairs, profile {TTFT_MS:g} ms TTFT, {MS_PER_TOKEN:g} ms/token")
    print(f"{'':8}{'TTFT median':>14}{'ms/token median':>18}")
    for name in ("direct", "proxy"):
        print(f"{name:8}{ttft[name]:>11.2f} ms{speed[name]:>18.3f}")
    added = ttft["proxy"] - ttft["direct"]
    ratio = speed["proxy"] / speed["direct"] - 1
    print(f"proxy adds {added:+.2f} ms TTFT (goal <= 1 ms), ms/token {ratio:+.2%} (goal within 1%)")
    print(f"the proxy's own TTFT figure (request received -> first delta): {measured:.2f} ms")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 40)
