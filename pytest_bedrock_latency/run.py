"""One test: which tests are measured, what the running one measured, and its verdicts.

Collection stores each item's parsed markers on the item; :class:`TestRun` holds one
test's records, gate and checks, with its :class:`~.settings.TestSettings` resolved once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import pytest

from .markers import MarkerError, TestBounds, marker_levels, parse_markers
from .measurement import CallRecord, Generation
from .settings import TestSettings
from .unmeasured import WIRING_HINT, Unmeasured, unmeasured

if TYPE_CHECKING:
    from .baseline_store import StoredRequest
    from .emulator import Emulator
    from .evaluate import Check
    from .gate import RegressionResult
    from .regression import GateOutcome
    from .results import TestResult

BEDROCK_FIXTURES = frozenset(
    {"bedrock_model", "bedrock_baseline", "bedrock_runtime", "bedrock_calls"}
)
BOUNDS_KEY = pytest.StashKey[TestBounds]()
MARKER_ERROR_KEY = pytest.StashKey[str]()
TEST_SETTINGS_KEY = pytest.StashKey[TestSettings]()
PROGRESS_AFTER_S = 5.0  # a gate that takes longer than this shows its progress without -v


def report_nodeid(item: pytest.Item) -> str:
    """The test's node id as reports and baselines key it, whatever the xdist mode.

    ``--dist loadgroup`` appends ``@<group>`` to node ids in the workers; a baseline
    recorded that way must still match a plain run.
    """
    marks = item.iter_markers("xdist_group")
    groups = sorted({str(m.args[0] if m.args else m.kwargs.get("name", "")) for m in marks})
    return item.nodeid.removesuffix("@" + "_".join(groups)) if groups else item.nodeid


# -- collection ------------------------------------------------------------------------------
def bounds_of(item: pytest.Item) -> TestBounds:
    """The item's bedrock markers, as parsed at collection."""
    return item.stash.get(BOUNDS_KEY, TestBounds())


def wants(item: pytest.Item) -> bool:
    """Whether the test is measured: a bedrock marker or a bedrock fixture."""
    fixtures = getattr(item, "fixturenames", ())
    return bounds_of(item).any or any(name in BEDROCK_FIXTURES for name in fixtures)


def validate_items(
    items: list[pytest.Item], deselect: Callable[[list[pytest.Item]], None], *, worker: bool
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
        wanted = wanted or wants(item)
    if not errors:
        return wanted
    if not worker:
        raise pytest.UsageError("invalid bedrock marker(s):\n  " + "\n  ".join(errors.values()))
    keep_only_invalid(items, errors, deselect)
    return True


def keep_only_invalid(
    items: list[pytest.Item],
    errors: dict[pytest.Item, str],
    deselect: Callable[[list[pytest.Item]], None],
) -> None:
    """In an xdist worker, instead of a usage error: only the faulty tests run, each failing
    with its message (see :func:`fail_invalid_marker`); every other test is deselected."""
    deselect([item for item in items if item not in errors])
    items[:] = list(errors)
    for item, message in errors.items():
        item.stash[MARKER_ERROR_KEY] = message


def fail_invalid_marker(item: pytest.Item) -> None:
    """In an xdist worker, a test whose marker is invalid fails with the marker's message."""
    __tracebackhide__ = True
    if MARKER_ERROR_KEY in item.stash:
        pytest.fail(f"invalid bedrock marker: {item.stash[MARKER_ERROR_KEY]}", pytrace=False)


# -- one running test --------------------------------------------------------------------------
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
        self,
        item: pytest.Item,
        bounds: TestBounds,
        settings: TestSettings,
        on_call: Callable[[int], None],
    ) -> None:
        self.item = item
        self._on_call = on_call
        self.nodeid = report_nodeid(item)
        self.bounds = bounds
        self.settings = settings
        self._lock = threading.Lock()
        self.records: list[CallRecord] = []
        self.gate_calls: list[Generation] = []
        self.checks: list[Check] = []
        self.regression: RegressionResult | None = None
        self.staged: dict[str, StoredRequest] = {}
        self.baseline_keys_used: set[str] = set()
        self.cost_counted = False  # its own calls added to --bedrock-max-cost
        #: A pooled group member's calls on an xdist worker, to send to the controller.
        self.sent_calls: list[dict[str, Any]] | None = None
        self._emulator: Emulator | None = None
        self._served_before = 0

    def watch(self, emulator: Emulator | None) -> None:
        """Compare what ``emulator`` serves from now on with what the test measured."""
        self._emulator = emulator
        self._served_before = len(emulator.requests) if emulator is not None else 0

    def unmeasured(self) -> list[Unmeasured]:
        """Requests the watched emulator served during the test that no measured call made."""
        if self._emulator is None:
            return []
        served = [
            (r.operation, r.user_agent) for r in self._emulator.requests[self._served_before :]
        ]
        measured = [(r.operation, r.user_agent, max(r.attempts, 1)) for r in self.snapshot()]
        measured += [(g.operation, None, g.attempts) for g in self.gate_calls]
        return unmeasured(served, measured)

    def abandoned(self) -> list[str]:
        """Calls without figures that did not fail: abandoned, or unfinished when asked.

        A stream nobody closed or finished (an ``async for`` that broke off, a generator kept
        alive) is still running when the test ends: it is not measured either.
        """
        lines = []
        for record in self.snapshot():
            if record.state == "abandoned":
                lines.append(record.abandoned_line())
            elif record.state == "running":
                lines.append(f"{record.abandoned_line()} (unfinished when the test ended)")
        return lines

    def notes(self) -> list[str]:
        """One line per call without figures: abandoned streams, unmeasured requests."""
        return self.abandoned() + [u.line for u in self.unmeasured()]

    def add(self, record: CallRecord) -> None:
        """A call the test's code made (any client): counted toward --bedrock-max-calls."""
        with self._lock:
            self.records.append(record)
        self._on_call(1)  # test-body calls count toward --bedrock-max-calls too

    def publish(self, record: CallRecord) -> None:
        """A call made through the plugin's handle, which took it from the cap already."""
        with self._lock:
            self.records.append(record)

    def snapshot(self) -> list[CallRecord]:
        with self._lock:
            return list(self.records)

    def generations(self, *, text_in_repr: bool = False) -> list[Generation]:
        return [r.generation(text_in_repr=text_in_repr) for r in self.snapshot() if r.complete]

    def check(self) -> list[str]:
        """Check the latency and length bounds; the lines of those violated.

        A marked test without a measured call (and no gate, which says so itself) fails here.
        """
        __tracebackhide__ = True
        from .evaluate import check_latency, check_length

        generations = self.generations()
        bounds = self.bounds
        if not bounds.any:
            return []
        if not generations and not bounds.regression:
            markers = ", ".join(sorted(bounds.to_json()))
            abandoned = self.abandoned()
            missed = [u.line for u in self.unmeasured()]
            if abandoned:
                why = "every Bedrock call of the test was abandoned before its answer ended "
                why += "(read each stream to its last event): " + "; ".join(abandoned)
            elif missed:
                why = "the test made no measured Bedrock call, but " + "; ".join(missed)
                why += f": {WIRING_HINT}"
            else:
                why = (
                    "the test made no measured Bedrock call (call Bedrock through the bedrock_model "
                    "fixture or any boto3 bedrock-runtime client during the test)"
                )
            pytest.fail(f"{markers}: {why}", pytrace=False)
        if bounds.latency is not None:
            self.checks.extend(
                check_latency(bounds.latency, generations, self.settings.latency_scale)
            )
        if bounds.length is not None:
            self.checks.extend(check_length(bounds.length, generations))
        failed = [c.line for c in self.checks if not c.ok]
        # The figures miss these calls: say so next to the verdict it may have changed.
        return failed + [f"not measured: {note}" for note in self.notes()] if failed else failed

    def check_timeout(self) -> list[str]:
        """``--bedrock-timeout`` over every measured call: the test's own and its gate's.

        Every measured test, marked or using only a fixture, is held to it.
        """
        from .evaluate import check_timeout

        if self.settings.timeout is None:
            return []
        checks = check_timeout(self.settings.timeout, [*self.generations(), *self.gate_calls])
        self.checks.extend(checks)
        return [c.line for c in checks if not c.ok]

    def keep_gate(self, outcome: GateOutcome) -> list[str]:
        """Keep what the gate produced; its failure lines."""
        self.gate_calls.extend(outcome.generations)
        if outcome.result is not None:
            self.regression = outcome.result
        self.staged.update(outcome.staged)
        for warning in outcome.warnings:
            self.item.warn(pytest.PytestWarning(warning))
        return outcome.lines

    def result(self, outcome: str) -> TestResult:
        from .results import FailedCall, Spend, TestResult, merge_spend

        records = self.snapshot()
        calls = [r.generation() for r in records if r.complete]
        failures = tuple(
            FailedCall(
                r.model_id,
                str(r.error_code),
                max(r.attempts, 1),
                # Response headers arrived, so the stream broke after it began.
                mid_stream=r.streaming and r.last_event_at is not None,
            )
            for r in records
            if r.state == "error"
        )
        return TestResult(
            nodeid=self.nodeid,
            outcome=outcome,
            bounds=self.bounds.to_json(),
            calls=calls,
            checks=tuple(self.checks),
            failed_calls=len(failures),
            failures=failures,
            regression=self.regression,
            spend=merge_spend(Spend.of(calls), Spend.of(self.gate_calls)),
            unmeasured=tuple(self.notes()),
        )


def gate_progress(item: pytest.Item, verbosity: int) -> Callable[[int, int], None]:
    """Pairs drawn of the budget, at each look: with -v, or once a gate runs for a while."""
    writer = item.config.get_terminal_writer()
    started = time.monotonic()

    def show(drawn: int, budget: int) -> None:
        if verbosity >= 1 or time.monotonic() - started > PROGRESS_AFTER_S:
            writer.line(
                f"\n  bedrock_regression {item.nodeid}: {drawn}/{budget} pairs drawn", cyan=True
            )

    return show
