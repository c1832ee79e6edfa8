"""Helpers of the client matrix's inner suite (run by ``tests/clients/test_matrix.py``).

Each row calls Bedrock through one client, exactly as an application would, against the
plugin's embedded emulator (``--bedrock-emulator``), and then checks with ``measured``
that the plugin measured every call the emulator served, within 3 % of the emulator's
own schedule (the truth): the median of the calls, or on a busy machine the best call
(MATRIX_COMPARE=best) within 10 % (MATRIX_TOLERANCE), as ``test_matrix.py`` decides.
"""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Callable
from pathlib import Path

import pytest

RUNTIME_OPERATIONS = {"Converse", "ConverseStream", "InvokeModel", "InvokeModelWithResponseStream"}
TOLERANCE = float(os.environ.get("MATRIX_TOLERANCE", "0.03"))
BEST = os.environ.get("MATRIX_COMPARE") == "best"
QUESTION = "How do I reset my password?"
REGION = "us-east-1"


def need(module: str) -> object:
    """Import ``module`` or skip the row, naming the extra that installs it."""
    return pytest.importorskip(
        module, reason=f"{module} is not installed (pip install -e '.[clients]')"
    )


def _close(measured: float, truth: float) -> bool:
    return abs(measured - truth) <= TOLERANCE * truth


@pytest.fixture
def measured(
    request: pytest.FixtureRequest, bedrock_calls: object, bedrock_emulator: object
) -> Callable[..., None]:
    """``measured(skip_first=0)``: every served call measured, the figures within tolerance."""
    start = len(bedrock_emulator.requests)  # type: ignore[attr-defined]

    def check(skip_first: int = 0) -> None:
        served = [
            r
            for r in bedrock_emulator.requests[start:]  # type: ignore[attr-defined]
            if r.operation in RUNTIME_OPERATIONS
        ]
        calls = list(bedrock_calls)  # type: ignore[call-overload]
        row = {"row": request.node.name, "served": len(served), "measured": len(calls), "calls": []}
        for call, truth in list(zip(calls, served, strict=False))[skip_first:]:
            streamed = call.ttft_ms is not None
            truth_total = truth.token_offsets_ms[-1]
            row["calls"].append(
                {
                    "operation": call.operation,
                    "truth_operation": truth.operation,
                    "ttft_ms": call.ttft_ms,
                    "truth_ttft_ms": truth.ttft_ms,
                    "ms_per_token": call.ms_per_token,
                    "truth_ms_per_token": truth.ms_per_token,
                    "total_ms": call.total_ms,
                    "truth_total_ms": truth_total,
                    "output_tokens": call.output_tokens,
                    "truth_output_tokens": truth.output_tokens,
                    "user_agent": truth.user_agent.split(" ")[0],
                    "streamed": streamed,
                }
            )
        assert len(calls) == len(served), (
            f"measured {len(calls)} calls, the emulator served {len(served)}"
        )
        assert row["calls"], "no call to compare"
        for c in row["calls"]:
            assert c["operation"] == c["truth_operation"]
            assert c["output_tokens"] == c["truth_output_tokens"]
        figures = ("ttft_ms", "ms_per_token") if row["calls"][0]["streamed"] else ("total_ms",)
        for name in figures:
            if BEST:  # the call closest to its own truth
                best = min(row["calls"], key=lambda c, n=name: abs(c[n] / c["truth_" + n] - 1))
                observed, truth = best[name], best["truth_" + name]
            else:
                observed = statistics.median(c[name] for c in row["calls"])
                truth = statistics.median(c["truth_" + name] for c in row["calls"])
            row[name], row["truth_" + name] = observed, truth
        row["compared"] = "best call" if BEST else "median"
        with Path(os.environ["MATRIX_FIGURES"]).open("a", encoding="utf-8") as out:
            out.write(json.dumps(row) + "\n")
        for name in figures:
            observed, truth = row[name], row["truth_" + name]
            assert _close(observed, truth), (
                f"{name} {observed:.2f}, the emulator's {truth:.2f} (tolerance {TOLERANCE:.0%})"
            )

    return check
