"""Pooled regression gates: one verdict for a group of tests, as a test result of its own."""

from __future__ import annotations

import importlib.util
import json
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any, cast

import pytest
from test_regression import BASE, CUSTOM, QUICK_PROFILES, UNTIMED

HAVE_XDIST = importlib.util.find_spec("xdist") is not None

# Every verdict here is on token counts (the verbose fine-tune answers x1.5 the tokens,
# against the default x1.15 or a loose x3), which no scheduling delay changes: the quick
# profiles do, with timing tolerances no busy machine reaches.
PROMPTS = ["How do I reset my password?", "Where is my invoice?", "Can I change my plan?"]

SUITE = """
import pytest

PROMPTS = {prompts!r}

@pytest.mark.bedrock_regression({timing}{extra})
@pytest.mark.parametrize("prompt", PROMPTS)
def test_answer(bedrock_model, prompt):
    bedrock_model.converse(prompt)
"""


@pytest.fixture
def suite(emulator_suite: Callable[..., pytest.Pytester]) -> pytest.Pytester:
    # A gate draws its pairs four at a time.
    return emulator_suite(QUICK_PROFILES, baseline=BASE, concurrency=4)


def run(suite: pytest.Pytester, candidate: str, *args: str, extra: str = "") -> pytest.RunResult:
    suite.makepyfile(test_suite=SUITE.format(prompts=PROMPTS, timing=UNTIMED, extra=extra))
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


def verdict_case(suite: pytest.Pytester, name: str = "release") -> ET.Element:
    """Group ``name``'s verdict as a JUnit XML testcase."""
    (case,) = [
        c
        for c in ET.parse(suite.path / "j.xml").iter("testcase")
        if c.get("name") == f"bedrock_regression[{name}]"
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

#: The groups of one session, each a scenario of its own, on the candidate ``verbose``
#: (x1.5 tokens): ``release`` keeps the default x1.15 verbosity bound, so its verdict fails
#: while its members pass; ``broken`` (x3: passes) has a member that fails in its body;
#: ``picked`` (x3) is run with a member deselected (:data:`PICK`); and in another file
#: (:data:`UNSENDABLE`) ``unsendable``'s member makes a request that has no JSON form.
GROUPS = f"""
import pytest

PROMPTS = {PROMPTS!r}
LOOSE = dict({UNTIMED}, max_verbosity=3)

@pytest.mark.bedrock_regression({UNTIMED}, group="release")
@pytest.mark.parametrize("prompt", PROMPTS)
def test_answer(bedrock_model, prompt):
    bedrock_model.converse(prompt)

@pytest.mark.bedrock_regression(group="broken", **LOOSE)
@pytest.mark.parametrize("prompt", PROMPTS)
def test_broken(bedrock_model, prompt):
    bedrock_model.converse(prompt)
    assert "invoice" not in prompt, "the application broke"

@pytest.mark.bedrock_regression(group="picked", **LOOSE)
@pytest.mark.parametrize("prompt", PROMPTS)
def test_picked(bedrock_model, prompt):
    bedrock_model.converse(prompt)
"""

PICK = ("-k", "not (test_picked and password)")

UNSENDABLE = f"""
import io
import json

import boto3
import pytest

@pytest.mark.bedrock_regression(group="unsendable")
def test_file_body():
    body = io.BytesIO(json.dumps({{"inputText": "Hi"}}).encode())
    boto3.client("bedrock-runtime").invoke_model(modelId="{CUSTOM}verbose", body=body)
"""

UNREPLAYABLE = (
    "bedrock_regression: the test's request to verbose cannot be replayed: body is a "
    "BytesIO, which cannot be stored or sent again*"
)

XDIST = ("-n", "2")

#: The pooled-gate scenarios run without xdist and with two workers, whose controller
#: draws the groups' pairs once they have finished.
DIST = pytest.mark.parametrize(
    "dist",
    [(), pytest.param(XDIST, marks=pytest.mark.skipif(not HAVE_XDIST, reason="no xdist"))],
    ids=["serial", "xdist"],
)


def groups_of(suite: pytest.Pytester) -> dict[str, dict[str, Any]]:
    """The JSON report's ``groups`` entries by name."""
    groups = json.loads((suite.path / "r.json").read_text())["groups"]
    return {group["group"]: group for group in groups}


@DIST
def test_each_group_of_a_session_is_one_verdict_over_its_members_requests(
    suite: pytest.Pytester,
    emulator_suite: Callable[..., pytest.Pytester],
    monkeypatch: pytest.MonkeyPatch,
    dist: tuple[str, ...],
) -> None:
    step_summary = suite.path / "step-summary.md"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step_summary))
    suite.makeconftest(SEES_REPORTS)
    suite.makepyfile(test_suite=GROUPS, test_file_body=UNSENDABLE)
    result = suite.runpytest(
        "-p", "no:cacheprovider", "--bedrock-model", CUSTOM + "verbose", *dist, *PICK,
        *REPORTS, "--bedrock-update-baseline",
    )  # fmt: skip
    # Members pass on their own bounds (on the workers), "release"'s verdict fails; so does
    # "unsendable"'s, and under xdist its member too: its request cannot reach the controller.
    # (xdist's controller does not count the tests its workers deselected.)
    if dist:
        result.assert_outcomes(passed=9, failed=4, deselected=0)
    else:
        result.assert_outcomes(passed=10, failed=3, deselected=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "*bedrock_regression: candidate verbose is more verbose*than*",
            "*3 prompt(s)*",
            "*bedrock_regression[[]release[]] *FAIL",
            "FAILED bedrock_regression[[]release[]] - *",
        ]
    )
    result.stdout.fnmatch_lines(["*the application broke*", "bedrock_regression[[]broken[]] *pass"])
    result.stdout.fnmatch_lines(["bedrock_regression[[]picked[]] *amazon.titan* pass"])
    result.stdout.fnmatch_lines([UNREPLAYABLE])
    if dist:  # the member says why; the group then has no request to draw pairs for
        result.stdout.fnmatch_lines(
            ["*bedrock_regression: the test made no completed call to the candidate verbose*"]
        )
    result.stdout.fnmatch_lines(["FAILED bedrock_regression[[]unsendable[]]*"])
    assert "Traceback" not in result.stdout.str() and "INTERNALERROR" not in result.stdout.str()

    groups = groups_of(suite)
    assert sorted(groups) == ["broken", "picked", "release", "unsendable"]
    outcomes = {name: group["outcome"] for name, group in groups.items()}
    assert outcomes == {
        "release": "failed", "broken": "passed", "picked": "passed", "unsendable": "failed"
    }  # fmt: skip
    release = groups["release"]
    assert sorted(release["tests"]) == sorted(f"test_suite.py::test_answer[{p}]" for p in PROMPTS)
    assert release["regression"]["prompts"] == 3
    tests = json.loads((suite.path / "r.json").read_text())["tests"]
    members = [t for t in tests if t["nodeid"] in release["tests"]]
    assert len(members) == 3 and all(t["regression"] is None for t in members)  # no own gate
    # A member that failed in its body is the group's, but its requests are not.
    assert len(groups["broken"]["tests"]) == 3 and groups["broken"]["regression"]["prompts"] == 2
    # The verdict is over the selected tests.
    picked = groups["picked"]
    assert len(picked["tests"]) == 2 and not any("password" in t for t in picked["tests"])
    assert picked["regression"]["prompts"] == 2
    assert verdict_case(suite, "release").find("failure") is not None
    assert verdict_case(suite, "picked").find("failure") is None
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

    # The base's samples are stored under each group's name, not its members', one entry
    # per prompt the verdict was over.
    result.stdout.fnmatch_lines(["bedrock: base samples recorded in *.bedrock-baseline.json"])
    stored = json.loads((suite.path / ".bedrock-baseline.json").read_text())["tests"]
    assert {name: len(entries) for name, entries in stored.items()} == {
        "bedrock_regression[release]": 3,
        "bedrock_regression[broken]": 2,
        "bedrock_regression[picked]": 2,
    }
    # A later run in the other mode (with xdist when this one ran without: one worker does,
    # the controller compares) and without a live base (the candidate is not a custom model
    # the emulator knows) compares with them.
    (suite.path / "test_file_body.py").unlink()  # nothing stored to compare with
    emulator_suite(QUICK_PROFILES, concurrency=4)
    other = () if dist or not HAVE_XDIST else ("-n", "1")
    result = suite.runpytest(
        "-p", "no:cacheprovider", "--bedrock-model", CUSTOM + "verbose", *other, *PICK
    )  # fmt: skip
    result.assert_outcomes(passed=9, failed=2, deselected=0 if other else 1)
    result.stdout.fnmatch_lines(
        [
            "*bedrock_regression: candidate verbose is more verbose*than amazon.titan-text-express-v1 (stored)",
            "*3 prompt(s)*base from stored samples*",
        ]
    )
    assert "no test used" not in result.stdout.str()  # the groups used every stored entry


@pytest.mark.skipif(not HAVE_XDIST, reason="pytest-xdist is not installed")
def test_under_xdist_members_must_agree_on_the_gate(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_two=DISAGREE)
    # One worker is enough: it is the worker, not the controller, that finds the mismatch.
    result = suite.runpytest(
        "-p", "no:cacheprovider", "-n", "1", "--bedrock-model", CUSTOM + "same"
    )
    # A worker cannot end the run with a usage error: the test that disagrees fails with it.
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*group 'release': test_two.py::test_b and test_two.py::test_a*"])
    assert "INTERNALERROR" not in result.stdout.str()


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
