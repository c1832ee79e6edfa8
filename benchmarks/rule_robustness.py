"""The gate's decision rule under conditions the reference harness does not simulate.

``sim.py`` (the project's reference harness) holds the rule to clean, independent pairs.
This script extends its noise model (same parameters, numpy) with what real services and
real suites do, and runs the rule exactly as the gate builds and calls it
(``gate.build_rule``, ``SequentialRule.decide`` with each pair's prompt and cap flags, a
look every 2 pairs from 6, prompts visited in shuffled rounds). It prints P(FAIL) in %
and the mean pairs per verdict::

    python benchmarks/rule_robustness.py            # ~5 minutes on 2 busy cores
    python benchmarks/rule_robustness.py --sims 500 # a quick look

Needs numpy (``pip install 'pytest-bedrock-latency[bench]'``); the plugin itself does not.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pytest_bedrock_latency.gate import build_rule
from pytest_bedrock_latency.metrics import by_key

BUDGET = 40
SIGMA2_TPOT = math.log(1 + 0.20**2)  # sim.py's TPOT: CV 20%, half shared within a pair
SIGMA2_TTFT = math.log(1 + 0.45**2)


@dataclass
class Run:
    """One simulated gate run: draw(i) gives pair i as (candidate, base, prompt, c_cap, b_cap)."""

    draw: Callable[[int], tuple[float, float, str, bool, bool]]


def decide(metric: str, tol: float, run: Run, prompts: int, gates: int = 1) -> tuple[str, int]:
    rule = build_rule(by_key(metric), tol, BUDGET, gates=gates)
    c: list[float] = []
    b: list[float] = []
    keys: list[str] = []
    cc: list[bool] = []
    bc: list[bool] = []
    for look in rule.schedule():
        while len(c) < look:
            x, y, k, xc, yc = run.draw(len(c))
            c.append(x)
            b.append(y)
            keys.append(k)
            cc.append(xc)
            bc.append(yc)
        d = rule.decide(
            c,
            b,
            clusters=keys,
            candidate_capped=cc,
            base_capped=bc,
            required_clusters=min(prompts, BUDGET),
        )
        if d is not None:
            return d.verdict, len(c)
    raise AssertionError("decides at the budget")


# -- latency noise ------------------------------------------------------------------------
def latency_run(
    rng: np.random.Generator,
    ratio: float,
    sigma2: float,
    p_out: float,
    *,
    phi: float = 0.0,
    bursts: bool = False,
    drift: float = 0.0,
) -> Run:
    """sim.py's paired latency model, plus per-endpoint AR(1) on the idiosyncratic part,
    throttling-like slow bursts (p 0.05 per pair per arm, mean 3 pairs, x1.5-3) and a
    linear drift shared by both models."""
    n = 2 * BUDGET
    ss, se = math.sqrt(0.5 * sigma2), math.sqrt(0.5 * sigma2)
    shared = rng.normal(0, ss, n)
    arms = []
    for _ in range(2):
        e = rng.normal(0, se, n)
        if phi:
            ar = np.empty(n)
            ar[0] = e[0]
            for i in range(1, n):
                ar[i] = phi * ar[i - 1] + math.sqrt(1 - phi * phi) * e[i]
            e = ar
        x = shared + e
        out = rng.random(n) < p_out
        x[out] += np.log(rng.uniform(2, 5, out.sum()))
        if bursts:
            i = 0
            while i < n:
                if rng.random() < 0.05:
                    length = int(rng.geometric(1 / 3))
                    x[i : i + length] += math.log(rng.uniform(1.5, 3))
                    i += length
                else:
                    i += 1
        if drift:
            x += np.log1p(drift * np.arange(n) / BUDGET)
        arms.append(x)
    cand = np.exp(arms[0] + math.log(ratio))
    base = np.exp(arms[1])
    return Run(lambda i: (float(cand[i]), float(base[i]), str(i), False, False))


# -- token noise ----------------------------------------------------------------------------
def token_run(
    rng: np.random.Generator,
    prompts: int,
    ratio_of: Callable[[int], float],
    *,
    cv: float = 0.25,
    cap: int = 2048,
    median: float = 300.0,
    between: float = 0.8,
    runaway: float = 0.01,
) -> Run:
    """Answers per prompt (log-sd ``between`` across prompts, sampling CV ``cv`` within a
    prompt, 0 for temperature 0), prompt ``j``'s candidate ``ratio_of(j)`` times longer,
    ``runaway`` of answers running to the cap; pairs visit the prompts in shuffled rounds."""
    # More prompts than a run can draw: every pair meets a prompt of its own, and only the
    # prompts it can meet need drawing (a million of them took 0.2 s per run).
    prompts = min(prompts, 2 * BUDGET)
    mu = rng.normal(math.log(median), between, prompts)
    sw = math.sqrt(math.log(1 + cv * cv)) if cv else 0.0
    order: list[int] = []
    for _ in range(2 * BUDGET // prompts + 2):
        order.extend(rng.permutation(prompts).tolist())

    def one(j: int, factor: float) -> tuple[float, bool]:
        x = math.exp(mu[j] + (rng.normal(0, sw) if sw else 0.0)) * factor
        if rng.random() < runaway:
            x = cap
        x = min(max(round(x), 1), cap)
        return float(x), x >= cap

    def draw(i: int) -> tuple[float, float, str, bool, bool]:
        j = order[i]
        c, cc = one(j, ratio_of(j))
        b, bc = one(j, 1.0)
        return c, b, f"p{j}", cc, bc

    return Run(draw)


def cell(
    sims: int,
    seed: int,
    make: Callable[[np.random.Generator], Run],
    metric: str,
    tol: float,
    prompts: int = 10**6,
    gates: int = 1,
) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    fails = 0
    pairs = 0
    for _ in range(sims):
        verdict, n = decide(metric, tol, make(rng), prompts, gates)
        fails += verdict == "fail"
        pairs += n
    return 100.0 * fails / sims, pairs / sims


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sims", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=20261201)
    a = ap.parse_args(argv)
    t0 = time.time()
    S = a.sims
    print(
        f"# the gate's rule, budget {BUDGET} pairs, {S} simulated runs per cell, "
        "P(FAIL) in % (E[N] = mean pairs)"
    )
    print(
        f"{'condition':<62} {'metric':<10} {'@1.00':>6} {'@near':>6} {'@detect':>8} {'E[N]@1':>7}"
    )

    def lat(label: str, metric: str, tol: float, near: float, detect: float, **kw: object) -> None:
        s2 = SIGMA2_TPOT if metric == "ms_per_token" else SIGMA2_TTFT
        p_out = 0.03 if metric == "ms_per_token" else 0.05
        rows = [
            cell(S, a.seed + k, lambda r, R=R: latency_run(r, R, s2, p_out, **kw), metric, tol)
            for k, R in enumerate((1.0, near, detect))
        ]
        print(
            f"{label:<62} {metric:<10} {rows[0][0]:6.1f} {rows[1][0]:6.1f} {rows[2][0]:8.1f} "
            f"{rows[0][1]:7.1f}"
        )

    lat(
        "sim.py model (CV 20%, rho 0.5, 3% x U(2,5)); near 1.05, detect 1.20",
        "ms_per_token",
        1.10,
        1.05,
        1.20,
    )
    lat(
        "sim.py TTFT model (CV 45%, 5% outliers); near 1.10, detect 1.50",
        "ttft_ms",
        1.25,
        1.10,
        1.50,
    )
    lat("per-endpoint AR(1), phi = 0.3", "ms_per_token", 1.10, 1.05, 1.20, phi=0.3)
    lat("per-endpoint AR(1), phi = 0.6", "ms_per_token", 1.10, 1.05, 1.20, phi=0.6)
    lat(
        "slow bursts: p 0.05/pair/arm, mean 3 pairs, x1.5-3",
        "ms_per_token",
        1.10,
        1.05,
        1.20,
        bursts=True,
    )
    lat("both models +20% linear drift during the run", "ms_per_token", 1.10, 1.05, 1.20, drift=0.2)

    def tok(label: str, prompts: int, ratio_of: Callable[[int], float], **kw: object) -> None:
        fa, n = cell(
            S,
            a.seed + 7,
            lambda r: token_run(r, prompts, ratio_of, **kw),
            "output_tokens",
            1.15,
            prompts,
        )
        print(f"{label:<62} {'tokens':<10} {fa:6.1f} {'':>6} {'':>8} {n:7.1f}")

    print("# output tokens (tol 1.15): P(FAIL) of the case in the label, pooled prompts")
    tok("identical, 20 prompts, sampling CV 25%", 20, lambda j: 1.0)
    tok(
        "identical, 20 prompts, temperature 0 (every pair ties)",
        20,
        lambda j: 1.0,
        cv=0.0,
        runaway=0.0,
    )
    tok("x1.30 on every prompt, 20 prompts", 20, lambda j: 1.3)
    tok(
        "2 of 20 prompts x4 (+30% mean tokens), CV 25%",
        20,
        lambda j: 4.0 if j < 2 else 1.0,
        between=0.0,
    )
    tok(
        "temperature 0, 5 prompts, 1 of them x2.5 (+26%)",
        5,
        lambda j: 2.5 if j == 0 else 1.0,
        cv=0.0,
        runaway=0.0,
        between=0.0,
    )
    tok(
        "temperature 0, 3 prompts, 1 of them x2 (+33%)",
        3,
        lambda j: 2.0 if j == 0 else 1.0,
        cv=0.0,
        runaway=0.0,
        between=0.0,
    )
    tok("identical, maxTokens 512 (27% of answers capped)", 20, lambda j: 1.0, cap=512)
    tok("x1.30, maxTokens 512 (caps bind)", 20, lambda j: 1.3, cap=512)
    tok("x1.30, maxTokens 300 (half the answers capped)", 20, lambda j: 1.3, cap=300)

    print(
        "# a session of G per-test gates, 3 metrics each, nothing changed: P(any false FAIL)"
        " = 1 - (1 - p)^G from p, the share of single gates (3 metrics) that failed"
    )
    for gates in (1, 5, 20):
        rng_seed = a.seed + 100 + gates
        runs_ = 3 * S
        failed_gates = 0
        rng = np.random.default_rng(rng_seed)
        for _ in range(runs_):
            metrics = (
                ("ms_per_token", 1.10, latency_run(rng, 1.0, SIGMA2_TPOT, 0.03)),
                ("ttft_ms", 1.25, latency_run(rng, 1.0, SIGMA2_TTFT, 0.05)),
                ("output_tokens", 1.15, token_run(rng, 10**6, lambda j: 1.0)),
            )
            failed_gates += any(
                decide(metric, tol, run, 10**6, gates)[0] == "fail" for metric, tol, run in metrics
            )
        p = failed_gates / runs_
        # one-sided 95% upper bound on p (exact for 0 failures, normal beyond)
        p_hi = 3.0 / runs_ if not failed_gates else p + 1.645 * math.sqrt(p * (1 - p) / runs_)
        session, session_hi = 1 - (1 - p) ** gates, 1 - (1 - p_hi) ** gates
        power, n = cell(
            max(200, S // 2),
            rng_seed,
            lambda r: latency_run(r, 1.2, SIGMA2_TPOT, 0.03),
            "ms_per_token",
            1.10,
            gates=gates,
        )
        label = f"{gates} gate(s): {failed_gates} of {runs_} gates failed"
        print(
            f"{label:<62} {'session':<10} {100 * session:6.2f} (95% upper {100 * session_hi:.2f})"
            f"  ms/token power@1.20 {power:.1f}, E[N]@1.20 {n:.1f}",
            flush=True,
        )
    print(f"# elapsed {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
