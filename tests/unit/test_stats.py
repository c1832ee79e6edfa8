"""Unit tests of the pure statistics module (deterministic: fixed seeds, no timing, no scipy)."""

from __future__ import annotations

import math
import random

import pytest

from pytest_bedrock_latency.stats import (
    Decision,
    Interval,
    SequentialRule,
    decompose,
    paired_log_ratio_interval,
    pairs_needed,
    percentile,
    t_quantile,
    trimmed_mean,
    unpaired_log_ratio_interval,
)


def scaled(base: list[float], log_ratios: list[float]) -> list[float]:
    """Candidate values whose per-pair log ratios against ``base`` are ``log_ratios``."""
    return [b * math.exp(d) for b, d in zip(base, log_ratios, strict=False)]


BASE40 = [20.0 + (i % 7) for i in range(40)]  # ms/token-like base values, no spread needed


# ---------------------------------------------------------------------------
# percentile
# ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("q", "expected"),
    [
        # sorted [15, 20, 35, 40, 50], rank h = 4 q / 100
        (0, 15.0),
        (5, 16.0),  # h = 0.2: 15 + 0.2 * (20 - 15)
        (30, 23.0),  # h = 1.2: 20 + 0.2 * 15
        (40, 29.0),  # h = 1.6: 20 + 0.6 * 15
        (50, 35.0),  # h = 2: exactly the middle value
        (95, 48.0),  # h = 3.8: 40 + 0.8 * 10
        (100, 50.0),
    ],
)
def test_percentile_hand_computed(q: float, expected: float) -> None:
    assert percentile([35, 15, 50, 40, 20], q) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    ("q", "numpy_linear"),
    # np.percentile([3.2, 1.0, 7.5, 2.2], q), numpy's default method, values hard-coded
    [
        (10, 1.36),
        (25, 1.9000000000000001),
        (50, 2.7),
        (90, 6.210000000000001),
        (99, 7.370999999999999),
    ],
)
def test_percentile_matches_numpy_linear_bit_for_bit(q: float, numpy_linear: float) -> None:
    assert percentile([3.2, 1.0, 7.5, 2.2], q) == numpy_linear


def test_percentile_single_value_and_errors() -> None:
    assert percentile([7.0], 0) == 7.0
    assert percentile([7.0], 63.5) == 7.0
    with pytest.raises(ValueError, match="empty"):
        percentile([], 50)
    with pytest.raises(ValueError, match="q must be"):
        percentile([1.0, 2.0], 101)
    with pytest.raises(ValueError, match="q must be"):
        percentile([1.0, 2.0], -1)
    with pytest.raises(ValueError, match="NaN"):
        percentile([1.0, math.nan], 50)


# ---------------------------------------------------------------------------
# trimmed mean
# ---------------------------------------------------------------------------
def test_trimmed_mean() -> None:
    # n = 10, g = floor(0.2 * 10) = 2: drop 1, 2 and 9, 1000 -> mean(3..8) = 5.5
    assert trimmed_mean([1, 2, 3, 4, 5, 6, 7, 8, 9, 1000]) == pytest.approx(5.5)
    # n = 4, g = 0: plain mean
    assert trimmed_mean([1.0, 2.0, 3.0, 10.0]) == pytest.approx(4.0)
    # n = 5, g = 1: mean(2, 3, 4)
    assert trimmed_mean([100.0, 3.0, 2.0, -50.0, 4.0]) == pytest.approx(3.0)
    assert trimmed_mean([1.0, 2.0, 30.0], trim=0.0) == pytest.approx(11.0)
    with pytest.raises(ValueError, match="empty"):
        trimmed_mean([])
    with pytest.raises(ValueError, match="trim"):
        trimmed_mean([1.0, 2.0], trim=0.5)


# ---------------------------------------------------------------------------
# Student-t quantile
# ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("p", "df", "table"),
    [
        (0.975, 1, 12.7062),
        (0.975, 2, 4.3027),
        (0.975, 3, 3.1824),
        (0.975, 4, 2.7764),
        (0.975, 5, 2.5706),
        (0.975, 7, 2.3646),
        (0.975, 10, 2.2281),
        (0.975, 15, 2.1314),
        (0.975, 30, 2.0423),
        (0.975, 120, 1.9799),
        (0.95, 1, 6.3138),
        (0.95, 5, 2.0150),
        (0.99, 10, 2.7638),
        (0.995, 1, 63.6567),
        (0.995, 5, 4.0321),
    ],
)
def test_t_quantile_against_table(p: float, df: float, table: float) -> None:
    assert t_quantile(p, df) == pytest.approx(table, rel=1e-4)
    assert t_quantile(1.0 - p, df) == pytest.approx(-table, rel=1e-4)


def test_t_quantile_limits_and_errors() -> None:
    assert t_quantile(0.5, 3) == 0.0
    assert t_quantile(0.975, math.inf) == pytest.approx(1.959964, rel=1e-6)
    assert t_quantile(0.975, 1e6) == pytest.approx(1.959966, rel=1e-5)
    # fractional df (Welch): between its integer neighbours
    assert t_quantile(0.975, 3) > t_quantile(0.975, 3.5) > t_quantile(0.975, 4)
    for p in (0.0, 1.0, -0.1, math.nan):
        with pytest.raises(ValueError, match="p must be"):
            t_quantile(p, 5)
    with pytest.raises(ValueError, match="df must be"):
        t_quantile(0.975, 0)


# ---------------------------------------------------------------------------
# paired interval
# ---------------------------------------------------------------------------
def test_paired_interval_hand_checked() -> None:
    # d = [-0.2, 0.0, 0.1, 0.2, 0.9]; n = 5, g = floor(1.0) = 1, h = 3, df = h - 1 = 2
    # trimmed mean = (0.0 + 0.1 + 0.2) / 3 = 0.1
    # winsorised = [0, 0, 0.1, 0.2, 0.2], mean 0.1, squared deviations sum 0.04, var 0.04/4 = 0.01
    # se = 0.1 / ((3/5) * sqrt 5) = 0.0745356; t(0.975, 2) = 4.3026527
    # log bounds 0.1 -+ 0.3207008 = -0.2207008 / 0.4207008
    # sd_log: mean 0.2, squared deviations .16 + .04 + .01 + 0 + .49 = 0.70, sd = sqrt(0.70/4)
    base = [100.0, 250.0, 80.0, 40.0, 1000.0]
    iv = paired_log_ratio_interval(scaled(base, [0.2, -0.2, 0.9, 0.0, 0.1]), base)
    assert iv.n == 5
    assert iv.estimate == pytest.approx(math.exp(0.1), rel=1e-12)  # 1.10517
    assert iv.low == pytest.approx(math.exp(-0.2207008), rel=1e-6)  # 0.80196
    assert iv.high == pytest.approx(math.exp(0.4207008), rel=1e-6)  # 1.52303
    assert iv.sd_log == pytest.approx(math.sqrt(0.175), rel=1e-12)


def test_paired_interval_zero_spread_collapses() -> None:
    # identical log ratios (exactly ln 2 in every pair): se = 0, the interval is a point
    iv = paired_log_ratio_interval([2.0, 2.0, 2.0, 2.0], [1.0, 1.0, 1.0, 1.0])
    assert iv == Interval(estimate=2.0, low=2.0, high=2.0, n=4, sd_log=0.0)


def test_paired_interval_two_pairs_and_confidence() -> None:
    base = [1.0, 1.0]
    iv95 = paired_log_ratio_interval(scaled(base, [0.0, 0.2]), base)
    # n = 2, g = 0, df = 1, se = sd/sqrt 2 = 0.1, t(0.975, 1) = 12.7062
    assert math.log(iv95.high) == pytest.approx(0.1 + 12.7062047 * 0.1, rel=1e-6)
    iv90 = paired_log_ratio_interval(scaled(base, [0.0, 0.2]), base, confidence=0.90)
    assert iv90.low > iv95.low and iv90.high < iv95.high


def test_paired_interval_validation() -> None:
    with pytest.raises(ValueError, match="same length"):
        paired_log_ratio_interval([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="at least 2 pairs"):
        paired_log_ratio_interval([1.0], [1.0])
    with pytest.raises(ValueError, match="positive"):
        paired_log_ratio_interval([1.0, 0.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="positive"):
        paired_log_ratio_interval([1.0, 2.0], [1.0, -3.0])
    with pytest.raises(ValueError, match="confidence"):
        paired_log_ratio_interval([1.0, 2.0], [1.0, 1.0], confidence=1.0)


def test_unpaired_interval_matches_yuen() -> None:
    # expected values from the reference harness's Yuen/Welch computation (sim.py trim_t)
    iv = unpaired_log_ratio_interval(
        [110.0, 95.0, 130.0, 102.0, 98.0, 121.0], [100.0, 100.0, 90.0, 105.0, 101.0, 99.0]
    )
    assert iv.estimate == pytest.approx(1.0740189240588771, rel=1e-9)
    assert iv.low == pytest.approx(0.878526488513513, rel=1e-9)
    assert iv.high == pytest.approx(1.3130129419186494, rel=1e-9)
    assert iv.n == 6


# ---------------------------------------------------------------------------
# the sequential rule
# ---------------------------------------------------------------------------
def test_schedule_and_next_look() -> None:
    assert SequentialRule(1.10).schedule() == (5, 10, 20, 40)
    assert SequentialRule(1.10, budget=30).schedule() == (5, 10, 20, 30)
    assert SequentialRule(1.10, budget=8).schedule() == (5, 8)
    assert SequentialRule(1.10, budget=5).schedule() == (5,)
    assert SequentialRule(1.10, budget=2).schedule() == (2,)
    assert SequentialRule(1.10, budget=100).schedule() == (5, 10, 20, 40, 100)
    assert SequentialRule(1.10, budget=12, looks=(4, 8)).schedule() == (4, 8, 12)
    rule = SequentialRule(1.10)
    assert [rule.next_look(n) for n in (0, 4, 5, 9, 39, 40, 100)] == [5, 5, 10, 10, 40, None, None]


def test_detect_default() -> None:
    assert SequentialRule(1.10).effective_detect() == 1.2
    assert SequentialRule(1.25).effective_detect() == 1.3636
    assert SequentialRule(1.0).effective_detect() == 1.0909
    assert SequentialRule(1.25, detect=1.5).effective_detect() == 1.5


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(tolerance=0.9), "tolerance"),
        (dict(tolerance=math.nan), "tolerance"),
        (dict(tolerance=1.10, detect=1.10), "detect must be greater"),
        (dict(tolerance=1.10, detect=1.05), "detect must be greater"),
        (dict(tolerance=1.10, budget=1), "budget"),
        (dict(tolerance=1.10, budget=10.0), "budget"),
        (dict(tolerance=1.10, looks=(10, 5)), "strictly increasing"),
        (dict(tolerance=1.10, looks=(0, 5)), "positive"),
        (dict(tolerance=1.10, min_fail_pairs=1), "min_fail_pairs"),
        (dict(tolerance=1.10, confidence=0.0), "confidence"),
        (dict(tolerance=1.10, trim=0.5), "trim"),
    ],
)
def test_rule_validation(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SequentialRule(**kwargs)  # type: ignore[arg-type]


def test_early_pass_at_five_pairs_on_low_noise() -> None:
    base = BASE40[:5]
    cand = scaled(base, [0.01, -0.01, 0.005, 0.0, -0.005])
    decision = SequentialRule(1.10).decide(cand, base)
    assert isinstance(decision, Decision)
    assert decision.verdict == "pass" and not decision.marginal
    assert decision.interval.n == 5
    assert decision.interval.high < 1.20 and decision.interval.estimate <= 1.10
    assert decision.reason.startswith("upper bound 1.0")
    assert decision.reason.endswith("< detect 1.20")
    assert (decision.tolerance, decision.detect) == (1.10, 1.2)


def test_no_early_fail_before_ten_pairs_even_with_huge_ratio() -> None:
    rule = SequentialRule(1.10)
    base = BASE40[:5]
    cand = scaled(base, [math.log(3.0) + e for e in (0.01, -0.01, 0.005, 0.0, -0.005)])
    assert rule.decide(cand, base) is None
    base10 = BASE40[:10]
    cand10 = scaled(base10, [math.log(3.0) + 0.01 * (-1) ** i for i in range(10)])
    decision = rule.decide(cand10, base10)
    assert decision is not None and decision.verdict == "fail" and not decision.marginal


def test_fail_at_ten_pairs_on_clear_regression() -> None:
    base = BASE40[:10]
    noise = [0.02, -0.03, 0.01, 0.0, -0.01, 0.03, -0.02, 0.015, -0.015, 0.005]
    decision = SequentialRule(1.10).decide(scaled(base, [math.log(1.3) + e for e in noise]), base)
    assert decision is not None
    assert decision.verdict == "fail" and not decision.marginal
    assert decision.interval.low > 1.10
    assert decision.interval.estimate == pytest.approx(1.3, rel=0.02)
    assert decision.reason.startswith("lower bound 1.2") and decision.reason.endswith("> 1.10")


def test_inconclusive_before_budget_then_marginal_at_budget() -> None:
    rule = SequentialRule(1.10)
    # alternating +-0.5 around ln 1.12: estimate 1.12, interval far too wide to decide
    d = [math.log(1.12) + 0.5 * (-1) ** i for i in range(40)]
    cand = scaled(BASE40, d)
    for look in (5, 10, 20):
        assert rule.decide(cand[:look], BASE40[:look]) is None
    decision = rule.decide(cand, BASE40)
    assert decision is not None
    assert decision.verdict == "fail" and decision.marginal
    assert decision.reason == "budget reached: estimate 1.12 > 1.10"
    assert decision.interval.low < 1.10 < decision.interval.high
    # same noise around 1.05: marginal PASS
    decision = rule.decide(scaled(BASE40, [x - math.log(1.12 / 1.05) for x in d]), BASE40)
    assert decision is not None and decision.verdict == "pass" and decision.marginal
    assert decision.reason == "budget reached: estimate 1.05 <= 1.10"


def test_budget_verdict_is_marginal_even_when_interval_is_conclusive() -> None:
    # as sim.py's F2: every verdict taken at the budget is flagged marginal; the reason
    # notes that the interval alone would have decided
    base = BASE40[:12]
    decision = SequentialRule(1.10, budget=12).decide(scaled(base, [math.log(2.0)] * 12), base)
    assert decision is not None and decision.verdict == "fail" and decision.marginal
    assert decision.reason == "budget reached: estimate 2.00 > 1.10 (lower bound 2.00 > 1.10)"
    # a budget below min_fail_pairs never allows a FAIL by the interval
    short = SequentialRule(1.10, budget=8)
    decision = short.decide(scaled(base[:8], [math.log(2.0)] * 8), base[:8])
    assert decision is not None and decision.verdict == "fail" and decision.marginal
    assert decision.reason == "budget reached: estimate 2.00 > 1.10"


def test_reason_shows_enough_digits_to_be_true() -> None:
    base = BASE40
    decision = SequentialRule(1.10).force(scaled(base, [math.log(1.1004)] * 40), base, "x")
    assert decision.reason == "x: estimate 1.1004 > 1.1000"


def test_force_and_few_pairs() -> None:
    rule = SequentialRule(1.10)
    base = BASE40[:3]
    assert rule.decide([b * 1.5 for b in base[:1]], base[:1]) is None  # one pair: sample more
    decision = rule.force([b * 1.5 for b in base], base, "call budget exhausted")
    assert decision.verdict == "fail" and decision.marginal
    assert decision.reason == "call budget exhausted: estimate 1.50 > 1.10"
    with pytest.raises(ValueError, match="at least 2 pairs"):
        rule.force([1.0], [1.0], "x")
    with pytest.raises(ValueError, match="same length"):
        rule.decide([1.0, 2.0, 3.0], [1.0, 2.0])


def test_unpaired_rule_uses_yuen() -> None:
    rule = SequentialRule(1.10)
    rng = random.Random(7)
    base = [math.exp(rng.gauss(0.0, 0.02)) for _ in range(10)]
    cand = [1.5 * math.exp(rng.gauss(0.0, 0.02)) for _ in range(12)]
    decision = rule.decide(cand, base, paired=False)
    assert decision is not None and decision.verdict == "fail"
    assert decision.interval.n == 10


def _simulated_run(rng: random.Random, rule: SequentialRule, ratio: float) -> Decision:
    """One CI run on sim.py's ms/token noise model: CV 20%, half the log-variance shared
    within a pair, 3% of requests 2-5x slower."""
    sig2 = math.log(1 + 0.20**2)
    shared_sd, own_sd = math.sqrt(0.5 * sig2), math.sqrt(0.5 * sig2)

    def one(log_center: float) -> float:
        x = log_center + rng.gauss(0.0, own_sd)
        if rng.random() < 0.03:
            x += math.log(rng.uniform(2.0, 5.0))
        return 20.0 * math.exp(x)

    cand: list[float] = []
    base: list[float] = []
    for look in rule.schedule():
        while len(cand) < look:
            s = rng.gauss(0.0, shared_sd)
            cand.append(one(s + math.log(ratio)))
            base.append(one(s))
        decision = rule.decide(cand, base)
        if decision is not None:
            return decision
    raise AssertionError("the rule must decide at the budget")


def test_seeded_simulation_error_rates() -> None:
    rng = random.Random(1)
    rule = SequentialRule(1.10)
    at_1_00 = [_simulated_run(rng, rule, 1.00) for _ in range(100)]
    at_1_30 = [_simulated_run(rng, rule, 1.30) for _ in range(100)]
    assert sum(d.verdict == "pass" for d in at_1_00) >= 95
    assert sum(d.verdict == "fail" for d in at_1_30) >= 85
    # nothing changed: most runs stop well before the budget
    assert sum(d.interval.n for d in at_1_00) / 100 <= 25


# ---------------------------------------------------------------------------
# planning and reporting helpers
# ---------------------------------------------------------------------------
def test_pairs_needed_statistics_md_example() -> None:
    def sd_d(cv: float, rho: float) -> float:
        return math.sqrt(2 * math.log(1 + cv**2) * (1 - rho))

    # sd_d = 0.19804; (1.645 * 0.19804 / ln(1.2/1.1))^2 / 0.88 = 15.93 -> 16
    assert pairs_needed(sd_d(0.20, 0.5), 1.10, 1.20) == 16
    assert pairs_needed(sd_d(0.30, 0.5), 1.10, 1.20) == 36  # 35.002 rounded up; table: ~35
    assert pairs_needed(sd_d(0.05, 0.5), 1.10, 1.20) == 2  # table: ~1, floor of 2 pairs
    assert pairs_needed(0.0, 1.10, 1.20) == 2
    with pytest.raises(ValueError):
        pairs_needed(-0.1, 1.10, 1.20)
    with pytest.raises(ValueError):
        pairs_needed(0.2, 1.20, 1.10)


def test_decompose_shorter_answers() -> None:
    # metrics.md: 50 tokens instead of 200 at the same ms/token is ~75% faster end to end.
    # base E2E = 20 + 199 * 20 = 4000 ms; candidate 20 + 49 * 20 = 1000 ms -> -75%
    dec = decompose(20.0, 20.0, 200, 20.0, 20.0, 50)
    assert dec.total_change == pytest.approx(-0.75)
    assert dec.verbosity_part == pytest.approx(-0.75)
    assert dec.ttft_part == 0.0 and dec.speed_part == 0.0


def test_decompose_slower_but_shorter_and_sum() -> None:
    # 10% slower per token but 40% shorter: still faster overall
    dec = decompose(300.0, 20.0, 201, 330.0, 22.0, 121)
    base_e2e = 300 + 200 * 20
    cand_e2e = 330 + 120 * 22
    assert dec.total_change == pytest.approx((cand_e2e - base_e2e) / base_e2e)
    assert dec.total_change < 0
    assert dec.ttft_part == pytest.approx(30 / base_e2e)
    assert dec.speed_part == pytest.approx(120 * 2 / base_e2e)
    assert dec.verbosity_part == pytest.approx(-80 * 20 / base_e2e)
    assert dec.total_change == pytest.approx(dec.ttft_part + dec.speed_part + dec.verbosity_part)
    with pytest.raises(ValueError):
        decompose(0.0, 20.0, 1, 10.0, 20.0, 5)  # base E2E is zero
    with pytest.raises(ValueError):
        decompose(-1.0, 20.0, 10, 10.0, 20.0, 5)
