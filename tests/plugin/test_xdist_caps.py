"""``--bedrock-max-calls`` and ``--bedrock-max-cost`` cap the whole session under pytest-xdist.

``-n 2 --dist loadfile`` sends each of two test files to its own worker; the workers count
in one ledger, so the caps hold for the two together, not for each. Every call here has a
known price (a fixed answer length, only output tokens priced), and the caps are set where
the outcome does not depend on which worker gets there first.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # the fixture's class, from tests/conftest.py
    from conftest import BedrockPytester

pytest.importorskip("xdist")

#: In the suite's profiles (tests/conftest.py), every answer is 20 tokens, in both models.
MODEL = "amazon.nova-lite-v1:0"
BASE = "amazon.titan-text-express-v1"

#: $0.05 per 1,000 output tokens and input free: every call costs 20 * 0.05 / 1000 = $0.001.
OUTPUT_PER_1K = 0.05
PRICES = "".join(
    f'[models."{model}"]\ninput_per_1k = 0\noutput_per_1k = {OUTPUT_PER_1K}\n'
    for model in (MODEL, BASE)
)
CALL_USD = 20 * OUTPUT_PER_1K / 1000

#: Four tests of one call each; a file per test tells the worker that ran it and the
#: ledger the controller handed that worker.
CALLS = """
import os
from pathlib import Path

import pytest


@pytest.mark.parametrize("n", range(4))
def test_call(bedrock_model, n, request):
    Path("workers").mkdir(exist_ok=True)
    ledger = request.config.workerinput.get("bedrock_latency_caps", "-")
    Path("workers", f"{__name__}-{n}").write_text(os.environ["PYTEST_XDIST_WORKER"] + " " + ledger)
    bedrock_model.converse(f"Question {n} from {__name__}: where is my parcel?")
"""

#: A gate far from deciding: its first look needs the warm-up and 6 more pairs.
GATE = """
import pytest


@pytest.mark.bedrock_regression(max_slowdown=10, max_ttft_slowdown=10, max_verbosity=10)
def test_gate(bedrock_model):
    bedrock_model.converse("How do I reset my password? (from {name})")
"""


@pytest.fixture
def suite(bedrock_pytester: BedrockPytester) -> BedrockPytester:
    bedrock_pytester.pytester.makefile(".toml", prices=PRICES)
    return bedrock_pytester


def run(suite: BedrockPytester, *args: str) -> pytest.RunResult:
    return suite.run(
        "-n", "2", "--dist", "loadfile", "--bedrock-prices", "prices.toml",
        "--bedrock-report", "r.json", *args, model=MODEL,
    )  # fmt: skip


def calls_made(doc: dict[str, Any]) -> int:
    return sum(spend["calls"] for spend in doc["spend"].values())


def seen(suite: BedrockPytester) -> set[tuple[str, str]]:
    """(worker, ledger path) of every test that ran."""
    lines = [path.read_text().split(" ", 1) for path in Path(suite.path, "workers").iterdir()]
    return {(worker, ledger) for worker, ledger in lines}


def workers(suite: BedrockPytester) -> set[str]:
    return {worker for worker, _ in seen(suite)}


def test_the_caps_are_the_sessions_across_workers_and_costs_travel_to_the_controller(
    suite: BedrockPytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    suite.makepyfile(test_a=CALLS, test_b=CALLS)
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))  # where the controller makes it
    # The cost cap is passed by the third call, two before the call cap is reached.
    result = run(suite, "--bedrock-max-calls", "5", "--bedrock-max-cost", "0.0025")
    ledgers = {ledger for _, ledger in seen(suite)}
    assert workers(suite) == {"gw0", "gw1"}  # both workers called, into one ledger
    assert len(ledgers) == 1 and Path(ledgers.pop()).parent.parent == temporary
    assert list(temporary.iterdir()) == []  # removed when the session ended
    # Each worker alone would have made all 4 calls; the 3 refused are the call cap's: the
    # cost cap counts the tests' calls, never refuses them.
    result.assert_outcomes(passed=5, failed=3)
    # The failures' own lines ("E   ..."): the short summary repeats them, cut to the terminal
    # width unless CI is set.
    refused = [line for line in result.outlines if line.startswith("E ")]
    assert len(refused) == 3, result.outlines
    assert all("--bedrock-max-calls 5 reached" in line for line in refused), refused
    result.stdout.fnmatch_lines(
        ["E   *CallCapReached: --bedrock-max-calls 5 reached: the plugin makes no more*"]
    )
    said = [line for line in result.outlines if "spend passed --bedrock-max-cost $0.0025" in line]
    assert len(said) == 1, result.outlines  # not once per worker
    doc = suite.json("r.json")
    assert calls_made(doc) == 5
    # Each test's calls, priced on its worker, reach the controller's report with their
    # tokens; the totals add them up.
    calls = [call for test in doc["tests"] for call in test["calls"]]
    assert len(calls) == 5 and all(call["input_tokens"] > 0 for call in calls)
    for test in doc["tests"]:
        assert test["cost_usd"] == pytest.approx(
            sum(call["output_tokens"] for call in test["calls"]) * OUTPUT_PER_1K / 1000,
            rel=1e-9,
        )
    assert doc["spend"][MODEL]["input_tokens"] == sum(call["input_tokens"] for call in calls)
    assert doc["cost_usd"] == pytest.approx(5 * CALL_USD)
    spend_line = next(line for line in result.outlines if line.startswith("Bedrock spend: "))
    assert " — $0.005 total" in spend_line, spend_line


def test_the_cost_cap_is_the_sessions_across_workers(suite: BedrockPytester) -> None:
    suite.makepyfile(
        test_a=GATE.replace("{name}", "a"),
        test_b=GATE.replace("{name}", "b"),
    )
    # The two test bodies ($0.002) and 4 pairs of 2 calls ($0.008), whichever worker draws
    # them: a gate stops when the next pair ($0.002) would pass $0.01, and the spend reaches
    # $0.009 at the least before a gate is refused, so 4 pairs are drawn in every order.
    result = run(suite, "--bedrock-baseline", BASE, "--bedrock-max-cost", "0.01")
    # Which gate passes (marginal) and which fails (too few pairs) depends on the order.
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) + outcomes.get("failed", 0) == 2
    doc = suite.json("r.json")
    gates = [test["regression"] for test in doc["tests"]]
    assert all(g["cost_budget_exhausted"] for g in gates)
    assert sum(len(g["pairs"]) + g["warmup_pairs"] for g in gates) == 4
    assert calls_made(doc) == 10  # each worker alone would have drawn 4 pairs: 18 calls
    assert doc["cost_usd"] == pytest.approx(10 * CALL_USD)
