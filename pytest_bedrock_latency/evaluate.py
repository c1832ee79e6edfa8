"""Checking a test's measured generations against its latency and length bounds.

Pure code: the verdict of ``bedrock_latency``, ``bedrock_length`` and ``--bedrock-timeout`` is a
function of the bounds and the generations, nothing else, so it is tested without pytest or
a network.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .markers import LatencyBounds, LengthBounds
from .measurement import STREAMING_OPERATIONS, Generation, display_model
from .stats import percentile


@dataclass(frozen=True)
class Check:
    """One bound checked: the figure observed against the limit."""

    marker: str
    metric: str
    observed: float | None
    limit: float
    ok: bool
    line: str

    def to_json(self) -> dict[str, object]:
        return {
            "marker": self.marker,
            "metric": self.metric,
            "observed": self.observed,
            "limit": self.limit,
            "ok": self.ok,
            "message": self.line,
        }


def _models(generations: Sequence[Generation]) -> str:
    names = sorted({display_model(g.model_id) for g in generations})
    return ", ".join(names) if names else "none"


def _fmt(value: float, extra: int = 0) -> str:
    digits = (1 if value < 1000 else 0) + extra
    return f"{value:.{digits}f}"


def _figures(observed: float, limit: float) -> tuple[str, str]:
    """Observed and limit as text: one decimal (none from 1000 on), and more only where
    needed to show the limit as given (0.05, not 0.1) and to tell a violation from its
    limit (2.23 > 2.20, not 2.2 > 2.2)."""
    for extra in range(5):
        shown_observed, shown_limit = _fmt(observed, extra), _fmt(limit, extra)
        exact = abs(float(shown_limit) - limit) <= 1e-9 * max(1.0, abs(limit))
        if exact and (shown_observed != shown_limit or observed == limit):
            break
    return shown_observed, shown_limit


def _calls(n: int) -> str:
    return f"{n} call" if n == 1 else f"{n} calls"


LATENCY_METRICS: tuple[tuple[str, str, Callable[[Generation], float | None]], ...] = (
    ("max_ms_per_token", "ms/token", lambda g: g.ms_per_token),
    ("max_ttft_ms", "TTFT ms", lambda g: g.ttft_ms),
    ("max_total_ms", "total ms", lambda g: g.total_ms),
)


def check_latency(
    bounds: LatencyBounds, generations: Sequence[Generation], scale: float = 1.0
) -> list[Check]:
    """The percentile of each bounded latency figure against its (scaled) limit."""
    checks: list[Check] = []
    q = bounds.percentile
    label = f"p{q:g}"
    models = _models(generations)
    for argument, metric, get in LATENCY_METRICS:
        bound = getattr(bounds, argument)
        if bound is None:
            continue
        limit = bound * scale
        values = [v for v in map(get, generations) if v is not None]
        if not values:
            why = _unmeasured_why(metric, generations)
            line = f"bedrock_latency: {metric} {label} not measured: {why} (model {models}, {_calls(len(generations))})"
            checks.append(Check("bedrock_latency", f"{metric} {label}", None, limit, False, line))
            continue
        observed = percentile(values, q)
        ok = observed <= limit
        op = "<=" if ok else ">"
        shown_observed, shown_limit = _figures(observed, limit)
        line = (
            f"bedrock_latency: {metric} {label} {shown_observed} {op} {shown_limit} allowed "
            f"(model {models}, {_calls(len(values))})"
        )
        checks.append(Check("bedrock_latency", f"{metric} {label}", observed, limit, ok, line))
    return checks


def _unmeasured_why(metric: str, generations: Sequence[Generation]) -> str:
    """Why no call has the figure, and the fix."""
    operations = sorted({g.operation for g in generations})
    if generations and not STREAMING_OPERATIONS.intersection(operations):
        calls = "the call was" if len(generations) == 1 else f"all {len(generations)} calls were"
        return (
            f"{calls} non-streaming ({', '.join(operations)}), which has no first token or "
            "per-token times; stream the answer (ConverseStream / InvokeModelWithResponseStream, "
            "stream=True on bedrock_model) or bound max_total_ms instead"
        )
    if metric != "ms/token":
        return "needs streamed calls (stream=True)"
    return "needs streamed answers of 2 or more tokens"


def check_length(bounds: LengthBounds, generations: Sequence[Generation]) -> list[Check]:
    """Every answer against each length bound; one check per bound, reporting the worst."""
    checks: list[Check] = []
    models = _models(generations)
    limits: tuple[tuple[int | None, str, Callable[[Generation], int | None], bool], ...] = (
        (bounds.max_tokens, "output tokens", lambda g: g.output_tokens, True),
        (bounds.min_tokens, "output tokens", lambda g: g.output_tokens, False),
        (bounds.max_words, "words", lambda g: g.words, True),
        (bounds.max_chars, "chars", lambda g: g.chars, True),
    )
    for limit, metric, get, is_max in limits:
        if limit is None:
            continue
        values = [v for v in map(get, generations) if v is not None]
        if not values:
            line = f"bedrock_length: {metric} not reported by Bedrock (model {models}, {_calls(len(generations))})"
            checks.append(Check("bedrock_length", metric, None, limit, False, line))
            continue
        worst = max(values) if is_max else min(values)
        bad = sum(1 for v in values if (v > limit if is_max else v < limit))
        ok = bad == 0
        stat = "max" if is_max else "min"
        op = ("<=" if is_max else ">=") if ok else (">" if is_max else "<")
        allowed = "allowed" if is_max else "required"
        scope = f"{bad} of {len(values)} answers" if not ok else _calls(len(values))
        line = f"bedrock_length: {metric} {stat} {worst} {op} {limit} {allowed} (model {models}, {scope})"
        checks.append(
            Check("bedrock_length", f"{metric} {stat}", float(worst), float(limit), ok, line)
        )
    return checks


def check_timeout(timeout_s: float, generations: Sequence[Generation]) -> list[Check]:
    """``--bedrock-timeout``: one failed check when any call took longer, else none."""
    limit = timeout_s * 1000
    slow = [g for g in generations if g.total_ms > limit]
    if not slow:
        return []
    worst = max(g.total_ms for g in slow)
    line = (
        f"bedrock timeout: {len(slow)} call(s) took longer than --bedrock-timeout "
        f"{timeout_s:g}s (slowest {worst / 1000:.1f}s, model {display_model(slow[0].model_id)})"
    )
    return [Check("bedrock_timeout", "total ms max", worst, limit, False, line)]
