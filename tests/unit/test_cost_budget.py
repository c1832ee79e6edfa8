"""``--bedrock-max-cost``'s ledger: reservations before a pair, settlement after."""

from __future__ import annotations

import threading

import pytest

from pytest_bedrock_latency.regression import CostBudget


def test_a_reservation_that_would_pass_the_cap_is_refused() -> None:
    budget = CostBudget(0.01)
    assert budget.take(0.004)
    assert budget.take(0.004)
    assert not budget.take(0.004)  # 0.012 > 0.01 with both still in flight
    budget.settle(0.004, 0.003)
    assert budget.take(0.003)  # 0.003 spent + 0.004 + 0.003 reserved = 0.010
    assert budget.spent == pytest.approx(0.003)


def test_no_cap_refuses_nothing() -> None:
    budget = CostBudget(None)
    assert budget.take(1e9)
    budget.settle(1e9, 1e9)
    budget.spend(5.0)
    assert not budget.passed_once()


def test_application_calls_are_counted_never_refused_and_passing_is_said_once() -> None:
    budget = CostBudget(0.01)
    budget.spend(0.006)
    assert not budget.passed_once()
    budget.spend(0.006)
    assert budget.passed_once()  # now 0.012: passed the cap, to be reported once
    budget.spend(0.001)
    assert not budget.passed_once()
    assert not budget.take(0.0001)
    assert budget.spent == pytest.approx(0.013)


def test_concurrent_reservations_never_exceed_the_cap() -> None:
    budget = CostBudget(1.0)
    granted: list[bool] = []
    lock = threading.Lock()

    def reserve() -> None:
        for _ in range(100):
            ok = budget.take(0.01)
            with lock:
                granted.append(ok)

    threads = [threading.Thread(target=reserve) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(granted) == 100  # exactly $1.00 of $0.01 reservations, of 400 asked
