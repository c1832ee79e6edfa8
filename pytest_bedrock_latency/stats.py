"""Pure statistics for the regression verdict: no numpy, no scipy, no pytest, no boto3.

The verdict compares a candidate model with its base model on back-to-back *pairs* of
identical requests. For one metric (ms/token, TTFT, output tokens) each pair gives a log
ratio ``d_i = ln(candidate_i) - ln(base_i)``. The rule in :class:`SequentialRule` is the
"F2 GS-CI" rule recommended by the project's simulation study
(``statistics.md`` section 5, ``sim.py``'s ``r_gs``):

* estimate ``ln(ratio)`` by the 20%-trimmed mean of the ``d_i``;
* its standard error by the Tukey-McLaughlin formula (winsorised sd), with
  ``df = n - 2g - 1`` where ``g = floor(0.2 n)``;
* a two-sided 95% Student-t interval ``[LB, UB]``;
* at the looks 5/10/20/40 pairs: FAIL if ``LB > ln(tolerance)`` (only from 10 pairs on),
  PASS if ``UB < ln(detect)`` and the estimate ``<= ln(tolerance)``, otherwise sample more;
* at the budget, decide by the point estimate and flag the verdict *marginal*.

Every number the plugin prints (the ratio, its interval, ``n``, the sd of the log ratios)
comes from :class:`Interval`, which is computed in exactly one place
(:func:`_log_interval` on top of :func:`_trimmed_summary`), so the printed interval is the
one the verdict was decided on.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from statistics import NormalDist
from typing import Literal

__all__ = [
    "Decision",
    "Decomposition",
    "Interval",
    "SequentialRule",
    "Verdict",
    "decompose",
    "paired_log_ratio_interval",
    "pairs_needed",
    "percentile",
    "t_quantile",
    "trimmed_mean",
    "unpaired_log_ratio_interval",
]

Verdict = Literal["pass", "fail"]


# ---------------------------------------------------------------------------
# descriptive statistics
# ---------------------------------------------------------------------------
def _checked_values(values: Sequence[float], what: str) -> list[float]:
    """Return ``values`` as a list of floats; reject empty input and NaN.

    NaN is rejected because it makes sorting (and so every order statistic) undefined.
    """
    xs = [float(v) for v in values]
    if not xs:
        raise ValueError(f"{what}: no values (empty input)")
    if any(math.isnan(v) for v in xs):
        raise ValueError(f"{what}: input contains NaN")
    return xs


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (``0 <= q <= 100``) of ``values`` by linear interpolation.

    Identical to numpy's default ``method="linear"`` (type 7 of Hyndman & Fan): the
    percentile sits at fractional rank ``h = (n - 1) * q / 100`` of the sorted values.

    Raises:
        ValueError: empty input, NaN in the input, or ``q`` outside ``[0, 100]``.
    """
    if not 0.0 <= q <= 100.0:  # also false for NaN
        raise ValueError(f"percentile: q must be in [0, 100], got {q!r}")
    xs = sorted(_checked_values(values, "percentile"))
    h = (len(xs) - 1) * (q / 100.0)
    lo = math.floor(h)
    if lo >= len(xs) - 1:
        return xs[-1]
    frac = h - lo
    a, b = xs[lo], xs[lo + 1]
    # numpy's _lerp: interpolate from the nearer end so that the result is monotone in q
    # and exact at both ends; this is what makes our values bit-identical to numpy's.
    if frac >= 0.5:
        return b - (b - a) * (1.0 - frac)
    return a + (b - a) * frac


@dataclass(frozen=True)
class _TrimmedSummary:
    """Core numerics of a trimmed mean, shared by every estimator in this module."""

    mean: float  # trimmed mean
    winsorised_var: float  # sample variance (n - 1 divisor) of the winsorised values; nan if n < 2
    n: int  # number of values
    h: int  # number of values kept after trimming, n - 2g


def _trimmed_summary(values: Sequence[float], trim: float) -> _TrimmedSummary:
    """Trimmed mean and winsorised variance of ``values`` (the only place they are computed).

    ``g = floor(trim * n)`` values are cut from each end (the same ``floor`` as sim.py, so the
    cut-off at n = 5, 10, 20, 40 is 1, 2, 4, 8 values). The winsorised sample replaces the
    ``g`` smallest values by the smallest kept one and the ``g`` largest by the largest kept
    one; its variance feeds the Tukey-McLaughlin standard error.
    """
    if not 0.0 <= trim < 0.5:
        raise ValueError(f"trim must be in [0, 0.5), got {trim!r}")
    xs = sorted(_checked_values(values, "trimmed mean"))
    n = len(xs)
    g = math.floor(trim * n)
    h = n - 2 * g
    mean = math.fsum(xs[g : n - g]) / h
    if n < 2:
        return _TrimmedSummary(mean, math.nan, n, h)
    w = [xs[g]] * g + xs[g : n - g] + [xs[n - g - 1]] * g
    wm = math.fsum(w) / n
    # two-pass variance with fsum: exact enough that zero spread gives exactly 0.0
    var = math.fsum((x - wm) ** 2 for x in w) / (n - 1)
    return _TrimmedSummary(mean, var, n, h)


def trimmed_mean(values: Sequence[float], trim: float = 0.2) -> float:
    """Mean of ``values`` after cutting ``floor(trim * n)`` values from each end.

    ``trim=0.2`` (the default) is the 20%-trimmed mean: about 88% as efficient as the mean
    on clean normal data, but barely moved by a few percent of 2-5x slow requests.

    Raises:
        ValueError: empty input, NaN, or ``trim`` outside ``[0, 0.5)``.
    """
    return _trimmed_summary(values, trim).mean


# ---------------------------------------------------------------------------
# Student-t quantile without scipy
# ---------------------------------------------------------------------------
_BETACF_EPS = 1e-15
_BETACF_TINY = 1e-300


def _lentz_step(aa: float, c: float, d: float) -> tuple[float, float, float]:
    """One modified-Lentz update for the coefficient ``aa``: the new ``c``, ``d`` and factor."""
    d = 1.0 + aa * d
    d = 1.0 / (d if abs(d) >= _BETACF_TINY else _BETACF_TINY)
    c = 1.0 + aa / c
    c = c if abs(c) >= _BETACF_TINY else _BETACF_TINY
    return c, d, c * d


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz; Numerical Recipes)."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = 1.0
    d = 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) >= _BETACF_TINY else _BETACF_TINY)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        # Each iteration applies the even and then the odd coefficient of the fraction.
        c, d, factor = _lentz_step(m * (b - m) * x / ((qam + m2) * (a + m2)), c, d)
        h *= factor
        c, d, delta = _lentz_step(-(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)), c, d)
        h *= delta
        if abs(delta - 1.0) < _BETACF_EPS:
            return h
    raise ArithmeticError("incomplete beta continued fraction did not converge")  # pragma: no cover


def _reg_inc_beta(a: float, b: float, x: float, y: float) -> float:
    """Regularised incomplete beta ``I_x(a, b)``, with ``y = 1 - x`` passed in exactly.

    Passing ``y`` separately avoids the cancellation in ``1 - x`` when ``x`` is close to 1
    (small t), which would otherwise cost digits exactly where the quantile search starts.
    """
    if x <= 0.0:
        return 0.0
    if y <= 0.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log(y)
    )
    front = math.exp(log_front)
    # the continued fraction converges fast only for x < (a+1)/(a+b+2); use the symmetry
    # I_x(a, b) = 1 - I_y(b, a) on the other side
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, y) / b


def _t_upper_tail(t: float, df: float) -> float:
    """``P(T > t)`` for ``t >= 0`` and Student-t with ``df`` degrees of freedom."""
    t2 = t * t
    return 0.5 * _reg_inc_beta(df / 2.0, 0.5, df / (df + t2), t2 / (df + t2))


def _t_pdf(t: float, df: float) -> float:
    log_c = math.lgamma((df + 1.0) / 2.0) - math.lgamma(df / 2.0) - 0.5 * math.log(df * math.pi)
    return math.exp(log_c - (df + 1.0) / 2.0 * math.log1p(t * t / df))


@functools.lru_cache(maxsize=1024)
def _t_quantile_upper(p: float, df: float) -> float:
    """Quantile for ``p > 0.5`` (cached: the rule asks for the same few (p, df) all the time)."""
    if df == 1.0:  # Cauchy: exact closed form
        return math.tan(math.pi * (p - 0.5))
    if df == 2.0:  # exact closed form
        return (2.0 * p - 1.0) * math.sqrt(2.0 / (4.0 * p * (1.0 - p)))
    z = NormalDist().inv_cdf(p)
    if math.isinf(df) or df > 1e7:
        return z
    target = 1.0 - p  # solve P(T > t) = 1 - p; working on the tail keeps precision near p = 1
    # Cornish-Fisher start: within a few % for df >= 3 at the probabilities used here.
    z2 = z * z
    t = z * (
        1.0
        + (z2 + 1.0) / (4.0 * df)
        + (5.0 * z2 * z2 + 16.0 * z2 + 3.0) / (96.0 * df * df)
        + (3.0 * z2**3 + 19.0 * z2 * z2 + 17.0 * z2 - 15.0) / (384.0 * df**3)
    )
    # Safeguarded Newton: keep a bracket [lo, hi] with tail(lo) > target > tail(hi) and
    # fall back to bisection whenever a Newton step leaves it, so it always converges.
    lo, hi = 0.0, max(t, 1.0)
    while _t_upper_tail(hi, df) > target:
        lo, hi = hi, hi * 2.0
    if not lo < t < hi:
        t = 0.5 * (lo + hi)
    for _ in range(200):
        tail = _t_upper_tail(t, df)
        if tail > target:
            lo = t
        else:
            hi = t
        step = (tail - target) / _t_pdf(t, df)
        t_new = t + step
        if not lo < t_new < hi:
            t_new = 0.5 * (lo + hi)
        if abs(t_new - t) <= 1e-14 * max(1.0, abs(t)):
            return t_new
        t = t_new
    return t  # pragma: no cover  (bisection alone reaches 1e-14 well within 200 steps)


def t_quantile(p: float, df: float) -> float:
    """Quantile function of Student's t distribution: the ``t`` with ``P(T <= t) = p``.

    Computed by inverting the regularised incomplete beta function (continued fraction)
    with a safeguarded Newton iteration; exact closed forms for ``df`` 1 and 2, the normal
    quantile for ``df = inf``. Accurate to about 1e-12 relative, far below the 1e-4 the
    verdict needs. ``df`` may be fractional (Welch-Satterthwaite).

    Raises:
        ValueError: ``p`` not in ``(0, 1)`` or ``df <= 0`` / NaN.
    """
    if not 0.0 < p < 1.0:
        raise ValueError(f"t_quantile: p must be in (0, 1), got {p!r}")
    if not df > 0.0:
        raise ValueError(f"t_quantile: df must be > 0, got {df!r}")
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -_t_quantile_upper(1.0 - p, float(df))
    return _t_quantile_upper(float(p), float(df))


# ---------------------------------------------------------------------------
# interval of the ratio
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Interval:
    """Estimate and confidence interval of a candidate/base ratio, on the ratio scale.

    All three ratio values are ``exp`` of the log-scale values the verdict was decided on.

    Attributes:
        estimate: ``exp`` of the 20%-trimmed mean of the per-pair log ratios.
        low: lower confidence bound of the ratio.
        high: upper confidence bound of the ratio.
        n: number of pairs used (unpaired: the smaller of the two sample sizes).
        sd_log: sample sd (``n - 1`` divisor) of the per-pair log ratios; ``nan`` if
            ``n < 2``. Unpaired: ``sqrt(var(ln c) + var(ln b))``, the sd of one candidate
            log minus one base log, so :func:`pairs_needed` reads it the same way.
    """

    estimate: float
    low: float
    high: float
    n: int
    sd_log: float


@dataclass(frozen=True)
class _LogInterval:
    """Log-scale interval; the rule compares these exact values against ``ln(tol)``."""

    estimate: float
    se: float
    df: float
    low: float
    high: float
    n: int
    sd_log: float

    def ratio(self) -> Interval:
        return Interval(
            estimate=math.exp(self.estimate),
            low=math.exp(self.low),
            high=math.exp(self.high),
            n=self.n,
            sd_log=self.sd_log,
        )


def _positive_logs(values: Sequence[float], what: str) -> list[float]:
    out: list[float] = []
    for v in values:
        x = float(v)
        # a zero or negative latency / token count has no log ratio; it is a measurement
        # bug (or n_out <= 1 for ms/token) that the caller must drop as a missing pair
        if not x > 0.0 or math.isinf(x):
            raise ValueError(f"{what} values must be positive and finite, got {v!r}")
        out.append(math.log(x))
    return out


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")


def _sample_sd(xs: Sequence[float]) -> float:
    n = len(xs)
    if n < 2:
        return math.nan
    m = math.fsum(xs) / n
    return math.sqrt(math.fsum((x - m) ** 2 for x in xs) / (n - 1))


def _log_interval(
    candidate: Sequence[float], base: Sequence[float], trim: float, confidence: float
) -> _LogInterval:
    """Paired interval of ``ln(ratio)``: sim.py's ``trim_t(..., paired=True)`` plus the t-CI."""
    _check_confidence(confidence)
    if len(candidate) != len(base):
        raise ValueError(
            f"candidate and base must be paired (same length), got {len(candidate)} and "
            f"{len(base)}; drop both halves of a failed pair"
        )
    n = len(candidate)
    if n < 2:
        raise ValueError(
            f"need at least 2 pairs for an interval, got {n}: the spread of the log ratios, "
            "and so the interval, cannot be estimated from one pair"
        )
    logs_c, logs_b = _positive_logs(candidate, "candidate"), _positive_logs(base, "base")
    d = [c - b for c, b in zip(logs_c, logs_b, strict=False)]
    s = _trimmed_summary(d, trim)
    if s.h < 2:
        raise ValueError(f"{n} pairs leave {s.h} after trimming {trim:.0%} from each end; need 2")
    # Tukey-McLaughlin: se = s_w / ((h/n) sqrt(n)); written exactly as sim.py does
    se = math.sqrt(s.winsorised_var) / ((s.h / n) * math.sqrt(n))
    df = float(s.h - 1)
    q = t_quantile(1.0 - (1.0 - confidence) / 2.0, df)
    half = q * se  # exactly 0.0 for zero spread: the interval collapses to the estimate
    return _LogInterval(s.mean, se, df, s.mean - half, s.mean + half, n, _sample_sd(d))


def _log_interval_unpaired(
    candidate: Sequence[float], base: Sequence[float], trim: float, confidence: float
) -> _LogInterval:
    """Yuen's two-sample trimmed t on the logs with Welch df (sim.py's unpaired ``trim_t``)."""
    _check_confidence(confidence)
    lc, lb = _positive_logs(candidate, "candidate"), _positive_logs(base, "base")
    if min(len(lc), len(lb)) < 2:
        raise ValueError(
            f"need at least 2 values per side, got {len(lc)} and {len(lb)}: the spread cannot "
            "be estimated from one value"
        )
    sc, sb = _trimmed_summary(lc, trim), _trimmed_summary(lb, trim)
    if min(sc.h, sb.h) < 2:
        raise ValueError(f"too few values left after trimming {trim:.0%} from each end; need 2")
    dc = (sc.n - 1) * sc.winsorised_var / (sc.h * (sc.h - 1))
    db = (sb.n - 1) * sb.winsorised_var / (sb.h * (sb.h - 1))
    se = math.sqrt(dc + db)
    den = dc * dc / (sc.h - 1) + db * db / (sb.h - 1)
    # zero spread on both sides: df is irrelevant (the half-width is 0); use the smaller h - 1
    df = (dc + db) ** 2 / den if den > 0.0 else float(min(sc.h, sb.h) - 1)
    q = t_quantile(1.0 - (1.0 - confidence) / 2.0, df)
    est = sc.mean - sb.mean
    half = q * se
    sd = math.sqrt(_sample_sd(lc) ** 2 + _sample_sd(lb) ** 2)
    return _LogInterval(est, se, df, est - half, est + half, min(sc.n, sb.n), sd)


def paired_log_ratio_interval(
    candidate: Sequence[float],
    base: Sequence[float],
    *,
    trim: float = 0.2,
    confidence: float = 0.95,
) -> Interval:
    """Robust confidence interval of the candidate/base ratio from paired measurements.

    ``candidate[i]`` and ``base[i]`` must be the same request sent back to back. With
    ``d_i = ln(candidate_i) - ln(base_i)``, ``g = floor(trim * n)`` and ``h = n - 2g``:

    * estimate = ``trim``-trimmed mean of the ``d_i``;
    * se = winsorised sd / ((h / n) * sqrt(n))  (Tukey-McLaughlin);
    * interval = estimate +- t(1 - (1 - confidence)/2, df = h - 1) * se;

    all reported as ratios (``exp``). With zero spread the interval collapses to the estimate.

    Raises:
        ValueError: unequal lengths (a failed request must drop its whole pair), a value
            that is not positive and finite (no log ratio exists), fewer than 2 pairs
            (no spread, hence no interval, can be estimated from one pair), or invalid
            ``trim`` / ``confidence``.
    """
    return _log_interval(candidate, base, trim, confidence).ratio()


def unpaired_log_ratio_interval(
    candidate: Sequence[float],
    base: Sequence[float],
    *,
    trim: float = 0.2,
    confidence: float = 0.95,
) -> Interval:
    """Fallback for unpaired samples: Yuen's trimmed two-sample t-interval on the logs.

    Use only when the two models could not be measured on the same prompts back to back:
    without pairing, prompt effects and drift stay in the noise (statistics.md section 4).
    ``n`` is the smaller sample size; the sample sizes may differ.

    Raises:
        ValueError: fewer than 2 values on a side, a non-positive value, invalid parameters.
    """
    return _log_interval_unpaired(candidate, base, trim, confidence).ratio()


# ---------------------------------------------------------------------------
# the sequential decision rule
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Decision:
    """Verdict of :class:`SequentialRule` for one metric.

    Attributes:
        verdict: ``"fail"`` if the candidate is judged worse than ``tolerance``, else ``"pass"``.
        marginal: the data did not settle the question: the verdict was taken by the point
            estimate, at the pair budget or because :meth:`SequentialRule.force` was called.
        interval: the ratio estimate and interval the verdict was decided on.
        tolerance: the fail line (ratio).
        detect: the ratio a regression must be caught at (early PASS needs ``high < detect``).
        reason: short human phrase, e.g. ``"lower bound 1.14 > 1.10"``.
    """

    verdict: Verdict
    marginal: bool
    interval: Interval
    tolerance: float
    detect: float
    reason: str


def _fmt_pair(a: float, b: float) -> tuple[str, str]:
    """Format two ratios with 2 decimals, more if needed so a printed '<' or '>' is visibly true."""
    for digits in range(2, 7):
        sa, sb = f"{a:.{digits}f}", f"{b:.{digits}f}"
        if sa != sb:
            return sa, sb
    return sa, sb


_DEFAULT_LOOKS: tuple[int, ...] = (5, 10, 20, 40)


@dataclass(frozen=True)
class SequentialRule:
    """The three-way group-sequential "F2 GS-CI" rule on paired log ratios.

    Collect pairs up to each look of :meth:`schedule` and call :meth:`decide` with all pairs
    so far; ``None`` means "sample more pairs". At each look before the budget:

    * FAIL if the lower confidence bound > ``tolerance`` and ``n >= min_fail_pairs``
      (no early FAIL on 5 pairs: too few for a trustworthy spread);
    * PASS if the upper bound < ``detect`` and the estimate <= ``tolerance``;

    At the budget (the last look) the verdict is FAIL iff the estimate > ``tolerance``,
    flagged ``marginal`` as in sim.py's F2 (so the published marginal/lenient rates hold);
    the reason says when the interval would have been conclusive anyway.

    Measured with the defaults on ms/token-like noise (CV 20%, half the log-variance shared
    within a pair, 3% of requests 2-5x slow): false FAIL 0.5% at ratio 1.00, 8.5% at 1.05,
    power 93.6% at 1.20, on average 14.7 pairs when nothing changed (statistics.md 5.1).

    Attributes:
        tolerance: fail line as a ratio (e.g. 1.10 = 10% worse); at least 1.0.
        detect: ratio that must be caught with high power; ``None`` means
            ``round(tolerance * 1.2 / 1.1, 4)`` (1.20 for 1.10; sim.py's default).
        budget: maximum number of pairs; the last look.
        looks: interim looks (pairs); those below ``budget`` are used, then ``budget``.
        min_fail_pairs: no FAIL on a confidence bound before this many pairs.
        confidence: two-sided confidence level of the interval.
        trim: fraction trimmed from each end for the trimmed mean.
    """

    tolerance: float
    detect: float | None = None
    budget: int = 40
    looks: tuple[int, ...] = _DEFAULT_LOOKS
    min_fail_pairs: int = 10
    confidence: float = 0.95
    trim: float = 0.2

    def __post_init__(self) -> None:
        if not (math.isfinite(self.tolerance) and self.tolerance >= 1.0):
            raise ValueError(
                f"tolerance is a ratio fail line and must be >= 1.0 (e.g. 1.10 for 10% worse), "
                f"got {self.tolerance!r}"
            )
        if self.detect is not None and not (
            math.isfinite(self.detect) and self.detect > self.tolerance
        ):
            raise ValueError(
                f"detect must be greater than tolerance ({self.tolerance}), got {self.detect!r}: "
                "an early PASS needs room between the fail line and the ratio to catch"
            )
        if isinstance(self.budget, bool) or not isinstance(self.budget, int) or self.budget < 2:
            raise ValueError(
                "budget must be an integer >= 2 pairs (one pair has no spread), "
                f"got {self.budget!r}"
            )
        if any(isinstance(x, bool) or not isinstance(x, int) or x < 1 for x in self.looks):
            raise ValueError(f"looks must be positive integers, got {self.looks!r}")
        if any(b <= a for a, b in zip(self.looks, self.looks[1:], strict=False)):
            raise ValueError(f"looks must be strictly increasing, got {self.looks!r}")
        if (
            isinstance(self.min_fail_pairs, bool)
            or not isinstance(self.min_fail_pairs, int)
            or self.min_fail_pairs < 2
        ):
            raise ValueError(f"min_fail_pairs must be an integer >= 2, got {self.min_fail_pairs!r}")
        _check_confidence(self.confidence)
        if not 0.0 <= self.trim < 0.5:
            raise ValueError(f"trim must be in [0, 0.5), got {self.trim!r}")

    def effective_detect(self) -> float:
        """``detect``, or its default ``round(tolerance * 1.2 / 1.1, 4)`` (1.20 at 1.10)."""
        if self.detect is not None:
            return self.detect
        # rounded like sim.py so that 1.10 gives exactly 1.2 rather than 1.2000000000000002
        return round(self.tolerance * 1.2 / 1.1, 4)

    def schedule(self) -> tuple[int, ...]:
        """Pair counts at which to call :meth:`decide`: the looks below the budget, then the budget.

        E.g. budget 40 -> (5, 10, 20, 40); 30 -> (5, 10, 20, 30); 8 -> (5, 8).
        """
        return (*tuple(x for x in self.looks if x < self.budget), self.budget)

    def next_look(self, n: int) -> int | None:
        """The first look strictly after ``n`` pairs, or ``None`` once ``n >= budget``."""
        for look in self.schedule():
            if look > n:
                return look
        return None

    def _interval(
        self, candidate: Sequence[float], base: Sequence[float], paired: bool
    ) -> _LogInterval:
        if paired:
            return _log_interval(candidate, base, self.trim, self.confidence)
        return _log_interval_unpaired(candidate, base, self.trim, self.confidence)

    def _decision(
        self, li: _LogInterval, verdict: Verdict, marginal: bool, reason: str
    ) -> Decision:
        return Decision(
            verdict=verdict,
            marginal=marginal,
            interval=li.ratio(),
            tolerance=self.tolerance,
            detect=self.effective_detect(),
            reason=reason,
        )

    def _conclusive(self, li: _LogInterval) -> Decision | None:
        """The interim test on the log scale (compared exactly as sim.py's r_gs does)."""
        ln_tol = math.log(self.tolerance)
        detect = self.effective_detect()
        ratio = li.ratio()
        if li.low > ln_tol and li.n >= self.min_fail_pairs:
            lo, tol = _fmt_pair(ratio.low, self.tolerance)
            return self._decision(li, "fail", False, f"lower bound {lo} > {tol}")
        if li.high < math.log(detect) and li.estimate <= ln_tol:
            hi, det = _fmt_pair(ratio.high, detect)
            return self._decision(li, "pass", False, f"upper bound {hi} < detect {det}")
        return None

    def _by_estimate(self, li: _LogInterval, prefix: str) -> Decision:
        est, tol = _fmt_pair(li.ratio().estimate, self.tolerance)
        if li.estimate > math.log(self.tolerance):
            return self._decision(li, "fail", True, f"{prefix}: estimate {est} > {tol}")
        return self._decision(li, "pass", True, f"{prefix}: estimate {est} <= {tol}")

    def decide(
        self, candidate: Sequence[float], base: Sequence[float], *, paired: bool = True
    ) -> Decision | None:
        """Decide on all pairs collected so far, or return ``None`` to sample more.

        Call it at the looks of :meth:`schedule` only: every extra look spends false-alarm
        probability, and the documented error rates assume these looks. With fewer than 2
        pairs it returns ``None``. From ``budget`` pairs on it always decides, by the point
        estimate, flagged ``marginal`` (the reason notes a conclusive interval).

        ``paired=False`` switches to Yuen's unpaired interval (same thresholds).

        Raises:
            ValueError: unequal lengths when paired, or a non-positive value.
        """
        if paired and len(candidate) != len(base):
            raise ValueError(
                f"candidate and base must be paired (same length), got {len(candidate)} and "
                f"{len(base)}"
            )
        n = min(len(candidate), len(base))
        if n < 2 and n < self.budget:
            return None
        li = self._interval(candidate, base, paired)
        decision = self._conclusive(li)
        if n < self.budget:
            return decision
        # At the budget sim.py's F2 labels every verdict marginal, and the published
        # marginal/lenient error rates depend on that; a conclusive interval is only noted.
        # The verdict is the same either way (a conclusive FAIL has estimate > tol, a
        # conclusive PASS has estimate <= tol).
        forced = self._by_estimate(li, "budget reached")
        if decision is None:
            return forced
        return replace(forced, reason=f"{forced.reason} ({decision.reason})")

    def force(
        self,
        candidate: Sequence[float],
        base: Sequence[float],
        reason: str,
        *,
        paired: bool = True,
    ) -> Decision:
        """A marginal verdict by the point estimate now, e.g. when the call budget ran out.

        ``reason`` becomes the start of :attr:`Decision.reason`
        (``"<reason>: estimate 1.12 > 1.10"``).

        Raises:
            ValueError: fewer than 2 pairs (no interval can be reported), unequal lengths
                when paired, or a non-positive value.
        """
        return self._by_estimate(self._interval(candidate, base, paired), reason)


# ---------------------------------------------------------------------------
# planning and reporting helpers
# ---------------------------------------------------------------------------
def pairs_needed(sd_log: float, tolerance: float, detect: float) -> int:
    """Estimated pairs for a fixed-size design to separate ``tolerance`` from ``detect``.

    statistics.md section 5.2: ``n* = (1.645 * sd_log / ln(detect / tolerance))**2 / 0.88``,
    rounded up and at least 2. 1.645 is the one-sided 95% normal quantile; 0.88 is the
    efficiency of the 20%-trimmed mean. Print it with a marginal verdict; if it exceeds the
    budget the metric is too noisy for this tolerance.

    Example: ms/token CV 20%, half the log-variance shared within a pair,
    ``sd_log = sqrt(2 ln(1.04) * 0.5) = 0.198`` -> 16 pairs for 1.10 / 1.20.

    Raises:
        ValueError: ``sd_log`` negative or not finite, or not ``0 < tolerance < detect``.
    """
    if not (math.isfinite(sd_log) and sd_log >= 0.0):
        raise ValueError(f"sd_log must be finite and >= 0, got {sd_log!r}")
    if not (0.0 < tolerance < detect and math.isfinite(detect)):
        raise ValueError(f"need 0 < tolerance < detect, got {tolerance!r} and {detect!r}")
    n = (1.645 * sd_log / math.log(detect / tolerance)) ** 2 / 0.88
    return max(2, math.ceil(n))


@dataclass(frozen=True)
class Decomposition:
    """Relative change of end-to-end time, split into its causes.

    All fields are fractions of the base end-to-end time; ``total_change`` is their sum.

    Attributes:
        total_change: relative change of E2E, e.g. ``0.38`` for +38%.
        ttft_part: share due to the change in time to first token.
        speed_part: share due to the change in ms/token, over the candidate's tokens.
        verbosity_part: share due to the change in output tokens, at the base's ms/token.
    """

    total_change: float
    ttft_part: float
    speed_part: float
    verbosity_part: float


def decompose(
    base_ttft_ms: float,
    base_ms_per_token: float,
    base_tokens: float,
    cand_ttft_ms: float,
    cand_ms_per_token: float,
    cand_tokens: float,
) -> Decomposition:
    """Split the change in end-to-end time into TTFT, speed and verbosity parts.

    Uses the model ``E2E = TTFT + (n - 1) * TPOT``, under which
    ``dE2E = dTTFT + (n_c - 1) * dTPOT + (n_c - n_b) * TPOT_b`` holds exactly. The
    approximation is the model itself: fed with typical values (medians or trimmed means
    of each metric), the result approximates the change of the typical E2E, which is not
    in general the ratio of measured E2E medians. Each part is divided by the base E2E.

    Example: 200 -> 50 tokens at the same ms/token and a TTFT of one token time is -75%.

    Raises:
        ValueError: a negative or non-finite input, or a base E2E of zero.
    """
    args = (
        base_ttft_ms,
        base_ms_per_token,
        base_tokens,
        cand_ttft_ms,
        cand_ms_per_token,
        cand_tokens,
    )
    if not all(math.isfinite(x) and x >= 0.0 for x in args):
        raise ValueError(f"decompose: inputs must be finite and >= 0, got {args!r}")
    base_e2e = base_ttft_ms + max(base_tokens - 1.0, 0.0) * base_ms_per_token
    if base_e2e <= 0.0:
        raise ValueError("decompose: base end-to-end time is zero; nothing to compare against")
    ttft_part = (cand_ttft_ms - base_ttft_ms) / base_e2e
    # max(n - 1, 0): an empty answer has no inter-token time, consistent with base_e2e
    speed_part = max(cand_tokens - 1.0, 0.0) * (cand_ms_per_token - base_ms_per_token) / base_e2e
    verbosity_part = (
        (max(cand_tokens - 1.0, 0.0) - max(base_tokens - 1.0, 0.0)) * base_ms_per_token / base_e2e
    )
    return Decomposition(
        total_change=ttft_part + speed_part + verbosity_part,
        ttft_part=ttft_part,
        speed_part=speed_part,
        verbosity_part=verbosity_part,
    )
