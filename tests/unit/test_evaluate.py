"""Unit tests of the latency and length verdicts on hand-made Generations."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from pytest_bedrock_latency.evaluate import Check, check_latency, check_length, check_timeout
from pytest_bedrock_latency.markers import LatencyBounds, LengthBounds
from pytest_bedrock_latency.measurement import Generation, display_model

ARN = "arn:aws:bedrock:us-east-1:123456789012:custom-model/support-v3"


def gen(
    ms_per_token: float | None = 30.0,
    *,
    ttft_ms: float | None = 200.0,
    total_ms: float = 1000.0,
    output_tokens: int | None = 20,
    words: int = 15,
    chars: int = 80,
    model_id: str = ARN,
    operation: str = "ConverseStream",
    **extra: Any,
) -> Generation:
    fields: dict[str, Any] = dict(
        model_id=model_id,
        operation=operation,
        text="",
        input_tokens=10,
        output_tokens=output_tokens,
        stop_reason="end_turn",
        ttft_ms=ttft_ms,
        total_ms=total_ms,
        ms_per_token=ms_per_token,
        tokens_per_second=None,
        server_latency_ms=None,
        words=words,
        chars=chars,
        attempts=1,
        retry_wait_ms=0.0,
        started_at=0.0,
    )
    fields.update(extra)
    return Generation(**fields)


FIVE = [gen(v) for v in (50.0, 30.0, 41.3, 38.0, 45.0)]  # median 41.3


def lines(checks: list[Check]) -> list[str]:
    return [c.line for c in checks]


# -- bedrock_latency -----------------------------------------------------------------------------
def test_latency_violation_message_is_exact() -> None:
    checks = check_latency(LatencyBounds(max_ms_per_token=35), FIVE)
    assert lines(checks) == [
        "bedrock_latency: ms/token p50 41.3 > 35.0 allowed (model support-v3, 5 calls)"
    ]
    (check,) = checks
    assert (check.ok, check.observed, check.limit, check.metric, check.marker) == (
        False,
        pytest.approx(41.3),
        35,
        "ms/token p50",
        "bedrock_latency",
    )


def test_latency_within_bound() -> None:
    (check,) = check_latency(LatencyBounds(max_ms_per_token=41.3), FIVE)
    assert check.ok
    assert (
        check.line
        == "bedrock_latency: ms/token p50 41.3 <= 41.3 allowed (model support-v3, 5 calls)"
    )


def test_percentile_is_linear_interpolation_over_the_calls() -> None:
    # sorted 30, 38, 41.3, 45, 50; p90 at rank 3.6 -> 45 + 0.6 * 5 = 48.0
    (check,) = check_latency(LatencyBounds(max_ms_per_token=47, percentile=90), FIVE)
    assert (
        check.line
        == "bedrock_latency: ms/token p90 48.0 > 47.0 allowed (model support-v3, 5 calls)"
    )
    (check,) = check_latency(LatencyBounds(max_ms_per_token=47, percentile=99.5), FIVE)
    assert check.metric == "ms/token p99.5"


def test_latency_scale_multiplies_every_bound() -> None:
    bounds = LatencyBounds(max_ms_per_token=35, max_ttft_ms=150, max_total_ms=900)
    assert [c.ok for c in check_latency(bounds, FIVE)] == [False, False, False]
    checks = check_latency(bounds, FIVE, scale=1.5)
    assert [c.ok for c in checks] == [True, True, True]
    assert lines(checks) == [
        "bedrock_latency: ms/token p50 41.3 <= 52.5 allowed (model support-v3, 5 calls)",
        "bedrock_latency: TTFT ms p50 200.0 <= 225.0 allowed (model support-v3, 5 calls)",
        "bedrock_latency: total ms p50 1000 <= 1350 allowed (model support-v3, 5 calls)",
    ]


def test_one_check_per_bound_given_in_a_fixed_order() -> None:
    checks = check_latency(
        LatencyBounds(max_total_ms=5000, max_ttft_ms=100), [gen(ttft_ms=250.0, total_ms=1234.5)]
    )
    assert lines(checks) == [
        "bedrock_latency: TTFT ms p50 250.0 > 100.0 allowed (model support-v3, 1 call)",
        "bedrock_latency: total ms p50 1234 <= 5000 allowed (model support-v3, 1 call)",
    ]


def test_several_models_are_named_sorted() -> None:
    calls = [gen(40.0, model_id="amazon.nova-lite-v1:0"), gen(40.0)]
    (check,) = check_latency(LatencyBounds(max_ms_per_token=35), calls)
    assert (
        check.line
        == "bedrock_latency: ms/token p50 40.0 > 35.0 allowed (model amazon.nova-lite-v1:0, support-v3, 2 calls)"
    )


@pytest.mark.parametrize(
    ("bound", "observed", "shown"),
    [
        (2.2, 2.23, "2.23 > 2.20"),  # one decimal would read "2.2 > 2.2"
        (0.05, 1.0, "1.00 > 0.05"),  # one decimal would misstate the limit as 0.1
        (35, 35.04, "35.04 > 35.00"),
        (35, 35.0, "35.0 <= 35.0"),
        (1.25, 1.0, "1.00 <= 1.25"),
    ],
)
def test_figures_get_the_decimals_needed_to_read_right(
    bound: float, observed: float, shown: str
) -> None:
    (check,) = check_latency(LatencyBounds(max_ms_per_token=bound), [gen(observed)])
    assert check.line == f"bedrock_latency: ms/token p50 {shown} allowed (model support-v3, 1 call)"


def test_large_figures_have_no_decimals_unless_needed() -> None:
    (check,) = check_latency(LatencyBounds(max_total_ms=1350), [gen(total_ms=1350.4)])
    assert (
        check.line
        == "bedrock_latency: total ms p50 1350.4 > 1350.0 allowed (model support-v3, 1 call)"
    )
    (check,) = check_latency(LatencyBounds(max_total_ms=1000), [gen(total_ms=2345.6)])
    assert (
        check.line == "bedrock_latency: total ms p50 2346 > 1000 allowed (model support-v3, 1 call)"
    )


def test_ttft_not_measured_for_calls_that_did_not_stream() -> None:
    calls = [gen(None, ttft_ms=None, operation="Converse")] * 2
    (check,) = check_latency(LatencyBounds(max_ttft_ms=300), calls)
    assert not check.ok and check.observed is None
    assert check.line == (
        "bedrock_latency: TTFT ms p50 not measured: all 2 calls were non-streaming (Converse), "
        "which has no first token or per-token times; stream the answer (ConverseStream / "
        "InvokeModelWithResponseStream, stream=True on bedrock_model) or bound max_total_ms "
        "instead (model support-v3, 2 calls)"
    )


def test_ms_per_token_of_non_streaming_calls_names_the_fix() -> None:
    calls = [gen(None, ttft_ms=None, operation="InvokeModel"), gen(None, ttft_ms=None)]
    calls[1] = dataclasses.replace(calls[1], operation="Converse")
    (check,) = check_latency(LatencyBounds(max_ms_per_token=30), calls)
    assert "all 2 calls were non-streaming (Converse, InvokeModel)" in check.line
    assert "or bound max_total_ms instead" in check.line


def test_ms_per_token_not_measured_for_one_token_answers() -> None:
    (check,) = check_latency(LatencyBounds(max_ms_per_token=30), [gen(None, output_tokens=1)])
    assert check.line == (
        "bedrock_latency: ms/token p50 not measured: needs streamed answers of 2 or more tokens "
        "(model support-v3, 1 call)"
    )


def test_only_calls_with_the_figure_are_counted() -> None:
    calls = [gen(None, ttft_ms=None, operation="Converse"), gen(20.0), gen(40.0)]
    (check,) = check_latency(LatencyBounds(max_ms_per_token=35), calls)
    assert (
        check.line
        == "bedrock_latency: ms/token p50 30.0 <= 35.0 allowed (model support-v3, 2 calls)"
    )


# -- bedrock_length ------------------------------------------------------------------------------
def test_length_violations_report_the_worst_answer_and_how_many() -> None:
    calls = [
        gen(output_tokens=t, words=w, chars=c)
        for t, w, c in ((120, 90, 500), (300, 40, 200), (260, 160, 900), (3, 2, 10))
    ]
    checks = check_length(
        LengthBounds(max_tokens=250, min_tokens=5, max_words=150, max_chars=1000), calls
    )
    assert lines(checks) == [
        "bedrock_length: output tokens max 300 > 250 allowed (model support-v3, 2 of 4 answers)",
        "bedrock_length: output tokens min 3 < 5 required (model support-v3, 1 of 4 answers)",
        "bedrock_length: words max 160 > 150 allowed (model support-v3, 1 of 4 answers)",
        "bedrock_length: chars max 900 <= 1000 allowed (model support-v3, 4 calls)",
    ]
    assert [c.ok for c in checks] == [False, False, False, True]
    assert [(c.metric, c.observed, c.limit) for c in checks] == [
        ("output tokens max", 300.0, 250.0),
        ("output tokens min", 3.0, 5.0),
        ("words max", 160.0, 150.0),
        ("chars max", 900.0, 1000.0),
    ]


def test_length_within_bounds() -> None:
    checks = check_length(LengthBounds(max_tokens=20, min_tokens=20), [gen(output_tokens=20)])
    assert lines(checks) == [
        "bedrock_length: output tokens max 20 <= 20 allowed (model support-v3, 1 call)",
        "bedrock_length: output tokens min 20 >= 20 required (model support-v3, 1 call)",
    ]
    assert all(c.ok for c in checks)


def test_token_counts_not_reported() -> None:
    (check,) = check_length(LengthBounds(max_tokens=10), [gen(output_tokens=None)])
    assert not check.ok
    assert (
        check.line
        == "bedrock_length: output tokens not reported by Bedrock (model support-v3, 1 call)"
    )


def test_check_json() -> None:
    (check,) = check_length(LengthBounds(max_words=10), [gen(words=12)])
    assert check.to_json() == {
        "marker": "bedrock_length",
        "metric": "words max",
        "observed": 12.0,
        "limit": 10.0,
        "ok": False,
        "message": "bedrock_length: words max 12 > 10 allowed (model support-v3, 1 of 1 answers)",
    }


@pytest.mark.parametrize(
    ("model_id", "shown"),
    [
        (ARN, "support-v3"),
        (
            "arn:aws:bedrock:us-east-1::foundation-model/amazon.titan-text-express-v1",
            "amazon.titan-text-express-v1",
        ),
        ("anthropic.claude-3-haiku-20240307-v1:0", "anthropic.claude-3-haiku-20240307-v1:0"),
    ],
)
def test_display_model(model_id: str, shown: str) -> None:
    assert display_model(model_id) == shown


def test_timeout_fails_once_naming_the_slowest_call() -> None:
    calls = [gen(total_ms=900.0), gen(total_ms=2500.0), gen(total_ms=1200.0)]
    assert check_timeout(3.0, calls) == []
    (check,) = check_timeout(1.0, calls)
    assert (check.marker, check.observed, check.limit, check.ok) == (
        "bedrock_timeout",
        2500.0,
        1000.0,
        False,
    )
    assert check.line == (
        "bedrock timeout: 2 call(s) took longer than --bedrock-timeout 1s "
        f"(slowest 2.5s, model {display_model(ARN)})"
    )
