"""What a boto3 client observes from the emulator's chunking, prefill and prompt cache.

1. Chunking: a 200 ms TTFT / 20 ms per token / 40-token profile streamed with 1, 3 and 5
   tokens per delta. The client-side TTFT (botocore's before-send to the first delta) and
   ms/token ((last delta - first delta) / (tokens - 1)) should read 200 and 20 whatever the
   chunking (before issue 11, 5 tokens a delta read about 280 ms and 17 ms/token).
2. Prefill and prompt cache: 200 ms TTFT plus 100 ms per 1,000 input tokens, a system prompt
   of about 2,600 tokens behind a cachePoint, cached_prefill_factor 0.3. The first request
   writes the cache, the next ones read it: TTFT cold vs warm.
3. A streamed tool call: how long its input takes to arrive at 20 ms per token.

Run: ``python3 benchmarks/emulator_agents.py`` (about 15 seconds). Each row is the median of
five streams.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import boto3
from botocore.config import Config

from pytest_bedrock_latency.emulator import Emulator

BASE = {
    "family": "nova",
    "ttft_ms": 200.0,
    "ms_per_token": 20.0,
    "answer_tokens": 40,
    "prompt_spread": 0.0,
    "answer_tokens_spread": 0.0,
    "jitter": 0.0,
}


def client(url: str) -> Any:
    return boto3.client(
        "bedrock-runtime",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
        config=Config(retries={"total_max_attempts": 1}),
    )


def timed(rt: Any, **request: Any) -> tuple[float, float | None, dict[str, Any]]:
    """(TTFT ms, ms/token, usage) of one ConverseStream as the client sees it."""
    sent: list[float] = []

    def on_send(**_: Any) -> None:
        sent.append(time.perf_counter())

    rt.meta.events.register("before-send.bedrock-runtime.ConverseStream", on_send)
    try:
        stamps: list[float] = []
        usage: dict[str, Any] = {}
        for event in rt.converse_stream(**request)["stream"]:
            if "contentBlockDelta" in event:
                stamps.append(time.perf_counter())
            elif "metadata" in event:
                usage = event["metadata"]["usage"]
    finally:
        rt.meta.events.unregister("before-send.bedrock-runtime.ConverseStream", on_send)
    n = usage["outputTokens"]
    ttft = (stamps[0] - sent[-1]) * 1000
    tpot = (stamps[-1] - stamps[0]) * 1000 / (n - 1) if n > 1 else None
    return ttft, tpot, usage


def median_of(rt: Any, runs: int, **request: Any) -> tuple[float, float | None]:
    results = [timed(rt, **request) for _ in range(runs)]
    tpots = [r[1] for r in results if r[1] is not None]
    return statistics.median(r[0] for r in results), statistics.median(tpots) if tpots else None


def main() -> None:
    msgs = [{"role": "user", "content": [{"text": "Where is my parcel?"}]}]
    profiles = {f"chunk{k}.model": {**BASE, "tokens_per_chunk": k} for k in (1, 3, 5)}
    profiles["cache.model"] = {**BASE, "prefill_ms_per_1k_input_tokens": 100.0}
    with Emulator(profiles=profiles) as emu:
        rt = client(emu.url)
        rt.count_tokens(modelId="chunk1.model", input={"converse": {"messages": msgs}})  # warm
        print("tokens/delta | client TTFT ms | client ms/token   (profile: 200 ms, 20 ms/token)")
        for k in (1, 3, 5):
            ttft, tpot = median_of(rt, 5, modelId=f"chunk{k}.model", messages=msgs)
            print(f"{k:>12} | {ttft:>14.1f} | {tpot:>15.2f}")

        system = [
            {"text": "Our shop ships parcels within two working days. " * 250},
            {"cachePoint": {"type": "default"}},
        ]
        print()
        print("prompt cache (TTFT 200 ms + 100 ms per 1k input tokens, cached share x0.3)")
        for i in range(6):
            question = [{"role": "user", "content": [{"text": f"Question {i}: where is it?"}]}]
            ttft, _, usage = timed(rt, modelId="cache.model", system=system, messages=question)
            label = "cold (writes)" if i == 0 else "warm (reads) "
            print(
                f"  request {i + 1} {label}: TTFT {ttft:7.1f} ms  input {usage['inputTokens']:>4}"
                f"  cacheWrite {usage.get('cacheWriteInputTokens', 0):>5}"
                f"  cacheRead {usage.get('cacheReadInputTokens', 0):>5}"
            )

        schema = {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city", "days"],
        }
        tools = {
            "tools": [{"toolSpec": {"name": "weather", "inputSchema": {"json": schema}}}],
            "toolChoice": {"any": {}},
        }
        runs = [
            timed(rt, modelId="chunk1.model", messages=msgs, toolConfig=tools) for _ in range(5)
        ]
        ttft = statistics.median(r[0] for r in runs)
        tpot = statistics.median(r[1] or 0.0 for r in runs)
        usage = runs[-1][2]
        print()
        print(
            f"tool call: TTFT {ttft:.1f} ms, {usage['outputTokens']} input tokens streamed at "
            f"{tpot:.2f} ms/token"
        )


if __name__ == "__main__":
    main()
