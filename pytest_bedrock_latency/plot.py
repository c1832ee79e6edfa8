"""``--bedrock-plot DIR``: one picture per gated test, candidate versus base.

Three panels, ms/token, time to first token and output tokens: every pair of the
``bedrock_regression`` gate as two dots joined by a faint line (the pairs are back to back,
so the line shows the paired difference the gate judges), a box per model, and the gate's
verdict for that metric in the panel's title (ratio, 95% interval, tolerance).

matplotlib is an optional extra (``pip install 'pytest-bedrock-latency[plot]'``). It is
imported only when a picture is drawn, and only its object-oriented API is used with the
Agg canvas: the process's pyplot backend and state are left alone.
"""

from __future__ import annotations

import hashlib
import random
import re
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .gate import MetricVerdict, RegressionResult
from .measurement import display_model
from .metrics import GatedMetric, by_key
from .results import TestResult

if TYPE_CHECKING:
    from matplotlib.axes import Axes

INSTALL_HINT = "pip install 'pytest-bedrock-latency[plot]'"

BASE_COLOUR = "#4C72B0"
CANDIDATE_COLOUR = "#DD8452"
FAIL_COLOUR = "#C0392B"


class PlotUnavailable(RuntimeError):
    """matplotlib is not installed; the message is one line for the terminal."""


PANELS: tuple[GatedMetric, ...] = tuple(
    by_key(k) for k in ("ms_per_token", "ttft_ms", "output_tokens")
)


def available() -> bool:
    """True when matplotlib can be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _figure_class() -> Any:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: F401  (the canvas savefig uses)
        from matplotlib.figure import Figure
    except ImportError:
        raise PlotUnavailable(
            f"bedrock: --bedrock-plot needs matplotlib, which is not installed: {INSTALL_HINT}"
        ) from None
    return Figure


def filename(nodeid: str) -> str:
    """A file name for a test: readable, safe on every OS, unique per node id."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", nodeid.replace("::", "__")).strip("_.")[:80]
    digest = hashlib.sha1(nodeid.encode("utf-8")).hexdigest()[:8]
    return f"{readable}-{digest}.png"


def plot_gates(results: Sequence[TestResult], directory: Path) -> list[Path]:
    """Draw every gated test of ``results`` into ``directory``; returns the files written.

    Raises :class:`PlotUnavailable` (one-line message) when matplotlib is missing and there
    is something to draw.
    """
    gated = [r for r in results if r.regression is not None and r.regression.pairs]
    if not gated:
        return []
    figure_class = _figure_class()
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for result in gated:
        path = directory / filename(result.nodeid)
        draw_gate(result, path, figure_class=figure_class)
        paths.append(path)
    return paths


def _values(
    gate: RegressionResult, key: str
) -> tuple[list[float], list[float], list[tuple[float, float]]]:
    candidate: list[float] = []
    base: list[float] = []
    pairs: list[tuple[float, float]] = []
    for pair in gate.pairs:
        c = pair.candidate.value(key)
        b = pair.base.value(key) if pair.base is not None else None
        if c is not None:
            candidate.append(c)
        if b is not None:
            base.append(b)
        if c is not None and b is not None:
            pairs.append((b, c))
    return base, candidate, pairs


def _verdict_text(verdict: MetricVerdict | None) -> tuple[str, bool]:
    if verdict is None or verdict.estimate is None or verdict.low is None or verdict.high is None:
        reason = verdict.reason if verdict is not None else "not compared"
        return f"not measured: {reason}", False
    ratio = f"x{verdict.estimate:.2f} [{verdict.low:.2f}, {verdict.high:.2f}]"
    if verdict.failed:
        status = f"> {verdict.tolerance:.2f}: FAIL" + (" (marginal)" if verdict.marginal else "")
    else:
        status = f"<= {verdict.tolerance:.2f}: pass" + (" (marginal)" if verdict.marginal else "")
    return f"{ratio} {status}", verdict.failed


def _quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    ordered = sorted(values)
    if len(ordered) < 2:
        return ordered[0], ordered[0], ordered[0]
    q1, median, q3 = statistics.quantiles(ordered, n=4, method="inclusive")
    return q1, median, q3


def _panel(
    axes: Axes,
    panel: GatedMetric,
    gate: RegressionResult,
    verdict: MetricVerdict | None,
    base_label: str,
) -> None:
    base, candidate, pairs = _values(gate, panel.key)
    pooled = base + candidate
    text, failed = _verdict_text(verdict)
    axes.set_title(
        f"{panel.plot_title}\n{text}", fontsize=10, color=FAIL_COLOUR if failed else "black"
    )
    axes.set_ylabel(panel.unit)
    axes.grid(axis="y", alpha=0.3)
    axes.set_xlim(-0.6, 1.6)
    if not pooled:
        axes.set_xticks([0, 1], [base_label, "candidate"])
        axes.text(
            0.5,
            0.5,
            "no values",
            transform=axes.transAxes,
            ha="center",
            va="center",
            color="#777777",
        )
        return
    # A slow outlier (3x) would squash the boxes: keep the scale on the bulk, count the rest.
    q1, _, q3 = _quartiles(pooled)
    spread = q3 - q1
    top = q3 + 3 * spread if spread > 0 else max(pooled)
    clipped = max(pooled) > top
    jitter = random.Random(panel.key)
    for b, c in pairs:
        axes.plot(
            [0, 1], [min(b, top), min(c, top)], color="#999999", alpha=0.3, linewidth=0.8, zorder=1
        )
    labels = []
    for position, values, colour, name in (
        (0, base, BASE_COLOUR, base_label),
        (1, candidate, CANDIDATE_COLOUR, "candidate"),
    ):
        if not values:
            labels.append(f"{name}\n(none)")
            continue
        inside = [v for v in values if v <= top]
        above = [v for v in values if v > top]
        xs = [position + jitter.uniform(-0.07, 0.07) for _ in inside]
        axes.scatter(xs, inside, s=16, color=colour, alpha=0.85, zorder=3, edgecolors="none")
        if above:
            axes.scatter(
                [position] * len(above),
                [top] * len(above),
                marker="^",
                s=40,
                color=colour,
                zorder=3,
            )
            axes.annotate(
                f"{len(above)} above (max {max(above):.3g})",
                (position, top),
                textcoords="offset points",
                xytext=(0, 6),
                ha="center",
                fontsize=8,
                color=colour,
            )
        axes.boxplot(
            [values],
            positions=[position],
            widths=0.35,
            showfliers=False,
            zorder=2,
            medianprops={"color": colour, "linewidth": 2},
            boxprops={"color": "#555555"},
            whiskerprops={"color": "#555555"},
            capprops={"color": "#555555"},
        )
        labels.append(f"{name}\np50 {statistics.median(values):.3g}")
    axes.set_xticks([0, 1], labels)
    if clipped:
        low = min(pooled)
        axes.set_ylim(low - 0.05 * (top - low), top + 0.12 * (top - low))


def draw_gate(result: TestResult, path: Path, *, figure_class: Any = None) -> Path:
    """Draw one gated test's pairs into ``path`` (PNG)."""
    gate = result.regression
    if gate is None:
        raise ValueError(f"{result.nodeid} has no bedrock_regression result to draw")
    figure = (figure_class or _figure_class())(figsize=(12, 4.8), layout="constrained")
    axes_row = figure.subplots(1, len(PANELS))
    by_key = {m.key: m for m in gate.metrics}
    base_label = "base (stored)" if gate.stored else "base"
    for axes, panel in zip(axes_row, PANELS, strict=False):
        _panel(axes, panel, gate, by_key.get(panel.key), base_label)
    verdict = "FAIL" if gate.failed else ("pass (marginal)" if gate.marginal else "pass")
    extra = f", {gate.dropped_pairs} dropped" if gate.dropped_pairs else ""
    figure.suptitle(
        f"{result.nodeid}\nbedrock_regression {verdict}: candidate {display_model(gate.candidate)} "
        f"vs base {display_model(gate.base)} ({len(gate.pairs)} pairs{extra}, base from {gate.base_source})",
        fontsize=11,
        color=FAIL_COLOUR if gate.failed else "black",
    )
    figure.supxlabel(
        "each dot is one answer; a grey line joins the two halves of a back-to-back pair; "
        "titles: candidate/base ratio [95% interval] against the allowed ratio",
        fontsize=8,
        color="#555555",
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path
