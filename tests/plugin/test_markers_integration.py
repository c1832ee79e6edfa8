"""The markers in real pytest runs: verdicts with exact messages, usage errors, registration."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # the fixture's class, from tests/conftest.py
    from conftest import BedrockPytester

MODEL = "amazon.nova-lite-v1:0"  # 20 tokens, TTFT about 20 ms, about 1 ms per token
ONE_TENTH = "*[0-9].[0-9]"  # a timing figure shown with one decimal (the run's real value)


def test_latency_bounds_pass(bedrock_pytester: BedrockPytester) -> None:
    bedrock_pytester.makepyfile(
        test_fast="""
        import pytest

        @pytest.mark.bedrock_latency(max_ms_per_token=20, max_ttft_ms=500, max_total_ms=2000, percentile=90)
        def test_fast(bedrock_model):
            for _ in range(3):
                bedrock_model.converse("Hi")
        """
    )
    result = bedrock_pytester.run()
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.OK


def test_latency_bounds_fail_with_one_line_per_violation(bedrock_pytester: BedrockPytester) -> None:
    bedrock_pytester.makepyfile(
        test_slow="""
        import pytest

        @pytest.mark.bedrock_latency(max_ms_per_token=0.1, max_ttft_ms=1, max_total_ms=2000, percentile=90)
        def test_slow(bedrock_model):
            bedrock_model.converse("Hi")
            bedrock_model.converse("Hello")
        """
    )
    result = bedrock_pytester.run()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*_ test_slow _*",
            f"bedrock_latency: ms/token p90 {ONE_TENTH} > 0.1 allowed (model {MODEL}, 2 calls)",
            f"bedrock_latency: TTFT ms p90 [1-9]*.[0-9] > 1.0 allowed (model {MODEL}, 2 calls)",
            "*= short test summary info =*",
            "FAILED test_slow.py::test_slow - Failed: bedrock_latency: ms/token p90 *",
        ],
        consecutive=False,
    )
    output = result.stdout.str()
    assert "total ms" not in output  # the bound that held is not reported as a failure
    assert "Traceback" not in output and "pytest_bedrock_latency/" not in output


def test_length_bounds_pass_and_fail_with_exact_messages(bedrock_pytester: BedrockPytester) -> None:
    bedrock_pytester.makepyfile(
        test_length="""
        import pytest

        @pytest.mark.bedrock_length(max_tokens=20, min_tokens=20, max_words=20, max_chars=1000)
        def test_within(bedrock_model):
            bedrock_model.converse("Hi")

        @pytest.mark.bedrock_length(max_tokens=19, max_words=5)
        def test_too_long(bedrock_model):
            bedrock_model.converse("Hi")
            bedrock_model.converse("Hi", max_tokens=3)

        @pytest.mark.bedrock_length(min_tokens=21)
        def test_too_short(bedrock_model):
            bedrock_model.converse("Hi")

        @pytest.mark.bedrock_length(max_chars=10)
        def test_too_many_chars(bedrock_model):
            bedrock_model.converse("Hi")
        """
    )
    result = bedrock_pytester.run("-rf")
    result.assert_outcomes(passed=1, failed=3)
    result.stdout.fnmatch_lines(
        [
            "*_ test_too_long _*",
            f"bedrock_length: output tokens max 20 > 19 allowed (model {MODEL}, 1 of 2 answers)",
            f"bedrock_length: words max 20 > 5 allowed (model {MODEL}, 1 of 2 answers)",
            "*_ test_too_short _*",
            f"bedrock_length: output tokens min 20 < 21 required (model {MODEL}, 1 of 1 answers)",
            "*_ test_too_many_chars _*",
            f"bedrock_length: chars max [1-9]* > 10 allowed (model {MODEL}, 1 of 1 answers)",
        ]
    )


def test_latency_and_length_on_one_test_and_on_a_class(bedrock_pytester: BedrockPytester) -> None:
    bedrock_pytester.makepyfile(
        test_both="""
        import pytest

        pytestmark = pytest.mark.bedrock_length(max_tokens=5)

        @pytest.mark.bedrock_latency(max_total_ms=0.5)
        class TestSupport:
            def test_one(self, bedrock_model):
                bedrock_model.converse("Hi", stream=False)

            @pytest.mark.bedrock_length(max_tokens=100)  # the closest marker wins
            def test_two(self, bedrock_model):
                bedrock_model.converse("Hi", stream=False)
        """
    )
    result = bedrock_pytester.run()
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "*_ TestSupport.test_one _*",
            f"bedrock_latency: total ms p50 [1-9]*.[0-9] > 0.5 allowed (model {MODEL}, 1 call)",
            f"bedrock_length: output tokens max 20 > 5 allowed (model {MODEL}, 1 of 1 answers)",
            "*_ TestSupport.test_two _*",
            f"bedrock_latency: total ms p50 [1-9]*.[0-9] > 0.5 allowed (model {MODEL}, 1 call)",
            "*= short test summary info =*",
        ],
        consecutive=False,
    )
    assert "output tokens max 20 > 100" not in result.stdout.str()


def test_ttft_of_calls_that_did_not_stream_is_not_measured(
    bedrock_pytester: BedrockPytester,
) -> None:
    bedrock_pytester.makepyfile(
        test_nostream="""
        import pytest

        @pytest.mark.bedrock_latency(max_ttft_ms=500)
        def test_whole_answers(bedrock_model):
            bedrock_model.converse("Hi", stream=False)
        """
    )
    result = bedrock_pytester.run()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "bedrock_latency: TTFT ms p50 not measured: the call was non-streaming (Converse), "
            "which has no first token or per-token times; stream the answer (ConverseStream / "
            "InvokeModelWithResponseStream, stream=True on bedrock_model) or bound max_total_ms "
            f"instead (model {MODEL}, 1 call)",
        ]
    )


def test_latency_scale_makes_a_failing_bound_pass(bedrock_pytester: BedrockPytester) -> None:
    bedrock_pytester.makepyfile(
        test_scaled="""
        import pytest

        @pytest.mark.bedrock_latency(max_ms_per_token=0.05)
        def test_scaled(bedrock_model):
            bedrock_model.converse("Hi")
        """
    )
    failing = bedrock_pytester.run()
    failing.assert_outcomes(failed=1)
    failing.stdout.fnmatch_lines(
        [f"bedrock_latency: ms/token p50 *[0-9].[0-9][0-9] > 0.05 allowed (model {MODEL}, 1 call)"]
    )
    bedrock_pytester.run("--bedrock-latency-scale", "200").assert_outcomes(passed=1)  # 10 ms/token


def test_a_marked_test_without_a_bedrock_call_fails_saying_so(
    bedrock_pytester: BedrockPytester,
) -> None:
    bedrock_pytester.makepyfile(
        test_nocall="""
        import pytest

        @pytest.mark.bedrock_latency(max_ttft_ms=100)
        @pytest.mark.bedrock_length(max_tokens=10)
        def test_forgot_to_call():
            pass

        @pytest.mark.bedrock_length(max_tokens=10)
        def test_only_counted_tokens(bedrock_model):
            bedrock_model.count_tokens("Hi")
        """
    )
    result = bedrock_pytester.run()
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "*_ test_forgot_to_call _*",
            "bedrock_latency, bedrock_length: the test made no measured Bedrock call (call Bedrock through the "
            "bedrock_model fixture or any boto3 bedrock-runtime client during the test)",
            "*_ test_only_counted_tokens _*",
            "bedrock_length: the test made no measured Bedrock call (*)",
        ]
    )


def test_a_failing_test_body_is_reported_as_is(bedrock_pytester: BedrockPytester) -> None:
    bedrock_pytester.makepyfile(
        test_body="""
        import pytest

        @pytest.mark.bedrock_length(max_tokens=1)
        def test_body(bedrock_model):
            bedrock_model.converse("Hi")
            assert False, "the application's own assertion"
        """
    )
    result = bedrock_pytester.run()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["E       AssertionError: the application's own assertion"])
    assert "bedrock_length:" not in result.stdout.str()


def test_a_call_made_through_any_boto3_client_counts(bedrock_pytester: BedrockPytester) -> None:
    bedrock_pytester.makepyfile(
        test_app="""
        import boto3
        import pytest

        @pytest.mark.bedrock_length(max_tokens=10)
        def test_app_client():
            client = boto3.client("bedrock-runtime")  # follows the environment set by the plugin
            client.converse(modelId="amazon.nova-micro-v1:0", messages=[{"role": "user", "content": [{"text": "Hi"}]}])
        """
    )
    bedrock_pytester.run().assert_outcomes(passed=1)  # 7 tokens <= 10


# -- usage errors ----------------------------------------------------------------------------------
def test_bad_marker_arguments_are_a_usage_error_and_nothing_runs(
    bedrock_pytester: BedrockPytester,
) -> None:
    bedrock_pytester.makepyfile(
        test_bad="""
        import pytest

        @pytest.mark.bedrock_latency(max_ms_per_tok=35)
        def test_typo(bedrock_model):
            raise AssertionError("must not run")

        @pytest.mark.bedrock_length(max_tokens="250")
        def test_string(bedrock_model):
            raise AssertionError("must not run")

        @pytest.mark.bedrock_latency(max_ttft_ms=0)
        def test_zero():
            raise AssertionError("must not run")

        @pytest.mark.bedrock_length(50)
        def test_positional():
            raise AssertionError("must not run")

        @pytest.mark.bedrock_latency(percentile=90)
        def test_no_bound():
            raise AssertionError("must not run")

        @pytest.mark.bedrock_regression(max_slowdown=0.9)
        def test_ratio():
            raise AssertionError("must not run")

        def test_fine():
            raise AssertionError("must not run")
        """
    )
    result = bedrock_pytester.run()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: invalid bedrock marker(s):",
            "  test_bad.py::test_typo: @pytest.mark.bedrock_latency: unknown argument 'max_ms_per_tok' "
            "(allowed: max_ms_per_token, max_ttft_ms, max_total_ms, percentile)",
            "  test_bad.py::test_string: @pytest.mark.bedrock_length: max_tokens must be a whole number, got '250' (str)",
            "  test_bad.py::test_zero: @pytest.mark.bedrock_latency: max_ttft_ms must be greater than 0, got 0",
            "  test_bad.py::test_positional: @pytest.mark.bedrock_length takes keyword arguments only, got positional "
            "(50,); write e.g. bedrock_length(max_tokens=...)",
            "  test_bad.py::test_no_bound: @pytest.mark.bedrock_latency has no bound: give at least one of "
            "max_ms_per_token, max_ttft_ms, max_total_ms",
            "  test_bad.py::test_ratio: @pytest.mark.bedrock_regression: max_slowdown is the ratio candidate/base "
            "allowed and must be at least 1.0 (1.10 allows 10% worse), got 0.9",
        ],
        consecutive=True,
    )
    assert "must not run" not in result.stdout.str()
    result.assert_outcomes()  # no test ran


def test_one_bad_marker_stops_the_whole_run(bedrock_pytester: BedrockPytester) -> None:
    bedrock_pytester.makepyfile(
        test_one_bad="""
        import pytest

        def test_fine():
            pass

        @pytest.mark.bedrock_length(min_tokens=50, max_tokens=10)
        def test_impossible(bedrock_model):
            pass
        """
    )
    result = bedrock_pytester.run()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: invalid bedrock marker(s):",
            "  test_one_bad.py::test_impossible: @pytest.mark.bedrock_length: min_tokens (50) is greater than "
            "max_tokens (10); no answer could pass",
        ]
    )
    result.assert_outcomes()


# -- registration -----------------------------------------------------------------------------------
def test_markers_are_registered_for_strict_markers_and_listed(
    bedrock_pytester: BedrockPytester,
) -> None:
    bedrock_pytester.makepyfile(
        test_strict="""
        import pytest

        @pytest.mark.bedrock_latency(max_ttft_ms=500)
        @pytest.mark.bedrock_length(max_tokens=100)
        @pytest.mark.bedrock_regression(max_slowdown=1.2)
        def test_marked(bedrock_model):
            bedrock_model.converse("Hi")
        """
    )
    # In a subprocess: in-process runs share pytest's MARK_GEN, which remembers marker names.
    strict = bedrock_pytester.pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--strict-markers", "--collect-only", "-q"
    )
    assert strict.ret == pytest.ExitCode.OK
    strict.stdout.fnmatch_lines(["test_strict.py::test_marked"])
    listing = bedrock_pytester.run("--markers")
    assert listing.ret == pytest.ExitCode.OK
    listing.stdout.fnmatch_lines(
        [
            "@pytest.mark.bedrock_latency(max_ms_per_token=None, max_ttft_ms=None, max_total_ms=None, percentile=50): *",
            "@pytest.mark.bedrock_length(max_tokens=None, min_tokens=None, max_words=None, max_chars=None): *",
            "@pytest.mark.bedrock_regression(max_slowdown=1.10, max_verbosity=1.15, max_ttft_slowdown=1.25, budget=40, "
            "policy='strict', group=None): *",
        ],
        consecutive=False,
    )


def test_plugin_can_be_disabled(bedrock_pytester: BedrockPytester) -> None:
    bedrock_pytester.makepyfile(
        test_off="""
        import pytest

        @pytest.mark.bedrock_latency(max_ttft_ms=500)
        def test_marked():
            pass
        """
    )
    # In a subprocess: in-process runs share pytest's MARK_GEN, which remembers marker names.
    result = bedrock_pytester.pytester.runpytest_subprocess(
        "-p", "no:bedrock_latency", "-p", "no:cacheprovider", "--strict-markers"
    )
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*'bedrock_latency' not found in `markers` configuration option*"])
    result = bedrock_pytester.pytester.runpytest(
        "-p", "no:bedrock_latency", "-p", "no:cacheprovider", "--bedrock-model=x"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unrecognized arguments: --bedrock-model=x*"])
    plain = bedrock_pytester.pytester.runpytest(
        "-p",
        "no:bedrock_latency",
        "-p",
        "no:cacheprovider",
        "-W",
        "ignore::pytest.PytestUnknownMarkWarning",
    )
    plain.assert_outcomes(passed=1)  # the marker is inert: nothing is measured or checked
    assert "bedrock latency" not in plain.stdout.str()
