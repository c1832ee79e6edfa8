"""The three metrics the regression gate compares, defined once.

The gate, its messages, the reports, the plots, the pytest-benchmark bridge and the
``bedrock_latency`` / ``bedrock_length`` bounds all read these definitions: the name of
the :class:`~pytest_bedrock_latency.measurement.Generation` field, the label and unit
users read, how a value is formatted, the default tolerance of ``bedrock_regression`` and
the ratio it must catch (``detect``), and how the gate estimates the ratio.

Pure data: no pytest, no boto3.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["METRICS", "GatedMetric", "by_key"]

Estimator = Literal["hodges-lehmann", "ratio-of-means"]


@dataclass(frozen=True)
class GatedMetric:
    """One gated metric.

    Attributes:
        key: the ``Generation`` / gate ``Sample`` field (``"ms_per_token"``).
        label: what users read (``"ms/token"``).
        unit: the unit of a value (``"ms"`` or ``"tokens"``).
        digits: decimals when a value is printed.
        argument: the ``bedrock_regression`` argument holding its tolerance.
        default_tolerance: the fail line as a ratio candidate/base.
        default_detect: the ratio the gate must catch with high power at the default
            tolerance; for another tolerance it scales with it (:meth:`detect_for`).
        estimator: ``"hodges-lehmann"`` (typical per-pair log ratio: latency) or
            ``"ratio-of-means"`` (mean over the same prompts: tokens users pay for).
        latency: a time figure; pairs that met throttling never decide it.
        worse: how the gate's headline says the candidate is worse.
        bench_group: the pytest-benchmark group of the bridge.
        bench_scale: multiply a value by this to store it in pytest-benchmark (seconds).
        bench_unit: the unit stored in pytest-benchmark.
        plot_title: the title of the plot panel.
        budget_alpha: for a FAIL at the pair budget in a session with one gate, the level
            of the "significantly worse than the base" bound; ``None``: the metric's share
            of the session error, like an early FAIL. ms/token's estimate at 40 pairs is
            precise enough that the looser level keeps its false FAILs at 0.24% (measured,
            within its 0.33% share) and its power at 1.20 at 94%; TTFT's at 0.24% and 93%
            at 1.50 (10% for ms/token would let slow bursts fail 6.5% of unchanged runs).
            With more gates in the session every bound is at its share.
    """

    key: str
    label: str
    unit: str
    digits: int
    argument: str
    default_tolerance: float
    default_detect: float
    estimator: Estimator
    latency: bool
    worse: str
    bench_group: str
    bench_scale: float
    bench_unit: str
    plot_title: str
    budget_alpha: float | None = None

    def format(self, value: float | None) -> str:
        """A value with its unit, e.g. ``"12.3 ms"`` or ``"301 tokens"``; ``"-"`` if missing."""
        if value is None:
            return "-"
        return f"{value:.{self.digits}f} {self.unit}"

    def detect_for(self, tolerance: float) -> float:
        """The ratio to catch at ``tolerance``: the default detect scaled with it.

        ``detect_for(default_tolerance) == default_detect`` exactly (ms/token 1.10 -> 1.20,
        TTFT 1.25 -> 1.50, output tokens 1.15 -> 1.30).
        """
        if tolerance == self.default_tolerance:
            return self.default_detect
        return round(tolerance * self.default_detect / self.default_tolerance, 4)


METRICS: tuple[GatedMetric, ...] = (
    GatedMetric(
        key="output_tokens",
        label="output tokens",
        unit="tokens",
        digits=0,
        argument="max_verbosity",
        default_tolerance=1.15,
        default_detect=1.30,
        estimator="ratio-of-means",
        latency=False,
        worse="more verbose",
        bench_group="bedrock output tokens (counts, not seconds)",
        bench_scale=1.0,
        bench_unit="tokens",
        plot_title="output tokens",
    ),
    GatedMetric(
        key="ms_per_token",
        label="ms/token",
        unit="ms",
        digits=1,
        argument="max_slowdown",
        default_tolerance=1.10,
        default_detect=1.20,
        estimator="hodges-lehmann",
        latency=True,
        worse="slower per token",
        bench_group="bedrock ms/token",
        bench_scale=1e-3,
        bench_unit="s",
        plot_title="ms/token",
        budget_alpha=0.05,
    ),
    GatedMetric(
        key="ttft_ms",
        label="TTFT",
        unit="ms",
        digits=1,
        argument="max_ttft_slowdown",
        default_tolerance=1.25,
        default_detect=1.50,
        estimator="hodges-lehmann",
        latency=True,
        worse="slower to the first token",
        bench_group="bedrock TTFT",
        bench_scale=1e-3,
        bench_unit="s",
        plot_title="time to first token",
        budget_alpha=0.025,
    ),
)


def by_key(key: str) -> GatedMetric:
    """The metric whose field is ``key``.

    Raises:
        KeyError: no gated metric has that field.
    """
    for metric in METRICS:
        if metric.key == key:
            return metric
    raise KeyError(f"no gated metric {key!r} (known: {', '.join(m.key for m in METRICS)})")
