"""Pure statistics for the regression verdict: no numpy, no scipy, no pytest, no boto3.

The verdict compares a candidate model with its base model on back-to-back *pairs* of
identical requests. For one metric (ms/token, TTFT, output tokens) each pair gives a log
ratio ``d_i = ln(candidate_i) - ln(base_i)``. :class:`SequentialRule` decides on them at
looks every 2 pairs from 6 on: latency by the Hodges-Lehmann estimate with exact Wilcoxon
signed-rank bounds, output tokens by the ratio of prompt-mean tokens with a
prompt-clustered bound. FAIL when the lower bound is above the tolerance, PASS when the
upper bound is below ``detect`` and the estimate within the tolerance, otherwise sample
more; at the budget the point estimate decides and the verdict is *marginal*. The
trimmed-mean interval below (:func:`paired_log_ratio_interval`) is kept for reports and
the unpaired fallback.

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
    return _log_interval_unpaired_logs(lc, lb, confidence, trim)


def _log_interval_unpaired_logs(
    lc: list[float], lb: list[float], confidence: float, trim: float = 0.2
) -> _LogInterval:
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
    without pairing, prompt effects and drift (both larger than a 10% effect) stay in the noise.
    ``n`` is the smaller sample size; the sample sizes may differ.

    Raises:
        ValueError: fewer than 2 values on a side, a non-positive value, invalid parameters.
    """
    return _log_interval_unpaired(candidate, base, trim, confidence).ratio()


# ---------------------------------------------------------------------------
# the sequential decision rule
# ---------------------------------------------------------------------------
Estimator = Literal["hodges-lehmann", "ratio-of-means"]
ESTIMATORS: tuple[str, ...] = ("hodges-lehmann", "ratio-of-means")

_EXACT_SIGNED_RANK_MAX_N = 120  # exact null law up to here (O(n^3) integers), normal beyond
# Widen for serial correlation when the lag-1 autocorrelation exceeds this many of its
# standard errors under independence (1/sqrt(n)): 16% of independent runs are widened. A
# stricter 1.645 widens fewer clean runs (0.2 pairs saved at 1.00) but lets AR(1) phi = 0.3
# reach 1.6% false FAILs and slow bursts 7.9% (measured), so the wider net stays.
_SERIAL_Z = 1.0


@functools.lru_cache(maxsize=256)
def _signed_rank_cdf(n: int) -> tuple[float, ...]:
    """``P(W+ <= w)`` for ``w = 0 .. n(n+1)/2`` under the null (exact, continuous data)."""
    top = n * (n + 1) // 2
    counts = [0] * (top + 1)
    counts[0] = 1
    for k in range(1, n + 1):
        # the number of subsets of {1..k} with rank sum w, updated in place from the top
        for w in range(top, k - 1, -1):
            counts[w] += counts[w - k]
    total = 2**n
    out: list[float] = []
    running = 0
    for c in counts:
        running += c
        out.append(running / total)
    return tuple(out)


@functools.lru_cache(maxsize=4096)
def signed_rank_cut(n: int, alpha: float) -> int:
    """How many Walsh averages a one-sided ``1 - alpha`` signed-rank bound cuts off.

    The largest ``k`` with ``P(W+ <= k - 1) <= alpha`` under the null law of Wilcoxon's
    signed-rank statistic ``W+`` for ``n`` pairs: the ``k``-th smallest of the
    ``n(n+1)/2`` Walsh averages is then a lower confidence bound of the centre of
    symmetry at level ``1 - alpha`` (exact for continuous data symmetric about it), and
    the ``k``-th largest an upper one. 0 means no bound exists at this level (too few
    pairs: at ``n = 6`` the smallest attainable level is ``1/64``). Exact up to
    120 pairs, the normal approximation beyond.
    """
    if n < 1:
        return 0
    if n > _EXACT_SIGNED_RANK_MAX_N:
        top = n * (n + 1) / 2.0
        sd = math.sqrt(n * (n + 1) * (2 * n + 1) / 24.0)
        return max(0, math.floor(top / 2.0 + NormalDist().inv_cdf(alpha) * sd + 0.5))
    cdf = _signed_rank_cdf(n)
    k = 0
    while k < len(cdf) and cdf[k] <= alpha:
        k += 1
    return k


def lag1_autocorrelation(values: Sequence[float]) -> float | None:
    """Lag-1 autocorrelation of ``values`` in the order given; ``None`` below 3 values or
    when they do not vary.

    The gate computes it on the per-pair log ratios in the order the pairs were drawn: a
    high value means consecutive pairs share slow or fast spells that the pairing does not
    cancel, so the pairs carry less information than their number says.
    """
    xs = [float(v) for v in values]
    n = len(xs)
    if n < 3:
        return None
    m = math.fsum(xs) / n
    den = math.fsum((x - m) ** 2 for x in xs)
    if den <= 0.0:
        return None
    return math.fsum((xs[i] - m) * (xs[i + 1] - m) for i in range(n - 1)) / den


def _binomial_upper_tail(k: int, n: int) -> float:
    """``P(X >= k)`` for ``X ~ Binomial(n, 1/2)`` (exact)."""
    if k <= 0:
        return 1.0
    return math.fsum(math.comb(n, i) for i in range(k, n + 1)) / 2.0**n


@dataclass(frozen=True)
class Evidence:
    """What one look computed, on the log scale (the rule compares these exact values).

    Attributes:
        estimate: ``ln`` of the ratio estimate.
        low: one-sided ``1 - fail_alpha`` lower bound (a FAIL needs it above the
            tolerance), ``-inf`` if none exists.
        significance: one-sided ``1 - error_alpha`` lower bound (a FAIL needs it above 0:
            the candidate significantly worse than its base at the session's error share).
        budget_significance: the same at ``budget_alpha``, for a FAIL at the budget.
        high: one-sided upper confidence bound (the PASS side), ``inf`` if none exists.
        n: pairs.
        sd_log: sd of the per-pair log ratios (``nan`` below 2 pairs).
        lag1: lag-1 autocorrelation of the per-pair log ratios in draw order.
        widened: the bounds were widened for serial correlation by this factor (1.0: not).
        clusters: distinct requests (prompts) among the pairs.
        candidate_capped: pairs whose candidate answer stopped at the token cap.
        base_capped: pairs whose base answer stopped at the token cap.
        degenerate: the bounds have no width (ties): no PASS may rest on them.
    """

    estimate: float
    low: float
    significance: float
    budget_significance: float
    high: float
    n: int
    sd_log: float
    lag1: float | None
    widened: float
    clusters: int
    candidate_capped: int
    base_capped: int
    degenerate: bool

    def ratio(self) -> Interval:
        return Interval(
            estimate=math.exp(self.estimate),
            low=math.exp(self.low) if math.isfinite(self.low) else 0.0,
            high=math.exp(self.high) if math.isfinite(self.high) else math.inf,
            n=self.n,
            sd_log=self.sd_log,
        )


@dataclass(frozen=True)
class Decision:
    """Verdict of :class:`SequentialRule` for one metric.

    Attributes:
        verdict: ``"fail"`` if the candidate is judged worse than ``tolerance``, else ``"pass"``.
        marginal: the data did not settle the question: the verdict was taken by the point
            estimate, at the pair budget or because :meth:`SequentialRule.force` was called.
        interval: the ratio estimate with its one-sided bounds: ``low`` the lower bound a
            FAIL needs above ``tolerance``, ``high`` the upper bound a PASS needs below
            ``detect``.
        tolerance: the fail line (ratio).
        detect: the ratio a regression must be caught at.
        reason: short human phrase, e.g. ``"lower bound 1.14 > 1.10"``.
        lag1: lag-1 autocorrelation of the per-pair log ratios (draw order), if defined.
        widened: factor the bounds were widened by for serial correlation (1.0: not).
        clusters: distinct requests among the pairs.
        candidate_capped: pairs whose candidate answer stopped at the token cap.
        base_capped: pairs whose base answer stopped at the token cap.
    """

    verdict: Verdict
    marginal: bool
    interval: Interval
    tolerance: float
    detect: float
    reason: str
    lag1: float | None = None
    widened: float = 1.0
    clusters: int = 0
    candidate_capped: int = 0
    base_capped: int = 0


def _fmt_pair(a: float, b: float) -> tuple[str, str]:
    """Format two ratios with 2 decimals, more if needed so a printed '<' or '>' is visibly true."""
    for digits in range(2, 7):
        sa, sb = f"{a:.{digits}f}", f"{b:.{digits}f}"
        if sa != sb:
            return sa, sb
    return sa, sb


def _flags(values: Sequence[bool] | None, n: int, what: str) -> list[bool]:
    if values is None:
        return [False] * n
    flags = [bool(v) for v in values]
    if len(flags) != n:
        raise ValueError(f"{what}: one flag per pair expected, got {len(flags)} for {n} pairs")
    return flags


@dataclass(frozen=True)
class SequentialRule:
    """The three-way sequential rule of the regression gate, for one metric.

    Collect pairs up to each look of :meth:`schedule` (6, 8, 10, ... pairs, then the
    budget) and call :meth:`decide` with all pairs so far; ``None`` means "sample more".

    The estimate of the ratio candidate/base depends on ``estimator``:

    * ``"hodges-lehmann"`` (latency): on ``d_i = ln c_i - ln b_i``, the median of the
      Walsh averages ``(d_i + d_j) / 2``, with exact Wilcoxon signed-rank bounds (order
      statistics of the Walsh averages). Distribution-free for any continuous ``d``
      symmetric about ``ln(ratio)``, which random order within a back-to-back pair and a
      change of scale give; 3% of requests 2-5x slow barely move it.
    * ``"ratio-of-means"`` (output tokens): the ratio of mean tokens over the same
      prompts (each prompt weighted equally), what users pay for, with a t bound on
      the delta-method standard error clustered by prompt (``clusters``). An early PASS
      needs every one of ``required_clusters`` prompts seen and the token cap not binding
      on the candidate (more than 5% of its answers at the cap); verbosity FAILs early
      also when the candidate stops at the cap significantly more often than the base
      (exact sign test on the pairs where only one of them did).

    At each look before the budget:

    * FAIL if ``n >= min_fail_pairs`` and the one-sided ``1 - fail_alpha`` lower bound
      is above ``ln(tolerance)``;
    * PASS if the one-sided upper bound (``1 - pass_alpha_early`` up to ``early_until``
      pairs, ``1 - pass_alpha`` after) is below ``ln(detect)``, the estimate is at most
      ``ln(tolerance)`` and the bounds have width (a zero or degenerate spread, e.g.
      tied token counts, never passes);
    * otherwise sample more.

    For latency, when the lag-1 autocorrelation ``r`` of the per-pair log ratios (in draw
    order) exceeds ``1 / sqrt(n)`` (16% of the time without serial correlation), all
    bounds are widened about the estimate by ``sqrt((1 + r) / (1 - r))``, the variance
    inflation of a mean under AR(1) correlation (``r`` capped at 0.8). Verbosity pairs
    visit prompts in random order, so there it is only reported.

    Every FAIL also needs the candidate significantly worse than its base: a one-sided
    ``1 - error_alpha`` lower bound above 1 (``budget_alpha`` at the budget, if set). The
    gate sets ``error_alpha`` to its share of the session's false-FAIL rate.

    At the budget the verdict is FAIL iff the estimate > ``tolerance`` (and significantly
    above 1), flagged ``marginal``.

    Attributes:
        tolerance: fail line as a ratio (e.g. 1.10 = 10% worse); at least 1.0.
        detect: ratio that must be caught with high power; ``None`` means
            ``round(tolerance * 1.2 / 1.1, 4)``. The gate passes each metric's own.
        budget: maximum number of pairs; the last look.
        estimator: ``"hodges-lehmann"`` or ``"ratio-of-means"``.
        first_look: pairs at the first look.
        look_every: pairs between looks.
        min_fail_pairs: no FAIL on a confidence bound before this many pairs.
        fail_alpha: one-sided error level of the FAIL bound (the gate splits the
            session's error rate over its gates and metrics).
        pass_alpha_early: one-sided level of the PASS bound up to ``early_until`` pairs.
        pass_alpha: one-sided level of the PASS bound after ``early_until`` pairs.
        early_until: see ``pass_alpha_early``.
        widen_serial: widen the bounds when the lag-1 autocorrelation is high.
    """

    tolerance: float
    detect: float | None = None
    budget: int = 40
    estimator: Estimator = "hodges-lehmann"
    first_look: int = 6
    look_every: int = 2
    min_fail_pairs: int = 10
    fail_alpha: float = 0.025
    error_alpha: float = 0.01 / 3
    pass_alpha_early: float = 0.02
    pass_alpha: float = 0.014
    early_until: int = 12
    budget_alpha: float | None = None
    widen_serial: bool = True

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
        for name in ("budget", "first_look", "look_every", "min_fail_pairs", "early_until"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.budget < 2:
            raise ValueError(
                f"budget must be at least 2 pairs (one pair has no spread), got {self.budget!r}"
            )
        if self.min_fail_pairs < 2:
            raise ValueError(f"min_fail_pairs must be >= 2, got {self.min_fail_pairs!r}")
        for name in ("fail_alpha", "error_alpha", "budget_alpha", "pass_alpha_early", "pass_alpha"):
            value = getattr(self, name)
            if value is None:
                continue
            if not 0.0 < value < 0.5:
                raise ValueError(f"{name} must be in (0, 0.5), got {value!r}")
        if self.estimator not in ESTIMATORS:
            raise ValueError(
                f"estimator must be one of {', '.join(ESTIMATORS)}, got {self.estimator!r}"
            )

    def effective_detect(self) -> float:
        """``detect``, or its default ``round(tolerance * 1.2 / 1.1, 4)`` (1.20 at 1.10)."""
        if self.detect is not None:
            return self.detect
        return round(self.tolerance * 1.2 / 1.1, 4)

    def schedule(self) -> tuple[int, ...]:
        """Pair counts at which to call :meth:`decide`: every ``look_every`` pairs from
        ``first_look`` below the budget, then the budget (40 -> 6, 8, ..., 38, 40)."""
        looks = range(max(2, self.first_look), self.budget, self.look_every)
        return (*looks, self.budget)

    def next_look(self, n: int) -> int | None:
        """The first look strictly after ``n`` pairs, or ``None`` once ``n >= budget``."""
        for look in self.schedule():
            if look > n:
                return look
        return None

    def _budget_alpha(self) -> float:
        return self.error_alpha if self.budget_alpha is None else self.budget_alpha

    def _pass_alpha(self, n: int) -> float:
        return self.pass_alpha_early if n <= self.early_until else self.pass_alpha

    # -- evidence --------------------------------------------------------------------------
    def evidence(
        self,
        candidate: Sequence[float],
        base: Sequence[float],
        *,
        clusters: Sequence[str] | None = None,
        candidate_capped: Sequence[bool] | None = None,
        base_capped: Sequence[bool] | None = None,
        paired: bool = True,
    ) -> Evidence:
        """The estimate and bounds at ``n = len(candidate)`` pairs (see the class docstring).

        Raises:
            ValueError: unequal lengths when paired, fewer than 2 pairs, a value that is
                not positive and finite, or flags / clusters not one per pair.
        """
        if paired and len(candidate) != len(base):
            raise ValueError(
                f"candidate and base must be paired (same length), got {len(candidate)} and "
                f"{len(base)}; drop both halves of a failed pair"
            )
        n = min(len(candidate), len(base))
        if n < 2:
            raise ValueError(f"need at least 2 pairs for a bound, got {n}")
        lc, lb = _positive_logs(candidate, "candidate"), _positive_logs(base, "base")
        capped_c = _flags(candidate_capped, len(lc), "candidate_capped")
        capped_b = _flags(base_capped, len(lb), "base_capped")
        keys = list(clusters) if clusters is not None else [str(i) for i in range(n)]
        if paired and len(keys) != n:
            raise ValueError(f"clusters: one key per pair expected, got {len(keys)} for {n}")
        if not paired:
            return self._unpaired(lc, lb, n)
        d = [c - b for c, b in zip(lc, lb, strict=True)]
        a_pass = self._pass_alpha(n)
        if self.estimator == "hodges-lehmann":
            est, low, sig, bsig, high = _hodges_lehmann(
                d, (self.fail_alpha, self.error_alpha, self._budget_alpha()), a_pass
            )
        else:
            # A capped answer is censored (its length is at least the cap): such pairs are
            # left out of the mean ratio and judged by the cap-hit counts instead.
            kept = [i for i in range(n) if not (capped_c[i] or capped_b[i])]
            if len(kept) >= 2:
                est, low, sig, bsig, high = _ratio_of_means(
                    [float(candidate[i]) for i in kept],
                    [float(base[i]) for i in kept],
                    [keys[i] for i in kept],
                    (self.fail_alpha, self.error_alpha, self._budget_alpha()),
                    a_pass,
                )
            else:
                est, low, sig, bsig, high = 0.0, -math.inf, -math.inf, -math.inf, math.inf
        r1 = lag1_autocorrelation(d)
        factor = 1.0
        serial = self.widen_serial and self.estimator == "hodges-lehmann"
        if serial and r1 is not None and r1 > _SERIAL_Z / math.sqrt(n):
            r = min(r1, 0.8)
            factor = math.sqrt((1.0 + r) / (1.0 - r))
            low = est - factor * (est - low)
            sig = est - factor * (est - sig)
            bsig = est - factor * (est - bsig)
            high = est + factor * (high - est)
        return Evidence(
            estimate=est,
            low=low,
            significance=sig,
            budget_significance=bsig,
            high=high,
            n=n,
            sd_log=_sample_sd(d),
            lag1=r1,
            widened=factor,
            clusters=len(set(keys)),
            candidate_capped=sum(capped_c),
            base_capped=sum(capped_b),
            degenerate=not high > low,
        )

    def _unpaired(self, lc: list[float], lb: list[float], n: int) -> Evidence:
        """Yuen's trimmed two-sample bounds (no pairing: only for the simulation harness)."""
        lo = _log_interval_unpaired_logs(lc, lb, 1.0 - 2.0 * self.fail_alpha)
        sig = _log_interval_unpaired_logs(lc, lb, 1.0 - 2.0 * self.error_alpha)
        bsig = _log_interval_unpaired_logs(lc, lb, 1.0 - 2.0 * self._budget_alpha())
        hi = _log_interval_unpaired_logs(lc, lb, 1.0 - 2.0 * self._pass_alpha(n))
        return Evidence(
            lo.estimate,
            lo.low,
            sig.low,
            bsig.low,
            hi.high,
            n,
            lo.sd_log,
            None,
            1.0,
            n,
            0,
            0,
            not hi.high > lo.low,
        )

    # -- verdicts --------------------------------------------------------------------------
    def _decision(self, ev: Evidence, verdict: Verdict, marginal: bool, reason: str) -> Decision:
        return Decision(
            verdict=verdict,
            marginal=marginal,
            interval=ev.ratio(),
            tolerance=self.tolerance,
            detect=self.effective_detect(),
            reason=reason,
            lag1=ev.lag1,
            widened=ev.widened,
            clusters=ev.clusters,
            candidate_capped=ev.candidate_capped,
            base_capped=ev.base_capped,
        )

    def _cap_fail(self, ev: Evidence, capped_c: list[bool], capped_b: list[bool]) -> str | None:
        only_c = sum(1 for c, b in zip(capped_c, capped_b, strict=False) if c and not b)
        only_b = sum(1 for c, b in zip(capped_c, capped_b, strict=False) if b and not c)
        tail = _binomial_upper_tail(only_c, only_c + only_b)
        if only_c > only_b and tail <= min(self.fail_alpha, self.error_alpha):
            return (
                f"candidate stopped at the token cap in {ev.candidate_capped} of {ev.n} pairs, "
                f"the base in {ev.base_capped}"
            )
        return None

    def caps_bind(self, ev: Evidence) -> bool:
        """More than 5% of the candidate's answers stopped at the token cap: its verbosity
        is then not measured well enough for an early PASS."""
        return ev.candidate_capped > 0.05 * ev.n

    def _conclusive(
        self,
        ev: Evidence,
        capped_c: list[bool],
        capped_b: list[bool],
        required_clusters: int,
    ) -> Decision | None:
        ln_tol = math.log(self.tolerance)
        detect = self.effective_detect()
        ratio = ev.ratio()
        if ev.n >= self.min_fail_pairs:
            if ev.low > ln_tol and ev.significance > 0.0:
                lo, tol = _fmt_pair(ratio.low, self.tolerance)
                return self._decision(ev, "fail", False, f"lower bound {lo} > {tol}")
            if self.estimator == "ratio-of-means":
                cap_reason = self._cap_fail(ev, capped_c, capped_b)
                if cap_reason is not None:
                    return self._decision(ev, "fail", False, cap_reason)
        if ev.degenerate or ev.high >= math.log(detect) or ev.estimate > ln_tol:
            return None
        if self.estimator == "ratio-of-means" and (
            ev.clusters < min(required_clusters, self.budget) or self.caps_bind(ev)
        ):
            return None
        hi, det = _fmt_pair(ratio.high, detect)
        return self._decision(ev, "pass", False, f"upper bound {hi} < detect {det}")

    def _by_estimate(self, ev: Evidence, prefix: str, *, significance: bool = True) -> Decision:
        est, tol = _fmt_pair(ev.ratio().estimate, self.tolerance)
        note = ""
        if self.estimator == "ratio-of-means" and self.caps_bind(ev):
            note = f"; the token cap binds on {ev.candidate_capped} of {ev.n} candidate answers"
        if ev.estimate <= math.log(self.tolerance):
            return self._decision(ev, "pass", True, f"{prefix}: estimate {est} <= {tol}{note}")
        if ev.budget_significance > 0.0 or not significance:
            return self._decision(ev, "fail", True, f"{prefix}: estimate {est} > {tol}{note}")
        # Above the line but not significantly worse than the base at all: a FAIL here
        # would be a coin toss whose error rate grows with every gate of the session.
        sig = ev.budget_significance
        low = f"{math.exp(sig):.2f}" if math.isfinite(sig) else "0"
        return self._decision(
            ev,
            "pass",
            True,
            f"{prefix}: estimate {est} > {tol} but not significantly above 1 "
            f"(lower bound {low}){note}",
        )

    def decide(
        self,
        candidate: Sequence[float],
        base: Sequence[float],
        *,
        clusters: Sequence[str] | None = None,
        candidate_capped: Sequence[bool] | None = None,
        base_capped: Sequence[bool] | None = None,
        required_clusters: int = 0,
        paired: bool = True,
    ) -> Decision | None:
        """Decide on all pairs collected so far, or return ``None`` to sample more.

        Call it at the looks of :meth:`schedule` only: the documented error rates assume
        these looks. ``clusters`` gives each pair's request (prompt) key,
        ``candidate_capped`` / ``base_capped`` whether each half stopped at the token cap,
        and ``required_clusters`` how many distinct requests an early verbosity PASS must
        have seen. From ``budget`` pairs on it always decides, by the point estimate,
        flagged ``marginal``.

        Raises:
            ValueError: unequal lengths when paired, a non-positive value, or flags /
                clusters not one per pair.
        """
        n = min(len(candidate), len(base))
        if n < 2:
            if n >= self.budget:
                raise ValueError(f"need at least 2 pairs for a verdict, got {n}")
            return None
        ev = self.evidence(
            candidate,
            base,
            clusters=clusters,
            candidate_capped=candidate_capped,
            base_capped=base_capped,
            paired=paired,
        )
        capped_c = _flags(candidate_capped, n, "candidate_capped")
        capped_b = _flags(base_capped, n, "base_capped")
        decision = self._conclusive(ev, capped_c, capped_b, required_clusters)
        if n < self.budget:
            return decision
        forced = self._by_estimate(ev, "budget reached")
        if decision is None or decision.verdict != forced.verdict:
            return forced
        return replace(forced, reason=f"{forced.reason} ({decision.reason})")

    def force(
        self,
        candidate: Sequence[float],
        base: Sequence[float],
        reason: str,
        *,
        clusters: Sequence[str] | None = None,
        candidate_capped: Sequence[bool] | None = None,
        base_capped: Sequence[bool] | None = None,
        paired: bool = True,
    ) -> Decision:
        """A marginal verdict by the point estimate now, e.g. when the call budget ran out.

        ``reason`` becomes the start of :attr:`Decision.reason`
        (``"<reason>: estimate 1.12 > 1.10"``).

        Raises:
            ValueError: fewer than 2 pairs, unequal lengths when paired, or a non-positive
                value.
        """
        ev = self.evidence(
            candidate,
            base,
            clusters=clusters,
            candidate_capped=candidate_capped,
            base_capped=base_capped,
            paired=paired,
        )
        # Stopped early by the user's cap: the estimate alone decides (a marginal FAIL rather
        # than a pass that the missing pairs could not support).
        return self._by_estimate(ev, reason, significance=False)


def _hodges_lehmann(
    d: Sequence[float], low_alphas: tuple[float, float, float], pass_alpha: float
) -> tuple[float, float, float, float, float]:
    """HL estimate, one-sided signed-rank lower bounds at each of ``low_alphas`` and the
    upper bound at ``pass_alpha``, from the sorted Walsh averages."""
    n = len(d)
    walsh = sorted((d[i] + d[j]) / 2.0 for i in range(n) for j in range(i, n))
    top = len(walsh)
    mid = top // 2
    est = walsh[mid] if top % 2 else (walsh[mid - 1] + walsh[mid]) / 2.0
    lows = []
    for alpha in low_alphas:
        k = signed_rank_cut(n, alpha)
        lows.append(walsh[k - 1] if k > 0 else -math.inf)
    k_high = signed_rank_cut(n, pass_alpha)
    high = walsh[top - k_high] if k_high > 0 else math.inf
    return est, lows[0], lows[1], lows[2], high


def _ratio_of_means(
    candidate: Sequence[float],
    base: Sequence[float],
    keys: Sequence[str],
    low_alphas: tuple[float, float, float],
    pass_alpha: float,
) -> tuple[float, float, float, float, float]:
    """``ln`` of the ratio of prompt-mean values, its lower bounds at each of ``low_alphas``
    and its upper bound at ``pass_alpha``.

    Each prompt ``j`` contributes its mean candidate ``c_j`` and base ``b_j`` over its
    pairs; ``R = sum c_j / sum b_j`` (every prompt weighted equally). The standard error of
    ``ln R`` (delta method) is clustered by prompt:

    * within prompts, once prompts repeat (2+ degrees of freedom): the suite's prompts are
      fixed and the answers random, so the pooled spread of ``c_i - R b_i`` within each
      prompt, relative to ``b_j``, measures the noise; verbosity concentrated in a few
      prompts is then judged for what it costs on these prompts. The lower (FAIL) bounds
      use it as soon as it exists;
    * across prompts: the spread of ``u_j = (c_j - R b_j) / mean(b)`` over the prompt
      means, with Kish's effective number of prompts ``(sum b)^2 / sum b^2`` minus 1 as
      degrees of freedom. It includes how much the ratio differs between prompts, so it is
      never too small for fixed prompts either. The lower bounds use it before prompts
      repeat; the upper (PASS) bound until the within-prompt spread has at least as many
      degrees of freedom.
    """
    groups: dict[str, tuple[list[float], list[float]]] = {}
    for c, b, key in zip(candidate, base, keys, strict=True):
        entry = groups.setdefault(key, ([], []))
        entry[0].append(c)
        entry[1].append(b)
    means = [(math.fsum(cs) / len(cs), math.fsum(bs) / len(bs)) for cs, bs in groups.values()]
    j = len(means)
    total_c = math.fsum(c for c, _ in means)
    total_b = math.fsum(b for _, b in means)
    ratio = total_c / total_b
    est = math.log(ratio)
    relative: list[float] = []  # (c - R b - its prompt mean) / b_j, prompts with 2+ pairs
    df_within = 0
    for (cs, bs), (_, b_mean) in zip(groups.values(), means, strict=True):
        if len(cs) < 2:
            continue
        r = [c - ratio * b for c, b in zip(cs, bs, strict=True)]
        r_mean = math.fsum(r) / len(r)
        relative.extend((x - r_mean) / b_mean for x in r)
        df_within += len(cs) - 1
    within: tuple[float, float] | None = None  # (se, df)
    across: tuple[float, float] | None = None
    if df_within >= 2:
        v = math.fsum(x * x for x in relative) / df_within  # pooled relative variance
        var = math.fsum(
            v * b * b / len(cs) for (cs, _), (_, b) in zip(groups.values(), means, strict=True)
        )
        within = math.sqrt(var) / total_b / ratio, float(df_within)
    if j >= 2:
        mean_b = total_b / j
        u = [(c - ratio * b) / mean_b for c, b in means]
        across = (
            math.sqrt(math.fsum(x * x for x in u) / (j * (j - 1))) / ratio,
            max(1.0, total_b * total_b / math.fsum(b * b for _, b in means) - 1.0),
        )
    # A FAIL judges the suite's fixed prompts: the within-prompt spread once there is one.
    fail = within or across
    # A PASS may use the across-prompt spread (never too small, see above) until the
    # within-prompt one has as many degrees of freedom: just after the prompts first repeat,
    # 2 or 3 degrees of freedom would give a bound too wide to pass for another 15 pairs.
    upper = within if within is not None and (across is None or within[1] >= across[1]) else across
    if fail is None or upper is None:
        return est, -math.inf, -math.inf, -math.inf, math.inf
    low = [est - t_quantile(1.0 - a, fail[1]) * fail[0] for a in low_alphas]
    return est, low[0], low[1], low[2], est + t_quantile(1.0 - pass_alpha, upper[1]) * upper[0]


# ---------------------------------------------------------------------------
# planning and reporting helpers
# ---------------------------------------------------------------------------
def pairs_needed(sd_log: float, tolerance: float, detect: float) -> int:
    """Estimated pairs for a fixed-size design to separate ``tolerance`` from ``detect``.

    ``n* = (1.645 * sd_log / ln(detect / tolerance))**2 / 0.88``,
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
