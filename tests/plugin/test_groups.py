"""Pooled regression gates: one verdict for a group of tests, as a test result of its own."""

from __future__ import annotations

import importlib.util
import json
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any, cast

import pytest
from test_regression import BASE, CUSTOM, PROFILES

HAVE_XDIST = importlib.util.find_spec("xdist") is not None

PROMPTS = ["How do I reset my password?", "Where is my invoice?", "Can I change my plan?"]

SUITE = """
import pytest

PROMPTS = {prompts!r}

@pytest.mark.bedrock_regression(max_slowdown=2.0, max_ttft_slowdown=2.0{extra})
@pytest.mark.parametrize("prompt", PROMPTS)
def test_answer(bedrock_model, prompt):
    bedrock_model.converse(prompt)
"""


@pytest.fixture
def suite(emulator_suite: Callable[..., pytest.Pytester]) -> pytest.Pytester:
    return emulator_suite(PROFILES, baseline=BASE)


def run(suite: pytest.Pytester, candidate: str, *args: str, extra: str = "") -> pytest.RunResult:
    suite.makepyfile(test_suite=SUITE.format(prompts=PROMPTS, extra=extra))
    return suite.runpytest("-p", "no:cacheprovider", "--bedrock-model", CUSTOM + candidate, *args)


GROUPED = ("--bedrock-regression-group", "release")
REPORTS = ("--bedrock-report", "r.json", "--junitxml", "j.xml")


def group_entry(suite: pytest.Pytester, outcome: str, prompts: int) -> dict[str, Any]:
    """The JSON report's one ``groups`` entry, checked against the expected verdict."""
    (group,) = json.loads((suite.path / "r.json").read_text())["groups"]
    assert group["group"] == "release" and group["outcome"] == outcome
    assert len(group["tests"]) == prompts and all("test_answer[" in t for t in group["tests"])
    assert group["regression"]["prompts"] == prompts
    return cast(dict[str, Any], group)


def verdict_case(suite: pytest.Pytester) -> ET.Element:
    """The group's verdict as a JUnit XML testcase."""
    (case,) = [
        c
        for c in ET.parse(suite.path / "j.xml").iter("testcase")
        if c.get("name") == "bedrock_regression[release]"
    ]
    return case


def test_a_group_is_one_verdict_after_its_tests(suite: pytest.Pytester) -> None:
    result = run(suite, "same", *GROUPED, *REPORTS)
    result.assert_outcomes(passed=4)  # three members and the group's verdict
    result.stdout.fnmatch_lines(["bedrock_regression[[]release[]] *amazon.titan* pass"])
    group = group_entry(suite, "passed", 3)
    tests = json.loads((suite.path / "r.json").read_text())["tests"]
    members = [t for t in tests if t["nodeid"] in group["tests"]]
    assert all(t["regression"] is None for t in members)  # no gate of their own
    assert verdict_case(suite).find("failure") is None


DISAGREE = """
import pytest

@pytest.mark.bedrock_regression(group="release")
def test_a(bedrock_model):
    bedrock_model.converse("a")

@pytest.mark.bedrock_regression(group="release", max_verbosity=1.5)
def test_b(bedrock_model):
    bedrock_model.converse("b")
"""


def test_members_must_agree_on_the_gate(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_two=DISAGREE)
    result = suite.runpytest("-p", "no:cacheprovider", "--bedrock-model", CUSTOM + "same")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*group 'release': test_two.py::test_b and test_two.py::test_a disagree on max_verbosity*"]
    )


#: A plugin of the process that prints: the result data each test report carries there.
SEES_REPORTS = """
class Seen:
    def pytest_runtest_logreport(self, report):
        data = getattr(report, "bedrock_latency", None)
        if data is not None:
            with open("seen.txt", "a") as seen:
                seen.write(" ".join(data) + "\\n")

def pytest_configure(config):
    if not hasattr(config, "workerinput"):  # not in an xdist worker
        config.pluginmanager.register(Seen(), "seen")
"""

#: Each pooled-gate test below runs without xdist and with two workers, whose controller
#: draws the group's pairs once they have finished.
DIST = pytest.mark.parametrize(
    "dist",
    [(), pytest.param(("-n", "2"), marks=pytest.mark.skipif(not HAVE_XDIST, reason="no xdist"))],
    ids=["serial", "xdist"],
)


@DIST
def test_a_verbose_candidate_fails_the_group_not_its_members(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, dist: tuple[str, ...]
) -> None:
    step_summary = suite.path / "step-summary.md"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step_summary))
    suite.makeconftest(SEES_REPORTS)
    result = run(suite, "verbose", *dist, *REPORTS, extra=', group="release"')
    # The members pass on their own bounds (on the workers); the group's verdict fails.
    result.assert_outcomes(passed=3, failed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "*bedrock_regression: candidate verbose is more verbose*than*",
            "*3 prompt(s)*",
            "*bedrock_regression[[]release[]] *FAIL",
            "FAILED bedrock_regression[[]release[]] - *",
        ]
    )
    group = group_entry(suite, "failed", 3)
    assert sorted(group["tests"]) == sorted(f"test_suite.py::test_answer[{p}]" for p in PROMPTS)
    assert verdict_case(suite).find("failure") is not None
    # The members' prompts went to the controller, and no further: other plugins' hooks
    # (a report log) see the results, not the calls.
    seen = (suite.path / "seen.txt").read_text().split()
    assert "nodeid" in seen and "group" not in seen
    # GitHub Actions: a row in the step summary, an annotation (in no file) for the verdict.
    assert "`bedrock_regression[release]`" in step_summary.read_text()
    result.stdout.fnmatch_lines(
        [
            "::error title=bedrock_regression[[]release[]]::bedrock_regression: candidate "
            "verbose is more verbose*"
        ]
    )


@DIST
def test_a_selection_keeps_the_verdict_over_the_selected_tests(
    suite: pytest.Pytester, dist: tuple[str, ...]
) -> None:
    result = run(suite, "same", *dist, *GROUPED, "-k", "invoice or plan", *REPORTS)
    # (xdist's controller does not count the tests its workers deselected)
    result.assert_outcomes(passed=3, deselected=0 if dist else 1)
    result.stdout.fnmatch_lines(["bedrock_regression[[]release[]] *pass"])
    group = group_entry(suite, "passed", 2)
    assert not any("password" in t for t in group["tests"])


@DIST
def test_a_member_that_fails_in_its_body_leaves_its_requests_out(
    suite: pytest.Pytester, dist: tuple[str, ...]
) -> None:
    suite.makepyfile(
        test_suite=SUITE.format(prompts=PROMPTS, extra="")
        + "    assert 'invoice' not in prompt, 'the application broke'\n"
    )
    result = suite.runpytest(
        "-p", "no:cacheprovider", "--bedrock-model", CUSTOM + "same", *dist, *GROUPED, *REPORTS
    )
    result.assert_outcomes(passed=3, failed=1)  # two members and the verdict; the broken one
    result.stdout.fnmatch_lines(
        ["*the application broke*", "bedrock_regression[[]release[]] *pass"]
    )
    group = json.loads((suite.path / "r.json").read_text())["groups"][0]
    assert len(group["tests"]) == 3 and group["regression"]["prompts"] == 2


@pytest.mark.skipif(not HAVE_XDIST, reason="pytest-xdist is not installed")
def test_under_xdist_members_must_agree_on_the_gate(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_two=DISAGREE)
    result = suite.runpytest(
        "-p", "no:cacheprovider", "-n", "2", "--bedrock-model", CUSTOM + "same"
    )
    # A worker cannot end the run with a usage error: the test that disagrees fails with it.
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*group 'release': test_two.py::test_b and test_two.py::test_a*"])
    assert "INTERNALERROR" not in result.stdout.str()


# -- stored baselines: recorded and compared under bedrock_regression[NAME] ----------------------
@pytest.mark.skipif(not HAVE_XDIST, reason="pytest-xdist is not installed")
@pytest.mark.parametrize(
    ("record", "compare"),
    [((), ("-n", "2")), (("-n", "2"), ())],
    ids=["xdist-compares", "xdist-records"],  # each records in one mode and compares in the other
)
def test_a_group_compares_with_its_stored_samples(
    suite: pytest.Pytester, record: tuple[str, ...], compare: tuple[str, ...]
) -> None:
    recorded = run(suite, "verbose", *record, *GROUPED, "--bedrock-update-baseline")
    recorded.stdout.fnmatch_lines(["bedrock: base samples recorded in *.bedrock-baseline.json"])
    stored = json.loads((suite.path / ".bedrock-baseline.json").read_text())["tests"]
    assert list(stored) == ["bedrock_regression[release]"]  # the group's, not its members'
    assert len(stored["bedrock_regression[release]"]) == 3  # one entry per prompt
    # A later run without a live base: the candidate is not a custom model the emulator knows.
    (suite.path / "tox.ini").unlink(missing_ok=True)
    suite.makeini(
        """
        [pytest]
        bedrock_emulator = true
        bedrock_emulator_profiles = profiles.toml
        """
    )
    result = run(suite, "verbose", *compare, *GROUPED)
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*bedrock_regression: candidate verbose is more verbose*than amazon.titan-text-express-v1 (stored)",
            "*3 prompt(s)*base from stored samples*",
        ]
    )
    assert "no test used" not in result.stdout.str()  # the group used every stored entry


@pytest.mark.skipif(not HAVE_XDIST, reason="pytest-xdist is not installed")
def test_under_xdist_a_member_whose_request_cannot_be_sent_fails_in_one_line(
    suite: pytest.Pytester,
) -> None:
    suite.makepyfile(
        test_file_body=f"""
import io
import json

import boto3
import pytest

@pytest.mark.bedrock_regression(group="release")
def test_file_body():
    body = io.BytesIO(json.dumps({{"inputText": "Hi"}}).encode())
    boto3.client("bedrock-runtime").invoke_model(modelId="{CUSTOM}verbose", body=body)
"""
    )
    result = suite.runpytest(
        "-p", "no:cacheprovider", "-n", "2", "--bedrock-model", CUSTOM + "verbose"
    )
    # The member says why; the group then has no request to draw pairs for.
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "bedrock_regression: the test's request to verbose cannot be replayed: body is a "
            "BytesIO, which cannot be stored or sent again*",
            "*bedrock_regression: the test made no completed call to the candidate verbose*",
        ]
    )
    assert "Traceback" not in result.stdout.str() and "INTERNALERROR" not in result.stdout.str()


def test_re_recording_some_of_a_group_keeps_the_other_prompts_samples(
    suite: pytest.Pytester,
) -> None:
    path = suite.path / ".bedrock-baseline.json"
    run(suite, "same", *GROUPED, "--bedrock-update-baseline")
    first = json.loads(path.read_text())["tests"]["bedrock_regression[release]"]
    assert len(first) == 3
    result = run(suite, "same", *GROUPED, "--bedrock-update-baseline", "-k", "invoice")
    result.stdout.fnmatch_lines(
        [
            "bedrock: 2 stored baseline entries in .bedrock-baseline.json belong to tests this "
            "run did not record (e.g. bedrock_regression[[]release[]]); they are kept*"
        ]
    )
    again = json.loads(path.read_text())["tests"]["bedrock_regression[release]"]
    assert set(again) == set(first)  # the deselected prompts' samples are still there
    assert sum(again[k] != first[k] for k in first) == 1  # the selected one re-recorded
