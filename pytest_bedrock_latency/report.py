"""Reports people read: the terminal summary, the JSON report and the CI step summary.

Pure code: every report is built from :class:`~.results.TestResult` values and returned
as lines or a document; writing files goes through :func:`~.atomicio.write_text_atomic`.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tabulate import tabulate

from . import __version__
from .atomicio import remove_stale_temporaries, write_text_atomic
from .gate import MetricVerdict
from .markers import group_nodeid
from .measurement import display_model
from .metrics import by_key as metric_named
from .prices import format_usd
from .results import Spend, TestResult, merge_spend, total_cost, unpriced_calls
from .settings import Settings

SCHEMA_VERSION = 1


def _num(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if abs(value) < 10_000 else f"{value:.0f}"


def _ratio(m: MetricVerdict) -> str:
    if m.estimate is None or m.low is None or m.high is None:
        return "-"
    return f"x{m.estimate:.2f} [{m.low:.2f}, {m.high:.2f}]"


def _cost(value: float | None, unpriced: int = 0) -> str:
    """A cost cell; "≥" when some of the calls it adds up had no price (at least that much)."""
    if value is None:
        return "no price"
    return ("≥" if unpriced else "") + format_usd(value)


def _short_test(nodeid: str, width: int = 60) -> str:
    name = nodeid.split("::", 1)[-1] if "::" in nodeid else nodeid
    return name if len(name) <= width else name[: width - 1] + "…"


STALE_TEMPORARY_AGE_S = 60.0
"""A report's temporary file this old (seconds) is a killed write's, never a live one's."""


@dataclass(frozen=True)
class Report:
    """All results of a session, with what the reports say about where they came from."""

    results: Sequence[TestResult]
    settings: Settings
    endpoint_kind: str
    region: str | None
    interrupted: bool = False  # Ctrl-C: the report holds the tests that finished
    prices_source: str | None = None  # the price table(s) the costs come from
    prices_as_of: str | None = None
    groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # name -> members

    @property
    def measured(self) -> list[TestResult]:
        return [r for r in self.results if r.calls or r.regression is not None or r.unmeasured]

    # -- terminal ------------------------------------------------------------------------
    def terminal_lines(self, verbosity: int = 0) -> list[str]:
        """The summary table (empty when no test used Bedrock); ``-v`` adds a row per call."""
        measured = self.measured
        if not measured:
            return []
        rows: list[list[Any]] = []
        for result in measured:
            models = ", ".join(display_model(m) for m in result.models) or "-"
            rows.append(
                [
                    _short_test(result.nodeid),
                    models,
                    len(result.calls),
                    _num(result.figure("ttft_ms", 50)),
                    _num(result.figure("ms_per_token", 50)),
                    _num(result.figure("ms_per_token", 90)),
                    _num(result.figure("output_tokens", 50), 0),
                    _num(result.figure("output_tokens", 100), 0),
                    _cost(result.cost_usd, unpriced_calls(result.spend)),
                    result.verdict,
                ]
            )
            if verbosity > 0:
                for index, g in enumerate(result.calls, 1):
                    retry = f" ({g.attempts} attempts)" if g.attempts > 1 else ""
                    rows.append(
                        [
                            f"└ call {index} {g.operation}{retry}",
                            display_model(g.model_id),
                            "",
                            _num(g.ttft_ms),
                            _num(g.ms_per_token),
                            "",
                            g.output_tokens,
                            "",
                            _cost(g.cost_usd),
                            g.stop_reason or "",
                        ]
                    )
        headers = [
            "test",
            "model",
            "calls",
            "TTFT p50",
            "ms/tok p50",
            "ms/tok p90",
            "out tok p50",
            "out tok max",
            "cost",
            "verdict",
        ]
        lines = tabulate(
            rows, headers=headers, tablefmt="simple", disable_numparse=True
        ).splitlines()
        gates = [r for r in measured if r.regression is not None]
        if gates:
            lines += ["", "bedrock_regression (candidate / base, p50; ratio [95% interval])"]
            lines += tabulate(
                self._gate_rows(gates),
                headers=self._gate_headers(),
                tablefmt="simple",
                disable_numparse=True,
            ).splitlines()
        notes = [f"{_short_test(r.nodeid)}: {note}" for r in self.results for note in r.unmeasured]
        if notes:
            lines += ["", "not measured:", *(f"  {note}" for note in notes)]
        lines += ["", self.spend_line()]
        return lines

    @staticmethod
    def _gate_headers() -> list[str]:
        return [
            "test",
            "base",
            "ms/token",
            "ratio",
            "TTFT",
            "ratio",
            "out tokens",
            "ratio",
            "pairs",
            "gate cost",
            "verdict",
        ]

    @staticmethod
    def _gate_rows(gates: Sequence[TestResult]) -> list[list[Any]]:
        rows = []
        for result in gates:
            gate = result.regression
            assert gate is not None
            cells: list[Any] = [
                _short_test(result.nodeid),
                display_model(gate.base) + (" (stored)" if gate.stored else ""),
            ]
            by_key = {m.key: m for m in gate.metrics}
            for key in ("ms_per_token", "ttft_ms", "output_tokens"):
                m = by_key[key]
                digits = metric_named(key).digits
                cells += [
                    f"{_num(m.candidate_p50, digits)} / {_num(m.base_p50, digits)}",
                    _ratio(m),
                ]
            verdict = "FAIL" if gate.failed else ("pass (marginal)" if gate.marginal else "pass")
            cells += [len(gate.pairs), _cost(gate.cost_usd, gate.unpriced_calls), verdict]
            rows.append(cells)
        return rows

    def spend(self) -> dict[str, Spend]:
        return merge_spend(*(r.spend for r in self.results))

    def cost_usd(self) -> float | None:
        """USD of the session's priced calls; ``None`` when none of its calls had a price."""
        return total_cost(self.spend())

    def spend_line(self) -> str:
        """Calls, tokens and dollars per model, then the session's total."""
        spend = self.spend()
        parts = [
            f"{display_model(model)} {s.calls} calls, {s.input_tokens} in / {s.output_tokens} out "
            f"tokens"
            + (
                f" (+{s.cache_read_input_tokens} cache read / {s.cache_write_input_tokens} cache write)"
                if s.cache_read_input_tokens or s.cache_write_input_tokens
                else ""
            )
            + f", {_cost(s.cost_usd if s.priced else None)}"
            + (f" ({s.unpriced_calls} without a price)" if s.priced and s.unpriced_calls else "")
            for model, s in sorted(spend.items())
        ]
        if not parts:
            return "Bedrock spend: none"
        total = self.cost_usd()
        unpriced = unpriced_calls(spend)
        if total is None:
            tail = "no price for any model (give prices with --bedrock-prices)"
        else:
            tail = f"{format_usd(total)} total" + (
                f" + {unpriced} call(s) with no price" if unpriced else ""
            )
        if self.settings.max_cost is not None:
            tail += f" (--bedrock-max-cost ${self.settings.max_cost:g})"
        return "Bedrock spend: " + "; ".join(parts) + " — " + tail

    # -- JSON ------------------------------------------------------------------------------
    def document(self) -> dict[str, Any]:
        """The JSON report: schema version, environment, and every test's data."""
        import boto3
        import botocore

        include_text = self.settings.report_text
        models = sorted(
            {m for r in self.results for m in r.models}
            | {r.regression.base for r in self.results if r.regression}
        )
        return {
            "schema_version": SCHEMA_VERSION,
            "created_at": time.time(),
            "interrupted": self.interrupted,
            "environment": {
                "plugin_version": __version__,
                "boto3_version": boto3.__version__,
                "botocore_version": botocore.__version__,
                "python_version": platform.python_version(),
                "region": self.region,
                "endpoint_kind": self.endpoint_kind,
                "candidate_model": self.settings.model,
                "baseline_model": self.settings.baseline,
                "models": models,
                "latency_scale": self.settings.latency_scale,
                "includes_text": include_text,
                "prices": {"source": self.prices_source, "as_of": self.prices_as_of},
            },
            "cost_usd": self.cost_usd(),
            "unpriced_calls": unpriced_calls(self.spend()),
            "spend": {m: s.to_json() for m, s in sorted(self.spend().items())},
            "tests": [r.to_json(include_text=include_text) for r in self.results],
            "groups": self._groups_json(),
        }

    def _groups_json(self) -> list[dict[str, Any]]:
        """One entry per pooled gate that ran: its outcome, members and verdict."""
        by_id = {r.nodeid: r for r in self.results}
        out = []
        for name, members in self.groups.items():
            result = by_id.get(group_nodeid(name))
            if result is None:
                continue
            out.append(
                {
                    "group": name,
                    "outcome": "failed" if result.outcome == "failed" else "passed",
                    "tests": list(members),
                    "regression": result.regression.to_json() if result.regression else None,
                }
            )
        return out

    def write_json(self, path: Path) -> None:
        """Write the JSON report atomically; first remove what killed earlier writes left."""
        # No lock (it would leave a lock file beside every report): only temporaries older
        # than a minute go, which no live writer's is.
        remove_stale_temporaries(path, min_age=STALE_TEMPORARY_AGE_S)
        write_text_atomic(
            path, json.dumps(self.document(), indent=2, sort_keys=False, default=str) + "\n"
        )

    # -- GitHub Actions ----------------------------------------------------------------------
    def github_markdown(self) -> str:
        """A step-summary section: a results table, the gates, and the spend."""
        measured = self.measured
        lines = ["## Bedrock latency", ""]
        rows = [
            [
                # A "|" in a parametrised id would split the table's row.
                f"`{_short_test(r.nodeid)}`".replace("|", "\\|"),
                ", ".join(display_model(m) for m in r.models) or "-",
                len(r.calls),
                _num(r.figure("ttft_ms", 50)),
                _num(r.figure("ms_per_token", 50)),
                _num(r.figure("output_tokens", 50), 0),
                _cost(r.cost_usd, unpriced_calls(r.spend)),
                _verdict_icon(r),
            ]
            for r in measured
        ]
        lines += tabulate(
            rows,
            headers=[
                "test",
                "model",
                "calls",
                "TTFT p50 ms",
                "ms/token p50",
                "output tokens p50",
                "cost (USD)",
                "verdict",
            ],
            tablefmt="github",
            disable_numparse=True,
        ).splitlines()
        gates = [r for r in measured if r.regression is not None]
        if gates:
            lines += ["", "### Regression gates (candidate / base, p50; ratio [95% interval])", ""]
            lines += tabulate(
                self._gate_rows(gates),
                headers=self._gate_headers(),
                tablefmt="github",
                disable_numparse=True,
            ).splitlines()
            for r in gates:
                assert r.regression is not None
                if r.regression.failed:
                    lines += [
                        "",
                        f"<details><summary>{_short_test(r.nodeid)}</summary>",
                        "",
                        "```",
                        *r.regression.lines(),
                        "```",
                        "</details>",
                    ]
        lines += ["", self.spend_line(), ""]
        return "\n".join(lines) + "\n"

    def append_github_summary(self, path: Path) -> None:
        with path.open("a", encoding="utf-8") as handle:
            handle.write(self.github_markdown())

    def github_annotations(self) -> list[str]:
        """``::error`` workflow commands for failed gates and bounds (one line each)."""
        out = []
        for r in self.measured:
            failures = [c.line for c in r.checks if not c.ok]
            if r.regression is not None and r.regression.failed:
                failures.append(r.regression.lines()[0])
            # A pooled group's verdict ("bedrock_regression[NAME]") is in no file.
            file = r.nodeid.split("::", 1)[0] if "::" in r.nodeid else None
            where = f"file={_escape_property(file)}," if file else ""
            for line in failures:
                out.append(
                    f"::error {where}title={_escape_property(_short_test(r.nodeid))}::{_escape(line)}"
                )
        return out


def _escape(text: str) -> str:
    """A workflow command's message, escaped as GitHub's toolkit does (``escapeData``)."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    """A workflow command's property value (``escapeProperty``): also ``:`` and ``,``.

    Unescaped, a parametrised id such as ``test[a,b]`` would end the title at the comma
    and ``::`` would end the properties.
    """
    return _escape(text).replace(":", "%3A").replace(",", "%2C")


def _verdict_icon(result: TestResult) -> str:
    return {"passed": "✅ passed", "failed": "❌ failed"}.get(result.outcome, result.verdict)
