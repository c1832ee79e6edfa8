"""The plugin's session object: everything ``plugin.py``'s hooks hand off to.

One :class:`BedrockSession` lives in ``config.stash`` per pytest run (and per xdist
worker). It coordinates the parts that do the work: the :class:`~.target.BedrockTarget`
(emulator, environment, clients), the running test's :class:`~.run.TestRun`, the
regression gate (:func:`~.regression.run_gate`) and, in the process that prints, the
:class:`~.collector.ResultCollector`. Under xdist with ``--bedrock-max-calls`` or
``--bedrock-max-cost`` set, the controller's session also makes the :class:`~.ledger.FileLedger`
every process of the run counts in (the caps are the session's, not each worker's).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import pytest

from .collector import REPORT_ATTRIBUTE, Finished, ResultCollector, attach_result, open_store
from .groups import GROUP_KEY, GROUP_OF_KEY, Group
from .prices import PriceError, PriceTable, format_usd, load_prices
from .run import (
    TEST_SETTINGS_KEY,
    TestRun,
    bounds_of,
    fail_invalid_marker,
    gate_progress,
    keep_only_invalid,
    validate_items,
    wants,
)
from .settings import Settings, TestSettings
from .target import BedrockTarget

# boto3, botocore, moto and tabulate cost a few hundred milliseconds to import; a run
# whose tests never touch Bedrock must not pay that, so they are imported where used.
if TYPE_CHECKING:
    from .base_model import BaseChoice, BaseModels
    from .baseline_store import BaselineStore
    from .emulator import Emulator
    from .handle import ModelHandle
    from .instrument import Instrumentation
    from .ledger import FileLedger
    from .markers import TestBounds
    from .measurement import CallRecord
    from .regression import CallBudget, CostBudget, Replayable
    from .report import Report
    from .results import TestResult

#: The key of ``workerinput`` that carries the shared cap ledger's path to xdist workers.
LEDGER_INPUT = "bedrock_latency_caps"


class BedrockSession:
    """Everything the hooks need, in one object per pytest process."""

    def __init__(
        self,
        settings: Settings,
        *,
        worker: bool,
        verbosity: int,
        offline: tuple[BedrockTarget, Instrumentation] | None = None,
    ) -> None:
        self.settings = settings
        self.worker = worker
        self.verbosity = verbosity
        self.target = offline[0] if offline else BedrockTarget(settings)
        self.target.settings = settings
        self.prices = self._load_prices(settings)
        self.collector = ResultCollector(settings, self.prices)
        self.current: TestRun | None = None
        self.gates = 1  # regression gates of the session (they share its error rate)
        self.groups: dict[str, Group] = {}  # pooled gates by name
        self.received: dict[str, Group] = {}  # in an xdist controller: from the workers' reports
        self._fault_mark = 0  # emulator faults already reported when the running test began
        self._instrumentation: Instrumentation | None = None
        if offline is not None:  # made before the conftests loaded; priced like any other
            self._instrumentation = offline[1]
            self._instrumentation.pricing = self.prices.coster
        self._call_budget: CallBudget | None = None
        self._cost_budget: CostBudget | None = None
        self._ledger: FileLedger | None = None  # under xdist with a cap: the shared counts
        self._bases: BaseModels | None = None
        self._lock = threading.Lock()

    @staticmethod
    def _load_prices(settings: Settings) -> PriceTable:
        """The shipped price table with ``--bedrock-prices`` over it; a bad file is a usage error."""
        try:
            return load_prices(settings.prices)
        except PriceError as error:
            raise pytest.UsageError(f"--bedrock-prices: {error}") from None

    @property
    def instrumentation(self) -> Instrumentation:
        if self._instrumentation is None:
            from .instrument import Instrumentation

            self._instrumentation = Instrumentation()
            self._instrumentation.pricing = self.prices.coster  # every call gets its cost_usd
        return self._instrumentation

    @property
    def call_budget(self) -> CallBudget:
        with self._lock:
            if self._call_budget is None:
                from .regression import CallBudget

                self._call_budget = CallBudget(self.settings.max_calls, self._ledger)
            return self._call_budget

    @property
    def cost_budget(self) -> CostBudget:
        with self._lock:
            if self._cost_budget is None:
                from .regression import CostBudget

                self._cost_budget = CostBudget(self.settings.max_cost, self._ledger)
            return self._cost_budget

    # -- the caps of an xdist session, shared by its processes --------------------------------
    def share_caps(self) -> None:
        """In an xdist controller: make the ledger file every process of the session counts
        ``--bedrock-max-calls`` / ``--bedrock-max-cost`` in (only when one is set)."""
        if self.settings.max_calls is None and self.settings.max_cost is None:
            return
        from .ledger import FileLedger

        self._ledger = FileLedger.create()

    def caps_for_worker(self, workerinput: dict[str, object]) -> None:
        """What a worker about to start needs to count in the same ledger."""
        if self._ledger is not None:
            workerinput[LEDGER_INPUT] = str(self._ledger.path)

    def join_caps(self, workerinput: Mapping[str, object]) -> None:
        """In an xdist worker: count in the controller's ledger, when it made one."""
        path = workerinput.get(LEDGER_INPUT)
        if isinstance(path, str):
            from .ledger import FileLedger

            self._ledger = FileLedger(path)

    @property
    def emulator(self) -> Emulator | None:
        return self.target.emulator

    @property
    def store(self) -> BaselineStore | None:
        return self.collector.store

    @property
    def results(self) -> dict[str, TestResult]:
        return self.collector.results

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Start the embedded emulator when asked for, and open the stored baselines."""
        self.target.on_proxy_call = self._proxy_call
        self.target.start()
        if self.target.emulator is not None and self.settings.emulator:
            self.go_offline(self.target, self.instrumentation)
        self.collector.store = open_store(self.settings)

    def _proxy_call(self, record: CallRecord) -> None:
        """A call the measuring proxy received: it belongs to the test running now."""
        run = self.current
        if run is None:
            return  # between tests (a service warming up): not any test's call
        pricing = self.instrumentation.pricing
        if pricing is not None:
            record.coster = pricing(self.settings.region)
        run.add(record)

    @staticmethod
    def go_offline(target: BedrockTarget, instrumentation: Instrumentation) -> None:
        """Every Bedrock request of the process to the emulator, whatever its client says."""
        assert target.emulator is not None
        instrumentation.redirect(target.emulator.url, target.redirected.append)

    def stop(self) -> None:
        if self._instrumentation is not None:
            self._instrumentation.sink = None
            self._instrumentation.stop_redirect()
        self.target.stop()
        if self._ledger is not None and not self.worker:  # the controller made it
            self._ledger.remove()

    def emulator_for_fixture(self) -> Emulator:
        """The session's emulator; started on first use when ``--bedrock-emulator`` is off."""
        return self.target.emulator_for_fixture()

    # -- collection ------------------------------------------------------------------------
    def validate(
        self, items: list[pytest.Item], deselect: Callable[[list[pytest.Item]], None]
    ) -> bool:
        """Parse every item's markers (see :func:`~.run.validate_items`) and count the gates
        that share the session's error rate."""
        from .groups import GroupMismatch, group_items, plan_groups

        wanted = validate_items(items, deselect, worker=self.worker)
        gated = {item: bounds_of(item) for item in items if bounds_of(item).regression}
        try:
            groups = plan_groups(items, self.settings.regression_group, gated)
        except GroupMismatch as error:
            if not self.worker:  # a worker cannot end the run with a usage error
                raise pytest.UsageError(str(error)) from None
            keep_only_invalid(items, {error.item: str(error)}, deselect)
            return True
        self.groups = {group.name: group for group in groups}
        self.collector.groups = {group.name: tuple(group.members) for group in groups}
        singles = sum(1 for item in gated if GROUP_OF_KEY not in item.stash)
        self.gates = max(1, singles + len(groups))
        if groups and not self.worker and items:
            # Each group's verdict runs after all the tests (its members among them).
            items.extend(group_items(items[0].session, groups))
        return wanted

    @staticmethod
    def bounds(item: pytest.Item) -> TestBounds:
        return bounds_of(item)

    def wants(self, item: pytest.Item) -> bool:
        return wants(item)

    # -- per test ------------------------------------------------------------------------------
    def begin(self, item: pytest.Item) -> None:
        """Set up measurement for a test that has a bedrock marker or fixture."""
        __tracebackhide__ = True
        fail_invalid_marker(item)
        if not wants(item):
            return
        bounds = bounds_of(item)
        settings = item.stash[TEST_SETTINGS_KEY] = TestSettings.of(self.settings, bounds)
        run = TestRun(item, bounds, settings, on_call=self.call_budget.spend)
        self.current = run
        emulator = self.target.emulator
        self._fault_mark = len(emulator.errors) if emulator is not None else 0
        run.watch(emulator)
        self.instrumentation.sink = run.add
        self.instrumentation.install()
        if bounds.any:
            self.require_bedrock(need_model=False)

    def end(self, nodeid: str) -> None:
        if self.current is None or self.current.item.nodeid != nodeid:
            return
        self.current = None
        self.instrumentation.sink = None
        self.instrumentation.uninstall()
        self.target.reset()

    def run_for(self, item: pytest.Item) -> TestRun | None:
        run = self.current
        return run if run is not None and run.item is item else None

    def require_bedrock(self, *, need_model: bool) -> None:
        """Skip (or fail with ``--bedrock-require``) when Bedrock cannot be reached."""
        __tracebackhide__ = True
        self.target.require(need_model=need_model)

    def handle(self, model_id: str) -> ModelHandle:
        """A handle on ``model_id`` whose calls count as the running test's."""
        run = self.current
        return self.target.handle(
            model_id,
            self.instrumentation,
            max_tokens=run.settings.max_tokens if run else self.settings.max_tokens,
            publish=run.publish if run is not None else None,
            calls=self.call_budget,
        )

    def runtime_client(self) -> object:
        return self.target.runtime_client()

    def surface_faults(self, item: pytest.Item, report: pytest.TestReport) -> None:
        """Fail the call phase of the test during which the emulator faulted (a bug there).

        The tracebacks go to a report section, as pytest-httpserver re-raises its handler
        errors in the test: the client only saw a 501 (or a broken stream).
        """
        emulator = self.target.emulator
        if emulator is None or self.run_for(item) is None:
            return
        faults = emulator.errors[self._fault_mark :]
        if not faults:
            return
        self._fault_mark += len(faults)
        report.sections.append(
            ("bedrock emulator faults", "\n\n".join(str(fault) for fault in faults))
        )
        if report.passed or report.skipped:
            report.outcome = "failed"
            report.longrepr = (
                f"the Bedrock emulator faulted {len(faults)} time(s) during this test (a bug in "
                f"the emulator, not in the test): {faults[0].error}; tracebacks in the "
                "'bedrock emulator faults' section"
            )

    # -- after the test body: the verdicts -----------------------------------------------
    def check(self, item: pytest.Item) -> None:
        """Evaluate the test's markers; fail it with one line per violation."""
        __tracebackhide__ = True
        run = self.run_for(item)
        if run is not None:
            self._count_cost(run)  # before the gate, which must see what the test spent
        if run is None:
            return
        group = item.stash.get(GROUP_KEY, None)
        if group is not None:  # a pooled gate's verdict, over its members' requests
            lines = self._regression(item, run, records=list(group.records))
            if lines:
                pytest.fail("\n".join(lines), pytrace=False)
            return
        lines = run.check()
        member_of = item.stash.get(GROUP_OF_KEY, None)
        if run.bounds.regression is not None and member_of is not None:
            if self.worker:  # the controller draws the group's pairs: the calls go with the report
                lines.extend(self._send_to_group(run))
            else:
                self.groups[member_of].records.extend(run.snapshot())
        elif run.bounds.regression is not None:
            lines.extend(self._regression(item, run))
        lines.extend(run.check_timeout())
        if lines:
            pytest.fail("\n".join(lines), pytrace=False)

    def _send_to_group(self, run: TestRun) -> list[str]:
        """Keep a member's calls for its report to the xdist controller; a line if they
        cannot be sent."""
        from .groups import send_calls
        from .regression import candidate_of, unreplayable_line

        records = run.snapshot()
        candidate = candidate_of(records, self.settings.model)
        try:
            run.sent_calls = send_calls(records, candidate)
        except TypeError as error:
            return [unreplayable_line(candidate or "the candidate", error)]
        return []

    def _count_cost(self, run: TestRun) -> None:
        """Add the test's own calls to ``--bedrock-max-cost`` (once); say when they pass it."""
        if run.cost_counted:
            return
        run.cost_counted = True
        self.cost_budget.spend(sum(g.cost_usd or 0.0 for g in run.generations()))
        self._say_if_over_cost(run)

    def _say_if_over_cost(self, run: TestRun) -> None:
        budget = self.cost_budget
        if budget.limit is not None and budget.passed_once():
            run.item.warn(
                pytest.PytestWarning(
                    f"bedrock: the session's Bedrock spend passed --bedrock-max-cost "
                    f"${budget.limit:g} in {run.nodeid} (calls the tests make are "
                    f"counted, never blocked; {format_usd(budget.spent)} so far)"
                )
            )

    def base_for(self, candidate: str) -> BaseChoice:
        """The base model: ``--bedrock-baseline``, else the control plane's answer (cached)."""
        with self._lock:
            if self._bases is None:
                from .base_model import BaseModels

                self._bases = BaseModels(self.settings.baseline, self.target.control_client)
        return self._bases.choose(candidate)

    def _regression(
        self, item: pytest.Item, run: TestRun, *, records: list[Replayable] | None = None
    ) -> list[str]:
        from .regression import run_gate

        assert run.bounds.regression is not None
        target = self.target.target
        region = target.region if target else None
        outcome = run_gate(
            run.bounds.regression,
            run.snapshot() if records is None else records,
            nodeid=run.nodeid,
            model=self.settings.model,
            settings=run.settings,
            update_baseline=self.settings.update_baseline,
            base_for=self.base_for,
            store=self.store,
            handle=lambda model_id: self.handle(model_id).with_model(model_id, publish=False),
            calls=self.call_budget,
            keys_used=run.baseline_keys_used,
            region=region,
            cost=self.cost_budget,
            reprice=lambda generation, model_id: self.prices.cost_of(generation, region, model_id),
            # A worker has no terminal; its controller prints the verdict.
            progress=None if self.worker else gate_progress(item, self.verbosity),
            gates=self.gates,
        )
        lines = run.keep_gate(outcome)
        self._say_if_over_cost(run)
        return lines

    # -- reports ----------------------------------------------------------------------------
    def payload(self, item: pytest.Item, report: pytest.TestReport) -> None:
        """Attach the test's result to its report; it travels to the xdist controller."""
        run = self.run_for(item)
        if run is not None:
            if report.when == "call":
                self._count_cost(run)  # a test whose body failed never reached check()
            settings = self.settings
            # Recorded answers need the texts in the controller; the JSON report still
            # writes them only with --bedrock-report-text.
            answers = settings.record_answers and settings.record_profiles is not None
            attach_result(run, item, report, include_text=settings.report_text or answers)
            member_of = item.stash.get(GROUP_OF_KEY, None)
            data = getattr(report, REPORT_ATTRIBUTE, None)
            if self.worker and member_of is not None and data is not None:
                data["group"] = {
                    **self.groups[member_of].to_json(),
                    "gates": self.gates,
                    "calls": run.sent_calls or [],
                }

    def collect(self, report: pytest.TestReport) -> None:
        """Keep a result that arrived with a report (from this process or a worker); an
        xdist controller takes a group member's calls off it (no other plugin sees them)."""
        if self.worker:
            return
        data = getattr(report, REPORT_ATTRIBUTE, None)
        member = data.pop("group", None) if isinstance(data, dict) else None
        if member is not None:
            from .groups import receive

            group = receive(self.received, member)
            self.collector.groups[group.name] = tuple(group.members)
            self.gates = int(member["gates"])
        self.collector.collect(report)

    def run_received_groups(self, session: pytest.Session) -> None:
        """In an xdist controller, once the workers have finished: the verdict of each group
        whose members ran there, drawn here and reported like any test."""
        from .groups import group_items

        if session.shouldfail or session.shouldstop:  # -x / --maxfail: as without xdist
            return
        items = group_items(session, list(self.received.values()))
        # Counted as collected, as they are without xdist (the terminal's progress, "[100%]").
        session.testscollected += len(items)
        for item in items:
            item.ihook.pytest_runtest_protocol(item=item, nextitem=None)

    def report(self) -> Report:
        return self.collector.report(self.target.target)

    def summarize(
        self, reporter: pytest.TerminalReporter, verbosity: int, messages: Sequence[str]
    ) -> None:
        """Print the summary table and the session's messages at the end of the run."""
        target = self.target.target
        self.collector.summarize(reporter, target, verbosity=verbosity, messages=messages)

    def finish(self, config: pytest.Config, *, interrupted: bool) -> Finished:
        """Write the files of the session; returns messages for the terminal, and failures."""
        if self.worker:
            return Finished()
        finished = self.collector.finish(config, self.target.target, interrupted=interrupted)
        finished.messages.extend(f"bedrock: {note}" for note in self.target.redirected)
        return finished
