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
    lag1_autocorrelation,
    paired_log_ratio_interval,
    pairs_needed,
    percentile,
    signed_rank_cut,
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
    assert SequentialRule(1.10).schedule() == (*range(6, 40, 2), 40)
    assert SequentialRule(1.10, budget=9).schedule() == (6, 8, 9)
    assert SequentialRule(1.10, budget=5).schedule() == (5,)
    rule = SequentialRule(1.10)
    assert [rule.next_look(n) for n in (0, 5, 6, 7, 38, 39, 40)] == [6, 6, 8, 8, 40, 40, None]


def test_signed_rank_cut_matches_the_exact_null_law() -> None:
    # n = 6: P(W+ = 0) = 1/64 <= 2.5% < P(W+ <= 1) = 2/64, so the bound is the extreme value
    assert signed_rank_cut(6, 0.025) == 1
    assert signed_rank_cut(6, 0.01) == 0  # no 99% bound exists at 6 pairs
    # n = 10: P(W+ <= 8) = 25/1024 = 0.0244, P(W+ <= 9) = 33/1024 = 0.0322 (tables)
    assert signed_rank_cut(10, 0.025) == 9
    # beyond 120 pairs the normal approximation: one more pair adds about (n + 1) / 2 ranks
    step = signed_rank_cut(121, 0.025) - signed_rank_cut(120, 0.025)
    assert 40 <= step <= 70


def test_hodges_lehmann_estimate_and_bounds_by_hand() -> None:
    # d = 0, ln 2, 2 ln 2 (ratios 1, 2, 4): Walsh averages 0, .5, 1, 1, 1.5, 2 (x ln 2)
    rule = SequentialRule(1.10, detect=1.2, budget=40)
    ev = rule.evidence([1.0, 2.0, 4.0], [1.0, 1.0, 1.0])
    assert math.exp(ev.estimate) == pytest.approx(2.0)
    assert ev.low == -math.inf and ev.high == math.inf  # 3 pairs: no 97.5% bound exists


def test_detect_default_and_validation() -> None:
    assert SequentialRule(1.10).effective_detect() == 1.2
    assert SequentialRule(1.25, detect=1.5).effective_detect() == 1.5
    for kwargs, message in [
        (dict(tolerance=0.9), "tolerance"),
        (dict(tolerance=1.10, detect=1.05), "detect must be greater"),
        (dict(tolerance=1.10, budget=1), "budget"),
        (dict(tolerance=1.10, fail_alpha=0.0), "fail_alpha"),
        (dict(tolerance=1.10, estimator="mean"), "estimator"),
    ]:
        with pytest.raises(ValueError, match=message):
            SequentialRule(**kwargs)  # type: ignore[arg-type]


def test_early_pass_needs_six_pairs_and_spread() -> None:
    rng = random.Random(3)
    base = [20.0 * math.exp(rng.gauss(0, 0.1)) for _ in range(6)]
    cand = [b * math.exp(rng.gauss(0, 0.01)) for b in base]
    rule = SequentialRule(1.10)
    assert rule.decide(cand[:4], base[:4]) is None
    decision = rule.decide(cand, base)
    assert decision is not None and decision.verdict == "pass" and not decision.marginal


def test_ties_never_pass_early() -> None:
    # temperature 0: every pair ties exactly; the bounds have no width
    rule = SequentialRule(1.15, detect=1.3, estimator="ratio-of-means")
    base = [300.0] * 40
    for n in rule.schedule()[:-1]:
        assert rule.decide(base[:n], base[:n]) is None
    decision = rule.decide(base, base)
    assert decision is not None and decision.verdict == "pass" and decision.marginal


def test_concentrated_verbosity_fails_at_temperature_0() -> None:
    # 5 deterministic prompts, one answering 2.5x longer: +30% mean tokens over the prompts
    rule = SequentialRule(1.15, detect=1.3, estimator="ratio-of-means")
    keys = [f"p{i % 5}" for i in range(40)]
    base = [200.0] * 40
    cand = [500.0 if k == "p0" else 200.0 for k in keys]
    verdicts = [
        rule.decide(cand[:n], base[:n], clusters=keys[:n], required_clusters=5)
        for n in rule.schedule()
    ]
    decided = next(d for d in verdicts if d is not None)
    assert decided.verdict == "fail" and not decided.marginal
    assert decided.interval.estimate == pytest.approx(1.3)


def test_no_verbosity_pass_before_every_prompt_was_seen() -> None:
    rule = SequentialRule(1.15, detect=1.3, estimator="ratio-of-means")
    rng = random.Random(5)
    keys = [f"p{i}" for i in range(12)]
    base = [rng.uniform(100, 400) for _ in keys]
    cand = [b * math.exp(rng.gauss(0, 0.02)) for b in base]
    assert rule.decide(cand, base, clusters=keys, required_clusters=20) is None
    decision = rule.decide(cand, base, clusters=keys, required_clusters=12)
    assert decision is not None and decision.verdict == "pass"


def test_cap_hits_block_an_early_pass_and_fail_when_the_candidate_hits_more() -> None:
    rule = SequentialRule(1.15, detect=1.3, estimator="ratio-of-means")
    rng = random.Random(2)
    base = [rng.uniform(200, 400) for _ in range(20)]
    cand = [b * math.exp(rng.gauss(0, 0.02)) for b in base]
    capped = [i % 4 == 0 for i in range(20)]  # 25% of the candidate's answers at the cap
    assert rule.decide(cand, base, candidate_capped=capped) is None
    assert rule.decide(cand, base) is not None  # the same values without caps pass
    many = [i < 12 for i in range(20)]
    decision = rule.decide(cand, base, candidate_capped=many)
    assert decision is not None and decision.verdict == "fail"
    assert "token cap in 12 of 20 pairs" in decision.reason
    assert decision.candidate_capped == 12 and decision.base_capped == 0


def test_fail_on_clear_regression_from_ten_pairs_and_budget_verdicts() -> None:
    rng = random.Random(4)
    base = [20.0 * math.exp(rng.gauss(0, 0.2)) for _ in range(40)]
    slow = [b * 1.6 * math.exp(rng.gauss(0, 0.05)) for b in base]
    rule = SequentialRule(1.10)
    assert rule.decide(slow[:8], base[:8]) is None  # no FAIL before 10 pairs
    decision = rule.decide(slow[:10], base[:10])
    assert decision is not None and decision.verdict == "fail" and not decision.marginal
    assert decision.reason.startswith("lower bound")
    near = [b * 1.12 * math.exp(rng.gauss(0, 0.3)) for b in base]
    at_budget = rule.decide(near, base)
    assert at_budget is not None and at_budget.marginal
    assert at_budget.reason.startswith("budget reached")


def test_marginal_fail_at_the_budget_needs_significance() -> None:
    # estimate above the line but the interval includes 1: a marginal PASS that says so
    rule = SequentialRule(1.10, budget=12)
    base = [20.0] * 12
    d = [0.9, -0.7, 0.8, -0.6, 0.7, -0.5, 0.6, -0.4, 0.5, -0.3, 0.45, -0.2]
    cand = [b * math.exp(x) for b, x in zip(base, d, strict=True)]
    decision = rule.decide(cand, base)
    assert decision is not None and decision.marginal and decision.interval.estimate > 1.10
    assert decision.verdict == "pass" and "not significantly above 1" in decision.reason
    # stopped early by a cap, the estimate alone decides
    forced = rule.force(cand, base, "call budget exhausted")
    assert forced.verdict == "fail" and forced.marginal


def test_serial_correlation_is_reported_and_widens() -> None:
    rule = SequentialRule(1.10)
    base = [20.0] * 20
    # slow spells: consecutive pairs share their log ratio
    d = [0.05 * ((i // 5) % 2 * 2 - 1) for i in range(20)]
    cand = [b * math.exp(x) for b, x in zip(base, d, strict=True)]
    ev = rule.evidence(cand, base)
    assert ev.lag1 is not None and ev.lag1 > 0.5
    assert ev.widened > 1.5
    plain = SequentialRule(1.10, widen_serial=False).evidence(cand, base)
    assert ev.high - ev.estimate > plain.high - plain.estimate
    assert lag1_autocorrelation([1.0, 2.0]) is None
    assert lag1_autocorrelation([1.0, 1.0, 1.0]) is None


def _simulated_run(rng: random.Random, rule: SequentialRule, ratio: float) -> Decision:
    """One gate run on sim.py-like ms/token noise (CV 20%, half shared within a pair)."""
    cand: list[float] = []
    base: list[float] = []
    for look in rule.schedule():
        while len(cand) < look:
            shared = rng.gauss(0, 0.14)
            base.append(20.0 * math.exp(shared + rng.gauss(0, 0.14)))
            cand.append(20.0 * ratio * math.exp(shared + rng.gauss(0, 0.14)))
        decision = rule.decide(cand, base)
        if decision is not None:
            return decision
    raise AssertionError("the rule must decide at the budget")


def test_seeded_simulation_error_rates() -> None:
    rng = random.Random(1)
    rule = SequentialRule(1.10, detect=1.2)
    at_1_00 = [_simulated_run(rng, rule, 1.00) for _ in range(100)]
    at_1_30 = [_simulated_run(rng, rule, 1.30) for _ in range(100)]
    assert sum(d.verdict == "pass" for d in at_1_00) >= 97
    assert sum(d.verdict == "fail" for d in at_1_30) >= 95
    # nothing changed: most runs stop well before the budget
    assert sum(d.interval.n for d in at_1_00) / 100 <= 16


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
