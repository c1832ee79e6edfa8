#!/usr/bin/env python3
"""What one regression gate costs in dollars, at the shipped list prices, against the emulator.

For each base model below, a fine-tune billed as its base (a custom model priced with
``like``) is gated against it with the default ``bedrock_regression`` marker on two support
prompts (ConverseStream) behind a 400-token system prompt, answers of about 150 tokens.
Nothing changed between them, so this is what a passing gate costs; the emulator decides
the token counts
(its answers, Bedrock's list prices), the plugin's own gate code draws the pairs and prices
every call, exactly as in a pytest run.

Prints per base: mean pairs (the warm-up included), invocations, input and output tokens, the
dollars of one gate and of a 20-test release suite that gates every test on its own.

    python3 benchmarks/gate_cost.py            # about a minute on 2 cores
    python3 benchmarks/gate_cost.py --runs 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import boto3
from botocore.config import Config

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pytest_bedrock_latency.emulator import Emulator
from pytest_bedrock_latency.handle import ModelHandle
from pytest_bedrock_latency.instrument import Instrumentation
from pytest_bedrock_latency.markers import RegressionGate
from pytest_bedrock_latency.prices import format_usd, load_prices
from pytest_bedrock_latency.regression import GateRun, LiveBase, Request
from pytest_bedrock_latency.results import Spend, total_cost

CANDIDATE = "arn:aws:bedrock:us-east-1:123456789012:custom-model/support-v3"
BASES = (
    "amazon.nova-micro-v1:0",
    "amazon.nova-lite-v1:0",
    "anthropic.claude-3-haiku-20240307-v1:0",
    "meta.llama3-1-8b-instruct-v1:0",
    "anthropic.claude-3-5-sonnet-20241022-v2:0",
    "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
)
SYSTEM = "You are the support assistant of an online shop. " * 40  # about 400 tokens
PROMPTS = ("How do I reset my password?", "Can I return an item after 30 days?")


def profiles() -> dict[str, object]:
    timing = {"ttft_ms": 30, "ms_per_token": 1.0, "jitter": 0.1, "answer_tokens": 150}
    models: dict[str, object] = {base: {} for base in BASES}
    models[CANDIDATE] = {}
    return {
        "defaults": {**timing, "family": "titan", "answer_tokens_spread": 0.15, "seed": 5},
        "models": models,
    }


def gate_once(client: object, instrumentation: Instrumentation, base: str) -> Spend:
    handle = ModelHandle(CANDIDATE, client, instrumentation)
    requests = [
        Request(
            f"prompt-{i}",
            "ConverseStream",
            {
                "system": [{"text": SYSTEM}],
                "messages": [{"role": "user", "content": [{"text": prompt}]}],
            },
        )
        for i, prompt in enumerate(PROMPTS)
    ]
    runner = GateRun(
        RegressionGate(),
        budget=40,
        policy="strict",
        concurrency=4,
        candidate=handle,
        base=LiveBase(handle.with_model(base), "benchmark"),
    )
    runner.run(requests)
    total = Spend()
    for spend in Spend.of(runner.generations).values():
        total = total + spend
    return total


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    shipped = load_prices()
    print(f"prices: shipped table as of {shipped.as_of}; {args.runs} gates per base model")
    print(
        f"{'base model':<50} {'pairs':>6} {'calls':>6} {'in tok':>8} {'out tok':>8} "
        f"{'one gate':>10} {'20 gates':>10}"
    )
    with Emulator(profiles=profiles()) as emulator:
        client = boto3.client(
            "bedrock-runtime",
            endpoint_url=emulator.url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(max_pool_connections=20, retries={"mode": "standard"}),
        )
        for base in BASES:
            base_key = shipped.lookup(base)
            assert base_key is not None, base
            # The fine-tune is billed as its base model (on-demand custom model deployment).
            prices = load_prices({"models": {CANDIDATE: {"like": base_key.key}}})
            instrumentation = Instrumentation()
            instrumentation.pricing = prices.coster
            spends = [gate_once(client, instrumentation, base) for _ in range(args.runs)]
            costs = [total_cost({"all": s}) or 0.0 for s in spends]
            calls = statistics.mean(s.calls for s in spends)
            print(
                f"{base:<50} {calls / 2:>6.1f} {calls:>6.1f} "
                f"{statistics.mean(s.input_tokens for s in spends):>8.0f} "
                f"{statistics.mean(s.output_tokens for s in spends):>8.0f} "
                f"{format_usd(statistics.mean(costs)):>10} "
                f"{format_usd(20 * statistics.mean(costs)):>10}"
            )


if __name__ == "__main__":
    main()
