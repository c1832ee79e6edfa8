"""The caps' shared ledger: one session's counts, whichever process or thread takes from them."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from pytest_bedrock_latency.ledger import Counts, FileLedger, LedgerError, MemoryLedger
from pytest_bedrock_latency.regression import CallBudget, CostBudget

#: Run by two processes at once: each asks 40 calls and 40 pairs of $0.01 of caps of 50
#: and $0.50, and prints how many it was granted.
TAKER = """
import json, sys
from pytest_bedrock_latency.ledger import FileLedger
from pytest_bedrock_latency.regression import CallBudget, CostBudget

ledger = FileLedger(sys.argv[1])
calls, cost = CallBudget(50, ledger), CostBudget(0.5, ledger)
print(json.dumps([sum(calls.take(1) for _ in range(40)), sum(cost.take(0.01) for _ in range(40))]))
"""


@pytest.fixture
def shared(tmp_path: Path) -> FileLedger:
    return FileLedger(tmp_path / "caps.json")


def test_two_processes_taking_at_once_never_take_more_than_the_caps(shared: FileLedger) -> None:
    takers = [
        subprocess.Popen(
            [sys.executable, "-c", TAKER, str(shared.path)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    granted = [json.loads(taker.communicate(timeout=120)[0]) for taker in takers]
    assert all(taker.returncode == 0 for taker in takers)
    assert sum(calls for calls, _ in granted) == 50  # of 80 asked
    assert sum(pairs for _, pairs in granted) == 50
    assert all(calls >= 10 and pairs >= 10 for calls, pairs in granted)  # each took its share
    counts = shared.read()
    assert counts.calls == 50
    assert counts.reserved_usd == pytest.approx(0.5)


def test_two_ledgers_of_one_file_in_threads_share_the_count(tmp_path: Path) -> None:
    # Separate objects (as in separate processes): only the file's lock keeps them apart.
    budgets = [CallBudget(30, FileLedger(tmp_path / "caps.json")) for _ in range(2)]
    granted = [0, 0]

    def take(index: int) -> None:
        granted[index] = sum(budgets[index].take(1) for _ in range(25))

    threads = [threading.Thread(target=take, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(granted) == 30
    assert budgets[0].used == budgets[1].used == 30


@pytest.mark.parametrize("kind", ["memory", "file"])
def test_both_ledgers_count_alike(kind: str, shared: FileLedger) -> None:
    ledger = MemoryLedger() if kind == "memory" else shared
    calls, cost = CallBudget(3, ledger), CostBudget(0.01, ledger)
    calls.spend(2)  # a test body's calls: counted, never refused
    assert calls.take(1)
    assert not calls.take(1)
    assert calls.used == 3
    assert cost.take(0.006)
    assert not cost.take(0.006)
    cost.settle(0.006, 0.004)
    cost.spend(0.007)
    assert cost.spent == pytest.approx(0.011)
    assert cost.passed_once()
    assert not cost.passed_once()  # said once for the session
    assert ledger.read() == Counts(
        calls=3, spent_usd=pytest.approx(0.011), reserved_usd=0.0, cost_cap_passed=True
    )


def test_a_passed_cost_cap_is_said_once_by_all_the_processes(tmp_path: Path) -> None:
    worker_a = CostBudget(0.01, FileLedger(tmp_path / "caps.json"))
    worker_b = CostBudget(0.01, FileLedger(tmp_path / "caps.json"))
    worker_a.spend(0.02)
    assert worker_b.passed_once()
    assert not worker_a.passed_once()


def test_create_makes_a_zero_ledger_in_its_own_directory_and_remove_takes_it_away() -> None:
    ledger = FileLedger.create()
    try:
        assert ledger.path.is_file()
        assert FileLedger(ledger.path).read() == Counts()
    finally:
        ledger.remove()
    assert not ledger.path.parent.exists()


def test_a_file_that_is_not_a_ledger_is_a_clear_error(shared: FileLedger) -> None:
    shared.path.write_text('{"calls": 1}\n', encoding="utf-8")
    with pytest.raises(LedgerError, match=r"cap ledger .*caps\.json is not the plugin's"):
        CallBudget(5, shared).take(1)
