"""Bedrock figures in pytest-benchmark's own JSON format and storage.

With ``--benchmark-autosave``, ``--benchmark-save``, ``--benchmark-json`` or
``--benchmark-compare``, every measured test adds one pytest-benchmark entry per model and
metric: ms/token, TTFT and output tokens. Then ``pytest-benchmark compare`` (and
``--benchmark-compare``, ``--benchmark-histogram``) show them next to earlier runs, for
instance the previous version of a fine-tune.

What shows up where:

* groups ``bedrock ms/token``, ``bedrock TTFT`` and ``bedrock output tokens``; in each,
  one row per test and model, named ``test_name[model]``; the full name is
  ``<nodeid>::<metric>[<model id>]`` so ``--benchmark-compare`` matches the same test and
  model across runs;
* the rounds of a row are that model's calls in the test: the test's own calls plus, for a
  ``bedrock_regression`` gate, the candidate's and the live base's halves of each pair;
* times are stored in seconds (pytest-benchmark's unit), so its tables print ms/token and
  TTFT in ms; output tokens are stored as plain counts, so read that group's "time" columns
  as tokens (its group name says so);
* ``extra_info`` records the model id, the metric, the unit and the role of the model
  (``candidate``, ``base`` or ``called``).

Statistics are pytest-benchmark's own (:class:`pytest_benchmark.stats.Stats` inside its
:class:`~pytest_benchmark.stats.Metadata`), the objects its fixture produces.

pytest-benchmark saves nothing when no ``benchmark`` fixture ran ("Not saving anything, no
benchmarks have been run!"). So instead of the ``pytest_benchmark_update_json`` hook, which
is only called when it saves, this module hands its entries to pytest-benchmark's session
just before that session saves (an outer ``pytest_sessionfinish`` wrapper): the entries are
then saved, compared and displayed exactly like those of regular benchmarks, also in a
session that has none, and also in the xdist controller (where pytest-benchmark disables
its own measurements but still saves).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from .measurement import display_model
from .metrics import GatedMetric, by_key
from .results import TestResult

# the bridge's groups, in the order pytest-benchmark shows them
METRICS: tuple[GatedMetric, ...] = tuple(
    by_key(k) for k in ("ms_per_token", "ttft_ms", "output_tokens")
)


@dataclass(frozen=True)
class Series:
    """One model's values of one metric in one test, in the metric's own unit (ms, tokens)."""

    nodeid: str
    model_id: str
    role: str
    metric: GatedMetric
    values: tuple[float, ...]
    calls: int
    pairs: int


@dataclass
class _Source:
    """The attributes of a pytest-benchmark fixture that its ``Metadata`` reads."""

    name: str
    fullname: str
    group: str
    param: str
    params: dict[str, str]
    extra_info: dict[str, Any]
    cprofile_stats: None = None
    has_error: bool = False


def _short(nodeid: str) -> str:
    return nodeid.split("::", 1)[-1] if "::" in nodeid else nodeid


def series(results: Iterable[TestResult]) -> list[Series]:
    """Every (test, model, metric) with at least one value, in report order."""
    out: list[Series] = []
    for result in results:
        values: dict[str, dict[str, list[float]]] = {}
        calls: dict[str, int] = {}
        pairs: dict[str, int] = {}

        def add(
            model: str, figures: Any, values: dict[str, dict[str, list[float]]] = values
        ) -> None:
            per_metric = values.setdefault(model, {m.key: [] for m in METRICS})
            for metric in METRICS:
                value = getattr(figures, metric.key)
                if value is not None:
                    per_metric[metric.key].append(float(value))

        for generation in result.calls:
            add(generation.model_id, generation)
            calls[generation.model_id] = calls.get(generation.model_id, 0) + 1
        gate = result.regression
        if gate is not None:
            for pair in gate.pairs:
                add(gate.candidate, pair.candidate)
                pairs[gate.candidate] = pairs.get(gate.candidate, 0) + 1
                if pair.base is not None and not gate.stored:  # stored samples are not this run's
                    add(gate.base, pair.base)
                    pairs[gate.base] = pairs.get(gate.base, 0) + 1
        for model, per_metric in values.items():
            role = "called"
            if gate is not None:
                role = (
                    "candidate"
                    if model == gate.candidate
                    else "base"
                    if model == gate.base
                    else role
                )
            for metric in METRICS:
                if per_metric[metric.key]:
                    out.append(
                        Series(
                            result.nodeid,
                            model,
                            role,
                            metric,
                            tuple(per_metric[metric.key]),
                            calls.get(model, 0),
                            pairs.get(model, 0),
                        )
                    )
    return out


def benchmark_metadata(results: Iterable[TestResult]) -> list[Any]:
    """pytest-benchmark ``Metadata`` objects (with their ``Stats``) for the results."""
    from pytest_benchmark.stats import Metadata

    entries: list[Any] = []
    for s in series(results):
        source = _Source(
            name=f"{_short(s.nodeid)}[{display_model(s.model_id)}]",
            fullname=f"{s.nodeid}::{s.metric.key}[{s.model_id}]",
            group=s.metric.bench_group,
            param=display_model(s.model_id),
            params={"model": s.model_id},
            extra_info={
                "source": "pytest-bedrock-latency",
                "nodeid": s.nodeid,
                "model_id": s.model_id,
                "role": s.role,
                "metric": s.metric.key,
                "unit": s.metric.bench_unit,
                "test_calls": s.calls,
                "gate_pairs": s.pairs,
            },
        )
        metadata = Metadata(source, iterations=1, options={})  # type: ignore[no-untyped-call]
        for value in s.values:
            metadata.update(value * s.metric.bench_scale)  # type: ignore[no-untyped-call]
        entries.append(metadata)
    return entries


def benchmark_entries(
    results: Sequence[TestResult], *, include_data: bool = True
) -> list[dict[str, Any]]:
    """The entries as pytest-benchmark writes them into the ``benchmarks`` list of its JSON."""
    return [m.as_dict(include_data=include_data) for m in benchmark_metadata(results)]


def _wanted(benchmark_session: Any) -> bool:
    return any(
        getattr(benchmark_session, name, None) for name in ("save", "autosave", "json", "compare")
    )


def attach(config: pytest.Config, results: Sequence[TestResult]) -> int:
    """Hand the entries to pytest-benchmark's session so it saves them; returns how many.

    Call it before pytest-benchmark's ``pytest_sessionfinish`` wrapper saves. Does nothing
    unless pytest-benchmark is active and asked to save or compare.
    """
    # pytest-benchmark keeps its session on the config and offers no public accessor; its
    # own hooks and fixture reach it the same way. Absent (plugin off): nothing to do.
    benchmark_session = getattr(config, "_benchmarksession", None)
    if benchmark_session is None or not results or not _wanted(benchmark_session):
        return 0
    entries = benchmark_metadata(results)
    benchmark_session.benchmarks.extend(entries)
    return len(entries)
