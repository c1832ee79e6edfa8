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


def test_a_selection_keeps_the_verdict_over_the_selected_tests(suite: pytest.Pytester) -> None:
    result = run(suite, "same", "--bedrock-regression-group", "release", "-k", "invoice or plan")
    result.assert_outcomes(passed=3, deselected=1)
    result.stdout.fnmatch_lines(["bedrock_regression[[]release[]] *pass"])


# -- under pytest-xdist: the controller draws the pooled pairs after the workers ---------------
def test_under_xdist_the_controller_decides_the_group(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("xdist")
    step_summary = suite.path / "step-summary.md"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step_summary))
    result = run(
        suite,
        "verbose",
        "-n",
        "2",
        "--bedrock-regression-group",
        "release",
        "--bedrock-report",
        "r.json",
        "--junitxml",
        "j.xml",
    )
    # The members pass on their own bounds on the workers; the group's verdict fails.
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
    doc = json.loads((suite.path / "r.json").read_text())
    (group,) = doc["groups"]
    assert group["group"] == "release" and group["outcome"] == "failed"
    assert sorted(group["tests"]) == sorted(f"test_suite.py::test_answer[{p}]" for p in PROMPTS)
    assert group["regression"]["prompts"] == 3
    (case,) = [
        c
        for c in ET.parse(suite.path / "j.xml").iter("testcase")
        if c.get("name") == "bedrock_regression[release]"
    ]
    assert case.find("failure") is not None
    # GitHub Actions: a row in the step summary, an annotation (in no file) for the verdict.
    assert "bedrock_regression[release]" in step_summary.read_text()
    result.stdout.fnmatch_lines(
        [
            "::error title=bedrock_regression[[]release[]]::bedrock_regression: candidate "
            "verbose is more verbose*"
        ]
    )


def test_under_xdist_a_selection_keeps_the_verdict_over_the_selected_tests(
    suite: pytest.Pytester,
) -> None:
    pytest.importorskip("xdist")
    result = run(
        suite,
        "same",
        "-n",
        "2",
        "--bedrock-regression-group",
        "release",
        "-k",
        "invoice or plan",
        "--bedrock-report",
        "r.json",
    )
    result.assert_outcomes(passed=3)  # xdist's controller does not count the deselected
    result.stdout.fnmatch_lines(["bedrock_regression[[]release[]] *pass"])
    (group,) = json.loads((suite.path / "r.json").read_text())["groups"]
    assert group["outcome"] == "passed" and group["regression"]["prompts"] == 2
    assert len(group["tests"]) == 2 and not any("password" in t for t in group["tests"])


def test_under_xdist_members_must_agree_on_the_gate(suite: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    suite.makepyfile(test_two=DISAGREE)
    result = suite.runpytest(
        "-p", "no:cacheprovider", "-n", "2", "--bedrock-model", CUSTOM + "same"
    )
    # A worker cannot end the run with a usage error: the test that disagrees fails with it.
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*group 'release': test_two.py::test_b and test_two.py::test_a*"])
    assert "INTERNALERROR" not in result.stdout.str()


# -- stored baselines: recorded and compared under bedrock_regression[NAME] ----------------------
@pytest.mark.parametrize(
    ("record", "compare"),
    [((), ("-n", "2")), (("-n", "2"), ())],
    ids=["xdist-compares", "xdist-records"],
)
def test_a_group_compares_with_its_stored_samples(
    suite: pytest.Pytester, record: tuple[str, ...], compare: tuple[str, ...]
) -> None:
    if record or compare:
        pytest.importorskip("xdist")
    grouped = ("--bedrock-regression-group", "release")
    recorded = run(suite, "verbose", *record, *grouped, "--bedrock-update-baseline")
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
    result = run(suite, "verbose", *compare, *grouped)
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*bedrock_regression: candidate verbose is more verbose*than amazon.titan-text-express-v1 (stored)",
            "*3 prompt(s)*base from stored samples*",
        ]
    )
    assert "no test used" not in result.stdout.str()  # the group used every stored entry
