"""The regression gate's verdict and how it reads: pure data and formatting.

The runner (``regression.py``) draws the pairs; this module turns them into per-metric
verdicts with the sequential rule of ``stats`` and into the message users read.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from .measurement import display_model
from .metrics import METRICS, GatedMetric
from .prices import format_usd
from .stats import Decision, Decomposition, SequentialRule, decompose, pairs_needed, percentile

CAP_STOP_REASONS = frozenset({"max_tokens", "length", "max_length", "model_length"})
"""Stop reasons (lower-cased) of an answer cut off at its token cap, across model families."""


@dataclass(frozen=True)
class Sample:
    """The figures of one half of a pair (no text: reports stay free of answers)."""

    output_tokens: int | None
    ms_per_token: float | None
    ttft_ms: float | None
    total_ms: float | None  # None for stored samples, which keep only what the gate compares
    stop_reason: str | None
    started_at: float
    attempts: int = 1  # Bedrock attempts (1 + retries after throttling or errors)
    retry_wait_ms: float = 0.0  # time the client waited between attempts

    @property
    def capped(self) -> bool:
        """The answer stopped at its token cap (its length is censored)."""
        return (self.stop_reason or "").lower() in CAP_STOP_REASONS

    @property
    def throttled(self) -> bool:
        """The request met retries (429s): its latency includes a retry wait or a hot spell."""
        return self.attempts > 1 or self.retry_wait_ms > 0.0

    def value(self, key: str) -> float | None:
        value = getattr(self, key)
        if value is None:
            return None
        # A zero-token answer has no log; count it as one token (it is that short).
        return max(float(value), 1.0) if key == "output_tokens" else float(value)


@dataclass(frozen=True)
class Pair:
    """One back-to-back pair: the same request to the candidate and the base."""

    request: str  # request key (no prompt text)
    order: str  # "candidate-first" or "base-first"
    candidate: Sample
    base: Sample | None  # None when compared against stored samples


@dataclass(frozen=True)
class MetricVerdict:
    """One metric's verdict: the ratio candidate/base with its interval, and how it ended."""

    key: str
    label: str
    tolerance: float
    detect: float
    verdict: str  # "pass", "fail" or "undecided" (no usable pairs)
    marginal: bool
    estimate: float | None
    low: float | None
    high: float | None
    pairs: int
    sd_log: float | None
    reason: str
    pairs_needed: int | None
    base_p50: float | None
    candidate_p50: float | None
    lag1_autocorrelation: float | None = None
    widened: float = 1.0
    prompts: int = 0
    candidate_cap_hits: int = 0
    base_cap_hits: int = 0
    not_measured: bool = False

    @classmethod
    def from_decision(
        cls,
        metric: GatedMetric,
        decision: Decision,
        base: Sequence[float],
        candidate: Sequence[float],
    ) -> MetricVerdict:
        interval = decision.interval
        sd = interval.sd_log if math.isfinite(interval.sd_log) else None
        needed = pairs_needed(sd, decision.tolerance, decision.detect) if sd is not None else None
        return cls(
            metric.key,
            metric.label,
            decision.tolerance,
            decision.detect,
            decision.verdict,
            decision.marginal,
            interval.estimate,
            interval.low,
            interval.high,
            interval.n,
            sd,
            decision.reason,
            needed,
            percentile(base, 50) if base else None,
            percentile(candidate, 50) if candidate else None,
            decision.lag1,
            decision.widened,
            decision.clusters,
            decision.candidate_capped,
            decision.base_capped,
        )

    @classmethod
    def unmeasured(cls, metric: GatedMetric, rule: SequentialRule, reason: str) -> MetricVerdict:
        """A bounded metric the pairs could not measure: the gate fails on it."""
        return cls(
            metric.key,
            metric.label,
            rule.tolerance,
            rule.effective_detect(),
            "fail",
            False,
            None,
            None,
            None,
            0,
            None,
            reason,
            None,
            None,
            None,
            not_measured=True,
        )

    @property
    def failed(self) -> bool:
        return self.verdict == "fail"

    def line(self, budget: int) -> str:
        if self.estimate is None or self.low is None or self.high is None:
            return f"  {self.label:<14} FAIL not measured: {self.reason}"
        ratio = f"x{self.estimate:.2f} [{self.low:.2f}, {self.high:.2f}]"
        if self.failed:
            bound = f"> {self.tolerance:.2f} allowed"
            status = f"FAIL{' (marginal)' if self.marginal else ''} ({self.pairs} pairs)"
        else:
            bound = f"<= {self.tolerance:.2f}"
            status = "pass (marginal)" if self.marginal else "pass"
        text = f"  {self.label:<14} {ratio} {bound:<16} {status}"
        if self.candidate_cap_hits or self.base_cap_hits:
            text += (
                f"; token cap hit by the candidate {self.candidate_cap_hits}x, "
                f"the base {self.base_cap_hits}x"
            )
        if self.widened > 1.0 and self.lag1_autocorrelation is not None:
            text += (
                f"; interval widened x{self.widened:.2f} for serial correlation "
                f"(lag-1 r {self.lag1_autocorrelation:.2f})"
            )
        if self.failed and not self.marginal:
            text += f"\n    {self.reason}"
        if self.marginal and self.pairs_needed is not None and self.pairs_needed > budget:
            text += (
                f"\n    too noisy for x{self.tolerance:.2f} at this budget: about {self.pairs_needed} pairs "
                f"would be needed (budget {budget})"
            )
        return text


@dataclass(frozen=True)
class RegressionResult:
    """A regression gate's outcome for one test."""

    candidate: str
    base: str
    base_source: (
        str  # how the base was chosen, e.g. "--bedrock-baseline", "GetCustomModel baseModelArn"
    )
    stored: bool  # compared against stored samples instead of a live base
    policy: str
    budget: int
    metrics: tuple[MetricVerdict, ...]
    pairs: tuple[Pair, ...] = ()
    dropped_pairs: int = 0
    warmup_pairs: int = 0
    call_budget_exhausted: bool = False
    errors: tuple[str, ...] = ()
    decomposition: Decomposition | None = None
    throttled_pairs: int = 0  # pairs that met retries: kept out of the latency metrics
    concurrency: int = 1  # pairs in flight at once
    confidence: float = 0.99  # the session's P(no false FAIL)
    gates: int = 1  # gates of the session sharing that error rate
    prompts: int = 0  # distinct requests the pairs were drawn over
    cost_usd: float | None = None  # the gate's own calls (warm-up included); None: no price
    unpriced_calls: int = 0  # gate calls left out of cost_usd (no price for their model)
    cost_budget_exhausted: bool = False

    @property
    def failing(self) -> list[MetricVerdict]:
        """Metrics that fail the build under the policy (lenient forgives marginal fails)."""
        return [
            m for m in self.metrics if m.failed and not (m.marginal and self.policy == "lenient")
        ]

    @property
    def failed(self) -> bool:
        return bool(self.failing) or not self.metrics

    @property
    def marginal(self) -> bool:
        return any(m.marginal for m in self.metrics)

    def warnings(self) -> list[str]:
        out: list[str] = []
        for m in self.metrics:
            if m.marginal and m.pairs_needed is not None and m.pairs_needed > self.budget:
                out.append(
                    f"bedrock_regression: {m.label} too noisy for x{m.tolerance:.2f} at this budget: about "
                    f"{m.pairs_needed} pairs would be needed (budget {self.budget})"
                )
            if m.failed and m.marginal and self.policy == "lenient":
                out.append(
                    f"bedrock_regression: {m.label} x{m.estimate:.2f} > {m.tolerance:.2f} is marginal after "
                    f"{m.pairs} pairs; passed because policy is lenient"
                )
        if self.stored:
            out.append(
                "bedrock_regression: latency compared with stored base samples (verdict labelled 'stored'): "
                "a base measured in another session can drift 5-10%, which no statistics cancels"
            )
        return out

    def lines(self) -> list[str]:
        """The message: a headline, one line per metric, then the end-to-end split."""
        base = display_model(self.base) + (" (stored)" if self.stored else "")
        worse = [
            next(x.worse for x in METRICS if x.key == m.key)
            for m in self.failing
            if not m.not_measured
        ]
        unmeasured = [m.label for m in self.failing if m.not_measured]
        candidate = display_model(self.candidate)
        if worse:
            head = f"bedrock_regression: candidate {candidate} is {' and '.join(worse)} than {base}"
            if unmeasured:
                head += f" ({', '.join(unmeasured)} not measured)"
        elif unmeasured:
            head = (
                f"bedrock_regression: {', '.join(unmeasured)} not measured for candidate "
                f"{candidate} against {base}"
            )
        elif self.failed:
            head = f"bedrock_regression: no verdict for candidate {candidate} against {base}"
        else:
            head = f"bedrock_regression: candidate {candidate} is within bounds of {base}"
        lines = [head] + [m.line(self.budget) for m in self.metrics]
        if self.decomposition is not None:
            d = self.decomposition
            lines.append(
                f"  end to end {d.total_change:+.0%}: {d.verbosity_part:+.0%} verbosity, "
                f"{d.speed_part:+.0%} per-token speed, {d.ttft_part:+.0%} TTFT"
            )
        extra = []
        if self.call_budget_exhausted:
            extra.append("marginal: call budget exhausted (--bedrock-max-calls)")
        if self.cost_budget_exhausted:
            extra.append("marginal: cost budget exhausted (--bedrock-max-cost)")
        if self.dropped_pairs:
            extra.append(f"{self.dropped_pairs} pair(s) dropped after a failed request")
        if self.throttled_pairs:
            extra.append(
                f"{self.throttled_pairs} throttled pair(s) kept out of the latency metrics"
            )
        extra.append(f"{self.prompts} prompt(s)")
        extra.append(
            f"{len(self.pairs)} pairs + {self.warmup_pairs} warm-up, base from {self.base_source}"
        )
        lines.append("  " + "; ".join(extra))
        lines.append("  " + self.cost_line())
        lines.extend(f"  dropped: {e}" for e in self.errors[:3])
        return lines

    def cost_line(self) -> str:
        """What the gate's own calls cost, e.g. ``gate cost $0.0042`` or ``gate cost: no price``."""
        if self.cost_usd is None:
            return "gate cost: no price (give one with --bedrock-prices)"
        unpriced = f" + {self.unpriced_calls} call(s) with no price" if self.unpriced_calls else ""
        return f"gate cost {format_usd(self.cost_usd)}{unpriced}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RegressionResult:
        fields_ = dict(data)
        fields_["metrics"] = tuple(MetricVerdict(**m) for m in data["metrics"])
        fields_["pairs"] = tuple(
            Pair(
                p["request"],
                p["order"],
                Sample(**p["candidate"]),
                Sample(**p["base"]) if p["base"] else None,
            )
            for p in data["pairs"]
        )
        fields_["errors"] = tuple(data.get("errors", ()))
        if data.get("decomposition"):
            fields_["decomposition"] = Decomposition(**data["decomposition"])
        return cls(**fields_)


@dataclass
class MetricSeries:
    """One metric's aligned pairs: the values, each pair's request and cap flags."""

    candidate: list[float] = field(default_factory=list)
    base: list[float] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    candidate_capped: list[bool] = field(default_factory=list)
    base_capped: list[bool] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.candidate)


@dataclass
class PairSeries:
    """Per-metric aligned samples; a pair enters a metric only where both halves have it,
    and a latency metric only when neither half met throttling."""

    metrics: dict[str, MetricSeries] = field(
        default_factory=lambda: {m.key: MetricSeries() for m in METRICS}
    )
    throttled: int = 0

    @property
    def candidate(self) -> dict[str, list[float]]:
        return {k: s.candidate for k, s in self.metrics.items()}

    @property
    def base(self) -> dict[str, list[float]]:
        return {k: s.base for k, s in self.metrics.items()}

    def add(self, candidate: Sample, base: Sample, request: str = "") -> None:
        throttled = candidate.throttled or base.throttled
        self.throttled += throttled
        for m in METRICS:
            if m.latency and throttled:
                continue
            c, b = candidate.value(m.key), base.value(m.key)
            if c is not None and b is not None and c > 0 and b > 0:
                series = self.metrics[m.key]
                series.candidate.append(c)
                series.base.append(b)
                series.requests.append(request)
                series.candidate_capped.append(candidate.capped)
                series.base_capped.append(base.capped)


def end_to_end_split(series: PairSeries) -> Decomposition | None:
    """Split the median end-to-end change into TTFT, per-token speed and verbosity."""
    medians: dict[str, tuple[float, float]] = {}
    for m in METRICS:
        b, c = series.base[m.key], series.candidate[m.key]
        if not b or not c:
            return None
        medians[m.key] = (percentile(b, 50), percentile(c, 50))
    try:
        return decompose(
            medians["ttft_ms"][0],
            medians["ms_per_token"][0],
            medians["output_tokens"][0],
            medians["ttft_ms"][1],
            medians["ms_per_token"][1],
            medians["output_tokens"][1],
        )
    except ValueError:
        return None


GATED_METRICS = 3  # every gate decides all three metrics; the error share counts them


def build_rule(
    metric: GatedMetric,
    tolerance: float,
    budget: int,
    *,
    confidence: float = 0.99,
    gates: int = 1,
) -> SequentialRule:
    """The sequential rule the gate decides ``metric`` with.

    The session's false-FAIL rate ``1 - confidence`` is split evenly (Bonferroni) over the
    session's ``gates`` and their three metrics, and each metric's share ``a`` over the looks
    at which it may FAIL: every FAIL needs the candidate significantly worse than its base (a
    one-sided lower bound above 1) at level ``a / 2`` at the budget and ``a / (2 K)`` at each
    of the ``K`` earlier looks from ``min_fail_pairs`` on. (Without the split over looks,
    twenty gates failed an unchanged model in 5% of simulated sessions.)

    Alone in its session, a metric with its own ``budget_alpha`` uses that looser level at
    the budget: there a FAIL also needs the estimate above the tolerance, which keeps its
    false FAILs within the metric's share (measured). With more gates that condition no
    longer does (it does not shrink with the share), so every bound is at its share.
    """
    gates = max(1, gates)
    share = (1.0 - confidence) / (GATED_METRICS * gates)
    shape = SequentialRule(tolerance=tolerance, budget=budget)
    early_looks = sum(1 for n in shape.schedule()[:-1] if n >= shape.min_fail_pairs)
    error_alpha = share / (2 * max(1, early_looks))
    budget_alpha = share / 2
    if metric.budget_alpha is not None and gates == 1:
        budget_alpha = max(budget_alpha, metric.budget_alpha)
    return SequentialRule(
        tolerance=tolerance,
        detect=metric.detect_for(tolerance),
        budget=budget,
        estimator=metric.estimator,
        error_alpha=error_alpha,
        budget_alpha=budget_alpha,
    )
