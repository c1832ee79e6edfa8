"""The client matrix: every client people call Bedrock through is measured, and right.

An inner pytest session (``suite/``) per group of client libraries runs a marked test per
client against the embedded emulator at 200 ms to the first token and 20 ms per token. Each row
checks that the plugin measured exactly the calls the emulator served, within 3 % of the
emulator's schedule (on a machine with no core to spare: its best call within 10 %). A
client that is not installed skips its row, with the reason (the ``clients`` extra installs
them; aioboto3 pins its own botocore and runs in its own environment in CI). Several
sessions, not one for all: the timing is real time (about 1.5 s a row), so under
``pytest -n`` the groups spread over the workers.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

SUITE = Path(__file__).parent / "suite"

PROFILES = """\
[defaults]
ttft_ms = 200
ms_per_token = 20
answer_tokens = 8
jitter = 0.0
prompt_spread = 0.0
answer_tokens_spread = 0.0

[models."*"]
"""

TIMING_MISS = "the emulator's"  # the inner suite's message for a figure off by more than allowed

ROWS = [
    "test_boto3_converse_stream",
    "test_boto3_converse",
    "test_boto3_invoke_model_with_response_stream",
    "test_boto3_invoke_model",
    "test_langchain_chat_bedrock_converse_invoke",
    "test_langchain_chat_bedrock_converse_stream",
    "test_langchain_chat_bedrock_stream[anthropic]",
    "test_langchain_chat_bedrock_stream[meta]",
    "test_langchain_chat_bedrock_stream[mistral]",
    "test_strands_bedrock_model",
    "test_pydantic_ai_run_stream",
    "test_pydantic_ai_run_sync",
    "test_llama_index_stream",
    "test_llama_index_astream",
    "test_litellm_stream",
    "test_aioboto3_converse_stream",
]


def _library(row: str) -> str:
    """The client library a row drives: the word after ``test_`` (``boto3``, ``langchain``...)."""
    return row.split("_")[1]


#: One inner session per group of libraries (each session costs ~2 s of start-up, so small
#: libraries share one). The first group also runs every row no group names: a row added to
#: ``suite/rows.py`` but not to ROWS fails that group's check of its rows.
GROUPS = {
    "boto3": ("boto3", "aioboto3"),
    "langchain": ("langchain",),
    "agents": ("strands", "pydantic"),
    "llama-index-litellm": ("llama", "litellm"),
}
assert {_library(row) for row in ROWS} == {lib for libs in GROUPS.values() for lib in libs}


def _selection(group: str) -> str:
    """The ``-k`` expression of a group's rows (names start ``test_<library>_``)."""
    if group == next(iter(GROUPS)):
        others = [lib for name, libs in GROUPS.items() if name != group for lib in libs]
        return "not (" + " or ".join(f"test_{lib}_" for lib in others) + ")"
    return " or ".join(f"test_{lib}_" for lib in GROUPS[group])


def _figures(path: Path) -> dict[str, dict[str, Any]]:
    if not path.exists():
        return {}
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return {row["row"]: row for row in rows}


def _line(row: dict[str, Any]) -> str:
    figures = " ".join(
        f"{name} {row[name]:.2f} (truth {row['truth_' + name]:.2f})"
        for name in ("ttft_ms", "ms_per_token", "total_ms")
        if name in row
    )
    agent = row["calls"][0]["user_agent"] if row["calls"] else ""
    return f"{row['row']}: {row['measured']}/{row['served']} calls measured ({agent}); {row.get('compared', '')} {figures}"


@pytest.mark.long_running
@pytest.mark.parametrize("group", GROUPS)
def test_every_client_is_measured_and_right(
    pytester: pytest.Pytester,
    clean_aws_env: None,
    monkeypatch: pytest.MonkeyPatch,
    machine_busy: Callable[[], bool],
    group: str,
) -> None:
    rows = [row for row in ROWS if _library(row) in GROUPS[group]]
    for name in ("conftest.py", "rows.py"):
        shutil.copy(SUITE / name, pytester.path / name)
    pytester.makefile(".toml", profiles=PROFILES)
    figures = pytester.path / "figures.jsonl"
    monkeypatch.setenv("MATRIX_FIGURES", str(figures))
    # litellm fetches a price list from the internet at import unless told not to.
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")

    def run(*selection: str) -> tuple[pytest.RunResult, dict[str, tuple[str, str]]]:
        # 3 % on the median of a row's calls is the claim, on a machine with a core to spare.
        # When more processes want to run than there are cores (CI's run under background
        # load), a thread that should read a token waits for a core for milliseconds, or
        # tens of them: then 10 % on the row's best call, said in the output, still tells a
        # wrong definition (a TTFT taken at the wrong event is off by 50 % or more in every
        # call) from noise. Decided again for each run: the load changes while the suite runs.
        busy = machine_busy()
        tolerance, compare = (0.10, "best") if busy else (0.03, "median")
        monkeypatch.setenv("MATRIX_TOLERANCE", str(tolerance))
        monkeypatch.setenv("MATRIX_COMPARE", compare)
        print(
            f"client matrix: {compare} call within {tolerance:.0%} (load {os.getloadavg()[0]:.1f})"
        )
        figures.unlink(missing_ok=True)
        result = pytester.runpytest_subprocess(
            *selection,
            "-p",
            "no:cacheprovider",
            "--bedrock-emulator",
            "--bedrock-emulator-profiles",
            "profiles.toml",
            "--junitxml",
            "junit.xml",
        )
        return result, _outcomes(pytester.path / "junit.xml")

    result, outcomes = run("rows.py", "-k", _selection(group))
    measured = _figures(figures)
    assert set(outcomes) == set(rows), result.stdout.str()
    # A figure off by more than 3 % on a machine whose cores are busy with other work is
    # timed again on its own (twice at most): the count of calls gets no second chance.
    for _ in range(2):
        slow = [row for row, (outcome, why) in outcomes.items() if TIMING_MISS in why]
        if not slow:
            break
        _, again = run(*(f"rows.py::{row}" for row in slow))
        outcomes.update(again)
        measured.update(_figures(figures))
    print("\n".join(_line(row) for row in measured.values()))
    failed = {row: why for row, (outcome, why) in outcomes.items() if outcome == "failed"}
    assert not failed, "\n".join(f"{row}: {why}" for row, why in failed.items())
    for row, (outcome, why) in outcomes.items():
        if outcome == "skipped":
            assert "is not installed" in why, (row, why)
        else:
            assert row in measured, row


def _outcomes(junit: Path) -> dict[str, tuple[str, str]]:
    """Each row's outcome and message, from the inner run's JUnit XML."""
    from xml.etree import ElementTree

    outcomes: dict[str, tuple[str, str]] = {}
    for case in ElementTree.parse(junit).getroot().iter("testcase"):
        name = case.get("name", "")
        outcome, why = "passed", ""
        for tag in ("failure", "error", "skipped"):
            element = case.find(tag)
            if element is not None:
                outcome = "skipped" if tag == "skipped" else "failed"
                why = (element.get("message") or "") + "\n" + (element.text or "")
                break
        outcomes[name] = (outcome, why.strip())
    return outcomes
