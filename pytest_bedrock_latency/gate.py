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
from .metrics import GatedMetric
from .stats import Decision, Decomposition, SequentialRule, decompose, pairs_needed, percentile


@dataclass(frozen=True)
class Metric:
    """A metric the gate compares, with the marker argument that bounds it."""

    key: str  # Generation field
    label: str
    argument: str  # RegressionGate field holding its tolerance
    worse: str  # how the headline says the candidate is worse


METRICS: tuple[Metric, ...] = (
    Metric("output_tokens", "output tokens", "max_verbosity", "more verbose"),
    Metric("ms_per_token", "ms/token", "max_slowdown", "slower per token"),
    Metric("ttft_ms", "TTFT", "max_ttft_slowdown", "slower to the first token"),
)


@dataclass(frozen=True)
class Sample:
    """The figures of one half of a pair (no text: reports stay free of answers)."""

    output_tokens: int | None
    ms_per_token: float | None
    ttft_ms: float | None
    total_ms: float | None  # None for stored samples, which keep only what the gate compares
    stop_reason: str | None
    started_at: float

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

    @classmethod
    def from_decision(
        cls, metric: Metric, decision: Decision, base: Sequence[float], candidate: Sequence[float]
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
        )

    @classmethod
    def undecided(cls, metric: Metric, rule: SequentialRule, reason: str) -> MetricVerdict:
        return cls(
            metric.key,
            metric.label,
            rule.tolerance,
            rule.effective_detect(),
            "undecided",
            True,
            None,
            None,
            None,
            0,
            None,
            reason,
            None,
            None,
            None,
        )

    @property
    def failed(self) -> bool:
        return self.verdict == "fail"

    def line(self, budget: int) -> str:
        if self.estimate is None or self.low is None or self.high is None:
            return f"  {self.label:<14} not measured: {self.reason}"
        ratio = f"x{self.estimate:.2f} [{self.low:.2f}, {self.high:.2f}]"
        if self.failed:
            bound = f"> {self.tolerance:.2f} allowed"
            status = f"FAIL{' (marginal)' if self.marginal else ''} ({self.pairs} pairs)"
        else:
            bound = f"<= {self.tolerance:.2f}"
            status = "pass (marginal)" if self.marginal else "pass"
        text = f"  {self.label:<14} {ratio} {bound:<16} {status}"
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

    @property
    def failing(self) -> list[MetricVerdict]:
        """Metrics that fail the build under the policy (lenient forgives marginal fails)."""
        return [
            m for m in self.metrics if m.failed and not (m.marginal and self.policy == "lenient")
        ]

    @property
    def failed(self) -> bool:
        return (
            bool(self.failing)
            or not self.metrics
            or all(m.verdict == "undecided" for m in self.metrics)
        )

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
        worse = [next(x.worse for x in METRICS if x.key == m.key) for m in self.failing]
        candidate = display_model(self.candidate)
        if worse:
            head = f"bedrock_regression: candidate {candidate} is {' and '.join(worse)} than {base}"
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
        if self.dropped_pairs:
            extra.append(f"{self.dropped_pairs} pair(s) dropped after a failed request")
        extra.append(
            f"{len(self.pairs)} pairs + {self.warmup_pairs} warm-up, base from {self.base_source}"
        )
        lines.append("  " + "; ".join(extra))
        lines.extend(f"  dropped: {e}" for e in self.errors[:3])
        return lines

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
class PairSeries:
    """Per-metric aligned samples; a pair enters a metric only where both halves have it."""

    candidate: dict[str, list[float]] = field(default_factory=lambda: {m.key: [] for m in METRICS})
    base: dict[str, list[float]] = field(default_factory=lambda: {m.key: [] for m in METRICS})

    def add(self, candidate: Sample, base: Sample) -> None:
        for m in METRICS:
            c, b = candidate.value(m.key), base.value(m.key)
            if c is not None and b is not None and c > 0 and b > 0:
                self.candidate[m.key].append(c)
                self.base[m.key].append(b)


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
    session's ``gates`` and their three metrics: every FAIL needs the candidate
    significantly worse than its base (a one-sided lower bound above 1) at level
    ``(1 - confidence) / (3 * gates)``; at the budget, a metric with its own
    ``budget_alpha`` uses that level divided by ``gates`` (if looser).
    """
    gates = max(1, gates)
    error_alpha = (1.0 - confidence) / (GATED_METRICS * gates)
    budget_alpha = None
    if metric.budget_alpha is not None:
        budget_alpha = max(error_alpha, metric.budget_alpha / gates)
    return SequentialRule(
        tolerance=tolerance,
        detect=metric.detect_for(tolerance),
        budget=budget,
        estimator=metric.estimator,
        error_alpha=error_alpha,
        budget_alpha=budget_alpha,
    )
