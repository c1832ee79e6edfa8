#!/usr/bin/env python3
"""How often the regression gate is right, and what it costs, against the emulator.

A release suite of 20 prompts, gated as one pooled group (``bedrock_regression[NAME]``:
pairs drawn over all 20 prompts, one verdict, budget 40 pairs), 20 times for each of four
candidates against one base model:

* ``same``          identical profile: must pass;
* ``slow``          +30% ms/token: must fail;
* ``verbose``       1.5x the output tokens: must fail;
* ``concentrated``  2 of the 20 prompts answer 4x longer (+30% mean tokens): must fail;

and prints how often it is right and the mean Bedrock invocations per verdict, next to the
same suite gated test by test (20 gates, each on its own prompt, sharing the session's
error rate; for ``same`` only unless ``--per-test-all``: they take 10x the calls). Everything runs in one process against one embedded emulator, through the
plugin's own gate code (``GateRun``, as the group's item and each test's gate use it).

    python3 benchmarks/gate_end_to_end.py            # a few minutes on 2 cores
    python3 benchmarks/gate_end_to_end.py --runs 5   # quicker look
    python3 benchmarks/gate_end_to_end.py --cases same slow
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
from pytest_bedrock_latency.emulator.textgen import derive_rng
from pytest_bedrock_latency.handle import ModelHandle
from pytest_bedrock_latency.instrument import Instrumentation
from pytest_bedrock_latency.markers import RegressionGate
from pytest_bedrock_latency.regression import GateRun, LiveBase, Request

BASE = "base-model"
PROMPTS = tuple(f"Support question {i}: how do I change setting {i}?" for i in range(20))
LONG_RATE, LONG_FACTOR = 0.1, 4.0


def _seed_with_two_long_prompts() -> int:
    """A profile seed for which exactly 2 of the 20 prompts are the long ones."""
    for seed in range(1000):
        hits = sum(derive_rng("long-answer", seed, p).random() < LONG_RATE for p in PROMPTS)
        if hits == 2:
            return seed
    raise AssertionError("no seed gives 2 long prompts")  # pragma: no cover


SEED = _seed_with_two_long_prompts()
PROFILES = {
    "defaults": {
        "family": "titan",
        "ttft_ms": 20,
        "ms_per_token": 2.0,
        "jitter": 0.2,
        "answer_tokens": 40,
        "prompt_spread": 0.0,  # equal prompt lengths: 2 prompts x4 is exactly +30% tokens
        "answer_tokens_spread": 0.15,
        "outlier_rate": 0.03,
        "outlier_factor": 3,
        "seed": SEED,
    },
    "models": {
        BASE: {},
        "same": {"like": BASE},
        "slow": {"like": BASE, "ms_per_token": 2.6},
        "verbose": {"like": BASE, "answer_tokens": 60},
        "concentrated": {
            "like": BASE,
            "long_answer_rate": LONG_RATE,
            "long_answer_factor": LONG_FACTOR,
        },
    },
}
EXPECTED = {"same": "pass", "slow": "fail", "verbose": "fail", "concentrated": "fail"}


def _requests(prompts: tuple[str, ...]) -> list[Request]:
    return [
        Request(
            f"prompt-{PROMPTS.index(p)}",
            "ConverseStream",
            {"messages": [{"role": "user", "content": [{"text": p}]}]},
        )
        for p in prompts
    ]


def pooled(client: object, instrumentation: Instrumentation, candidate: str) -> tuple[bool, int]:
    """One pooled verdict over the 20 prompts: (failed, invocations)."""
    handle = ModelHandle(candidate, client, instrumentation)
    gate = GateRun(
        RegressionGate(group="release"),
        budget=40,
        policy="strict",
        concurrency=1,
        candidate=handle,
        base=LiveBase(handle.with_model(BASE), "benchmark"),
        gates=1,
    )
    result = gate.run(_requests(PROMPTS))
    return result.failed, len(gate.generations)


def per_test(client: object, instrumentation: Instrumentation, candidate: str) -> tuple[bool, int]:
    """20 gates, one per prompt, sharing the session's error rate: (any failed, invocations)."""
    handle = ModelHandle(candidate, client, instrumentation)
    failed, calls = False, 0
    for prompt in PROMPTS:
        gate = GateRun(
            RegressionGate(),
            budget=40,
            policy="strict",
            concurrency=1,
            candidate=handle,
            base=LiveBase(handle.with_model(BASE), "benchmark"),
            gates=len(PROMPTS),
        )
        failed |= gate.run(_requests((prompt,))).failed
        calls += len(gate.generations)
    return failed, calls


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--per-test-runs", type=int, default=2)
    parser.add_argument(
        "--per-test-all",
        action="store_true",
        help="20 per-test gates for every case, not only 'same'",
    )
    parser.add_argument(
        "--cases",
        nargs="+",
        choices=tuple(EXPECTED),
        default=tuple(EXPECTED),
        help="only these candidates (default: all four)",
    )
    args = parser.parse_args()
    instrumentation = Instrumentation()
    with Emulator(profiles=PROFILES) as emulator:
        client = boto3.client(
            "bedrock-runtime",
            endpoint_url=emulator.url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(retries={"mode": "standard", "total_max_attempts": 5}),
        )
        print(
            f"20 prompts, default bedrock_regression tolerances, budget 40 pairs, concurrency 1; "
            f"pooled: {args.runs} runs, 20 per-test gates: {args.per_test_runs} runs per case"
        )
        print(
            f"{'candidate':<13} {'expected':<9} {'pooled right':>12} {'invocations':>12} "
            f"{'per-test right':>15} {'invocations':>12}"
        )
        for candidate in args.cases:
            expected = EXPECTED[candidate]
            runs = [pooled(client, instrumentation, candidate) for _ in range(args.runs)]
            right = sum(1 for failed, _ in runs if failed == (expected == "fail"))
            calls = statistics.mean(n for _, n in runs)
            line = f"{candidate:<13} {expected:<9} {right:>7}/{args.runs:<4} {calls:>12.1f}"
            if args.per_test_runs and (candidate == "same" or args.per_test_all):
                singles = [
                    per_test(client, instrumentation, candidate) for _ in range(args.per_test_runs)
                ]
                s_right = sum(1 for failed, _ in singles if failed == (expected == "fail"))
                s_calls = statistics.mean(n for _, n in singles)
                line += f" {s_right:>10}/{args.per_test_runs:<4} {s_calls:>12.1f}"
            print(line, flush=True)


if __name__ == "__main__":
    main()
