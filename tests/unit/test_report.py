"""Unit tests of the terminal summary and the JSON report built from hand-made TestResults."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3

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
        "failed",
    ]
    assert lines[4] == ""
    assert lines[5] == "Bedrock spend: support-v3 3 calls, 36 in / 180 out tokens"
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
        "end_turn",
    ]


def test_unmeasured_figures_show_a_dash() -> None:
    lines = report(result(calls=(gen(None, None, 7, operation="Converse"),))).terminal_lines()
    assert lines[2].split() == ["test_fast", "support-v3", "1", "-", "-", "-", "7", "7", "passed"]


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
    assert set(doc) == {"schema_version", "created_at", "environment", "spend", "tests"}
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
        }
    }
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
