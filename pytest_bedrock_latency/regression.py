"""Drawing candidate/base pairs for ``bedrock_regression`` until every metric is decided.

Protocol: the same request to both models back to back, in random
order within the pair, on the same client settings; one warm-up pair discarded; a look
every 2 pairs from 6 on; a failed request drops its pair (logged) and is never retried
into the timing; a pair that met throttling (retries) is kept out of the latency metrics
and redrawn (counted); up to ``concurrency`` pairs in flight (default 1).

:func:`run_gate` is the whole gate of one test: which model is the candidate, which
requests to replay, a live base or stored samples (a :class:`BaseSide`), and what to
record with ``--bedrock-update-baseline``.
"""

from __future__ import annotations

import dataclasses
import queue
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from . import __version__
from .baseline_store import StoredRequest, StoredSample, request_key
from .errors import BedrockCallError
from .gate import (
    MetricSeries,
    MetricVerdict,
    Pair,
    PairSeries,
    RegressionResult,
    Sample,
    build_rule,
    end_to_end_split,
)
from .ledger import Counts, Ledger, MemoryLedger
from .markers import RegressionGate
from .measurement import Generation, display_model
from .metrics import METRICS, GatedMetric
from .results import Spend, total_cost, unpriced_calls
from .stats import Decision

if TYPE_CHECKING:
    from .base_model import BaseChoice
    from .baseline_store import BaselineStore
    from .handle import ModelHandle
    from .settings import TestSettings


class CallBudget:
    """``--bedrock-max-calls``: invocations left for the whole session (thread-safe).

    The count lives in ``ledger``: by default this process's memory; under xdist a
    :class:`~.ledger.FileLedger` every process of the session shares, so the cap is
    the session's, not each worker's.
    """

    def __init__(self, limit: int | None, ledger: Ledger | None = None) -> None:
        self.limit = limit
        self._ledger = ledger or MemoryLedger()

    @property
    def used(self) -> int:
        return self._ledger.read().calls

    def spend(self, calls: int) -> None:
        """Count calls made outside the gate (test bodies); they are not refused."""
        self._ledger.update(lambda c: dataclasses.replace(c, calls=c.calls + calls))

    def take(self, calls: int) -> bool:
        """Reserve ``calls`` invocations; False (and nothing reserved) when they would exceed the cap."""

        def reserve(c: Counts) -> Counts | None:
            if self.limit is not None and c.calls + calls > self.limit:
                return None
            return dataclasses.replace(c, calls=c.calls + calls)

        return self._ledger.update(reserve)


class CostBudget:
    """``--bedrock-max-cost``: US dollars the whole session may spend (thread-safe).

    A call's cost is known only once it has answered, so the gate reserves each pair's
    expected cost before drawing it (:meth:`take`) and settles the actual cost afterwards
    (:meth:`settle`); pairs in flight at once cannot overrun the cap together. Calls the
    application makes are counted (:meth:`spend`), never refused. The dollars live in
    ``ledger``, shared by every process of the session as for :class:`CallBudget`.
    """

    def __init__(self, limit: float | None, ledger: Ledger | None = None) -> None:
        self.limit = limit
        self._ledger = ledger or MemoryLedger()

    @property
    def spent(self) -> float:
        return self._ledger.read().spent_usd

    @property
    def _ceiling(self) -> float:
        # Sums of float prices drift by ulps; $1.00 of $0.01 pairs must fit in $1.00.
        assert self.limit is not None
        return self.limit * (1 + 1e-9)

    def spend(self, usd: float) -> None:
        """Count dollars spent outside the gate (never refused)."""
        self._ledger.update(lambda c: dataclasses.replace(c, spent_usd=c.spent_usd + usd))

    def take(self, estimate: float) -> bool:
        """Reserve ``estimate`` dollars; False (nothing reserved) when they would pass the cap."""

        def reserve(c: Counts) -> Counts | None:
            if self.limit is not None and c.spent_usd + c.reserved_usd + estimate > self._ceiling:
                return None
            return dataclasses.replace(c, reserved_usd=c.reserved_usd + estimate)

        return self._ledger.update(reserve)

    def settle(self, estimate: float, actual: float) -> None:
        """Replace a reservation by what the calls cost."""
        self._ledger.update(
            lambda c: dataclasses.replace(
                c,
                reserved_usd=max(0.0, c.reserved_usd - estimate),
                spent_usd=c.spent_usd + actual,
            )
        )

    def passed_once(self) -> bool:
        """True the first time it is asked, in the whole session, after the spend has
        passed the cap (to say so once)."""

        def mark(c: Counts) -> Counts | None:
            if self.limit is None or c.cost_cap_passed or c.spent_usd <= self._ceiling:
                return None
            return dataclasses.replace(c, cost_cap_passed=True)

        return self._ledger.update(mark)


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


class Replayable(Protocol):
    """A call the gate can replay: a :class:`~.measurement.CallRecord`, or a pooled group
    member's call sent from an xdist worker (:class:`~.groups.SentCall`)."""

    @property
    def model_id(self) -> str: ...

    @property
    def operation(self) -> str: ...

    @property
    def request(self) -> Mapping[str, Any]: ...

    @property
    def complete(self) -> bool: ...

    def generation(self) -> Generation: ...


def unreplayable_line(candidate: str, error: TypeError) -> str:
    """The gate's failure when the test's request to ``candidate`` cannot be sent again."""
    return (
        f"bedrock_regression: the test's request to {display_model(candidate)} cannot be "
        f"replayed: {str(error).removeprefix('request_key: ')}"
    )


def distinct_requests(records: Sequence[Replayable], candidate: str) -> list[Request]:
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
        generation.attempts,
        generation.retry_wait_ms,
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
POLL_S = 0.1  # how often the gate's thread wakes while pairs are in flight (Ctrl-C lands)


def _next_finished(
    finished: queue.SimpleQueue[tuple[int, Pair | BaseException]],
) -> tuple[int, Pair | BaseException]:
    # A short timeout in a loop rather than one blocking get: a KeyboardInterrupt is
    # delivered to the main thread between waits on every platform.
    while True:
        try:
            return finished.get(timeout=POLL_S)
        except queue.Empty:
            continue


Reprice = Callable[[Generation, str], "float | None"]
"""What a call with this generation's token counts would cost on another model (or None)."""
Replay = Callable[["ModelHandle", Request], Generation]


class BaseSide(Protocol):
    """What a gate compares the candidate against: a live base model or stored samples."""

    model_id: str
    source: str
    stored: bool
    calls_per_pair: int  # Bedrock invocations one pair costs (--bedrock-max-calls)
    warmup_pairs: int  # pairs drawn and discarded before the first counted one

    def order(self, candidate_first: bool) -> str:
        """The pair's ``order`` label."""
        ...

    def sample(self, index: int, request: Request, replay: Replay) -> Sample:
        """The base half of the ``index``-th pair drawn for ``request``."""
        ...


class LiveBase:
    """The base model called back to back with the candidate, in random order per pair."""

    stored = False
    calls_per_pair = 2
    warmup_pairs = 1  # connection pool, TLS, a cold replica

    def __init__(self, handle: ModelHandle, source: str) -> None:
        self.handle = handle
        self.model_id = handle.model_id
        self.source = source

    def order(self, candidate_first: bool) -> str:
        return "candidate-first" if candidate_first else "base-first"

    def sample(self, index: int, request: Request, replay: Replay) -> Sample:
        return _sample(replay(self.handle, request))


class StoredBase:
    """Stored base samples per request key: the ``k``-th pair drawn for a request uses its
    ``k``-th stored sample (cycling), so every stored sample is used. Sound for verbosity,
    subject to drift for latency, and labelled "stored"."""

    stored = True
    calls_per_pair = 1
    warmup_pairs = 0
    source = "stored samples"

    def __init__(self, entries: Mapping[str, StoredRequest]) -> None:
        if not entries:
            raise ValueError("stored samples are needed for at least one request")
        self.entries = entries
        self.model_id = next(iter(entries.values())).model_id

    def order(self, candidate_first: bool) -> str:
        return "stored"

    def sample(self, index: int, request: Request, replay: Replay) -> Sample:
        samples = self.entries[request.key].samples
        return _stored_sample(samples[index % len(samples)])


class GateRun:
    """One regression gate: pairs of candidate and ``base`` samples until decided.

    Pairs are drawn over the requests in rounds: each round visits every request once,
    in a fresh random order, so the pairs are spread evenly over the prompts and no
    prompt's position in the sequence is fixed. ``confidence`` and ``gates`` give the
    session's error rate and how many gates share it (see :func:`~.gate.build_rule`).
    """

    def __init__(
        self,
        gate: RegressionGate,
        *,
        budget: int,
        policy: str,
        concurrency: int,
        candidate: ModelHandle,
        base: BaseSide,
        calls: CallBudget | None = None,
        cost: CostBudget | None = None,
        reprice: Reprice | None = None,
        progress: Progress | None = None,
        rng: random.Random | None = None,
        confidence: float = 0.99,
        gates: int = 1,
    ) -> None:
        self.gate = gate
        self.budget = budget
        self.policy = policy
        self.concurrency = concurrency
        self.candidate = candidate
        self.base = base
        self.calls = calls or CallBudget(None)
        self.cost = cost or CostBudget(None)
        self.reprice = reprice
        self.progress = progress
        self.rng = rng or random.Random()
        self.confidence = confidence
        self.gates = gates
        self.rules = {
            m.key: build_rule(
                m, float(getattr(gate, m.argument)), budget, confidence=confidence, gates=gates
            )
            for m in METRICS
        }
        self._round: list[Request] = []
        self._seen: dict[str, int] = {}  # pairs drawn per request: the stored sample's index
        self.generations: list[Generation] = []  # every gate call, warm-up included (spend)
        self._lock = threading.Lock()
        self.cost_exhausted = False
        self._dearest: dict[tuple[str, str], float] = {}  # (request, model) -> most a call cost

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
        models = [self.candidate.model_id] + ([] if self.base.stored else [self.base.model_id])
        return sum(self._call_estimate(request, model) for model in models)

    # -- one pair ----------------------------------------------------------------------------
    def _call(self, handle: ModelHandle, request: Request) -> Generation:
        generation = handle.replay(request.operation, request.params)
        with self._lock:
            self.generations.append(generation)
            if generation.cost_usd is not None:
                key = (request.key, generation.model_id)
                self._dearest[key] = max(self._dearest.get(key, 0.0), generation.cost_usd)
        return generation

    def _next(self, requests: Sequence[Request]) -> tuple[Request, int]:
        """The next request (a shuffled round over all of them) and how often it came before."""
        if not self._round:
            self._round = list(requests)
            self.rng.shuffle(self._round)
        request = self._round.pop()
        index = self._seen.get(request.key, 0)
        self._seen[request.key] = index + 1
        return request, index

    def _pair(
        self, request: Request, index: int, candidate_first: bool, spent: list[float]
    ) -> Pair:
        """The ``index``-th pair of ``request``; ``spent`` collects what its calls cost, even
        if one then fails."""

        def replay(handle: ModelHandle, request: Request) -> Generation:
            generation = self._call(handle, request)
            if generation.cost_usd is not None:
                spent.append(generation.cost_usd)
            return generation

        if candidate_first:
            cand = _sample(replay(self.candidate, request))
            base = self.base.sample(index, request, replay)
        else:
            base = self.base.sample(index, request, replay)
            cand = _sample(replay(self.candidate, request))
        return Pair(request.key, self.base.order(candidate_first), cand, base)

    def _start(
        self,
        index: int,
        request: Request,
        occurrence: int,
        candidate_first: bool,
        estimate: float,
        finished: queue.SimpleQueue[tuple[int, Pair | BaseException]],
    ) -> None:
        """Draw pair ``index`` in a thread of its own; its outcome goes to ``finished``.

        Daemon threads, not a pool: after Ctrl-C the test ends at once, and a call still
        in flight neither holds up the session's reports nor the process's exit. The
        pair's reserved ``estimate`` is settled with what its calls cost, whatever happens.
        """

        def work() -> None:
            outcome: Pair | BaseException
            spent: list[float] = []
            try:
                outcome = self._pair(request, occurrence, candidate_first, spent)
            except BaseException as error:  # handed to the gate's thread, which decides
                outcome = error
            finally:
                self.cost.settle(estimate, sum(spent))
            finished.put((index, outcome))

        threading.Thread(target=work, name=f"bedrock-gate-{index}", daemon=True).start()

    def _draw(
        self, start: int, count: int, requests: Sequence[Request]
    ) -> tuple[list[Pair], list[str], bool]:
        """Draw ``count`` pairs; returns the pairs, the errors of dropped ones, and budget exhaustion.

        Pairs are started lazily, at most ``concurrency`` in flight: a pair is started
        (and its calls reserved from ``--bedrock-max-calls``) only when one finishes, so
        no budget queues work up front. Outcomes are kept in pair order.
        """
        per_pair = self.base.calls_per_pair
        finished: queue.SimpleQueue[tuple[int, Pair | BaseException]] = queue.SimpleQueue()
        outcomes: dict[int, Pair | BaseException] = {}
        exhausted = False
        index, in_flight = start, 0
        while True:
            while not exhausted and in_flight < self.concurrency and index < start + count:
                request, occurrence = self._next(requests)
                estimate = self._pair_estimate(request)
                if not self.cost.take(estimate):
                    self.cost_exhausted = exhausted = True
                    break
                if not self.calls.take(per_pair):
                    self.cost.settle(estimate, 0.0)
                    exhausted = True
                    break
                self._start(index, request, occurrence, self.rng.random() < 0.5, estimate, finished)
                index += 1
                in_flight += 1
            if in_flight == 0:
                break
            done, outcome = _next_finished(finished)
            in_flight -= 1
            outcomes[done] = outcome
        pairs: list[Pair] = []
        errors: list[str] = []
        for done in sorted(outcomes):
            outcome = outcomes[done]
            if isinstance(outcome, Pair):
                pairs.append(outcome)
            elif isinstance(outcome, BedrockCallError):
                errors.append(str(outcome).splitlines()[0])
            else:
                raise outcome  # not a Bedrock error: a bug or a bad request; the test shows it
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
        unmeasured: dict[str, str] = {}
        looks = {key: rule.schedule()[0] for key, rule in self.rules.items()}
        first_look = min(looks.values())
        # Throttled and failed pairs are redrawn, up to twice the budget in all.
        limit = 2 * self.budget
        required = min(len({r.key for r in requests}), self.budget)
        if self.base.warmup_pairs:
            warm, warm_errors, exhausted = self._draw(0, self.base.warmup_pairs, requests)
            warmup = len(warm) + len(warm_errors)  # a capped gate may draw none
            # The measured pairs start a round of their own: after N pairs every one of N
            # prompts is paired once (a verbosity PASS waits for that).
            self._round = []
            errors.extend(f"warm-up: {e}" for e in warm_errors)
        drawn = 0
        while not exhausted:
            open_ = [m for m in METRICS if m.key not in decisions and m.key not in unmeasured]
            if not open_ or drawn >= limit or len(errors) > self.budget:
                break
            need = min(looks[m.key] - len(series.metrics[m.key]) for m in open_)
            batch, batch_errors, exhausted = self._draw(
                drawn, max(1, min(need, limit - drawn)), requests
            )
            drawn += len(batch) + len(batch_errors)
            errors.extend(batch_errors)
            for pair in batch:
                pairs.append(pair)
                if pair.base is not None:
                    series.add(pair.candidate, pair.base, pair.request)
            if self.progress is not None:
                self.progress(len(pairs), self.budget)
            calm = len(pairs) - series.throttled
            for metric in open_:
                values = series.metrics[metric.key]
                if not values and (calm if metric.latency else len(pairs)) >= first_look:
                    # Nothing to compare after the first look's pairs: fail, stop sampling.
                    unmeasured[metric.key] = _unmeasured_reason(metric, len(pairs))
                elif len(values) >= looks[metric.key]:
                    decision = self._decide(metric, values, required)
                    if decision is not None:
                        decisions[metric.key] = decision
                    else:
                        nxt = self.rules[metric.key].next_look(len(values))
                        looks[metric.key] = nxt or len(values) + 1
        if self.cost_exhausted:
            reason = "cost budget exhausted"
        elif exhausted:
            reason = "call budget exhausted"
        elif drawn >= limit or len(errors) > self.budget:
            reason = "too many failed or throttled pairs"
        else:
            reason = "budget reached"
        spend = Spend.of(self.generations)
        verdicts = self._verdicts(series, decisions, unmeasured, reason, len(pairs))
        return RegressionResult(
            candidate=self.candidate.model_id,
            base=self.base.model_id,
            base_source=self.base.source,
            stored=self.base.stored,
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
            throttled_pairs=series.throttled,
            concurrency=self.concurrency,
            confidence=self.confidence,
            gates=self.gates,
            prompts=len({p.request for p in pairs}),
        )

    def _decide(self, metric: GatedMetric, values: MetricSeries, required: int) -> Decision | None:
        return self.rules[metric.key].decide(
            values.candidate,
            values.base,
            clusters=values.requests,
            candidate_capped=values.candidate_capped,
            base_capped=values.base_capped,
            required_clusters=required,
        )

    def _verdicts(
        self,
        series: PairSeries,
        decisions: dict[str, Decision],
        unmeasured: dict[str, str],
        reason: str,
        pairs: int,
    ) -> tuple[MetricVerdict, ...]:
        out = []
        for metric in METRICS:
            values = series.metrics[metric.key]
            rule = self.rules[metric.key]
            decision = decisions.get(metric.key)
            if decision is None and metric.key not in unmeasured and len(values) >= 2:
                decision = rule.force(
                    values.candidate,
                    values.base,
                    reason,
                    clusters=values.requests,
                    candidate_capped=values.candidate_capped,
                    base_capped=values.base_capped,
                )
            if decision is None:
                why = unmeasured.get(metric.key) or _unmeasured_reason(metric, pairs)
                out.append(MetricVerdict.unmeasured(metric, rule, why))
            else:
                out.append(
                    MetricVerdict.from_decision(metric, decision, values.base, values.candidate)
                )
        return tuple(out)


def _unmeasured_reason(metric: GatedMetric, pairs: int) -> str:
    """Why a bounded metric has no usable pairs, and the fix."""
    if metric.key == "output_tokens":
        return f"Bedrock reported no output token counts in {pairs} pair(s)"
    need = "streamed answers of 2+ tokens" if metric.key == "ms_per_token" else "streamed answers"
    return (
        f"fewer than 2 of {pairs} pair(s) had {need} from both models without throttling; "
        "stream the calls (ConverseStream, InvokeModelWithResponseStream) to gate it"
    )


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


def candidate_of(records: Sequence[Replayable], model: str | None) -> str | None:
    """The gate's candidate: ``--bedrock-model``, else the one model the test completed calls to."""
    if model:
        return model
    models = {r.model_id for r in records if r.complete}
    return models.pop() if len(models) == 1 else None


@dataclass
class GateOutcome:
    """What one test's gate produced: its failure lines and everything the test result keeps."""

    lines: list[str]
    result: RegressionResult | None = None
    generations: list[Generation] = field(default_factory=list)
    staged: dict[str, StoredRequest] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def run_gate(
    gate: RegressionGate,
    records: Sequence[Replayable],
    *,
    nodeid: str,
    model: str | None,
    settings: TestSettings,
    update_baseline: bool,
    base_for: Callable[[str], BaseChoice],
    store: BaselineStore | None,
    handle: Callable[[str], ModelHandle],
    calls: CallBudget,
    keys_used: set[str],
    region: str | None,
    cost: CostBudget | None = None,
    reprice: Reprice | None = None,
    progress: Progress | None = None,
    gates: int = 1,
) -> GateOutcome:
    """Run one test's ``bedrock_regression`` gate on the requests it made (``gates``: how
    many gates the session runs; they share its error rate).

    ``handle`` gives an unpublished handle on a model; ``keys_used`` collects the stored
    baseline keys the gate looks at (as it looks, so they count even if the gate breaks).
    With ``update_baseline`` and a live base, the base's samples come back in ``staged``.
    """
    candidate = candidate_of(records, model)
    if candidate is None:
        models = sorted({r.model_id for r in records}) or ["none"]
        return GateOutcome(
            [
                f"bedrock_regression: which model is the candidate? The test called {', '.join(models)}; "
                "set --bedrock-model"
            ]
        )
    try:
        requests = distinct_requests(records, candidate)
    except TypeError as error:  # e.g. a file object as the InvokeModel body: read once, gone
        return GateOutcome([unreplayable_line(candidate, error)])
    if not requests:
        return GateOutcome(
            [
                f"bedrock_regression: the test made no completed call to the candidate "
                f"{display_model(candidate)}, so there is nothing to compare"
            ]
        )
    choice = base_for(candidate)
    base: BaseSide
    if choice.model_id is None:
        stored: dict[str, StoredRequest] = {}
        missing = []
        for request in requests:
            keys_used.add(request.key)
            entry = store.lookup(nodeid, request.key) if store else None
            if entry is None:
                missing.append(request.key)
            else:
                stored[request.key] = entry
        if missing or update_baseline:
            hint = (
                "record stored samples with --bedrock-update-baseline and a live base"
                if not update_baseline
                else "a live base is needed to record samples"
            )
            return GateOutcome(
                [
                    f"bedrock_regression: no base model for {display_model(candidate)}: {choice.problem} "
                    f"({hint})"
                ]
            )
        base = StoredBase(stored)
    else:
        if store is not None and not update_baseline:
            # A live base is preferred; the stored entry is still in use all the same.
            keys_used.update(request.key for request in requests)
        base = LiveBase(handle(choice.model_id), choice.source)
    runner = GateRun(
        gate,
        budget=settings.regression_budget,
        policy=settings.regression_policy,
        concurrency=settings.concurrency,
        candidate=handle(candidate),
        base=base,
        calls=calls,
        cost=cost,
        reprice=reprice,
        progress=progress,
        confidence=settings.confidence,
        gates=gates,
    )
    result = runner.run(requests)
    outcome = GateOutcome(
        result.lines() if result.failed else [],
        result,
        runner.generations,
        warnings=list(result.warnings()),
    )
    if cost is not None and cost.limit is not None:
        unpriced = sorted({g.model_id for g in runner.generations if g.cost_usd is None})
        outcome.warnings.extend(
            f"bedrock_regression: --bedrock-max-cost cannot limit the calls to "
            f"{display_model(model)}: it has no price (give one with --bedrock-prices)"
            for model in unpriced
        )
    if update_baseline and not base.stored:
        for request in requests:
            entry = stored_entry(
                result.pairs,
                request,
                base_model_id=base.model_id,
                region=region,
                plugin_version=__version__,
                recorded_at=time.time(),
            )
            if entry.samples:
                outcome.staged[request.key] = entry
    return outcome
