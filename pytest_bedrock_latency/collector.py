"""Moving each test's result to the process that prints, and writing the session's files.

A test's result rides on its ``TestReport`` (:func:`attach_result`), so it reaches the
xdist controller too; :class:`ResultCollector` keeps the results that arrive and, at the
end of the session, builds the report once and writes every file from it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from .settings import Settings

# tabulate (through report.py) and boto3 are imported only when there is something to do.
if TYPE_CHECKING:
    from .baseline_store import BaselineStore
    from .clients import Target
    from .report import Report
    from .results import TestResult
    from .run import TestRun

REPORT_ATTRIBUTE = "bedrock_latency"  # extra attribute on TestReport; xdist serialises it


def attach_result(
    run: TestRun, item: pytest.Item, report: pytest.TestReport, *, include_text: bool
) -> None:
    """Attach the test's result to its report; it travels to the xdist controller."""
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        result = run.result(report.outcome)
        data = result.to_json(include_text=include_text)
        if report.when == "call":
            # JUnit XML properties (CI charts them), whatever the test's own outcome.
            item.user_properties.extend(result.headline().items())
        failures = [r for r in run.snapshot() if r.state == "error"]
        if failures and report.failed:
            report.sections.append(("bedrock", "\n".join(r.failure_line() for r in failures)))
        data["staged_baselines"] = {k: v.to_json() for k, v in run.staged.items()}
        data["baseline_keys_used"] = sorted(run.baseline_keys_used)
        setattr(report, REPORT_ATTRIBUTE, data)


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

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.results: dict[str, TestResult] = {}
        self.store: BaselineStore | None = None

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

    def report(self, target: Target | None) -> Report:
        """The report of every result so far."""
        from .report import Report

        return Report(
            results=list(self.results.values()),
            settings=self.settings,
            endpoint_kind=target.kind if target else "none",
            region=target.region if target else None,
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
    ) -> list[str]:
        """Write the files of the session; returns messages for the terminal."""
        settings = self.settings
        messages: list[str] = []
        if self.results and config.pluginmanager.hasplugin("benchmark"):
            from .benchmark_bridge import attach

            attach(config, list(self.results.values()))
        if settings.plot is not None and self.results:
            messages.extend(self._plot(settings.plot))
        summary = os.environ.get("GITHUB_STEP_SUMMARY")
        write_json = settings.report is not None and (self.results or not interrupted)
        if write_json or (summary and self.results):
            report = self.report(target)  # built once, for every file of the session
            if settings.report is not None and write_json:
                report.write_json(settings.report)
                messages.append(f"bedrock: JSON report written to {settings.report}")
            if summary and self.results:
                # In GitHub Actions: a step-summary table, and an annotation per failed gate.
                report.append_github_summary(Path(summary))
                messages.extend(report.github_annotations())
        if self.store is not None:
            messages.extend(self._finish_store(interrupted=interrupted))
        return messages

    def _finish_store(self, *, interrupted: bool) -> list[str]:
        assert self.store is not None
        messages: list[str] = []
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
