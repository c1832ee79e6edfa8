"""Unit tests of the terminal summary and the JSON report built from hand-made TestResults."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest

from pytest_bedrock_latency import __version__
from pytest_bedrock_latency.evaluate import Check
from pytest_bedrock_latency.measurement import Generation
from pytest_bedrock_latency.report import SCHEMA_VERSION, Report
from pytest_bedrock_latency.results import Spend, TestResult
from pytest_bedrock_latency.settings import Settings

ARN = "arn:aws:bedrock:us-east-1:123456789012:custom-model/support-v3"


def gen(
    ms_per_token: float | None,
    ttft_ms: float | None,
    output_tokens: int,
    *,
    text: str = "Hello there",
    operation: str = "ConverseStream",
    attempts: int = 1,
    model_id: str = ARN,
) -> Generation:
    return Generation(
        model_id=model_id,
        operation=operation,
        text=text,
        input_tokens=12,
        output_tokens=output_tokens,
        stop_reason="end_turn",
        ttft_ms=ttft_ms,
        total_ms=900.0,
        ms_per_token=ms_per_token,
        tokens_per_second=None,
        server_latency_ms=None,
        words=len(text.split()),
        chars=len(text),
        attempts=attempts,
        retry_wait_ms=0.0,
        started_at=1.0,
    )


CALLS = (gen(30.0, 210.0, 40), gen(40.0, 250.0, 60, attempts=3))
FAILED_CHECK = Check(
    "bedrock_latency",
    "ms/token p50",
    35.0,
    32.0,
    False,
    "bedrock_latency: ms/token p50 35.0 > 32.0 allowed (model support-v3, 2 calls)",
)


def result(
    nodeid: str = "tests/test_a.py::test_fast",
    outcome: str = "passed",
    calls: tuple[Generation, ...] = CALLS,
    **extra: Any,
) -> TestResult:
    return TestResult(nodeid=nodeid, outcome=outcome, calls=calls, spend=Spend.of(calls), **extra)


def report(*results: TestResult, **settings: Any) -> Report:
    return Report(
        results=list(results),
        settings=Settings(**settings),
        endpoint_kind="emulator",
        region="us-east-1",
    )


# -- terminal --------------------------------------------------------------------------------------
def test_nothing_is_printed_when_no_test_used_bedrock() -> None:
    assert report().terminal_lines() == []
    assert report(result(calls=())).terminal_lines(verbosity=2) == []


def test_summary_table_has_one_row_per_test() -> None:
    lines = report(
        result(),
        result(
            "tests/test_a.py::test_slow", "failed", (gen(50.0, 400.0, 80),), checks=(FAILED_CHECK,)
        ),
    ).terminal_lines()
    assert lines[0].split() == [
        "test",
        "model",
        "calls",
        "TTFT",
        "p50",
        "ms/tok",
        "p50",
        "ms/tok",
        "p90",
        "out",
        "tok",
        "p50",
        "out",
        "tok",
        "max",
        "cost",
        "verdict",
    ]
    assert set(lines[1]) <= {"-", " "}
    # p50 of (30, 40) = 35, p90 = 39; TTFT p50 = 230; tokens p50 = 50, max = 60
    assert lines[2].split() == [
        "test_fast",
        "support-v3",
        "2",
        "230.0",
        "35.0",
        "39.0",
        "50",
        "60",
        "no",
        "price",
        "passed",
    ]
    assert lines[3].split() == [
        "test_slow",
        "support-v3",
        "1",
        "400.0",
        "50.0",
        "50.0",
        "80",
        "80",
        "no",
        "price",
        "failed",
    ]
    assert lines[4] == ""
    assert lines[5] == (
        "Bedrock spend: support-v3 3 calls, 36 in / 180 out tokens, no price"
        " — no price for any model (give prices with --bedrock-prices)"
    )
    assert len(lines) == 6


def test_verbose_adds_a_row_per_call() -> None:
    lines = report(result()).terminal_lines(verbosity=1)
    assert lines[3].split() == [
        "└",
        "call",
        "1",
        "ConverseStream",
        "support-v3",
        "210.0",
        "30.0",
        "40",
        "no",
        "price",
        "end_turn",
    ]
    assert lines[4].split() == [
        "└",
        "call",
        "2",
        "ConverseStream",
        "(3",
        "attempts)",
        "support-v3",
        "250.0",
        "40.0",
        "60",
        "no",
        "price",
        "end_turn",
    ]


def test_unmeasured_figures_show_a_dash() -> None:
    lines = report(result(calls=(gen(None, None, 7, operation="Converse"),))).terminal_lines()
    assert lines[2].split() == [
        "test_fast",
        "support-v3",
        "1",
        "-",
        "-",
        "-",
        "7",
        "7",
        "no",
        "price",
        "passed",
    ]


def test_headline_figures_for_junit() -> None:
    assert result().headline() == {
        "bedrock_calls": 2.0,
        "bedrock_ttft_ms_p50": 230.0,
        "bedrock_ms_per_token_p50": 35.0,
        "bedrock_ms_per_token_p90": 39.0,
        "bedrock_total_ms_p50": 900.0,
        "bedrock_output_tokens_p50": 50.0,
        "bedrock_output_tokens_max": 60.0,
    }


# -- JSON ------------------------------------------------------------------------------------------
def test_json_document_keys_and_environment() -> None:
    doc = report(
        result(bounds={"bedrock_latency": {"max_ms_per_token": 32}}, checks=(FAILED_CHECK,)),
        model=ARN,
        baseline="amazon.titan-text-express-v1",
        latency_scale=1.5,
    ).document()
    assert set(doc) == {
        "schema_version",
        "created_at",
        "interrupted",
        "environment",
        "cost_usd",
        "unpriced_calls",
        "spend",
        "tests",
        "groups",
    }
    assert doc["interrupted"] is False
    assert doc["schema_version"] == SCHEMA_VERSION == 1
    env = doc["environment"]
    assert env["plugin_version"] == __version__
    assert env["boto3_version"] == boto3.__version__
    assert (env["region"], env["endpoint_kind"], env["candidate_model"], env["baseline_model"]) == (
        "us-east-1",
        "emulator",
        ARN,
        "amazon.titan-text-express-v1",
    )
    assert env["models"] == [ARN]
    assert (env["latency_scale"], env["includes_text"]) == (1.5, False)
    assert doc["spend"] == {
        ARN: {
            "calls": 2,
            "input_tokens": 24,
            "output_tokens": 100,
            "cache_read_input_tokens": 0,
            "cache_write_input_tokens": 0,
            "cost_usd": None,
            "unpriced_calls": 2,
        }
    }
    assert (doc["cost_usd"], doc["unpriced_calls"]) == (None, 2)
    (test,) = doc["tests"]
    assert test["nodeid"] == "tests/test_a.py::test_fast"
    assert test["bounds"] == {"bedrock_latency": {"max_ms_per_token": 32}}
    assert [c["ms_per_token"] for c in test["calls"]] == [30.0, 40.0]
    assert test["checks"] == [FAILED_CHECK.to_json()]


def test_json_has_no_prompts_or_answers_unless_report_text() -> None:
    without = report(result()).document()
    assert all("text" not in call for call in without["tests"][0]["calls"])
    assert "Hello there" not in json.dumps(without)
    with_text = report(result(), report_text=True).document()
    assert [call["text"] for call in with_text["tests"][0]["calls"]] == [
        "Hello there",
        "Hello there",
    ]
    assert with_text["environment"]["includes_text"] is True


def test_write_json_replaces_the_file_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "reports" / "bedrock.json"
    rep = report(result())
    rep.write_json(path)
    path.write_text("old", encoding="utf-8")
    rep.write_json(path)
    assert (
        json.loads(path.read_text(encoding="utf-8"))["tests"][0]["nodeid"]
        == "tests/test_a.py::test_fast"
    )
    assert sorted(p.name for p in path.parent.iterdir()) == ["bedrock.json"]


def test_result_round_trips_through_json() -> None:
    original = result(
        checks=(FAILED_CHECK,), bounds={"bedrock_length": {"max_tokens": 10}}, failed_calls=1
    )
    back = TestResult.from_json(json.loads(json.dumps(original.to_json(include_text=True))))
    assert back == TestResult(
        original.nodeid,
        "passed",
        original.bounds,
        tuple(CALLS),
        (FAILED_CHECK,),
        1,
        None,
        original.spend,
    )


# -- cost ------------------------------------------------------------------------------------------
LITE = "amazon.nova-lite-v1:0"


def priced(cost: float | None, model_id: str = LITE, output_tokens: int = 40) -> Generation:
    from dataclasses import replace

    return replace(gen(30.0, 210.0, output_tokens, model_id=model_id), cost_usd=cost)


def test_cost_per_test_per_call_and_in_total() -> None:
    a = result("tests/test_a.py::test_one", calls=(priced(0.00012), priced(0.00003)))
    b = result("tests/test_a.py::test_two", calls=(priced(0.0021),))
    lines = report(a, b).terminal_lines(verbosity=1)
    rows = {line.split()[0]: line.split() for line in lines if line.startswith("test_")}
    assert rows["test_one"][-2:] == ["$0.00015", "passed"]
    assert rows["test_two"][-2:] == ["$0.0021", "passed"]
    assert "$0.00012" in lines[3]  # the call rows carry their own cost
    assert lines[-1] == (
        "Bedrock spend: amazon.nova-lite-v1:0 3 calls, 36 in / 120 out tokens, $0.00225"
        " — $0.00225 total"
    )
    assert a.headline()["bedrock_cost_usd"] == 0.00015
    doc = report(a, b).document()
    assert doc["cost_usd"] == pytest.approx(0.00225)
    assert [t["cost_usd"] for t in doc["tests"]] == [pytest.approx(0.00015), 0.0021]
    assert doc["tests"][0]["calls"][0]["cost_usd"] == 0.00012
    assert doc["spend"][LITE]["cost_usd"] == pytest.approx(0.00225)


def test_unpriced_calls_are_counted_never_priced_at_zero() -> None:
    mixed = result(calls=(priced(0.001), priced(None, model_id=ARN)))
    assert mixed.cost_usd == 0.001
    assert "≥$0.001 " in report(mixed).terminal_lines()[2]  # at least that much
    line = report(mixed).spend_line()
    assert "support-v3 1 calls, 12 in / 40 out tokens, no price" in line
    assert line.endswith("— $0.001 total + 1 call(s) with no price")
    assert report(mixed).document()["unpriced_calls"] == 1
    none = result(calls=(priced(None, model_id=ARN),))
    assert none.cost_usd is None
    assert "bedrock_cost_usd" not in none.headline()
    assert report(none).document()["tests"][0]["cost_usd"] is None


def test_github_summary_has_a_cost_column_and_the_total() -> None:
    markdown = report(result(calls=(priced(0.0005),))).github_markdown()
    assert "cost (USD)" in markdown.splitlines()[2]  # the table's header row
    assert "| $0.0005 " in markdown
    assert "— $0.0005 total" in markdown


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "$0"),
        (0.00001234, "$0.00001234"),
        (0.012345, "$0.01235"),
        (0.0021, "$0.0021"),
        (0.1, "$0.10"),
        (12.3456, "$12.35"),
        (1234.5, "$1,234.50"),
    ],
)
def test_dollars_read_to_four_significant_digits(value: float, text: str) -> None:
    from pytest_bedrock_latency.prices import format_usd

    assert format_usd(value) == text
