#!/usr/bin/env python3
"""How often the regression gate is right, and what it costs, against the emulator.

Runs the ``bedrock_regression`` gate (default marker: x1.10 ms/token, x1.15 output tokens,
x1.25 TTFT, budget 40) 20 times for each of three candidates against one base model:

* ``same``    identical profile: must pass;
* ``slow``    +30% ms/token: must fail on ms/token;
* ``verbose`` 1.5x the output tokens: must fail on output tokens;

and prints the pass/fail counts, the mean invocations per gate, then the wall time of one
gate at concurrency 1, 4 and 8. Everything runs in one process against one embedded
emulator, through the plugin's own gate code (no pytest run per gate).

    python3 benchmarks/gate_end_to_end.py            # about 3 minutes on 2 cores
    python3 benchmarks/gate_end_to_end.py --runs 5   # quicker look
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import boto3
from botocore.config import Config

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pytest_bedrock_latency.emulator import Emulator
from pytest_bedrock_latency.handle import ModelHandle
from pytest_bedrock_latency.instrument import Instrumentation
from pytest_bedrock_latency.markers import RegressionGate
from pytest_bedrock_latency.regression import GateRun, LiveBase, Request

BASE = "base-model"
PROFILES = {
    "defaults": {
        "family": "titan",
        "ttft_ms": 40,
        "ms_per_token": 2.0,
        "jitter": 0.25,
        "answer_tokens": 60,
        "prompt_spread": 0.4,
        "answer_tokens_spread": 0.2,
        "outlier_rate": 0.03,
        "outlier_factor": 3,
        "seed": 11,
    },
    "models": {
        BASE: {},
        "same": {"like": BASE},
        "slow": {"like": BASE, "ms_per_token": 2.6},
        "verbose": {"like": BASE, "answer_tokens": 90},
    },
}
EXPECTED = {"same": "pass", "slow": "fail", "verbose": "fail"}
PROMPTS = ("How do I reset my password?", "Can I return an item after 30 days?")


def run_gate(
    client: object, instrumentation: Instrumentation, candidate: str, concurrency: int
) -> tuple[bool, int, float]:
    handle = ModelHandle(candidate, client, instrumentation)
    requests = [
        Request(
            f"prompt-{i}",
            "ConverseStream",
            {"messages": [{"role": "user", "content": [{"text": p}]}]},
        )
        for i, p in enumerate(PROMPTS)
    ]
    gate = GateRun(
        RegressionGate(),
        budget=40,
        policy="strict",
        concurrency=concurrency,
        candidate=handle,
        base=LiveBase(handle.with_model(BASE), "benchmark"),
    )
    started = time.perf_counter()
    result = gate.run(requests)
    return result.failed, len(gate.generations), time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    instrumentation = Instrumentation()
    with Emulator(profiles=PROFILES) as emulator:
        client = boto3.client(
            "bedrock-runtime",
            endpoint_url=emulator.url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(
                max_pool_connections=20, retries={"mode": "standard", "total_max_attempts": 5}
            ),
        )
        print(
            f"gate: default bedrock_regression, budget 40, concurrency 4, {args.runs} runs per candidate"
        )
        print(
            f"{'candidate':<10} {'expected':<9} {'right':>7} {'mean invocations':>17} {'mean wall s':>12}"
        )
        for candidate, expected in EXPECTED.items():
            outcomes = [run_gate(client, instrumentation, candidate, 4) for _ in range(args.runs)]
            right = sum(1 for failed, _, _ in outcomes if failed == (expected == "fail"))
            calls = statistics.mean(n for _, n, _ in outcomes)
            wall = statistics.mean(w for _, _, w in outcomes)
            print(
                f"{candidate:<10} {expected:<9} {right:>3}/{args.runs:<3} {calls:>17.1f} {wall:>12.2f}"
            )
        print()
        print("wall time of one gate (candidate 'same', median of 3 runs):")
        for concurrency in (1, 4, 8):
            walls = [run_gate(client, instrumentation, "same", concurrency)[2] for _ in range(3)]
            print(f"  concurrency {concurrency}: {statistics.median(walls):.2f} s")


if __name__ == "__main__":
    main()
