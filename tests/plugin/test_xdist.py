"""pytest-xdist: measurements travel from the workers to the controller.

``-n 2`` (the CI machines have two cores) over a small suite with markers and two
regression gates in two files, which ``--dist loadfile`` sends to different workers: the controller prints one summary, writes
one JSON report, one baseline file with entries from both workers, and JUnit properties.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from support_bot.testing import BASE, CONCISE, isolate_environment, load_report, write_suite

pytest.importorskip("xdist")

GATE_A = """
    import os
    from pathlib import Path

    import pytest
    import support_bot


    @pytest.mark.bedrock_regression(budget=10, max_slowdown=2, max_ttft_slowdown=2)
    def test_gate_through_the_fixture(bedrock_model):
        bedrock_model.converse("How do I reset my password?")
        Path("workers").mkdir(exist_ok=True)
        Path("workers", "a").write_text(os.environ["PYTEST_XDIST_WORKER"])


    @pytest.mark.bedrock_latency(max_ms_per_token=50)
    @pytest.mark.parametrize("question", ["Where is my parcel?", "Can I pay by invoice?"])
    def test_app_latency(question):
        support_bot.stream_answer(support_bot.make_client(), question)
"""

GATE_B = """
    import os
    from pathlib import Path

    import pytest
    import support_bot


    @pytest.mark.bedrock_regression(budget=10, max_slowdown=2, max_ttft_slowdown=2)
    def test_gate_through_the_app():
        support_bot.stream_answer(support_bot.make_client(), "Can I return an item after 30 days?")
        Path("workers").mkdir(exist_ok=True)
        Path("workers", "b").write_text(os.environ["PYTEST_XDIST_WORKER"])


    @pytest.mark.bedrock_length(max_tokens=200)
    def test_app_length():
        support_bot.answer(support_bot.make_session_client(), "Why was my card charged twice?")


    def test_not_measured():
        pass
"""

MEASURED = {
    "test_gate_a.py::test_gate_through_the_fixture",
    "test_gate_a.py::test_app_latency[Where is my parcel?]",
    "test_gate_a.py::test_app_latency[Can I pay by invoice?]",
    "test_gate_b.py::test_gate_through_the_app",
    "test_gate_b.py::test_app_length",
}


def test_two_workers_one_summary_one_report_one_baseline(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    isolate_environment(monkeypatch, tmp_path, SUPPORT_BOT_MODEL_ID=CONCISE)
    write_suite(pytester, {"test_gate_a": GATE_A, "test_gate_b": GATE_B})
    result = pytester.runpytest(
        "-n",
        "2",
        "--dist",
        "loadfile",
        "--bedrock-model",
        CONCISE,
        "--bedrock-baseline",
        BASE,
        "--bedrock-concurrency",  # each gate draws its pairs four at a time
        "4",
        "--bedrock-update-baseline",
        "--bedrock-baseline-file",
        "baseline.json",
        "--bedrock-report",
        "report.json",
        "--junitxml",
        "junit.xml",
    )
    result.assert_outcomes(passed=6)
    workers = {name: (pytester.path / "workers" / name).read_text() for name in ("a", "b")}
    assert sorted(workers.values()) == ["gw0", "gw1"], (
        workers
    )  # the two gates ran on different workers

    # One summary, printed once by the controller, with every measured test in it.
    output = result.stdout.str()
    assert len(re.findall(r"^=+ bedrock latency =+$", output, flags=re.M)) == 1
    assert output.count("Bedrock spend:") == 1
    for nodeid in MEASURED:
        assert nodeid.split("::")[1] in output

    # One JSON report with all tests from both workers.
    report = load_report(pytester.path / "report.json")
    assert {t["nodeid"] for t in report["tests"]} == MEASURED
    gates = [t for t in report["tests"] if t["regression"]]
    assert len(gates) == 2 and all(len(t["regression"]["pairs"]) >= 5 for t in gates)

    # One baseline file with the base samples of both gates (recorded on different workers).
    baseline = json.loads((pytester.path / "baseline.json").read_text())
    assert set(baseline["tests"]) == {
        "test_gate_a.py::test_gate_through_the_fixture",
        "test_gate_b.py::test_gate_through_the_app",
    }
    for entries in baseline["tests"].values():
        (entry,) = entries.values()
        assert entry["model_id"] == BASE and len(entry["samples"]) >= 5
    assert "base samples recorded in" in output

    # JUnit XML: the figures of each measured test as properties (from the workers).
    cases = {
        f"{c.get('classname').replace('.', '/')}.py::{c.get('name')}": c
        for c in ET.parse(pytester.path / "junit.xml").getroot().iter("testcase")
    }
    for nodeid in MEASURED:
        properties = {p.get("name"): p.get("value") for p in cases[nodeid].iter("property")}
        assert float(properties["bedrock_calls"]) >= 1, nodeid
        assert "bedrock_output_tokens_p50" in properties, nodeid
    assert not list(cases["test_gate_b.py::test_not_measured"].iter("property"))
