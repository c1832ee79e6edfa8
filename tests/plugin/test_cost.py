"""What runs and gates cost, in dollars, and ``--bedrock-max-cost``: pytester runs on the emulator.

Every expected figure is computed here from the JSON report's token counts and the prices
below, written out independently of the plugin's tables.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

BASE = "amazon.titan-text-express-v1"
CUSTOM = "arn:aws:bedrock:us-east-1:123456789012:custom-model/"

#: Titan Text Express's on-demand list price (USD per 1,000 input / output tokens).
TITAN = (0.0002, 0.0006)
#: What the user's price file below says a custom model costs.
FINE_TUNE = (0.002, 0.008)

PROFILES = f"""
[defaults]
family = "titan"
ttft_ms = 15
ms_per_token = 1.0
jitter = 0.15
answer_tokens = 40
prompt_spread = 0.3
answer_tokens_spread = 0.1
seed = 3

[models."{BASE}"]

[models."{CUSTOM}same"]
like = "{BASE}"

[models."{CUSTOM}slow"]
like = "{BASE}"
ms_per_token = 3.0  # 3x: a verdict far from any tolerance
"""

PRICES = f"""
[models."arn:aws:bedrock:*:custom-model/*"]
input_per_1k = {FINE_TUNE[0]}
output_per_1k = {FINE_TUNE[1]}
"""

SUITE = """
import pytest

def test_body(bedrock_model):
    bedrock_model.converse("How do I reset my password?")
    bedrock_model.converse("Where is my parcel?", stream=False)

# Tolerances far from any effect: the verdict is not what these tests are about.
@pytest.mark.bedrock_regression(max_slowdown=10, max_ttft_slowdown=10, max_verbosity=10)
def test_gate(bedrock_model):
    bedrock_model.converse("How do I reset my password?")
"""

GATE_ONLY = """
import pytest

@pytest.mark.bedrock_regression
def test_gate(bedrock_model):
    bedrock_model.converse("How do I reset my password?")
"""


@pytest.fixture
def suite(emulator_suite: Callable[..., pytest.Pytester], clean_aws_env: None) -> pytest.Pytester:
    return emulator_suite(PROFILES, baseline=BASE, concurrency=4)


def run(suite: pytest.Pytester, candidate: str, *args: str) -> pytest.RunResult:
    return suite.runpytest("-p", "no:cacheprovider", "--bedrock-model", CUSTOM + candidate, *args)


def price_of(model_id: str) -> tuple[float, float] | None:
    if model_id == BASE:
        return TITAN
    return FINE_TUNE if model_id.startswith(CUSTOM) else None


def cost(model_id: str, input_tokens: int, output_tokens: int) -> float:
    price = price_of(model_id)
    assert price is not None
    return (input_tokens * price[0] + output_tokens * price[1]) / 1000


def spend_cost(spend: dict[str, Any]) -> float:
    return sum(cost(m, s["input_tokens"], s["output_tokens"]) for m, s in spend.items())


def dollars(text: str) -> float:
    """A printed amount such as ``$0.001234`` as a number."""
    match = re.fullmatch(r"\$([\d,]+(?:\.\d+)?)", text)
    assert match, text
    return float(match.group(1).replace(",", ""))


def row(output: str, first_cell: str) -> list[str]:
    return next(line.split() for line in output.splitlines() if line.startswith(first_cell + " "))


def test_cost_per_call_per_test_per_gate_and_in_total_is_tokens_times_prices(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    suite.makefile(".toml", prices=PRICES)
    suite.makepyfile(test_suite=SUITE)
    summary = suite.path / "step-summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    result = run(
        suite,
        "same",
        "--bedrock-prices",
        "prices.toml",
        "--bedrock-report",
        "report.json",
        "--junitxml",
        "junit.xml",
    )
    result.assert_outcomes(passed=2)
    doc = json.loads((suite.path / "report.json").read_text())
    tests = {t["nodeid"].split("::")[1]: t for t in doc["tests"]}
    body, gate = tests["test_body"], tests["test_gate"]

    for test in (body, gate):
        for call in test["calls"]:
            expected = cost(call["model_id"], call["input_tokens"], call["output_tokens"])
            assert call["cost_usd"] == pytest.approx(expected, rel=1e-9)
        # A test's cost: its own calls and its gate's, i.e. everything in its spend.
        assert test["cost_usd"] == pytest.approx(spend_cost(test["spend"]), rel=1e-9)
    calls_cost = sum(c["cost_usd"] for c in gate["calls"])
    gate_cost = gate["regression"]["cost_usd"]
    assert gate_cost == pytest.approx(spend_cost(gate["spend"]) - calls_cost, rel=1e-9)
    assert gate["spend"][BASE]["calls"] >= 6  # the warm-up and at least 5 pairs ran
    assert gate_cost > calls_cost
    total = spend_cost(doc["spend"])
    assert doc["cost_usd"] == pytest.approx(total, rel=1e-9)
    assert doc["cost_usd"] == pytest.approx(body["cost_usd"] + gate["cost_usd"], rel=1e-9)
    assert doc["unpriced_calls"] == 0

    output = result.stdout.str()
    table = output.split("bedrock latency")[1]
    # Printed to four significant digits.
    assert dollars(row(table, "test_body")[-2]) == pytest.approx(body["cost_usd"], rel=1e-3)
    assert dollars(row(table, "test_gate")[-2]) == pytest.approx(gate["cost_usd"], rel=1e-3)
    gate_row = row(table.split("bedrock_regression (candidate")[1], "test_gate")
    assert dollars(gate_row[-2]) == pytest.approx(gate_cost, rel=1e-3)
    spend_line = next(line for line in table.splitlines() if line.startswith("Bedrock spend: "))
    printed_total = re.search(r" — (\$[\d.,]+) total$", spend_line)
    assert printed_total, spend_line
    assert dollars(printed_total.group(1)) == pytest.approx(total, rel=1e-3)

    junit = ET.parse(suite.path / "junit.xml").getroot()
    properties = {
        case.get("name"): {p.get("name"): p.get("value") for p in case.iter("property")}
        for case in junit.iter("testcase")
    }
    assert float(properties["test_body"]["bedrock_cost_usd"]) == pytest.approx(
        body["cost_usd"], rel=1e-6
    )
    assert float(properties["test_gate"]["bedrock_cost_usd"]) == pytest.approx(
        gate["cost_usd"], rel=1e-6
    )
    markdown = summary.read_text()
    assert "cost (USD)" in markdown
    assert spend_line in markdown


def test_a_failing_gate_says_what_it_cost(suite: pytest.Pytester) -> None:
    suite.makefile(".toml", prices=PRICES)
    suite.makepyfile(test_gate=GATE_ONLY)
    result = run(suite, "slow", "--bedrock-prices", "prices.toml", "--bedrock-report", "r.json")
    result.assert_outcomes(failed=1)
    doc = json.loads((suite.path / "r.json").read_text())
    gate_cost = doc["tests"][0]["regression"]["cost_usd"]
    message = re.search(r"^  gate cost (\$[\d.,]+)$", result.stdout.str(), re.MULTILINE)
    assert message, result.stdout.str()
    assert dollars(message.group(1)) == pytest.approx(gate_cost, rel=1e-3)


def test_the_cost_cap_stops_a_gate_as_marginal(suite: pytest.Pytester) -> None:
    # A dollar per 1,000 tokens either way: a call of ~50 tokens is ~$0.05, a pair ~$0.10.
    suite.makefile(
        ".toml",
        prices=PRICES.replace(str(FINE_TUNE[0]), "1").replace(str(FINE_TUNE[1]), "1")
        + f'[models."{BASE}"]\ninput_per_1k = 1\noutput_per_1k = 1\n',
    )
    suite.makepyfile(test_gate=GATE_ONLY)
    cap = 0.5
    result = run(
        suite,
        "slow",
        "--bedrock-prices",
        "prices.toml",
        "--bedrock-max-cost",
        str(cap),
        "--bedrock-report",
        "r.json",
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*marginal: cost budget exhausted (--bedrock-max-cost)*"])
    doc = json.loads((suite.path / "r.json").read_text())
    gate = doc["tests"][0]["regression"]
    assert gate["cost_budget_exhausted"] is True and gate["call_budget_exhausted"] is False
    pairs = len(gate["pairs"])
    assert 1 <= pairs < 5  # stopped before the first look of 5 pairs
    spent = doc["cost_usd"]
    per_pair = gate["cost_usd"] / (pairs + gate["warmup_pairs"])
    # Within the cap (up to how far a pair's answer can outgrow its estimate), and it did not
    # stop while a further pair would still have fitted.
    assert spent <= cap * 1.1
    assert spent + per_pair * 0.8 > cap


def test_the_applications_own_calls_are_never_blocked_but_reported(
    suite: pytest.Pytester,
) -> None:
    suite.makefile(".toml", prices=PRICES)
    suite.makepyfile(
        test_app="""
        def test_app(bedrock_model):
            for _ in range(3):
                bedrock_model.converse("How do I reset my password?")
        """
    )
    result = run(suite, "same", "--bedrock-prices", "prices.toml", "--bedrock-max-cost", "0.0001")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "*bedrock: the session's Bedrock spend passed --bedrock-max-cost $0.0001 in "
            "test_app.py::test_app (calls the tests make are counted, never blocked; $* so far)"
        ]
    )


def test_a_model_without_a_price_says_no_price(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        test_app="""
        def test_app(bedrock_model):
            bedrock_model.converse("How do I reset my password?")
        """
    )
    result = run(suite, "same", "--bedrock-report", "r.json")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "test_app * 1 * no price * passed",
            "Bedrock spend: same 1 calls, * tokens, no price — no price for any model "
            "(give prices with --bedrock-prices)",
        ]
    )
    doc = json.loads((suite.path / "r.json").read_text())
    assert doc["cost_usd"] is None and doc["unpriced_calls"] == 1
    assert doc["tests"][0]["calls"][0]["cost_usd"] is None


def test_a_cap_cannot_limit_a_model_without_a_price_and_says_so(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_gate=GATE_ONLY)
    result = run(suite, "same", "--bedrock-max-cost", "1")
    result.stdout.fnmatch_lines(
        [
            "*bedrock_regression: --bedrock-max-cost cannot limit the calls to "
            "same: it has no price (give one with --bedrock-prices)*"
        ]
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[models."amazon.nova-lite-v1:0"]\ninput_per_1k = -1\noutput_per_1k = 1\n',
            'bad.toml: model "amazon.nova-lite-v1:0": field "input_per_1k" must be a finite '
            "number >= 0 (USD per 1,000 tokens), got -1",
        ),
        (
            '[models."amazon.nova-lite-v1:0"]\ninput_per_1k = 1\noutput_per_1k = 1\ncurrency = "EUR"\n',
            'bad.toml: model "amazon.nova-lite-v1:0": unknown field "currency" (prices are in USD;',
        ),
        ('[models."x"\n', "bad.toml: invalid TOML: "),
    ],
)
def test_a_bad_price_file_is_a_usage_error(suite: pytest.Pytester, text: str, message: str) -> None:
    (suite.path / "bad.toml").write_text(text)
    suite.makepyfile(test_gate=GATE_ONLY)
    result = run(suite, "same", "--bedrock-prices", "bad.toml")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: --bedrock-prices: {suite.path / 'bad.toml'}*"])
    assert message in result.stderr.str()
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


def test_an_ini_price_file_is_relative_to_the_ini_file_and_checked_before_xdist_starts(
    suite: pytest.Pytester,
) -> None:
    (suite.path / "conf").mkdir()
    (suite.path / "conf" / "prices.toml").write_text('[models."x"]\ninput_per_1k = 1\n')
    ini = (suite.path / "tox.ini").read_text().rstrip("\n")  # written by makeini
    (suite.path / "tox.ini").write_text(ini + "\nbedrock_prices = conf/prices.toml\n")
    suite.makepyfile(test_gate=GATE_ONLY)
    result = run(suite, "same", "-n", "2")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert 'prices.toml: model "x": field "output_per_1k" is required' in result.stderr.str()
    assert str(Path("conf") / "prices.toml") in result.stderr.str()
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()


def test_cached_prompt_tokens_are_priced_at_the_cache_prices(suite: pytest.Pytester) -> None:
    cache_read, cache_write = 0.0002, 0.0025
    suite.makefile(
        ".toml",
        prices=PRICES + f"cache_read_per_1k = {cache_read}\ncache_write_per_1k = {cache_write}\n",
    )
    suite.makepyfile(
        test_app="""
        POLICY = [{"text": "Refunds within 30 days. " * 200}, {"cachePoint": {"type": "default"}}]

        def test_app(bedrock_model):
            for _ in range(2):  # the first writes the cached prefix, the second reads it
                bedrock_model.converse("Can I return this?", system=POLICY)
        """
    )
    result = run(suite, "same", "--bedrock-prices", "prices.toml", "--bedrock-report", "r.json")
    result.assert_outcomes(passed=1)
    first, second = json.loads((suite.path / "r.json").read_text())["tests"][0]["calls"]
    assert first["cache_write_input_tokens"] > 100 and second["cache_read_input_tokens"] > 100
    for call in (first, second):
        expected = (
            call["input_tokens"] * FINE_TUNE[0]
            + call["output_tokens"] * FINE_TUNE[1]
            + (call["cache_read_input_tokens"] or 0) * cache_read
            + (call["cache_write_input_tokens"] or 0) * cache_write
        ) / 1000
        assert call["cost_usd"] == pytest.approx(expected, rel=1e-9)
    assert first["cost_usd"] > 5 * second["cost_usd"]  # writing costs 12.5x what reading does


def test_the_handle_and_bedrock_calls_give_each_generation_its_cost(
    suite: pytest.Pytester,
) -> None:
    suite.makefile(".toml", prices=PRICES)
    suite.makepyfile(
        test_app=f"""
        import boto3
        import pytest

        def test_app(bedrock_model, bedrock_calls):
            g = bedrock_model.converse("How do I reset my password?")
            assert g.cost_usd == pytest.approx(
                (g.input_tokens * {FINE_TUNE[0]} + g.output_tokens * {FINE_TUNE[1]}) / 1000
            )
            # The application's own client, in another region: priced the same way.
            client = boto3.client("bedrock-runtime", region_name="eu-west-1")
            client.converse(
                modelId="{BASE}", messages=[{{"role": "user", "content": [{{"text": "Hi"}}]}}]
            )
            titan = bedrock_calls[-1]
            assert titan.model_id == "{BASE}"
            assert titan.cost_usd == pytest.approx(
                (titan.input_tokens * {TITAN[0]} + titan.output_tokens * {TITAN[1]}) / 1000
            )
        """
    )
    run(suite, "same", "--bedrock-prices", "prices.toml").assert_outcomes(passed=1)
