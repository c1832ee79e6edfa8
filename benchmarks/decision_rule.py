"""The plugin's regression rule, in the protocol of the project's simulation harness.

Holds ``pytest_bedrock_latency.stats.SequentialRule`` (the rule the plugin gates releases
with) to the same simulated CI runs as the reference rules of ``sim.py``::

    python3 /work/shared/bench/sim.py --plugin benchmarks/decision_rule.py:decide
    python3 /work/shared/bench/sim.py --plugin benchmarks/decision_rule.py:decide \
        --metric ttft --tol 1.25 --detect 1.5
    python3 /work/shared/bench/sim.py --plugin benchmarks/decision_rule.py:decide \
        --metric len --tol 1.15 --detect 1.3

Its ``PLUGIN`` rows must equal the ``F2 GS-CI`` rows (P(FAIL), E[N] and INC): the
verdicts are computed by the same formulas on the same data stream.

Protocol: ``decide(draw, budget, tol, paired=True) -> (verdict, n_used)``; ``draw(k)``
returns the next ``k`` (candidate, base) samples. The harness does not pass ``detect``: it
is taken from ``$DECISION_RULE_DETECT`` if set, else from the harness's own ``DETECT``
(the value of its ``--detect`` flag, read from the running ``sim.py``), else the rule's
default ``tol * 1.2 / 1.1``.

``paired=False`` uses Yuen's unpaired trimmed interval, as sim.py's F2 does.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

# Run from a clean checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pytest_bedrock_latency.stats import Decision, SequentialRule

Draw = Callable[[int], tuple[Sequence[float], Sequence[float]]]


def _detect() -> float | None:
    env = os.environ.get("DECISION_RULE_DETECT")
    if env:
        return float(env)
    # sim.py sets its module-global DETECT from --detect (or tol * 1.2 / 1.1) before it
    # calls the plugin; reading it keeps PLUGIN and F2 on the same early-PASS bound.
    harness = sys.modules.get("__main__")
    value = getattr(harness, "DETECT", None)
    if isinstance(value, float) and math.isfinite(value) and hasattr(harness, "r_gs"):
        return value
    return None


def _label(decision: Decision) -> str:
    return decision.verdict + ("-marginal" if decision.marginal else "")


def decide(draw: Draw, budget: int, tol: float, paired: bool = True) -> tuple[str, int]:
    """Run the plugin's sequential rule on one simulated CI run; return (verdict, pairs used)."""
    rule = SequentialRule(tolerance=tol, detect=_detect(), budget=budget)
    cand: list[float] = []
    base: list[float] = []
    for look in rule.schedule():
        c, b = draw(look - len(cand))
        cand.extend(float(x) for x in c)
        base.extend(float(x) for x in b)
        if len(cand) < look:  # the stream ran dry before the look: decide on what we have
            return _label(rule.force(cand, base, "data exhausted", paired=paired)), len(cand)
        decision = rule.decide(cand, base, paired=paired)
        if decision is not None:
            return _label(decision), len(cand)
    raise AssertionError("SequentialRule.decide always decides at the budget")  # pragma: no cover


if __name__ == "__main__":
    print(__doc__.split("\n\n")[0])
    print("\nThis file is a plugin for the simulation harness, not a script.")
    print("Run it through sim.py:\n")
    print("    python3 /work/shared/bench/sim.py --plugin benchmarks/decision_rule.py:decide")
    print("\n(see the module docstring for the TTFT and output-length runs).")
