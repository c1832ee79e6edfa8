"""Reports of real runs: the terminal summary, the JSON report and JUnit XML properties."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING

import pytest_bedrock_latency

if TYPE_CHECKING:  # the fixture's class, from tests/conftest.py
    from conftest import BedrockPytester

MODEL = "amazon.nova-lite-v1:0"

SUITE = """
import pytest

@pytest.mark.bedrock_length(max_tokens=100)
def test_good(bedrock_model):
    bedrock_model.converse("How do I reset my password?")
    bedrock_model.converse("Where is my parcel?", stream=False)

@pytest.mark.bedrock_length(max_tokens=5)
def test_wordy(bedrock_model):
    bedrock_model.converse("Tell me everything")

def test_unmarked(bedrock_model):
    bedrock_model.converse("Hi", max_tokens=3)

def test_no_bedrock():
    pass
"""


def test_summary_table_has_a_row_per_test_that_used_bedrock(
    bedrock_pytester: BedrockPytester,
) -> None:
    bedrock_pytester.makepyfile(test_suite=SUITE)
    result = bedrock_pytester.run()
    result.assert_outcomes(passed=3, failed=1)
    ms = r"\d+\.\d"  # a real timing, one decimal
    usd = r"\$0\.\d+"  # Nova Lite's list price (test_cost.py checks the figures)
    model = MODEL.replace(".", r"\.")
    result.stdout.re_match_lines(
        [
            r"=+ bedrock latency =+$",
            r"test\s+model\s+calls\s+TTFT p50\s+ms/tok p50\s+ms/tok p90\s+out tok p50\s+out tok max\s+cost\s+verdict$",
            r"[- ]+$",
            rf"test_good\s+{model}\s+2\s+{ms}\s+{ms}\s+{ms}\s+20\s+20\s+{usd}\s+passed$",
            rf"test_wordy\s+{model}\s+1\s+{ms}\s+{ms}\s+{ms}\s+20\s+20\s+{usd}\s+failed$",
            rf"test_unmarked\s+{model}\s+1\s+{ms}\s+{ms}\s+{ms}\s+3\s+3\s+{usd}\s+passed$",
            r"$",
            rf"Bedrock spend: {model} 4 calls, \d+ in / 63 out tokens, {usd} — {usd} total$",
        ],
        consecutive=True,
    )
    assert "test_no_bedrock" not in result.stdout.str().split("bedrock latency")[1]


def test_verbose_adds_a_row_per_call(bedrock_pytester: BedrockPytester) -> None:
    bedrock_pytester.makepyfile(test_suite=SUITE)
    result = bedrock_pytester.run("-v", "-k", "good")
    ms = r"\d+\.\d"
    usd = r"\$0\.\d+"
    model = MODEL.replace(".", r"\.")
    result.stdout.re_match_lines(
        [
            rf"test_good\s+{model}\s+2\s+{ms}\s+{ms}\s+{ms}\s+20\s+20\s+{usd}\s+passed$",
            rf"└ call 1 ConverseStream\s+{model}\s+{ms}\s+{ms}\s+20\s+{usd}\s+end_turn$",
            rf"└ call 2 Converse\s+{model}\s+-\s+-\s+20\s+{usd}\s+end_turn$",
            r"$",
        ],
        consecutive=True,
    )


def test_no_table_when_no_test_used_bedrock(bedrock_pytester: BedrockPytester) -> None:
    bedrock_pytester.makepyfile(test_plain="def test_plain():\n    pass\n")
    result = bedrock_pytester.run()
    result.assert_outcomes(passed=1)
    output = result.stdout.str()
    assert "bedrock latency" not in output and "Bedrock spend" not in output
    skipped = bedrock_pytester.run("-k", "nothing-matches")
    assert "bedrock latency" not in skipped.stdout.str()


def test_json_report(bedrock_pytester: BedrockPytester) -> None:
    bedrock_pytester.makepyfile(test_suite=SUITE)
    result = bedrock_pytester.run("--bedrock-report", "out/report.json")
    result.assert_outcomes(passed=3, failed=1)
    path = bedrock_pytester.path / "out" / "report.json"
    result.stdout.fnmatch_lines([f"bedrock: JSON report written to {path}"])
    assert sorted(p.name for p in path.parent.iterdir()) == [
        "report.json"
    ]  # no temporary file left
    doc = bedrock_pytester.json("out/report.json")
    assert doc["schema_version"] == 1
    env = doc["environment"]
    assert (env["endpoint_kind"], env["region"], env["candidate_model"]) == (
        "emulator",
        "us-east-1",
        MODEL,
    )
    assert env["plugin_version"] == pytest_bedrock_latency.__version__ and env["boto3_version"]
    assert env["models"] == [MODEL] and env["includes_text"] is False
    tests = {t["nodeid"]: t for t in doc["tests"]}
    assert sorted(tests) == [
        "test_suite.py::test_good",
        "test_suite.py::test_unmarked",
        "test_suite.py::test_wordy",
    ]
    good, wordy = tests["test_suite.py::test_good"], tests["test_suite.py::test_wordy"]
    assert (good["outcome"], wordy["outcome"]) == ("passed", "failed")
    assert good["bounds"] == {
        "bedrock_length": {
            "max_tokens": 100,
            "min_tokens": None,
            "max_words": None,
            "max_chars": None,
        }
    }
    assert [c["operation"] for c in good["calls"]] == ["ConverseStream", "Converse"]
    assert [c["output_tokens"] for c in good["calls"]] == [20, 20]
    streamed = good["calls"][0]
    assert (
        streamed["model_id"] == MODEL and streamed["ttft_ms"] > 0 and streamed["ms_per_token"] > 0
    )
    assert all("text" not in call for t in doc["tests"] for call in t["calls"])
    assert wordy["checks"] == [
        {
            "marker": "bedrock_length",
            "metric": "output tokens max",
            "observed": 20.0,
            "limit": 5.0,
            "ok": False,
            "message": f"bedrock_length: output tokens max 20 > 5 allowed (model {MODEL}, 1 of 1 answers)",
        }
    ]
    assert doc["spend"][MODEL]["calls"] == 4 and doc["spend"][MODEL]["output_tokens"] == 63


def test_json_report_with_text(bedrock_pytester: BedrockPytester) -> None:
    bedrock_pytester.makepyfile(
        test_text="""
        def test_text(bedrock_model):
            g = bedrock_model.converse("Hi")
            with open("answer.txt", "w") as out:
                out.write(g.text)
        """
    )
    bedrock_pytester.run(
        "--bedrock-report", "report.json", "--bedrock-report-text"
    ).assert_outcomes(passed=1)
    doc = bedrock_pytester.json("report.json")
    assert doc["environment"]["includes_text"] is True
    (call,) = doc["tests"][0]["calls"]
    assert call["text"] == (bedrock_pytester.path / "answer.txt").read_text() != ""


def test_junit_xml_has_the_headline_figures(bedrock_pytester: BedrockPytester) -> None:
    bedrock_pytester.makepyfile(test_suite=SUITE)
    bedrock_pytester.run("--junitxml", "junit.xml").assert_outcomes(passed=3, failed=1)
    root = ET.parse(bedrock_pytester.path / "junit.xml").getroot()
    props = {
        case.get("name"): {p.get("name"): p.get("value") for p in case.iter("property")}
        for case in root.iter("testcase")
    }
    good = props["test_good"]
    assert sorted(good) == sorted(
        [
            "bedrock_calls",
            "bedrock_ttft_ms_p50",
            "bedrock_ms_per_token_p50",
            "bedrock_ms_per_token_p90",
            "bedrock_total_ms_p50",
            "bedrock_output_tokens_p50",
            "bedrock_output_tokens_max",
            "bedrock_cost_usd",
        ]
    )
    assert (good["bedrock_calls"], good["bedrock_output_tokens_max"]) == ("2.0", "20.0")
    # A real figure (the profile says 1 ms; a busy machine moves it, either way, several-fold).
    assert 0 < float(good["bedrock_ms_per_token_p50"]) < 100
    assert props["test_wordy"]["bedrock_calls"] == "1.0"  # a failed bound still reports its figures
    assert props["test_no_bedrock"] == {}


def test_junit_xml_properties_for_an_unmarked_test(bedrock_pytester: BedrockPytester) -> None:
    bedrock_pytester.makepyfile(test_suite=SUITE)
    bedrock_pytester.run("--junitxml", "junit.xml", "-k", "unmarked").assert_outcomes(passed=1)
    root = ET.parse(bedrock_pytester.path / "junit.xml").getroot()
    (case,) = root.iter("testcase")
    names = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert names.get("bedrock_output_tokens_max") == "3.0"
