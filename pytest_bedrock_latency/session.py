"""The plugin's session object: everything ``plugin.py``'s hooks hand off to.

One :class:`BedrockSession` lives in ``config.stash`` per pytest run (and per xdist
worker). It owns the instrumentation, the clients, the embedded emulator, the running
test's measurements and, in the process that prints, the collected results.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from . import __version__
from .errors import CallFailures
from .markers import MarkerError, TestBounds, marker_levels, parse_markers
from .measurement import CallRecord, Generation, display_model
from .settings import Settings, effective

# boto3, botocore, moto and tabulate cost a few hundred milliseconds to import; a run
# whose tests never touch Bedrock must not pay that, so they are imported where used.
if TYPE_CHECKING:
    from .baseline_store import BaselineStore, StoredRequest
    from .clients import Clients
    from .emulator import Emulator
    from .evaluate import Check
    from .gate import RegressionResult
    from .handle import ModelHandle
    from .instrument import Instrumentation
    from .regression import CallBudget
    from .report import Report
    from .results import TestResult

BEDROCK_FIXTURES = frozenset(
    {"bedrock_model", "bedrock_baseline", "bedrock_runtime", "bedrock_calls"}
)
BOUNDS_KEY = pytest.StashKey[TestBounds]()
MARKER_ERROR_KEY = pytest.StashKey[str]()
PROGRESS_AFTER_S = 5.0  # a gate that takes longer than this shows its progress without -v
REPORT_ATTRIBUTE = "bedrock_latency"  # extra attribute on TestReport; xdist serialises it


def report_nodeid(item: pytest.Item) -> str:
    """The test's node id as reports and baselines key it, whatever the xdist mode.

    ``--dist loadgroup`` appends ``@<group>`` to node ids in the workers; a baseline
    recorded that way must still match a plain run.
    """
    marks = item.iter_markers("xdist_group")
    groups = sorted({str(m.args[0] if m.args else m.kwargs.get("name", "")) for m in marks})
    return item.nodeid.removesuffix("@" + "_".join(groups)) if groups else item.nodeid


class EnvironmentPatch:
    """Environment variables set for the session and restored exactly afterwards."""

    def __init__(self, environ: MutableMapping[str, str]) -> None:
        self._environ = environ
        self._saved: dict[str, str | None] = {}

    def set(self, name: str, value: str) -> None:
        self._saved.setdefault(name, self._environ.get(name))
        self._environ[name] = value

    def restore(self) -> None:
        for name, value in self._saved.items():
            if value is None:
                self._environ.pop(name, None)
            else:
                self._environ[name] = value
        self._saved.clear()


class CallLog(Sequence[Generation]):
    """``bedrock_calls``: the test's completed calls so far, as Generations (live view)."""

    def __init__(self, run: TestRun, *, text_in_repr: bool = False) -> None:
        self._run = run
        self._text_in_repr = text_in_repr

    def _items(self) -> list[Generation]:
        return self._run.generations(text_in_repr=self._text_in_repr)

    def __getitem__(self, index: Any) -> Any:
        return self._items()[index]

    def __len__(self) -> int:
        return len(self._items())

    def __iter__(self) -> Iterator[Generation]:
        return iter(self._items())

    def __repr__(self) -> str:
        return f"CallLog({self._items()!r})"


class TestRun:
    """What the running test measured: its records, its gate, its checks."""

    __test__ = False

    def __init__(
        self, item: pytest.Item, bounds: TestBounds, on_call: Callable[[int], None]
    ) -> None:
        self.item = item
        self._on_call = on_call
        self.nodeid = report_nodeid(item)
        self.bounds = bounds
        self._lock = threading.Lock()
        self.records: list[CallRecord] = []
        self.gate_calls: list[Generation] = []
        self.checks: list[Check] = []
        self.regression: RegressionResult | None = None
        self.staged: dict[str, StoredRequest] = {}
        self.baseline_keys_used: set[str] = set()

    def add(self, record: CallRecord) -> None:
        with self._lock:
            self.records.append(record)
        self._on_call(1)  # test-body calls count toward --bedrock-max-calls too

    def snapshot(self) -> list[CallRecord]:
        with self._lock:
            return list(self.records)

    def generations(self, *, text_in_repr: bool = False) -> list[Generation]:
        return [r.generation(text_in_repr=text_in_repr) for r in self.snapshot() if r.complete]

    def result(self, outcome: str) -> TestResult:
        from .results import Spend, TestResult, merge_spend

        records = self.snapshot()
        calls = [r.generation() for r in records if r.complete]
        return TestResult(
            nodeid=self.nodeid,
            outcome=outcome,
            bounds=self.bounds.to_json(),
            calls=calls,
            checks=tuple(self.checks),
            failed_calls=sum(1 for r in records if r.state == "error"),
            regression=self.regression,
            spend=merge_spend(Spend.of(calls), Spend.of(self.gate_calls)),
        )


@dataclass(frozen=True)
class BaseChoice:
    """The base model of a candidate, how it was found, or why there is none."""

    model_id: str | None
    source: str
    problem: str | None = None


class BedrockSession:
    """Everything the hooks need, in one object per pytest process."""

    def __init__(self, settings: Settings, *, worker: bool, verbosity: int) -> None:
        self.settings = settings
        self.worker = worker
        self.verbosity = verbosity
        self._instrumentation: Instrumentation | None = None
        self.environment = EnvironmentPatch(os.environ)
        self.emulator: Emulator | None = None
        self._own_emulator = False
        self.clients: Clients | None = None
        self.current: TestRun | None = None
        self.results: dict[str, TestResult] = {}
        self._call_budget: CallBudget | None = None
        self.store: BaselineStore | None = None
        self._bases: dict[str, BaseChoice] = {}
        self._problems: list[str] | None = None
        self._failures: CallFailures | None = None
        self._lock = threading.Lock()

    @property
    def instrumentation(self) -> Instrumentation:
        if self._instrumentation is None:
            from .instrument import Instrumentation

            self._instrumentation = Instrumentation()
        return self._instrumentation

    @property
    def call_budget(self) -> CallBudget:
        with self._lock:
            if self._call_budget is None:
                from .regression import CallBudget

                self._call_budget = CallBudget(self.settings.max_calls)
            return self._call_budget

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Start the embedded emulator when asked for and point the process at it."""
        from .clients import Clients, Target

        if self.settings.emulator:
            from .emulator import Emulator, ProfileError

            try:
                self.emulator = Emulator(profiles=self.settings.emulator_profiles).start()
            except (ProfileError, OSError) as error:
                raise pytest.UsageError(f"--bedrock-emulator: {error}") from None
            self._own_emulator = True
            url = self.emulator.url
            # Every client of the process, the application's included, follows these.
            self.environment.set("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", url)
            self.environment.set("AWS_ENDPOINT_URL_BEDROCK", url)
            if not self._has_credentials():
                self.environment.set("AWS_ACCESS_KEY_ID", "testing")
                self.environment.set("AWS_SECRET_ACCESS_KEY", "testing")
            if not (
                os.environ.get("AWS_REGION")
                or os.environ.get("AWS_DEFAULT_REGION")
                or self.settings.region
            ):
                self.environment.set("AWS_REGION", "us-east-1")
                self.environment.set("AWS_DEFAULT_REGION", "us-east-1")
        settings = self.settings
        endpoint = self.emulator.url if self.emulator else settings.endpoint_url
        region = (
            settings.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        )
        target = Target(
            region,
            settings.aws_profile,
            endpoint,
            self.emulator is not None,
            settings.timeout,
            pool_size=max(10, 2 * settings.concurrency + 2),
        )
        self.clients = Clients(target)
        self._failures = CallFailures(
            f"The emulator at {endpoint} has no profile for this model: add one to the file given "
            'with --bedrock-emulator-profiles (a glob or a "*" profile covers many).'
            if self.emulator is not None
            else f"Check credentials, region and model access for {target.describe()}; "
            "or run offline with --bedrock-emulator."
        )
        if settings.update_baseline or (settings.baseline_file and settings.baseline_file.exists()):
            from .baseline_store import BaselineFileError, BaselineStore

            assert settings.baseline_file is not None
            try:
                self.store = BaselineStore.load(settings.baseline_file)
            except BaselineFileError as error:
                raise pytest.UsageError(str(error)) from None

    @staticmethod
    def _has_credentials() -> bool:
        import boto3

        try:
            return boto3.Session().get_credentials() is not None
        except Exception:  # a broken profile: our dummy keys would not be used anyway
            return True

    def stop(self) -> None:
        if self._instrumentation is not None:
            self._instrumentation.sink = None
        self.environment.restore()
        if self.emulator is not None and self._own_emulator:
            self.emulator.stop()
        self.emulator = None

    def emulator_for_fixture(self) -> Emulator:
        """The session's emulator; started on first use when ``--bedrock-emulator`` is off."""
        from .emulator import Emulator

        with self._lock:
            if self.emulator is None:
                self.emulator = Emulator(profiles=self.settings.emulator_profiles).start()
                self._own_emulator = True
            return self.emulator

    # -- collection ------------------------------------------------------------------------
    def validate(
        self, items: list[pytest.Item], deselect: Callable[[list[pytest.Item]], None]
    ) -> bool:
        """Parse every item's markers; all mistakes are reported together, before any test runs.

        Returns whether any test uses Bedrock (a marker or a bedrock fixture). An xdist
        worker cannot end the run with a usage error (the controller would report an
        internal error), so there only the faulty tests are kept, each failing with its
        message, and every other test is deselected.
        """
        errors: dict[pytest.Item, str] = {}
        wanted = False
        for item in items:
            try:
                bounds = parse_markers(item.nodeid, marker_levels(item))
            except MarkerError as error:
                errors[item] = str(error)
                continue
            if bounds.any:
                item.stash[BOUNDS_KEY] = bounds
            wanted = wanted or self.wants(item)
        if not errors:
            return wanted
        if not self.worker:
            raise pytest.UsageError("invalid bedrock marker(s):\n  " + "\n  ".join(errors.values()))
        deselect([item for item in items if item not in errors])
        items[:] = list(errors)
        for item, message in errors.items():
            item.stash[MARKER_ERROR_KEY] = message
        return True

    @staticmethod
    def bounds(item: pytest.Item) -> TestBounds:
        return item.stash.get(BOUNDS_KEY, TestBounds())

    def wants(self, item: pytest.Item) -> bool:
        fixtures = getattr(item, "fixturenames", ())
        return self.bounds(item).any or any(name in BEDROCK_FIXTURES for name in fixtures)

    # -- per test ------------------------------------------------------------------------------
    def begin(self, item: pytest.Item) -> None:
        """Set up measurement for a test that has a bedrock marker or fixture."""
        __tracebackhide__ = True
        if MARKER_ERROR_KEY in item.stash:
            pytest.fail(f"invalid bedrock marker: {item.stash[MARKER_ERROR_KEY]}", pytrace=False)
        if not self.wants(item):
            return
        run = TestRun(item, self.bounds(item), on_call=self.call_budget.spend)
        self.current = run
        self.instrumentation.sink = run.add
        self.instrumentation.install()
        if self.bounds(item).any:
            self.require_bedrock(need_model=False)

    def end(self, nodeid: str) -> None:
        if self.current is None or self.current.item.nodeid != nodeid:
            return
        self.current = None
        self.instrumentation.sink = None
        self.instrumentation.uninstall()
        if self.emulator is not None:
            self.emulator.reset_overrides()

    def run_for(self, item: pytest.Item) -> TestRun | None:
        run = self.current
        return run if run is not None and run.item is item else None

    def require_bedrock(self, *, need_model: bool) -> None:
        """Skip (or fail with ``--bedrock-require``) when Bedrock cannot be reached."""
        __tracebackhide__ = True
        problems: list[str] = []
        if need_model and not self.settings.model:
            problems.append("--bedrock-model is not set")
        if self._problems is None:
            assert self.clients is not None
            self._problems = self.clients.problems()
        problems.extend(self._problems)
        if not problems:
            return
        message = "; ".join(problems)
        if self.settings.require:
            pytest.fail(f"Bedrock is not configured (--bedrock-require): {message}", pytrace=False)
        if self._problems:
            message += " (or try --bedrock-emulator)"
        # Point the skip at the test, as pytest does for a skip raised by a fixture.
        raise pytest.skip.Exception(message, allow_module_level=False, _use_item_location=True)

    def handle(self, model_id: str) -> ModelHandle:
        from .handle import ModelHandle

        assert self.clients is not None and self._failures is not None
        run = self.current
        return ModelHandle(
            model_id,
            self.clients.runtime(),
            self.instrumentation,
            max_tokens=self.settings.max_tokens,
            failures=self._failures,
            publish=run.add if run is not None else None,
            text_in_repr=self.settings.report_text,
        )

    def runtime_client(self) -> Any:
        assert self.clients is not None
        return self.clients.runtime()

    # -- after the test body: the verdicts -----------------------------------------------
    def check(self, item: pytest.Item) -> None:
        """Evaluate the test's markers; fail it with one line per violation."""
        __tracebackhide__ = True
        from .evaluate import check_latency, check_length

        run = self.run_for(item)
        if run is None or not run.bounds.any:
            return
        generations = run.generations()
        bounds = run.bounds
        lines: list[str] = []
        if not generations and not bounds.regression:
            markers = ", ".join(sorted(bounds.to_json()))
            pytest.fail(
                f"{markers}: the test made no measured Bedrock call (call Bedrock through the bedrock_model "
                "fixture or any boto3 bedrock-runtime client during the test)",
                pytrace=False,
            )
        if bounds.latency is not None:
            run.checks.extend(
                check_latency(bounds.latency, generations, self.settings.latency_scale)
            )
        if bounds.length is not None:
            run.checks.extend(check_length(bounds.length, generations))
        if self.settings.timeout is not None:
            run.checks.extend(self._timeouts(generations))
        lines.extend(c.line for c in run.checks if not c.ok)
        if bounds.regression is not None:
            lines.extend(self._regression(item, run))
        if lines:
            pytest.fail("\n".join(lines), pytrace=False)

    def _timeouts(self, generations: Sequence[Generation]) -> list[Check]:
        from .evaluate import Check

        assert self.settings.timeout is not None
        limit = self.settings.timeout * 1000
        slow = [g for g in generations if g.total_ms > limit]
        if not slow:
            return []
        worst = max(g.total_ms for g in slow)
        line = (
            f"bedrock timeout: {len(slow)} call(s) took longer than --bedrock-timeout "
            f"{self.settings.timeout:g}s (slowest {worst / 1000:.1f}s, model {display_model(slow[0].model_id)})"
        )
        return [Check("bedrock_timeout", "total ms max", worst, limit, False, line)]

    # -- the regression gate ---------------------------------------------------------------
    def _candidate(self, run: TestRun) -> str | None:
        if self.settings.model:
            return self.settings.model
        models = {r.model_id for r in run.snapshot() if r.complete}
        return models.pop() if len(models) == 1 else None

    def base_for(self, candidate: str) -> BaseChoice:
        """The base model: ``--bedrock-baseline``, else the control plane's answer (cached)."""
        if self.settings.baseline:
            return BaseChoice(self.settings.baseline, "--bedrock-baseline")
        with self._lock:
            cached = self._bases.get(candidate)
        if cached is not None:
            return cached
        from .base_model import BaseModelError, resolve_base_model

        assert self.clients is not None
        try:
            resolution = resolve_base_model(candidate, self.clients.control())
            choice = BaseChoice(resolution.base_model_id, resolution.source)
        except BaseModelError as error:
            choice = BaseChoice(None, "none", str(error))
        with self._lock:
            self._bases[candidate] = choice
        return choice

    def _regression(self, item: pytest.Item, run: TestRun) -> list[str]:
        __tracebackhide__ = True
        from .regression import GateRun, distinct_requests, stored_entry

        gate = run.bounds.regression
        assert gate is not None
        candidate = self._candidate(run)
        if candidate is None:
            models = sorted({r.model_id for r in run.snapshot()}) or ["none"]
            return [
                f"bedrock_regression: which model is the candidate? The test called {', '.join(models)}; "
                "set --bedrock-model"
            ]
        requests = distinct_requests(run.snapshot(), candidate)
        if not requests:
            return [
                f"bedrock_regression: the test made no completed call to the candidate "
                f"{display_model(candidate)}, so there is nothing to compare"
            ]
        choice = self.base_for(candidate)
        stored: dict[str, StoredRequest] = {}
        if choice.model_id is None:
            missing = []
            for request in requests:
                run.baseline_keys_used.add(request.key)
                entry = self.store.lookup(run.nodeid, request.key) if self.store else None
                if entry is None:
                    missing.append(request.key)
                else:
                    stored[request.key] = entry
            if missing or self.settings.update_baseline:
                hint = (
                    "record stored samples with --bedrock-update-baseline and a live base"
                    if not self.settings.update_baseline
                    else "a live base is needed to record samples"
                )
                return [
                    f"bedrock_regression: no base model for {display_model(candidate)}: {choice.problem} "
                    f"({hint})"
                ]
        elif self.store is not None and not self.settings.update_baseline:
            # A live base is preferred; the stored entry is still in use all the same.
            run.baseline_keys_used.update(request.key for request in requests)
        budget = effective(gate.budget, self.settings.regression_budget)
        candidate_handle = self.handle(candidate).with_model(candidate, publish=False)
        base_id = choice.model_id or next(iter(stored.values())).model_id
        runner = GateRun(
            gate,
            budget=budget,
            policy=effective(gate.policy, self.settings.regression_policy),
            concurrency=self.settings.concurrency,
            candidate=candidate_handle,
            base=candidate_handle.with_model(base_id, publish=False) if choice.model_id else None,
            base_model_id=base_id,
            base_source=choice.source if choice.model_id else "stored samples",
            stored=stored,
            calls=self.call_budget,
            progress=self._progress(item),
        )
        result = runner.run(requests)
        run.gate_calls.extend(runner.generations)
        run.regression = result
        if self.settings.update_baseline and choice.model_id:
            for request in requests:
                entry = stored_entry(
                    result.pairs,
                    request,
                    base_model_id=base_id,
                    region=self.clients.target.region if self.clients else None,
                    plugin_version=__version__,
                    recorded_at=time.time(),
                )
                if entry.samples:
                    run.staged[request.key] = entry
        for warning in result.warnings():
            item.warn(pytest.PytestWarning(warning))
        return result.lines() if result.failed else []

    def _progress(self, item: pytest.Item) -> Callable[[int, int], None] | None:
        """Pairs drawn of the budget, at each look: with -v, or once a gate runs for a while."""
        if self.worker:  # a worker has no terminal; its controller prints the verdict
            return None
        writer = item.config.get_terminal_writer()
        started = time.monotonic()

        def show(drawn: int, budget: int) -> None:
            if self.verbosity >= 1 or time.monotonic() - started > PROGRESS_AFTER_S:
                writer.line(
                    f"\n  bedrock_regression {item.nodeid}: {drawn}/{budget} pairs drawn", cyan=True
                )

        return show

    # -- reports ----------------------------------------------------------------------------
    def payload(self, item: pytest.Item, report: pytest.TestReport) -> None:
        """Attach the test's result to its report; it travels to the xdist controller."""
        run = self.run_for(item)
        if run is None:
            return
        if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
            result = run.result(report.outcome)
            data = result.to_json(include_text=self.settings.report_text)
            if report.when == "call":
                # JUnit XML properties (CI charts them), whatever the test's own outcome.
                item.user_properties.extend(result.headline().items())
            failures = [r for r in run.snapshot() if r.state == "error"]
            if failures and report.failed:
                report.sections.append(("bedrock", "\n".join(r.failure_line() for r in failures)))
            data["staged_baselines"] = {k: v.to_json() for k, v in run.staged.items()}
            data["baseline_keys_used"] = sorted(run.baseline_keys_used)
            setattr(report, REPORT_ATTRIBUTE, data)

    def collect(self, report: pytest.TestReport) -> None:
        """Keep a result that arrived with a report (from this process or a worker)."""
        data = getattr(report, REPORT_ATTRIBUTE, None)
        if self.worker or not isinstance(data, Mapping):
            return
        from .results import TestResult

        result = TestResult.from_json(data)
        self.results[result.nodeid] = result
        if self.store is not None:
            for key in data.get("baseline_keys_used") or ():
                self.store.mark_used(result.nodeid, key)
            staged = data.get("staged_baselines") or {}
            if staged:
                self.store.merge({result.nodeid: staged})

    def _plot(self, directory: Path) -> list[str]:
        from .plot import PlotUnavailable, plot_gates

        try:
            written = plot_gates(list(self.results.values()), directory)
        except PlotUnavailable as error:
            return [str(error)]
        if not written:
            return []
        return [
            f"bedrock: {len(written)} plot{'' if len(written) == 1 else 's'} written to {directory}"
        ]

    def report(self) -> Report:
        from .report import Report

        target = self.clients.target if self.clients else None
        return Report(
            results=list(self.results.values()),
            settings=self.settings,
            endpoint_kind=target.kind if target else "none",
            region=target.region if target else None,
        )

    def finish(self, config: pytest.Config, *, interrupted: bool) -> list[str]:
        """Write the files of the session; returns messages for the terminal."""
        if self.worker:
            return []
        messages: list[str] = []
        if self.results and config.pluginmanager.hasplugin("benchmark"):
            from .benchmark_bridge import attach

            attach(config, list(self.results.values()))
        if self.settings.plot is not None and self.results:
            messages.extend(self._plot(self.settings.plot))
        if self.settings.report is not None and (self.results or not interrupted):
            self.report().write_json(self.settings.report)
            messages.append(f"bedrock: JSON report written to {self.settings.report}")
        summary = os.environ.get("GITHUB_STEP_SUMMARY")
        if summary and self.results:
            # In GitHub Actions: a step-summary table, and an annotation per failed gate.
            report = self.report()
            report.append_github_summary(Path(summary))
            messages.extend(report.github_annotations())
        if self.store is not None:
            if self.settings.update_baseline and not interrupted:
                from .baseline_store import BaselineFileError

                try:
                    if self.store.save():
                        messages.append(f"bedrock: base samples recorded in {self.store.path}")
                except BaselineFileError as error:
                    messages.append(f"bedrock: {error}")
            unused = self.store.unused()
            if unused and self.results:
                messages.append(
                    f"bedrock: {len(unused)} stored baseline entr{'y' if len(unused) == 1 else 'ies'} in "
                    f"{self.store.path.name} no test used (e.g. {unused[0][0]}); re-record with "
                    "--bedrock-update-baseline to prune"
                )
        return messages
