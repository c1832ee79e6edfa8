"""Drawing candidate/base pairs for ``bedrock_regression`` until every metric is decided.

Protocol (statistics.md 5.4): the same request to both models back to back, in random
order within the pair, on the same client settings; one warm-up pair discarded; looks at
5/10/20/40 pairs; a failed request drops its pair (logged) and is never retried into the
timing; up to ``concurrency`` pairs in flight.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .baseline_store import StoredRequest, StoredSample, request_key
from .errors import BedrockCallError
from .gate import (
    METRICS,
    MetricVerdict,
    Pair,
    PairSeries,
    RegressionResult,
    Sample,
    end_to_end_split,
)
from .markers import RegressionGate
from .measurement import CallRecord, Generation
from .results import Spend, total_cost, unpriced_calls
from .stats import Decision, SequentialRule

if TYPE_CHECKING:
    from .handle import ModelHandle


class CallBudget:
    """``--bedrock-max-calls``: invocations left for the whole session (thread-safe)."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self._used = 0
        self._lock = threading.Lock()

    @property
    def used(self) -> int:
        return self._used

    def spend(self, calls: int) -> None:
        """Count calls made outside the gate (test bodies); they are not refused."""
        with self._lock:
            self._used += calls

    def take(self, calls: int) -> bool:
        """Reserve ``calls`` invocations; False (and nothing reserved) when they would exceed the cap."""
        with self._lock:
            if self.limit is not None and self._used + calls > self.limit:
                return False
            self._used += calls
            return True


class CostBudget:
    """``--bedrock-max-cost``: US dollars the whole session may spend (thread-safe).

    A call's cost is known only once it has answered, so the gate reserves each pair's
    expected cost before drawing it (:meth:`take`) and settles the actual cost afterwards
    (:meth:`settle`); pairs in flight at once cannot overrun the cap together. Calls the
    application makes are counted (:meth:`spend`), never refused.
    """

    def __init__(self, limit: float | None) -> None:
        self.limit = limit
        self._spent = 0.0
        self._reserved = 0.0
        self._passed = False
        self._lock = threading.Lock()

    @property
    def spent(self) -> float:
        return self._spent

    @property
    def _ceiling(self) -> float:
        # Sums of float prices drift by ulps; $1.00 of $0.01 pairs must fit in $1.00.
        assert self.limit is not None
        return self.limit * (1 + 1e-9)

    def spend(self, usd: float) -> bool:
        """Count dollars spent outside the gate; True the first time they pass the cap."""
        with self._lock:
            self._spent += usd
            return self._first_pass()

    def take(self, estimate: float) -> bool:
        """Reserve ``estimate`` dollars; False (nothing reserved) when they would pass the cap."""
        with self._lock:
            if self.limit is not None and self._spent + self._reserved + estimate > self._ceiling:
                return False
            self._reserved += estimate
            return True

    def settle(self, estimate: float, actual: float) -> bool:
        """Replace a reservation by what the calls cost; True the first time the cap is passed."""
        with self._lock:
            self._reserved = max(0.0, self._reserved - estimate)
            self._spent += actual
            return self._first_pass()

    def _first_pass(self) -> bool:
        if self.limit is None or self._passed or self._spent <= self._ceiling:
            return False
        self._passed = True
        return True


@dataclass(frozen=True)
class Request:
    """A distinct request the test made to the candidate, ready to replay.

    ``seen`` is the test's own answer to it: its token counts estimate what a pair costs
    before the gate has drawn one (``--bedrock-max-cost``).
    """

    key: str
    operation: str
    params: Mapping[str, Any]
    seen: Generation | None = None


def distinct_requests(records: Sequence[CallRecord], candidate: str) -> list[Request]:
    """The test's completed requests to ``candidate``, each once, in the order first made."""
    seen: dict[str, Request] = {}
    for record in records:
        if record.model_id != candidate or not record.complete:
            continue
        key = request_key(record.operation, record.request)
        if key not in seen:
            seen[key] = Request(key, record.operation, record.request, record.generation())
    return list(seen.values())


def _sample(generation: Generation) -> Sample:
    return Sample(
        generation.output_tokens,
        generation.ms_per_token,
        generation.ttft_ms,
        generation.total_ms,
        generation.stop_reason,
        generation.started_at,
    )


def _stored_sample(stored: StoredSample) -> Sample:
    return Sample(
        stored.output_tokens,
        stored.ms_per_token,
        stored.ttft_ms,
        None,
        stored.stop_reason,
        stored.recorded_at,
    )


Progress = Callable[[int, int], None]
Reprice = Callable[[Generation, str], "float | None"]
"""What a call with this generation's token counts would cost on another model (or None)."""


class GateRun:
    """One test's regression gate.

    ``base`` is a live model handle, or ``None`` with ``stored`` samples per request key
    (then each candidate sample is paired with a stored base sample by index: sound for
    verbosity, subject to drift for latency, and labelled "stored").
    """

    def __init__(
        self,
        gate: RegressionGate,
        *,
        budget: int,
        policy: str,
        concurrency: int,
        candidate: ModelHandle,
        base: ModelHandle | None,
        base_model_id: str,
        base_source: str,
        stored: Mapping[str, StoredRequest] | None = None,
        calls: CallBudget | None = None,
        cost: CostBudget | None = None,
        reprice: Reprice | None = None,
        progress: Progress | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.gate = gate
        self.budget = budget
        self.policy = policy
        self.concurrency = concurrency
        self.candidate = candidate
        self.base = base
        self.base_model_id = base_model_id
        self.base_source = base_source
        self.stored = stored or {}
        self.calls = calls or CallBudget(None)
        self.cost = cost or CostBudget(None)
        self.reprice = reprice
        self.progress = progress
        self.rng = rng or random.Random()
        self.rules = {
            m.key: SequentialRule(tolerance=float(getattr(gate, m.argument)), budget=budget)
            for m in METRICS
        }
        self.generations: list[Generation] = []  # every gate call, warm-up included (spend)
        self._lock = threading.Lock()
        self.cost_exhausted = False
        self._dearest: dict[tuple[str, str], float] = {}  # (request, model) -> most a call cost
        self._pair_cost: dict[int, float] = {}  # pair index -> what its calls cost so far

    # -- what a pair costs ---------------------------------------------------------------------
    def _call_estimate(self, request: Request, model_id: str) -> float:
        """The dearest call of this request to this model so far, else the test's own call
        priced for the model; 0 when the model has no price (the cap cannot limit it)."""
        with self._lock:
            dearest = self._dearest.get((request.key, model_id))
        if dearest is not None:
            return dearest
        if request.seen is None:
            return 0.0
        if model_id == request.seen.model_id and request.seen.cost_usd is not None:
            return request.seen.cost_usd
        estimate = self.reprice(request.seen, model_id) if self.reprice is not None else None
        return estimate or 0.0

    def _pair_estimate(self, request: Request) -> float:
        models = [self.candidate.model_id] + ([self.base.model_id] if self.base else [])
        return sum(self._call_estimate(request, model) for model in models)

    # -- one pair ----------------------------------------------------------------------------
    def _call(self, handle: ModelHandle, request: Request, index: int) -> Generation:
        generation = handle.replay(request.operation, request.params)
        with self._lock:
            self.generations.append(generation)
            if generation.cost_usd is not None:
                key = (request.key, generation.model_id)
                self._dearest[key] = max(self._dearest.get(key, 0.0), generation.cost_usd)
                self._pair_cost[index] = self._pair_cost.get(index, 0.0) + generation.cost_usd
        return generation

    def _pair(self, index: int, requests: Sequence[Request], candidate_first: bool) -> Pair:
        request = requests[index % len(requests)]
        order = "candidate-first" if candidate_first else "base-first"
        if self.base is None:
            stored = self.stored[request.key].samples
            return Pair(
                request.key,
                "stored",
                _sample(self._call(self.candidate, request, index)),
                _stored_sample(stored[index % len(stored)]),
            )
        first, second = (
            (self.candidate, self.base) if candidate_first else (self.base, self.candidate)
        )
        a = self._call(first, request, index)
        b = self._call(second, request, index)
        cand, base = (a, b) if candidate_first else (b, a)
        return Pair(request.key, order, _sample(cand), _sample(base))

    def _draw(
        self, pool: ThreadPoolExecutor, start: int, count: int, requests: Sequence[Request]
    ) -> tuple[list[Pair], list[str], bool]:
        """Draw ``count`` pairs; returns the pairs, the errors of dropped ones, and budget exhaustion."""
        per_pair = 1 if self.base is None else 2
        jobs = []
        exhausted = False
        for index in range(start, start + count):
            estimate = self._pair_estimate(requests[index % len(requests)])
            if not self.cost.take(estimate):
                self.cost_exhausted = exhausted = True
                break
            if not self.calls.take(per_pair):
                self.cost.settle(estimate, 0.0)
                exhausted = True
                break
            jobs.append(
                (index, estimate, pool.submit(self._pair, index, requests, self.rng.random() < 0.5))
            )
        pairs: list[Pair] = []
        errors: list[str] = []
        for index, estimate, job in jobs:
            try:
                pairs.append(job.result())
            except BedrockCallError as error:
                errors.append(str(error).splitlines()[0])
            finally:
                with self._lock:
                    actual = self._pair_cost.pop(index, 0.0)
                self.cost.settle(estimate, actual)
        return pairs, errors, exhausted

    # -- the gate ----------------------------------------------------------------------------
    def run(self, requests: Sequence[Request]) -> RegressionResult:
        if not requests:
            raise ValueError("the gate needs at least one request to replay")
        series = PairSeries()
        pairs: list[Pair] = []
        errors: list[str] = []
        decisions: dict[str, Decision] = {}
        exhausted = False
        warmup = 0
        schedule = next(iter(self.rules.values())).schedule()
        with ThreadPoolExecutor(
            max_workers=self.concurrency, thread_name_prefix="bedrock-gate"
        ) as pool:
            if self.base is not None:  # warm-up: connection pool, TLS, a cold replica
                _, warm_errors, exhausted = self._draw(pool, 0, 1, requests)
                warmup = 1
                errors.extend(f"warm-up: {e}" for e in warm_errors)
            drawn = 0
            for look in schedule:
                # Top up dropped pairs, but give up when failures outnumber the budget.
                while not exhausted and len(pairs) < look and len(errors) <= self.budget:
                    batch, batch_errors, exhausted = self._draw(
                        pool, drawn, look - len(pairs), requests
                    )
                    drawn += len(batch) + len(batch_errors)
                    errors.extend(batch_errors)
                    for pair in batch:
                        pairs.append(pair)
                        if pair.base is not None:
                            series.add(pair.candidate, pair.base)
                if self.progress is not None:
                    self.progress(len(pairs), self.budget)
                self._decide(series, decisions)
                if len(decisions) == len(METRICS) or exhausted or len(pairs) < look:
                    break
        if self.cost_exhausted:
            reason = "cost budget exhausted"
        else:
            reason = "call budget exhausted" if exhausted else "budget reached"
        spend = Spend.of(self.generations)
        verdicts = self._verdicts(series, decisions, reason)
        return RegressionResult(
            candidate=self.candidate.model_id,
            base=self.base_model_id,
            base_source=self.base_source,
            stored=self.base is None,
            policy=self.policy,
            budget=self.budget,
            metrics=verdicts,
            pairs=tuple(pairs),
            dropped_pairs=len([e for e in errors if not e.startswith("warm-up")]),
            warmup_pairs=warmup,
            call_budget_exhausted=exhausted and not self.cost_exhausted,
            errors=tuple(errors),
            decomposition=end_to_end_split(series),
            cost_usd=total_cost(spend),
            unpriced_calls=unpriced_calls(spend),
            cost_budget_exhausted=self.cost_exhausted,
        )

    def _decide(self, series: PairSeries, decisions: dict[str, Decision]) -> None:
        for metric in METRICS:
            if metric.key in decisions:
                continue  # frozen at its first decision
            c, b = series.candidate[metric.key], series.base[metric.key]
            decision = self.rules[metric.key].decide(c, b)
            if decision is not None:
                decisions[metric.key] = decision

    def _verdicts(
        self, series: PairSeries, decisions: dict[str, Decision], reason: str
    ) -> tuple[MetricVerdict, ...]:
        out = []
        for metric in METRICS:
            c, b = series.candidate[metric.key], series.base[metric.key]
            rule = self.rules[metric.key]
            decision = decisions.get(metric.key)
            if decision is None and len(c) >= 2:
                decision = rule.force(c, b, reason)
            if decision is None:
                why = "fewer than 2 usable pairs" + (
                    " (needs streamed answers of 2+ tokens)"
                    if metric.key != "output_tokens"
                    else ""
                )
                out.append(MetricVerdict.undecided(metric, rule, why))
            else:
                out.append(MetricVerdict.from_decision(metric, decision, b, c))
        return tuple(out)


def stored_entry(
    pairs: Sequence[Pair],
    request: Request,
    *,
    base_model_id: str,
    region: str | None,
    plugin_version: str,
    recorded_at: float,
) -> StoredRequest:
    """The base model's samples of one request, for ``--bedrock-update-baseline``."""
    performance = (
        request.params.get("performanceConfig", {})
        if request.operation.startswith("Converse")
        else {}
    )
    latency = performance.get("latency") if isinstance(performance, Mapping) else None
    if latency is None:
        latency = request.params.get("performanceConfigLatency")
    samples = tuple(
        StoredSample(
            p.base.ms_per_token,
            p.base.ttft_ms,
            p.base.output_tokens,
            p.base.stop_reason,
            p.base.started_at,
        )
        for p in pairs
        if p.request == request.key and p.base is not None
    )
    return StoredRequest(
        model_id=base_model_id,
        region=region,
        operation=request.operation,
        performance_latency=latency,
        plugin_version=plugin_version,
        recorded_at=recorded_at,
        samples=samples,
    )
