"""Pooled regression gates: one verdict for a group of tests, as a test result of its own."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
from test_regression import BASE, CUSTOM, PROFILES

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
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makefile(".toml", profiles=PROFILES)
    pytester.makeini(
        f"""
        [pytest]
        bedrock_emulator = true
        bedrock_emulator_profiles = profiles.toml
        bedrock_baseline = {BASE}
        """
    )
    return pytester


def run(suite: pytest.Pytester, candidate: str, *args: str, extra: str = "") -> pytest.RunResult:
    suite.makepyfile(test_suite=SUITE.format(prompts=PROMPTS, extra=extra))
    return suite.runpytest("-p", "no:cacheprovider", "--bedrock-model", CUSTOM + candidate, *args)


def test_a_group_is_one_verdict_after_its_tests(suite: pytest.Pytester) -> None:
    result = run(
        suite,
        "same",
        "--bedrock-regression-group",
        "release",
        "--bedrock-report",
        "r.json",
        "--junitxml",
        "j.xml",
    )
    result.assert_outcomes(passed=4)  # three members and the group's verdict
    result.stdout.fnmatch_lines(["bedrock_regression[[]release[]] *amazon.titan* pass"])
    doc = json.loads((suite.path / "r.json").read_text())
    (group,) = doc["groups"]
    assert group["group"] == "release" and group["outcome"] == "passed"
    assert len(group["tests"]) == 3 and all("test_answer[" in t for t in group["tests"])
    assert group["regression"]["prompts"] == 3
    members = [t for t in doc["tests"] if t["nodeid"] in group["tests"]]
    assert all(t["regression"] is None for t in members)  # no gate of their own
    cases = [c.get("name") for c in ET.parse(suite.path / "j.xml").iter("testcase")]
    assert "bedrock_regression[release]" in cases


def test_a_verbose_candidate_fails_the_group_not_its_members(suite: pytest.Pytester) -> None:
    result = run(suite, "verbose", extra=', group="release"')
    result.assert_outcomes(passed=3, failed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        ["*bedrock_regression: candidate verbose is more verbose*than*", "*3 prompt(s)*"]
    )
    result.stdout.fnmatch_lines(["*bedrock_regression[[]release[]] *FAIL"])


def test_members_must_agree_on_the_gate(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        test_two="""
import pytest

@pytest.mark.bedrock_regression(group="release")
def test_a(bedrock_model):
    bedrock_model.converse("a")

@pytest.mark.bedrock_regression(group="release", max_verbosity=1.5)
def test_b(bedrock_model):
    bedrock_model.converse("b")
"""
    )
    result = suite.runpytest("-p", "no:cacheprovider", "--bedrock-model", CUSTOM + "same")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*group 'release': test_two.py::test_b and test_two.py::test_a disagree on max_verbosity*"]
    )


def test_a_selection_keeps_the_verdict_over_the_selected_tests(suite: pytest.Pytester) -> None:
    result = run(suite, "same", "--bedrock-regression-group", "release", "-k", "invoice or plan")
    result.assert_outcomes(passed=3, deselected=1)
    result.stdout.fnmatch_lines(["bedrock_regression[[]release[]] *pass"])
