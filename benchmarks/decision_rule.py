"""The plugin's regression rule, in the protocol of the project's simulation harness.

Holds the rule the gate decides with (``pytest_bedrock_latency.gate.build_rule``, which
builds a ``stats.SequentialRule`` per metric exactly as the gate does, with the metric's
shipped detect and estimator and the error share of a session with one gate) to the
simulated CI runs of the reference harness ``sim.py``::

    python3 sim.py --plugin benchmarks/decision_rule.py:decide --designs paired
    python3 sim.py --plugin benchmarks/decision_rule.py:decide_ttft --metric ttft --tol 1.25 \
        --designs paired --ratios 1 1.1 1.25 1.4 1.5 1.7
    python3 sim.py --plugin benchmarks/decision_rule.py:decide_tokens --metric len --tol 1.15 \
        --designs paired --ratios 1 1.05 1.15 1.2 1.3 1.4

Protocol: ``decide(draw, budget, tol, paired=True, *, metric="ms_per_token")`` returns
``(verdict, pairs used)``; ``draw(k)`` returns the next ``k`` (candidate, base) samples.
``metric`` is one of ``"ms_per_token"``, ``"ttft_ms"``, ``"output_tokens"``; the harness
cannot pass it, hence ``decide_ttft`` and ``decide_tokens``. The detect is the metric's
own (``metrics.py``), never the harness's ``--detect``. The harness gives no stop reasons;
its length scenario's runaways stop at its maxTokens (2048), so ``decide_tokens`` counts an
answer of 2048 tokens as a cap hit, as the gate does from the stop reason
(``benchmarks/rule_robustness.py`` holds the rule to binding caps).

``paired=False`` uses Yuen's unpaired trimmed bounds (the gate itself always pairs).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path

# Run from a clean checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pytest_bedrock_latency.gate import build_rule
from pytest_bedrock_latency.metrics import by_key
from pytest_bedrock_latency.stats import Decision

Draw = Callable[[int], tuple[Sequence[float], Sequence[float]]]


def _label(decision: Decision) -> str:
    return decision.verdict + ("-marginal" if decision.marginal else "")


def decide(
    draw: Draw,
    budget: int,
    tol: float,
    paired: bool = True,
    *,
    metric: str = "ms_per_token",
    gates: int = 1,
    confidence: float = 0.99,
    max_tokens: float | None = None,
) -> tuple[str, int]:
    """Run the gate's rule for ``metric`` on one simulated CI run: (verdict, pairs used).

    ``max_tokens``: answers of this length stopped at the cap (the gate reads the stop
    reason; the harness only gives lengths)."""
    rule = build_rule(by_key(metric), tol, budget, confidence=confidence, gates=gates)
    cand: list[float] = []
    base: list[float] = []
    for look in rule.schedule():
        c, b = draw(look - len(cand))
        cand.extend(float(x) for x in c)
        base.extend(float(x) for x in b)
        if len(cand) < look:  # the stream ran dry before the look: decide on what we have
            return _label(rule.force(cand, base, "data exhausted", paired=paired)), len(cand)
        cap = max_tokens if max_tokens is not None else float("inf")
        decision = rule.decide(
            cand,
            base,
            paired=paired,
            candidate_capped=[x >= cap for x in cand],
            base_capped=[x >= cap for x in base],
        )
        if decision is not None:
            return _label(decision), len(cand)
    raise AssertionError("SequentialRule.decide always decides at the budget")  # pragma: no cover


def decide_ttft(draw: Draw, budget: int, tol: float, paired: bool = True) -> tuple[str, int]:
    """:func:`decide` for TTFT."""
    return decide(draw, budget, tol, paired, metric="ttft_ms")


def decide_tokens(draw: Draw, budget: int, tol: float, paired: bool = True) -> tuple[str, int]:
    """:func:`decide` for output tokens; sim.py's answers stop at its maxTokens of 2048."""
    return decide(draw, budget, tol, paired, metric="output_tokens", max_tokens=2048)


if __name__ == "__main__":
    print(__doc__.split("\n\n")[0])
    print("\nThis file is a plugin for the simulation harness, not a script; run it through")
    print("sim.py as the module docstring shows.")
