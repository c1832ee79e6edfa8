"""Moving each test's result to the process that prints, and writing the session's files.

A test's result rides on its ``TestReport`` (:func:`attach_result`), so it reaches the
xdist controller too; :class:`ResultCollector` keeps the results that arrive and, at the
end of the session, builds the report once and writes every file from it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from .markers import group_nodeid
from .settings import Settings

# tabulate (through report.py) and boto3 are imported only when there is something to do.
if TYPE_CHECKING:
    from .baseline_store import BaselineStore
    from .clients import Target
    from .prices import PriceTable
    from .report import Report
    from .results import TestResult
    from .run import TestRun

REPORT_ATTRIBUTE = "bedrock_latency"  # extra attribute on TestReport; xdist serialises it


def attach_result(
    run: TestRun, item: pytest.Item, report: pytest.TestReport, *, include_text: bool
) -> None:
    """Attach the test's result to its report; it travels to the xdist controller."""
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        result = run.result(_outcome(report))
        data = result.to_json(include_text=include_text)
        if report.when == "call":
            # JUnit XML properties (CI charts them), whatever the test's own outcome.
            item.user_properties.extend(result.headline().items())
        failures = [r for r in run.snapshot() if r.state == "error"]
        if failures and report.failed:
            report.sections.append(("bedrock", "\n".join(r.failure_line() for r in failures)))
        if result.unmeasured and report.when == "call":
            report.sections.append(("bedrock: not measured", "\n".join(result.unmeasured)))
        data["staged_baselines"] = {k: v.to_json() for k, v in run.staged.items()}
        data["baseline_keys_used"] = sorted(run.baseline_keys_used)
        setattr(report, REPORT_ATTRIBUTE, data)


def _outcome(report: pytest.TestReport) -> str:
    """The outcome as pytest's summary names it: an expected failure is "xfailed", not skipped."""
    if hasattr(report, "wasxfail"):
        return "xfailed" if report.skipped else "xpassed"
    return report.outcome


def open_store(settings: Settings) -> BaselineStore | None:
    """The stored-baseline file, when it exists or is to be recorded."""
    if not (
        settings.update_baseline or (settings.baseline_file and settings.baseline_file.exists())
    ):
        return None
    from .baseline_store import BaselineFileError, BaselineStore

    assert settings.baseline_file is not None
    try:
        return BaselineStore.load(settings.baseline_file)
    except BaselineFileError as error:
        raise pytest.UsageError(str(error)) from None


class ResultCollector:
    """The results of the session (in the process that prints) and the files made of them."""

    def __init__(self, settings: Settings, prices: PriceTable | None = None) -> None:
        self.settings = settings
        self.prices = prices
        self.results: dict[str, TestResult] = {}
        self.store: BaselineStore | None = None
        self.groups: dict[str, tuple[str, ...]] = {}  # pooled gates: name -> member node ids

    def collect(self, report: pytest.TestReport) -> None:
        """Keep a result that arrived with a report (from this process or a worker)."""
        data = getattr(report, REPORT_ATTRIBUTE, None)
        if not isinstance(data, Mapping):
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

    def report(self, target: Target | None, *, interrupted: bool = False) -> Report:
        """The report of every result so far."""
        from .report import Report

        return Report(
            results=list(self.results.values()),
            settings=self.settings,
            endpoint_kind=target.kind if target else "none",
            region=target.region if target else None,
            interrupted=interrupted,
            prices_source=self.prices.source if self.prices else None,
            prices_as_of=self.prices.as_of if self.prices else None,
            groups=dict(self.groups),
        )

    def summarize(
        self,
        reporter: pytest.TerminalReporter,
        target: Target | None,
        *,
        verbosity: int,
        messages: Sequence[str],
    ) -> None:
        """The terminal's "bedrock latency" section, then the session's messages."""
        lines = self.report(target).terminal_lines(verbosity) if self.results else []
        if lines:
            reporter.section("bedrock latency")
            for line in lines:
                reporter.line(line)
        for message in messages:
            reporter.line(message)

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

    def finish(
        self, config: pytest.Config, target: Target | None, *, interrupted: bool
    ) -> Finished:
        """Write the files of the session, each on its own; returns messages and failure.

        One output that cannot be written (a full disk, a path made read-only during the
        run, a bug) is one line and a failed run, and never keeps the others, or pytest's
        own JUnit XML, summary and result line, from being written. The baseline goes
        first: it holds what the run paid for.
        """
        settings = self.settings
        finished = Finished()
        if self.store is not None:
            finished.attempt(
                "the stored baseline", lambda: self._finish_store(interrupted=interrupted)
            )
        if self.results and config.pluginmanager.hasplugin("benchmark"):
            from .benchmark_bridge import attach

            def hand_over() -> list[str]:
                attach(config, list(self.results.values()))
                return []

            finished.attempt("handing the results to pytest-benchmark", hand_over)
        if settings.plot is not None and self.results:
            plot = settings.plot
            finished.attempt(f"the plots in {plot}", lambda: self._plot(plot))
        summary = os.environ.get("GITHUB_STEP_SUMMARY")
        report = self.report(target, interrupted=interrupted)  # one report for every file
        made = sum(s.calls for s in report.spend().values())
        if settings.max_calls is not None and made > settings.max_calls:
            finished.messages.append(
                f"bedrock: the session completed {made} Bedrock calls, more than --bedrock-max-calls "
                f"{settings.max_calls}: the plugin's own calls stop at the cap, calls the tests' "
                "code makes with its own clients are counted but cannot be refused"
            )
        if settings.report is not None:
            # Written even when interrupted with no result: the previous run's report must
            # not stay behind as if it were this run's.
            path = settings.report

            def write_report() -> list[str]:
                report.write_json(path)
                flag = " (interrupted: partial)" if interrupted else ""
                return [f"bedrock: JSON report written to {path}{flag}"]

            finished.attempt(f"the JSON report {path} (--bedrock-report)", write_report)
        if summary and self.results:
            # In GitHub Actions: a step-summary table, and an annotation per failed gate.
            def append_summary() -> list[str]:
                report.append_github_summary(Path(summary))
                return []

            finished.attempt(f"the step summary {summary} (GITHUB_STEP_SUMMARY)", append_summary)
            finished.messages.extend(report.github_annotations())
        if settings.record_profiles is not None and not interrupted:
            path_ = settings.record_profiles
            finished.attempt(
                f"the recorded profiles {path_} (--bedrock-record-profiles)",
                lambda: self._record_profiles(path_, target),
            )
        return finished

    def _record_profiles(self, path: Path, target: Target | None) -> list[str]:
        """Fit a profile per model to the session's calls and merge them into ``path``."""
        import datetime

        from . import __version__
        from .recording import Failure, RecordError, fit_profiles, record_profiles

        calls = [g for r in self.results.values() for g in r.calls]
        failures = [
            Failure(f.model_id, f.error_code, f.attempts, f.mid_stream)
            for r in self.results.values()
            for f in r.failures
        ]
        if not calls:
            return [f"bedrock: no measured call to record profiles from; {path} left as it was"]
        fits = fit_profiles(calls, failures, answers=self.settings.record_answers)
        provenance = {
            "recorded_at": datetime.datetime.now(datetime.timezone.utc).strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            ),
            "endpoint": target.kind if target else "none",
            "region": (target.region if target else None) or "",
            "plugin_version": __version__,
        }
        try:
            return record_profiles(path, fits, provenance)
        except RecordError as error:
            raise OutputError(str(error)) from None

    def _finish_store(self, *, interrupted: bool) -> list[str]:
        from .baseline_store import BaselineFileError

        store = self.store
        assert store is not None
        messages: list[str] = []
        pruned: list[tuple[str, str]] = []
        if self.settings.update_baseline:
            # After Ctrl-C the tests that finished keep their recordings; nothing is
            # pruned, since an interrupted run cannot tell a stale entry from an unreached one.
            if not interrupted:
                # A pooled group's entries are never pruned: a run of some of its tests
                # (-k, a subset of files) re-records the group with only their prompts.
                pruned = store.prune_stale(keep=[group_nodeid(name) for name in self.groups])
            try:
                written = store.save()
            except BaselineFileError as error:
                raise OutputError(f"bedrock: {error}") from None
            if written:
                extra = []
                if pruned:
                    extra.append(
                        f"{len(pruned)} stale entr{'y' if len(pruned) == 1 else 'ies'} of "
                        "re-recorded tests pruned"
                    )
                if interrupted:
                    extra.append("interrupted: only the tests that finished were recorded")
                detail = f" ({'; '.join(extra)})" if extra else ""
                messages.append(f"bedrock: base samples recorded in {store.path}{detail}")
        unused = store.unused()
        if unused and self.results and not interrupted:
            count = f"{len(unused)} stored baseline entr{'y' if len(unused) == 1 else 'ies'}"
            if self.settings.update_baseline:
                messages.append(
                    f"bedrock: {count} in {store.path.name} belong to tests this run did not "
                    f"record (e.g. {unused[0][0]}); they are kept: delete them from the file "
                    "by hand if those tests are gone"
                )
            else:
                messages.append(
                    f"bedrock: {count} in {store.path.name} no test used (e.g. {unused[0][0]}); "
                    "--bedrock-update-baseline prunes the stale entries of the tests it "
                    "re-records; entries of tests that no longer exist are deleted by hand"
                )
        return messages


class OutputError(Exception):
    """An output of the session cannot be written; the message is the line to print."""


@dataclass
class Finished:
    """What writing the session's outputs said, and whether any of them failed."""

    messages: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def attempt(self, what: str, write: Callable[[], list[str] | None]) -> None:
        """Run one output's ``write``; a failure becomes one line, not an exception."""
        try:
            self.messages.extend(write() or [])
        except OutputError as error:
            self._fail(str(error))
        except OSError as error:
            self._fail(
                f"bedrock: {what} cannot be written: {error.strerror or error}; the other "
                "outputs were written"
            )
        except Exception as error:  # a bug must not cost the other outputs
            self._fail(
                f"bedrock: {what} failed ({type(error).__name__}: {error}); the other outputs "
                "were written"
            )

    def _fail(self, line: str) -> None:
        self.failed.append(line)
        self.messages.append(line)
