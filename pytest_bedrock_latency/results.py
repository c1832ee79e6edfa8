"""What one test measured and decided, in a form that travels (xdist) and reports read.

Pure code. A worker builds a :class:`TestResult` per test and attaches its JSON to the
test report; the process that prints the summary rebuilds it with :meth:`from_json`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from .evaluate import Check
from .gate import RegressionResult
from .measurement import Generation
from .stats import percentile


@dataclass(frozen=True)
class Spend:
    """Invocations, tokens and dollars one model cost (test body and regression pairs alike).

    ``cost_usd`` adds the calls that have a price; ``unpriced_calls`` counts the others
    (no price for the model, or Bedrock reported no token counts), so a total is never
    silently short.
    """

    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    unpriced_calls: int = 0
    # Prompt caching: billed apart from (and not included in) input_tokens.
    cache_read_input_tokens: int = 0
    cache_write_input_tokens: int = 0

    def __add__(self, other: Spend) -> Spend:
        return Spend(
            self.calls + other.calls,
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cost_usd + other.cost_usd,
            self.unpriced_calls + other.unpriced_calls,
            self.cache_read_input_tokens + other.cache_read_input_tokens,
            self.cache_write_input_tokens + other.cache_write_input_tokens,
        )

    @classmethod
    def of(cls, generations: Iterable[Generation]) -> dict[str, Spend]:
        spend: dict[str, Spend] = {}
        for g in generations:
            spend[g.model_id] = spend.get(g.model_id, cls()) + cls(
                1,
                g.input_tokens or 0,
                g.output_tokens or 0,
                g.cost_usd or 0.0,
                int(g.cost_usd is None),
                g.cache_read_input_tokens or 0,
                g.cache_write_input_tokens or 0,
            )
        return spend

    @property
    def priced(self) -> bool:
        """Whether any of these calls had a price (else the cost is unknown, not zero)."""
        return self.calls > self.unpriced_calls

    def to_json(self) -> dict[str, Any]:
        """JSON-ready; ``cost_usd`` is ``null`` when no call had a price (unknown, not $0)."""
        data = asdict(self)
        data["cost_usd"] = self.cost_usd if self.priced or not self.calls else None
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Spend:
        fields_ = dict(data)
        fields_["cost_usd"] = fields_.get("cost_usd") or 0.0
        return cls(**fields_)


@dataclass(frozen=True)
class FailedCall:
    """A call Bedrock (or the transport) failed: which model, Bedrock's error code, and
    whether it failed mid-stream (after the response headers) rather than up front."""

    model_id: str
    error_code: str
    attempts: int = 1
    mid_stream: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "error_code": self.error_code,
            "attempts": self.attempts,
            "mid_stream": self.mid_stream,
        }


def merge_spend(*spends: Mapping[str, Spend]) -> dict[str, Spend]:
    total: dict[str, Spend] = {}
    for spend in spends:
        for model, value in spend.items():
            total[model] = total.get(model, Spend()) + value
    return total


def total_cost(spend: Mapping[str, Spend]) -> float | None:
    """USD of every priced call; ``None`` when there were calls and none had a price."""
    if any(s.calls for s in spend.values()) and not any(s.priced for s in spend.values()):
        return None
    return sum(s.cost_usd for s in spend.values())


def unpriced_calls(spend: Mapping[str, Spend]) -> int:
    """Calls whose cost is unknown (left out of :func:`total_cost`)."""
    return sum(s.unpriced_calls for s in spend.values())


@dataclass(frozen=True)
class TestResult:
    """One test's Bedrock calls, the bounds it carried and the verdicts."""

    nodeid: str
    outcome: str = "passed"
    bounds: Mapping[str, Any] = field(default_factory=dict)
    calls: Sequence[Generation] = ()
    checks: Sequence[Check] = ()
    failed_calls: int = 0
    regression: RegressionResult | None = None
    spend: Mapping[str, Spend] = field(default_factory=dict)
    failures: Sequence[FailedCall] = ()
    #: Calls of the test that have no figures, each with why: abandoned streams, and
    #: requests the emulator served that no instrumented client made.
    unmeasured: Sequence[str] = ()

    __test__ = False  # not a pytest test class, despite the name

    @property
    def verdict(self) -> str:
        if self.outcome != "passed":
            return self.outcome
        if self.regression is not None and self.regression.marginal:
            return "passed (marginal)"
        return "passed"

    @property
    def models(self) -> list[str]:
        return sorted({g.model_id for g in self.calls})

    def figure(self, name: str, q: float) -> float | None:
        """A percentile of one Generation field over this test's calls, ``None`` if unmeasured."""
        values = [v for v in (getattr(g, name) for g in self.calls) if v is not None]
        return percentile(values, q) if values else None

    @property
    def cost_usd(self) -> float | None:
        """USD of the test's calls and its gate's; ``None`` when none of them had a price."""
        return total_cost(self.spend)

    def headline(self) -> dict[str, float]:
        """The figures CI systems chart (JUnit properties, step summaries)."""
        figures = {
            "bedrock_calls": float(len(self.calls)),
            "bedrock_ttft_ms_p50": self.figure("ttft_ms", 50),
            "bedrock_ms_per_token_p50": self.figure("ms_per_token", 50),
            "bedrock_ms_per_token_p90": self.figure("ms_per_token", 90),
            "bedrock_total_ms_p50": self.figure("total_ms", 50),
            "bedrock_output_tokens_p50": self.figure("output_tokens", 50),
            "bedrock_output_tokens_max": self.figure("output_tokens", 100),
        }
        out = {name: round(value, 3) for name, value in figures.items() if value is not None}
        cost = self.cost_usd
        if cost is not None:
            out["bedrock_cost_usd"] = round(cost, 8)  # cents are too coarse for one test
        return out

    def to_json(self, *, include_text: bool) -> dict[str, Any]:
        return {
            "nodeid": self.nodeid,
            "outcome": self.outcome,
            "bounds": dict(self.bounds),
            "calls": [g.to_json(include_text=include_text) for g in self.calls],
            "checks": [c.to_json() for c in self.checks],
            "failed_calls": self.failed_calls,
            "regression": self.regression.to_json() if self.regression else None,
            "spend": {m: s.to_json() for m, s in self.spend.items()},
            "cost_usd": self.cost_usd,
            "unpriced_calls": unpriced_calls(self.spend),
            "failures": [f.to_json() for f in self.failures],
            "unmeasured": list(self.unmeasured),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TestResult:
        return cls(
            nodeid=data["nodeid"],
            outcome=data.get("outcome", "passed"),
            bounds=data.get("bounds", {}),
            calls=tuple(Generation.from_json(c) for c in data.get("calls", [])),
            checks=tuple(
                Check(c["marker"], c["metric"], c["observed"], c["limit"], c["ok"], c["message"])
                for c in data.get("checks", [])
            ),
            failed_calls=int(data.get("failed_calls", 0)),
            regression=RegressionResult.from_json(data["regression"])
            if data.get("regression")
            else None,
            spend={m: Spend.from_json(s) for m, s in data.get("spend", {}).items()},
            failures=tuple(FailedCall(**f) for f in data.get("failures", [])),
            unmeasured=tuple(data.get("unmeasured", ())),
        )
