"""The ``bedrock_regression`` gate end to end: pytester runs against the embedded emulator."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

BASE = "amazon.titan-text-express-v1"
CUSTOM = "arn:aws:bedrock:us-east-1:123456789012:custom-model/"


def _profiles(*, ttft_ms: float, ms_per_token: float, answer_tokens: int) -> str:
    """A base, an unchanged and a x1.5 verbose fine-tune of it, answering at these times."""
    return f"""
[defaults]
family = "titan"
ttft_ms = {ttft_ms}
ms_per_token = {ms_per_token}
jitter = 0.15
answer_tokens = {answer_tokens}
prompt_spread = 0.3
answer_tokens_spread = 0.05
seed = 3

[models."{BASE}"]

[models."{CUSTOM}same"]
like = "{BASE}"

[models."{CUSTOM}verbose"]
like = "{BASE}"
answer_tokens = {answer_tokens * 3 // 2}
"""


# Small times keep a gate to a second or two; jitter and length spread keep it honest.
# Verdicts must hold on a machine whose cores are all busy, where scheduling delays move a
# 40-token stream's ms/token or TTFT by tens of percent: the gates here allow x2 in time
# (TIMING), the slow fine-tune is x6 per token, and token counts (which no delay changes)
# keep the default x1.15 against a x1.5 verbose fine-tune.
PROFILES = (
    _profiles(ttft_ms=40, ms_per_token=1.0, answer_tokens=40)
    + f"""
[models."{CUSTOM}slow"]
like = "{BASE}"
ms_per_token = 6.0

[models."{CUSTOM}noisy"]
like = "{BASE}"
answer_tokens_spread = 0.6
"""
)

#: Timing tolerances at least two times away from the unchanged (x1) and the slow (x6) fine-tune.
TIMING = "max_slowdown=2, max_ttft_slowdown=2"

# For gates whose subject is not time (verbosity, call budgets, stored baselines, failed
# pairs, where the base comes from): 12-token answers, a few ms each, and timing tolerances
# no busy machine reaches (UNTIMED).
QUICK_PROFILES = _profiles(ttft_ms=10, ms_per_token=0.5, answer_tokens=12)

#: Timing tolerances for the QUICK_PROFILES gates: time is not what they are about.
UNTIMED = "max_slowdown=100, max_ttft_slowdown=100"

GATE_TEST = """
import pytest

@pytest.mark.bedrock_regression({args})
def test_gate(bedrock_model):
    bedrock_model.converse("How do I reset my password?")
"""


@pytest.fixture
def suite(emulator_suite: Callable[..., pytest.Pytester]) -> pytest.Pytester:
    return emulator_suite(PROFILES, baseline=BASE, concurrency=4)


@pytest.fixture
def quick(emulator_suite: Callable[..., pytest.Pytester]) -> pytest.Pytester:
    return emulator_suite(QUICK_PROFILES, baseline=BASE, concurrency=4)


def gate(
    suite: pytest.Pytester, candidate: str, *args: str, marker: str = TIMING
) -> pytest.RunResult:
    suite.makepyfile(test_gate=GATE_TEST.format(args=marker))
    return suite.runpytest("-p", "no:cacheprovider", "--bedrock-model", CUSTOM + candidate, *args)


def test_an_unchanged_fine_tune_passes(suite: pytest.Pytester) -> None:
    result = gate(suite, "same")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "bedrock_regression (candidate / base, p50; ratio *",
            "test_gate*titan-text-express-v1*x1.0*pass*",
            "Bedrock spend: amazon.titan-text-express-v1 * calls*; same * calls*",
        ]
    )


def test_a_verbose_fine_tune_fails_with_the_split(suite: pytest.Pytester) -> None:
    result = gate(suite, "verbose")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "bedrock_regression: candidate verbose is more verbose*than amazon.titan-text-express-v1",
            "  output tokens  x1.* [[]1.*, 1.*] > 1.15 allowed   FAIL (* pairs)",
            "  ms/token       x*<= 2.00*pass*",
            "  TTFT           x*<= 2.00*pass*",
            "  end to end *: +*% verbosity, *% per-token speed, *% TTFT",
            "  * pairs + 1 warm-up, base from --bedrock-baseline",
        ]
    )
    assert "Traceback" not in result.stdout.str()


@pytest.mark.long_running
def test_a_slower_fine_tune_fails_on_ms_per_token(suite: pytest.Pytester) -> None:
    result = gate(suite, "slow")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "bedrock_regression: candidate slow is slower per token*than amazon.titan-text-express-v1",
            "  output tokens  x*pass*",
            "  ms/token       x* [[]*, *] > 2.00 allowed   FAIL*",
        ]
    )


def test_a_marker_tolerance_overrides_the_default(suite: pytest.Pytester) -> None:
    gate(suite, "slow", marker="max_slowdown=18, max_ttft_slowdown=2").assert_outcomes(passed=1)


def test_the_json_report_holds_every_pair_for_audit(quick: pytest.Pytester) -> None:
    result = gate(quick, "verbose", "--bedrock-report", "report.json", marker=UNTIMED)
    result.assert_outcomes(failed=1)
    document = json.loads((quick.path / "report.json").read_text())
    regression = document["tests"][0]["regression"]
    assert regression["base"] == BASE and regression["candidate"] == CUSTOM + "verbose"
    pairs = regression["pairs"]
    # Every pair drawn is there: as many as the metric that took longest to settle used
    # (output tokens settle at 10, the untimed metrics sooner).
    counts = {m["key"]: m["pairs"] for m in regression["metrics"]}
    assert len(pairs) == max(counts.values()) and counts["output_tokens"] >= 10, counts
    assert {p["order"] for p in pairs} <= {"candidate-first", "base-first"}
    first = pairs[0]
    assert first["candidate"]["output_tokens"] > 0 and first["base"]["started_at"] > 1.6e9
    assert "text" not in json.dumps(pairs)
    spend = document["spend"]
    # The test body's call, the warm-up pair and every pair: all invoked, all counted.
    assert spend[CUSTOM + "verbose"]["calls"] == len(pairs) + 2
    assert spend[BASE]["calls"] == len(pairs) + 1


# The call budget ends a verbose fine-tune's gate before its verbosity FAIL (10 pairs at the
# earliest): a marginal FAIL needs the candidate significantly more verbose than the base,
# which 9 pairs of x1.5 token counts show at --bedrock-confidence 0.9, however busy the
# machine (no delay changes a token count).
def test_a_call_budget_ends_the_gate_as_marginal(quick: pytest.Pytester) -> None:
    # 21 calls: 1 by the test body, 2 for the warm-up pair, 9 pairs.
    result = gate(
        quick, "verbose", "--bedrock-max-calls", "21", "--bedrock-confidence", "0.9", marker=UNTIMED
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*marginal: call budget exhausted (--bedrock-max-calls)*"])
    result.stdout.fnmatch_lines(["  output tokens  x* FAIL (marginal) (9 pairs)*"])


def test_the_test_bodys_own_calls_count_toward_the_call_budget(quick: pytest.Pytester) -> None:
    # 22 calls: 1 by the test body, 2 for the warm-up pair, then only 9 pairs fit (not 10).
    result = gate(
        quick, "verbose", "--bedrock-max-calls", "22", "--bedrock-confidence", "0.9", marker=UNTIMED
    )
    result.stdout.fnmatch_lines(["  output tokens  x* FAIL (marginal) (9 pairs)*"])


def test_lenient_policy_passes_a_marginal_fail_with_a_warning(quick: pytest.Pytester) -> None:
    result = gate(
        quick,
        "verbose",
        "--bedrock-max-calls",
        "21",
        "--bedrock-regression-policy",
        "lenient",
        "--bedrock-confidence",
        "0.9",
        marker=UNTIMED,
    )
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        [
            "*bedrock_regression: output tokens x* > 1.15 is marginal after 9 pairs; passed because policy is lenient*"
        ]
    )


def test_too_much_noise_for_the_budget_says_how_many_pairs_it_would_take(
    suite: pytest.Pytester,
) -> None:
    # Time is not what this gate is about: the noisy fine-tune's shortest answers have 2 or 3
    # tokens, whose ms/token a busy machine can move tenfold.
    result = gate(suite, "noisy", marker="max_slowdown=100, max_ttft_slowdown=100, budget=5")
    assert result.ret == pytest.ExitCode.OK  # marginal, and said so: a warning, not a failure
    result.stdout.fnmatch_lines(
        [
            "*bedrock_regression: output tokens too noisy for x1.15 at this budget: about * pairs would be needed (budget 5)*"
        ]
    )


def test_a_failed_request_drops_its_pair(quick: pytest.Pytester) -> None:
    quick.makepyfile(
        test_gate=f"""
        import pytest

        @pytest.mark.bedrock_regression(budget=10, {UNTIMED})
        def test_gate(bedrock_model, bedrock_emulator):
            bedrock_model.converse("How do I reset my password?")
            bedrock_emulator.inject_error("ModelErrorException", model_id="{BASE}", times=2)
        """
    )
    result = quick.runpytest(
        "-p", "no:cacheprovider", "--bedrock-model", CUSTOM + "same", "--bedrock-report", "r.json"
    )
    regression = json.loads((quick.path / "r.json").read_text())["tests"][0]["regression"]
    assert regression["dropped_pairs"] + regression["warmup_pairs"] >= 1
    assert any(
        "ModelErrorException from Bedrock for model amazon.titan-text-express-v1" in e
        for e in regression["errors"]
    )
    result.assert_outcomes(passed=1)


def test_the_base_comes_from_the_control_plane_for_a_custom_model(
    pytester: pytest.Pytester,
) -> None:
    pytester.makefile(".toml", profiles=QUICK_PROFILES)
    pytester.makepyfile(
        test_gate="""
        import boto3
        import pytest

        @pytest.fixture(scope="session", autouse=True)
        def custom_model():
            # The emulator serves moto's bedrock control plane on the same port.
            boto3.client("bedrock").create_model_customization_job(
                jobName="support-v3-job", customModelName="support-v3",
                roleArn="arn:aws:iam::123456789012:role/bedrock", baseModelIdentifier="amazon.titan-text-express-v1",
                trainingDataConfig={"s3Uri": "s3://bucket/train.jsonl"}, outputDataConfig={"s3Uri": "s3://bucket/out"},
                hyperParameters={"epochCount": "1"},
            )
            yield
            # moto's state is the process's: a later emulator in it must not know the model.
            boto3.client("bedrock").delete_custom_model(modelIdentifier="support-v3")

        @pytest.mark.bedrock_regression(budget=10, {UNTIMED})
        def test_gate(bedrock_model):
            bedrock_model.converse("How do I reset my password?")
        """.replace("{UNTIMED}", UNTIMED)
    )
    result = pytester.runpytest(
        "-p",
        "no:cacheprovider",
        "--bedrock-emulator",
        "--bedrock-emulator-profiles",
        "profiles.toml",
        "--bedrock-model",
        CUSTOM + "support-v3",
        "-rA",
    )
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["test_gate*amazon.titan-text-express-v1*pass*"])


def test_an_imported_model_asks_for_a_base(pytester: pytest.Pytester) -> None:
    pytester.makefile(
        ".toml", profiles=PROFILES + '\n[models."*"]\nlike = "amazon.titan-text-express-v1"\n'
    )
    pytester.makepyfile(test_gate=GATE_TEST.format(args=""))
    result = pytester.runpytest(
        "-p",
        "no:cacheprovider",
        "--bedrock-emulator",
        "--bedrock-emulator-profiles",
        "profiles.toml",
        "--bedrock-model",
        "arn:aws:bedrock:us-east-1:123456789012:imported-model/abc123",
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["bedrock_regression: no base model for abc123: *--bedrock-baseline*"]
    )


class TestStoredBaselines:
    RUN = ("-p", "no:cacheprovider", "--bedrock-model", CUSTOM + "verbose")

    @pytest.fixture
    def suite(self, quick: pytest.Pytester) -> pytest.Pytester:
        # Bookkeeping of stored samples, and a verbosity verdict: the quick profiles.
        return quick

    def record(self, suite: pytest.Pytester) -> Path:
        suite.makepyfile(test_gate=GATE_TEST.format(args=f"budget=10, {UNTIMED}"))
        result = suite.runpytest(*self.RUN, "--bedrock-update-baseline")
        result.stdout.fnmatch_lines(["bedrock: base samples recorded in *.bedrock-baseline.json"])
        return suite.path / ".bedrock-baseline.json"

    def without_live_base(self, suite: pytest.Pytester) -> None:
        # The candidate is not a custom model the control plane knows: no live base.
        (suite.path / "tox.ini").unlink(missing_ok=True)
        suite.makeini(
            """
            [pytest]
            bedrock_emulator = true
            bedrock_emulator_profiles = profiles.toml
            """
        )

    def test_update_records_a_reviewable_file(self, suite: pytest.Pytester) -> None:
        path = self.record(suite)
        document = json.loads(path.read_text())
        assert document["schema_version"] == 1
        (entries,) = document["tests"].values()
        (entry,) = entries.values()
        assert entry["model_id"] == BASE and entry["operation"] == "ConverseStream"
        assert len(entry["samples"]) >= 10 and entry["samples"][0]["output_tokens"] > 0

    def test_a_later_run_compares_with_the_stored_samples(self, suite: pytest.Pytester) -> None:
        self.record(suite)
        self.without_live_base(suite)
        result = suite.runpytest(*self.RUN)
        result.assert_outcomes(failed=1)
        result.stdout.fnmatch_lines(
            [
                # The stored base ran in another session, on a machine maybe busier or not:
                # only the verbosity verdict is certain.
                "bedrock_regression: candidate verbose is more verbose*than amazon.titan-text-express-v1 (stored)",
                "*base from stored samples*",
            ]
        )

    def test_unused_entries_are_reported_not_failed(self, suite: pytest.Pytester) -> None:
        self.record(suite)
        suite.makepyfile(
            test_gate="def test_other():\n    pass\n",
            test_b=GATE_TEST.format(args=f"budget=10, {UNTIMED}"),
        )
        result = suite.runpytest(*self.RUN)
        result.stdout.fnmatch_lines(
            ["bedrock: 1 stored baseline entry in .bedrock-baseline.json no test used*"]
        )

    def test_a_corrupt_file_is_a_clear_error_and_is_left_alone(
        self, suite: pytest.Pytester
    ) -> None:
        path = suite.path / ".bedrock-baseline.json"
        path.write_text('{"schema_version": 1, "tests": {')
        suite.makepyfile(test_gate=GATE_TEST.format(args=f"budget=10, {TIMING}"))
        result = suite.runpytest(*self.RUN, "--bedrock-update-baseline")
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        result.stderr.fnmatch_lines(["*.bedrock-baseline.json*"])
        assert path.read_text() == '{"schema_version": 1, "tests": {'

    def test_an_unknown_schema_version_is_refused(self, suite: pytest.Pytester) -> None:
        path = suite.path / ".bedrock-baseline.json"
        path.write_text('{"schema_version": 99, "plugin": "pytest-bedrock-latency", "tests": {}}')
        suite.makepyfile(test_gate=GATE_TEST.format(args=f"budget=10, {TIMING}"))
        result = suite.runpytest(*self.RUN)
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        result.stderr.fnmatch_lines(["*.bedrock-baseline.json*99*"])


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        (
            "max_slowdown=0.9",
            "*max_slowdown is the ratio candidate/base allowed and must be at least 1.0*",
        ),
        ("budget=3", "*budget must be at least 5 pairs*"),
        ("policy='loose'", "*policy must be one of 'strict', 'lenient', got 'loose'*"),
        ("max_verbosity='1.2'", "*max_verbosity must be a number, got '1.2' (str)*"),
        (
            "tolerance=1.1",
            "*unknown argument 'tolerance' (allowed: max_slowdown, max_verbosity, max_ttft_slowdown, budget, policy, group)*",
        ),
    ],
)
def test_bad_marker_arguments_are_usage_errors(
    pytester: pytest.Pytester, marker: str, message: str
) -> None:
    pytester.makepyfile(test_gate=GATE_TEST.format(args=marker))
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: invalid bedrock marker(s):",
            "  test_gate.py::test_gate: @pytest.mark.bedrock_regression" + message,
        ]
    )
    result.assert_outcomes()


def test_a_gate_on_unstreamed_calls_fails_not_measured(quick: pytest.Pytester) -> None:
    quick.makepyfile(
        test_gate="""
import pytest

@pytest.mark.bedrock_regression(max_slowdown=2.0, max_ttft_slowdown=2.0)
def test_gate(bedrock_model):
    bedrock_model.converse("How do I reset my password?", stream=False)
"""
    )
    result = quick.runpytest("-p", "no:cacheprovider", "--bedrock-model", CUSTOM + "same")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*bedrock_regression: ms/token, TTFT not measured for candidate same*",
            "*ms/token*FAIL not measured: *stream the calls (ConverseStream*",
        ]
    )
    # sampling stopped for the unmeasurable metrics: far fewer than the budget of pairs
    result.stdout.fnmatch_lines(["*prompt(s); [0-9] pairs + 1 warm-up*"])
