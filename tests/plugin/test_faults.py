"""Faults, against the emulator's fault injection: results stay clear, never tracebacks of ours.

Throttling (retried by botocore, excluded from the timings, reported; giving up), a stream
that breaks mid-answer, ModelNotReady, a gate that loses pairs, ``--bedrock-timeout``,
Bedrock not configured, and a whole session with 30% throttling that still decides right.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from support_bot.testing import (
    BASE,
    CONCISE,
    FOUR_PAIRS,
    FRESH_DEFAULT_SESSION,
    VERBOSE,
    isolate_environment,
    load_report,
    report_tests,
    write_suite,
)

#: botocore's wait between two attempts here: fixed and short, not its random backoff
#: (seconds per throttled attempt). The application's and the plugin's clients both follow
#: AWS_RETRY_MODE (legacy mode takes the delay from AWS_DATA_PATH's _retry.json).
RETRY_DELAY_S = 0.001


@pytest.fixture(autouse=True)
def _environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fixed_retry_delay: Callable[[float], Path]
) -> None:
    isolate_environment(
        monkeypatch,
        tmp_path,
        SUPPORT_BOT_MODEL_ID=CONCISE,
        AWS_RETRY_MODE="legacy",
        AWS_DATA_PATH=str(fixed_retry_delay(RETRY_DELAY_S)),
    )


HEADER = f"""
    import pytest
    import support_bot

    BASE = "{BASE}"
    CONCISE = "{CONCISE}"
    VERBOSE = "{VERBOSE}"
    QUESTION = "How do I reset my password?"
"""


def run(pytester: pytest.Pytester, tests: str, *args: str, ini: str = "") -> pytest.RunResult:
    write_suite(pytester, HEADER + tests, ini=ini, conftest=FRESH_DEFAULT_SESSION)
    return pytester.runpytest(
        "--bedrock-model",
        CONCISE,
        "--bedrock-baseline",
        BASE,
        "--bedrock-report",
        "report.json",
        *args,
    )


# -- throttling --------------------------------------------------------------------------------
#: The first test's client waits 1 s between attempts (THROTTLING_DELAY_S, its botocore
#: data directory in THROTTLING_DATA_PATH); the others give up or retry after RETRY_DELAY_S.
THROTTLING = """
    import os

    import boto3


    # TTFT bound 1 s: the profile's 20 ms passes even on a machine so busy that a thread
    # waits a few hundred milliseconds for a core (seen at 400 ms with 150 ms backoffs);
    # the 2 x 1 s of backoff, were they counted in it, would not.
    @pytest.mark.bedrock_latency(max_ttft_ms=1000)
    def test_throttled_twice_then_answered(bedrock_emulator, bedrock_calls, monkeypatch):
        monkeypatch.setenv("AWS_DATA_PATH", os.environ["THROTTLING_DATA_PATH"])
        boto3.setup_default_session()  # reads the data path anew
        bedrock_emulator.inject_error("ThrottlingException", model_id=CONCISE, times=2)
        assert support_bot.stream_answer(support_bot.make_client(), QUESTION).text
        (call,) = bedrock_calls
        assert call.attempts == 3
        assert call.retry_wait_ms >= 2000  # two backoffs of 1 s, plus the 429 round trips
        assert call.ttft_ms < 1000  # from the attempt that was answered: the waits are not in it
        assert [r.status for r in bedrock_emulator.requests][-3:] == [429, 429, 200]


    @pytest.mark.bedrock_length(max_tokens=500)
    def test_throttled_until_botocore_gives_up(bedrock_emulator, bedrock_model):
        bedrock_emulator.inject_error("ThrottlingException", model_id=CONCISE, times=5)
        bedrock_model.converse(QUESTION)


    @pytest.mark.bedrock_length(max_tokens=500)
    def test_app_client_gives_up(bedrock_emulator):
        bedrock_emulator.inject_error("ThrottlingException", model_id=CONCISE, times=2)
        support_bot.stream_answer(support_bot.make_client(max_attempts=2), QUESTION)


    @pytest.mark.bedrock_length(max_tokens=500)
    def test_model_not_ready_once_is_retried(bedrock_emulator, bedrock_model, bedrock_calls):
        bedrock_emulator.inject_error("ModelNotReadyException", model_id=CONCISE)
        bedrock_model.converse(QUESTION)
        assert [c.attempts for c in bedrock_calls] == [2]


    @pytest.mark.bedrock_length(max_tokens=500)
    def test_model_never_ready(bedrock_emulator, bedrock_model):
        bedrock_emulator.set_profile(CONCISE, not_ready_rate=1.0)
        bedrock_model.converse(QUESTION)
"""


THROTTLING_DELAY_S = 1.0


@pytest.mark.long_running
def test_throttling_and_model_not_ready(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    fixed_retry_delay: Callable[[float], Path],
) -> None:
    monkeypatch.setenv("THROTTLING_DATA_PATH", str(fixed_retry_delay(THROTTLING_DELAY_S)))
    result = run(pytester, THROTTLING)
    result.assert_outcomes(passed=2, failed=3)
    result.stdout.fnmatch_lines(
        [
            "*BedrockCallError: ThrottlingException from Bedrock for model support-concise (ConverseStream, "
            "5 attempts): Too many requests, please wait before trying again.",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*ThrottlingException: An error occurred (ThrottlingException) when calling the ConverseStream operation "
            "(reached max retries: 1): Too many requests, please wait before trying again.",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*BedrockCallError: ModelNotReadyException from Bedrock for model support-concise (ConverseStream, "
            "5 attempts): *",
        ]
    )
    tests = report_tests(load_report(pytester.path / "report.json"))
    (throttled,) = tests["test_throttled_twice_then_answered"]["calls"]
    assert (
        throttled["attempts"] == 3
        and throttled["retry_wait_ms"] >= 300
        and throttled["ttft_ms"] < 300
    )
    assert tests["test_model_not_ready_once_is_retried"]["calls"][0]["attempts"] == 2
    for name in (
        "test_throttled_until_botocore_gives_up",
        "test_app_client_gives_up",
        "test_model_never_ready",
    ):
        assert tests[name]["outcome"] == "failed", name
    assert tests["test_app_client_gives_up"]["failed_calls"] == 1
    # The plugin's wrapper stays out of the application's traceback.
    assert "pytest_bedrock_latency/instrument.py" not in result.stdout.str()


RETRY_MODE = """
    def test_the_plugins_client_retries_in_the_configured_mode(bedrock_runtime):
        import os

        expected = os.environ.get("AWS_RETRY_MODE") or "standard"
        assert bedrock_runtime.meta.config.retries["mode"] == expected
"""


@pytest.mark.parametrize("mode", ["legacy", "adaptive", None])
def test_the_plugins_client_follows_aws_retry_mode(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, mode: str | None
) -> None:
    """AWS_RETRY_MODE (or a profile's retry_mode) wins, as for the application's clients;
    without one the plugin's client uses botocore's standard mode."""
    if mode is None:
        monkeypatch.delenv("AWS_RETRY_MODE")
    else:
        monkeypatch.setenv("AWS_RETRY_MODE", mode)
    run(pytester, RETRY_MODE).assert_outcomes(passed=1)


# -- a stream that breaks mid-answer -------------------------------------------------------------
BROKEN_STREAM = """
    @pytest.mark.bedrock_length(max_tokens=500)
    def test_stream_breaks_in_the_app(bedrock_emulator):
        bedrock_emulator.set_profile(CONCISE, stream_error_rate=1.0)
        support_bot.stream_answer(support_bot.make_client(), QUESTION)


    @pytest.mark.bedrock_length(max_tokens=500)
    def test_stream_breaks_through_the_fixture(bedrock_emulator, bedrock_model):
        bedrock_emulator.inject_error("modelStreamErrorException", model_id=CONCISE)
        bedrock_model.converse(QUESTION)


    @pytest.mark.bedrock_length(max_tokens=500)
    def test_other_tests_go_on(bedrock_model):
        assert bedrock_model.converse(QUESTION).text
        assert support_bot.stream_answer(support_bot.make_client(), QUESTION).text


    @pytest.mark.bedrock_regression(budget=10, max_slowdown=2, max_ttft_slowdown=2)
    def test_gate_drops_the_pairs_whose_request_failed(bedrock_emulator):
        # This fine-tune answers 1.5x longer; the base's stream breaks three times during the gate.
        bedrock_emulator.set_profile(CONCISE, answer_tokens=45)
        support_bot.stream_answer(support_bot.make_client(), QUESTION)
        bedrock_emulator.inject_error("modelStreamErrorException", model_id=BASE, times=3)
"""


@pytest.mark.long_running
def test_a_stream_that_breaks_mid_answer(pytester: pytest.Pytester) -> None:
    result = run(pytester, BROKEN_STREAM, ini=FOUR_PAIRS)
    result.assert_outcomes(passed=1, failed=3)
    message = "An error occurred while streaming the response. Retry your request."
    result.stdout.fnmatch_lines(
        [
            f"*EventStreamError: An error occurred (modelStreamErrorException) when calling the ConverseStream "
            f"operation: {message}",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            f"*BedrockCallError: modelStreamErrorException from Bedrock for model support-concise (ConverseStream): "
            f"{message}",
        ]
    )
    # The gate: one pair lost in the warm-up, two dropped and replaced; the verdict stands.
    result.stdout.fnmatch_lines(
        [
            "bedrock_regression: candidate support-concise is more verbose*than amazon.titan-text-express-v1",
            "*2 pair(s) dropped after a failed request; * pairs + 1 warm-up, base from --bedrock-baseline",
            f"  dropped: warm-up: modelStreamErrorException from Bedrock for model amazon.titan-text-express-v1 "
            f"(ConverseStream): {message}",
            f"  dropped: modelStreamErrorException from Bedrock for model amazon.titan-text-express-v1 "
            f"(ConverseStream): {message}",
        ]
    )
    tests = report_tests(load_report(pytester.path / "report.json"))
    gate = tests["test_gate_drops_the_pairs_whose_request_failed"]["regression"]
    assert gate["dropped_pairs"] == 2 and len(gate["errors"]) == 3 and len(gate["pairs"]) >= 5
    assert tests["test_stream_breaks_in_the_app"]["failed_calls"] == 1
    assert tests["test_other_tests_go_on"]["outcome"] == "passed"
    assert len(tests["test_other_tests_go_on"]["calls"]) == 2


# -- --bedrock-timeout -------------------------------------------------------------------------
#: Run with --bedrock-timeout 2: the fast call (about 80 ms) stays inside it even when an
#: overloaded machine stretches it by more than a second; the slow one (2.6 s by its
#: schedule: 34 tokens, the first after 150 ms, then one every 75 ms; never sooner) is
#: always outside.
TIMEOUT = """
    SLOW = "support.slow-service"  # 150 ms to the first token, 34 tokens to this question


    @pytest.mark.bedrock_length(max_tokens=500)
    def test_slow_app_call(bedrock_emulator):
        bedrock_emulator.set_profile(SLOW, ms_per_token=75)
        support_bot.stream_answer(support_bot.make_client(), QUESTION, model=SLOW)


    @pytest.mark.bedrock_length(max_tokens=500)
    def test_fast_app_call():
        support_bot.stream_answer(support_bot.make_client(), QUESTION)
"""


@pytest.mark.long_running
def test_a_call_slower_than_bedrock_timeout_fails_clearly(pytester: pytest.Pytester) -> None:
    result = run(pytester, TIMEOUT, "--bedrock-timeout", "2")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "bedrock timeout: 1 call(s) took longer than --bedrock-timeout 2s (slowest *s, model support.slow-service)",
        ]
    )
    checks = report_tests(load_report(pytester.path / "report.json"))["test_slow_app_call"][
        "checks"
    ]
    assert [(c["marker"], c["ok"]) for c in checks if c["marker"] == "bedrock_timeout"] == [
        ("bedrock_timeout", False)
    ]


HANDLE_TIMEOUT = """
    @pytest.mark.bedrock_length(max_tokens=500)
    def test_first_token_later_than_the_timeout(bedrock_emulator, bedrock_model):
        # The stream's first event arrives after 1.5 s; the plugin's client waits 0.1 s. (At
        # 150 ms a busy machine, whose client reached its read 60 ms late, saw no timeout.)
        bedrock_emulator.set_profile("support.slow-service", ttft_ms=1500)
        bedrock_model.with_model("support.slow-service").converse(QUESTION)
"""


def test_a_read_timeout_through_the_fixture_fails_with_one_line(pytester: pytest.Pytester) -> None:
    result = run(pytester, HANDLE_TIMEOUT, "--bedrock-timeout", "0.1")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*ReadTimeoutError from Bedrock for model support.slow-service (ConverseStream*"]
    )
    assert "urllib3/response.py" not in result.stdout.str()


# -- Bedrock not configured --------------------------------------------------------------------
NOT_CONFIGURED = """
    @pytest.mark.bedrock_latency(max_ms_per_token=50)
    def test_app_latency():
        support_bot.stream_answer(support_bot.make_client(), QUESTION)


    def test_not_a_bedrock_test():
        pass
"""


def test_bedrock_not_configured_skips_or_fails_with_require(pytester: pytest.Pytester) -> None:
    write_suite(pytester, HEADER + NOT_CONFIGURED, emulator=False)
    skipped = pytester.runpytest("-rs")
    skipped.assert_outcomes(passed=1, skipped=1)
    missing = (
        "no AWS credentials (set AWS_PROFILE or --bedrock-aws-profile, or AWS_ACCESS_KEY_ID and "
        "AWS_SECRET_ACCESS_KEY); no AWS region (set --bedrock-region, bedrock_region in the ini file, "
        "or AWS_REGION)"
    )
    skipped.stdout.fnmatch_lines(
        [f"SKIPPED [[]1[]] test_app.py:*: {missing} (or try --bedrock-emulator)"]
    )

    required = pytester.runpytest("--bedrock-require")
    required.assert_outcomes(passed=1, errors=1)
    required.stdout.fnmatch_lines([f"Bedrock is not configured (--bedrock-require): {missing}"])
    assert "Traceback" not in required.stdout.str()


# -- a session with 30% throttling still reaches the right verdicts -----------------------------
THROTTLED_SESSION = """
    @pytest.fixture(autouse=True)
    def throttled(bedrock_emulator):
        for model in (BASE, CONCISE, VERBOSE):
            bedrock_emulator.set_profile(model, throttle_rate=0.3)
        yield
        statuses = [r.status for r in bedrock_emulator.requests]
        with open("statuses.txt", "a") as handle:
            handle.write(" ".join(map(str, statuses)) + "\\n")
        bedrock_emulator.clear_requests()


    @pytest.mark.bedrock_regression(budget=10, max_slowdown=2, max_ttft_slowdown=2)
    def test_good_fine_tune():
        support_bot.stream_answer(support_bot.make_client(), QUESTION, model=CONCISE)


    @pytest.mark.bedrock_regression(budget=10, max_slowdown=2, max_ttft_slowdown=2)
    def test_verbose_fine_tune():
        support_bot.stream_answer(support_bot.make_client(), QUESTION, model=VERBOSE)
"""


@pytest.mark.long_running
def test_a_session_with_30_percent_throttling_reaches_correct_verdicts(
    pytester: pytest.Pytester,
) -> None:
    write_suite(
        pytester, HEADER + THROTTLED_SESSION, ini=FOUR_PAIRS, conftest=FRESH_DEFAULT_SESSION
    )
    # No --bedrock-model: each gate's candidate is the one model its test called.
    result = pytester.runpytest("--bedrock-baseline", BASE, "--bedrock-report", "report.json")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "bedrock_regression: candidate support-verbose is more verbose*than "
            "amazon.titan-text-express-v1"
        ]
    )
    tests = report_tests(load_report(pytester.path / "report.json"))
    good = tests["test_good_fine_tune"]["regression"]
    verbose = tests["test_verbose_fine_tune"]["regression"]
    verdicts = {m["key"]: m["verdict"] for m in verbose["metrics"]}
    assert verdicts["output_tokens"] == "fail" and verdicts["ms_per_token"] != "fail"
    assert all(m["verdict"] != "fail" for m in good["metrics"])
    assert len(good["pairs"]) >= 5 and len(verbose["pairs"]) >= 5
    # Throttling really happened, and was retried rather than dropping pairs.
    statuses = (pytester.path / "statuses.txt").read_text().split()
    assert statuses.count("429") >= 5 and statuses.count("200") >= 20
    assert good["dropped_pairs"] + verbose["dropped_pairs"] <= 2


# -- outliers: a slow request now and then, as on a shared service ---------------------------------
OUTLIERS = """
    @pytest.fixture(autouse=True)
    def outliers(bedrock_emulator):
        for model in (BASE, CONCISE, VERBOSE):
            bedrock_emulator.set_profile(model, outlier_rate=0.1, outlier_factor=3)


    @pytest.mark.bedrock_regression(max_slowdown=2, max_ttft_slowdown=2)
    def test_good_fine_tune():
        support_bot.stream_answer(support_bot.make_client(), QUESTION, model=CONCISE)


    @pytest.mark.bedrock_regression(max_slowdown=2, max_ttft_slowdown=2)
    def test_verbose_fine_tune():
        support_bot.stream_answer(support_bot.make_client(), QUESTION, model=VERBOSE)
"""


@pytest.mark.long_running
def test_outliers_on_every_model_still_give_the_right_verdicts(pytester: pytest.Pytester) -> None:
    # One request in ten is three times slower, on all models; the default budget copes.
    write_suite(pytester, HEADER + OUTLIERS, ini=FOUR_PAIRS)
    result = pytester.runpytest("--bedrock-baseline", BASE, "--bedrock-report", "report.json")
    result.assert_outcomes(passed=1, failed=1)
    tests = report_tests(load_report(pytester.path / "report.json"))
    good = tests["test_good_fine_tune"]["regression"]
    assert all(m["verdict"] != "fail" for m in good["metrics"]), good["metrics"]
    verbose = {
        m["key"]: m["verdict"] for m in tests["test_verbose_fine_tune"]["regression"]["metrics"]
    }
    assert verbose["output_tokens"] == "fail" and verbose["ms_per_token"] != "fail"


# -- an application call that fails: Bedrock's words and the model id ----------------------------------
APP_GIVES_UP = """
    @pytest.mark.bedrock_length(max_tokens=500)
    def test_app_client_gives_up(bedrock_emulator):
        bedrock_emulator.inject_error("ThrottlingException", model_id=CONCISE, times=2)
        support_bot.stream_answer(support_bot.make_client(max_attempts=2), QUESTION)
"""


def test_a_failed_application_call_names_the_model(pytester: pytest.Pytester) -> None:
    result = run(pytester, APP_GIVES_UP)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*ThrottlingException from Bedrock for model support-concise (ConverseStream, "
            "2 attempts): Too many requests, please wait before trying again."
        ]
    )
