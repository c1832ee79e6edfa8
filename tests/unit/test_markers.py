"""Unit tests of marker parsing and validation (no pytest run: marks are plain objects)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from pytest_bedrock_latency.markers import (
    LatencyBounds,
    LengthBounds,
    MarkerError,
    MarkLevel,
    RegressionGate,
    TestBounds,
    parse_markers,
)

TEST = "tests/test_support.py::test_answers"


@dataclass
class Mark:
    name: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)


def levels(*marks: Mark) -> list[MarkLevel]:
    """Marks all given on the test function."""
    return [MarkLevel("the function", marks)]


def parse(name: str, *args: Any, **kwargs: Any) -> TestBounds:
    return parse_markers(TEST, levels(Mark(name, args, kwargs)))


def error(name: str, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(MarkerError) as info:
        parse(name, *args, **kwargs)
    return str(info.value)


# -- valid markers ------------------------------------------------------------------------------
def test_latency_marker_becomes_a_frozen_dataclass() -> None:
    bounds = parse("bedrock_latency", max_ms_per_token=35, max_ttft_ms=400.5, percentile=90)
    assert bounds.latency == LatencyBounds(
        max_ms_per_token=35, max_ttft_ms=400.5, max_total_ms=None, percentile=90
    )
    assert bounds.length is None and bounds.regression is None
    assert bounds.any
    with pytest.raises(dataclasses.FrozenInstanceError):
        bounds.latency.percentile = 10  # type: ignore[misc, union-attr]


def test_length_and_regression_markers() -> None:
    bounds = parse_markers(
        TEST,
        levels(
            Mark("bedrock_length", kwargs={"max_tokens": 250, "min_tokens": 5}),
            Mark(
                "bedrock_regression", kwargs={"max_slowdown": 1.2, "budget": 5, "policy": "lenient"}
            ),
        ),
    )
    assert bounds.length == LengthBounds(max_tokens=250, min_tokens=5)
    assert bounds.regression == RegressionGate(max_slowdown=1.2, budget=5, policy="lenient")
    assert bounds.to_json() == {
        "bedrock_length": {
            "max_tokens": 250,
            "min_tokens": 5,
            "max_words": None,
            "max_chars": None,
        },
        "bedrock_regression": {
            "max_slowdown": 1.2,
            "max_verbosity": 1.15,
            "max_ttft_slowdown": 1.25,
            "budget": 5,
            "policy": "lenient",
            "group": None,
        },
    }


def test_regression_marker_without_arguments_uses_the_defaults() -> None:
    assert parse("bedrock_regression").regression == RegressionGate(1.10, 1.15, 1.25, None, None)


def test_other_markers_are_ignored_and_the_closest_mark_wins() -> None:
    bounds = parse_markers(
        TEST,
        [
            MarkLevel("pytest.param", ()),
            MarkLevel(
                "the function",
                (
                    Mark("parametrize", ("q", [1, 2])),
                    Mark("bedrock_latency", kwargs={"max_ttft_ms": 100}),  # closest
                ),
            ),
            MarkLevel("class TestX", (Mark("bedrock_latency", kwargs={"max_ttft_ms": 900}),)),
        ],
    )
    assert bounds.latency is not None and bounds.latency.max_ttft_ms == 100


def test_two_markers_of_one_name_at_one_level_are_an_error() -> None:
    with pytest.raises(MarkerError) as info:
        parse_markers(
            TEST,
            levels(
                Mark("bedrock_length", kwargs={"max_tokens": 5}),
                Mark("bedrock_length", kwargs={"max_words": 3}),
            ),
        )
    message = str(info.value)
    assert message.startswith(TEST)
    assert "given twice on the function" in message
    assert "max_tokens=5" in message and "max_words=3" in message


def test_a_farther_marker_is_validated_even_when_overridden() -> None:
    with pytest.raises(MarkerError, match="percentile must be a number"):
        parse_markers(
            TEST,
            [
                MarkLevel("the function", (Mark("bedrock_latency", kwargs={"max_ttft_ms": 1}),)),
                MarkLevel(
                    "module m.py",
                    (Mark("bedrock_latency", kwargs={"max_ttft_ms": 1, "percentile": 0}),),
                ),
            ],
        )


@pytest.mark.parametrize("name", ["max_slowdown", "max_verbosity", "max_ttft_slowdown"])
def test_a_none_tolerance_is_an_error_not_a_crash(name: str) -> None:
    message = error("bedrock_regression", **{name: None})
    assert f"{name} must be a ratio of at least 1.0, got None" in message
    assert "leave it out for the default" in message


def test_budget_above_the_upper_bound_is_an_error() -> None:
    assert "at most 1000 pairs" in error("bedrock_regression", budget=1_000_000)


def test_no_bedrock_marker_means_no_bounds() -> None:
    bounds = parse_markers(TEST, levels(Mark("slow")))
    assert bounds == TestBounds() and not bounds.any and bounds.to_json() == {}


@pytest.mark.parametrize("percentile", [0.1, 50, 99.9, 100])
def test_percentile_range_accepts(percentile: float) -> None:
    assert parse("bedrock_latency", max_total_ms=1, percentile=percentile).latency is not None


def test_length_accepts_min_equal_to_max() -> None:
    assert parse("bedrock_length", min_tokens=10, max_tokens=10).length == LengthBounds(
        max_tokens=10, min_tokens=10
    )


# -- usage errors: each names the test and the argument ------------------------------------------
def test_unknown_keyword() -> None:
    assert error("bedrock_latency", max_ms_per_tok=35) == (
        f"{TEST}: @pytest.mark.bedrock_latency: unknown argument 'max_ms_per_tok' "
        "(allowed: max_ms_per_token, max_ttft_ms, max_total_ms, percentile)"
    )


def test_positional_arguments() -> None:
    assert error("bedrock_length", 250) == (
        f"{TEST}: @pytest.mark.bedrock_length takes keyword arguments only, got positional (250,); "
        "write e.g. bedrock_length(max_tokens=...)"
    )


def test_wrong_type_string() -> None:
    assert error("bedrock_latency", max_ms_per_token="35") == (
        f"{TEST}: @pytest.mark.bedrock_latency: max_ms_per_token must be a number, got '35' (str)"
    )


def test_wrong_type_bool() -> None:
    assert error("bedrock_latency", max_ttft_ms=True) == (
        f"{TEST}: @pytest.mark.bedrock_latency: max_ttft_ms must be a number, got True (bool)"
    )


def test_length_bounds_must_be_whole_numbers() -> None:
    assert error("bedrock_length", max_words=10.5) == (
        f"{TEST}: @pytest.mark.bedrock_length: max_words must be a whole number, got 10.5 (float)"
    )


@pytest.mark.parametrize(("value", "shown"), [(0, "0"), (-5, "-5"), (float("inf"), "inf")])
def test_zero_negative_or_infinite_bound(value: float, shown: str) -> None:
    assert error("bedrock_latency", max_total_ms=value) == (
        f"{TEST}: @pytest.mark.bedrock_latency: max_total_ms must be greater than 0, got {shown}"
    )


def test_zero_length_bound() -> None:
    assert error("bedrock_length", min_tokens=0) == (
        f"{TEST}: @pytest.mark.bedrock_length: min_tokens must be greater than 0, got 0"
    )


def test_no_bound_at_all() -> None:
    assert error("bedrock_latency", percentile=90) == (
        f"{TEST}: @pytest.mark.bedrock_latency has no bound: give at least one of "
        "max_ms_per_token, max_ttft_ms, max_total_ms"
    )
    assert error("bedrock_length") == (
        f"{TEST}: @pytest.mark.bedrock_length has no bound: give at least one of "
        "max_tokens, min_tokens, max_words, max_chars"
    )


def test_min_tokens_greater_than_max_tokens() -> None:
    assert error("bedrock_length", min_tokens=50, max_tokens=10) == (
        f"{TEST}: @pytest.mark.bedrock_length: min_tokens (50) is greater than max_tokens (10); no answer could pass"
    )


@pytest.mark.parametrize("percentile", [0, -1, 100.5, "90", True])
def test_percentile_out_of_range(percentile: Any) -> None:
    assert error("bedrock_latency", max_ttft_ms=100, percentile=percentile) == (
        f"{TEST}: @pytest.mark.bedrock_latency: percentile must be a number in (0, 100], got {percentile!r}"
    )


@pytest.mark.parametrize("name", ["max_slowdown", "max_verbosity", "max_ttft_slowdown"])
def test_regression_ratio_below_one(name: str) -> None:
    assert error("bedrock_regression", **{name: 0.9}) == (
        f"{TEST}: @pytest.mark.bedrock_regression: {name} is the ratio candidate/base allowed and must be "
        "at least 1.0 (1.10 allows 10% worse), got 0.9"
    )


def test_regression_ratio_wrong_type() -> None:
    assert error("bedrock_regression", max_slowdown="1.1") == (
        f"{TEST}: @pytest.mark.bedrock_regression: max_slowdown must be a number, got '1.1' (str)"
    )


def test_regression_budget_below_five() -> None:
    assert error("bedrock_regression", budget=4) == (
        f"{TEST}: @pytest.mark.bedrock_regression: budget must be at least 5 pairs (the first look), got 4"
    )
    assert error("bedrock_regression", budget=7.5) == (
        f"{TEST}: @pytest.mark.bedrock_regression: budget must be a whole number, got 7.5 (float)"
    )


def test_regression_bad_policy() -> None:
    assert error("bedrock_regression", policy="loose") == (
        f"{TEST}: @pytest.mark.bedrock_regression: policy must be one of 'strict', 'lenient', got 'loose'"
    )
