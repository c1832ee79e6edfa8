"""The plugin's fixtures, run with pytester against the embedded emulator over real HTTP."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # the fixture's class, from tests/conftest.py
    from conftest import BedrockPytester


def test_bedrock_model_converse_streamed_and_not(bedrock_pytester: BedrockPytester) -> None:
    bedrock_pytester.makepyfile(
        test_converse="""
        from pytest_bedrock_latency.handle import ModelHandle
        from pytest_bedrock_latency.measurement import Generation

        def test_stream(bedrock_model):
            assert isinstance(bedrock_model, ModelHandle)
            assert bedrock_model.model_id == "amazon.nova-lite-v1:0"
            g = bedrock_model.converse("How do I reset my password?", system="Be brief.")
            assert isinstance(g, Generation)
            assert (g.model_id, g.operation, g.stop_reason) == ("amazon.nova-lite-v1:0", "ConverseStream", "end_turn")
            assert g.output_tokens == 20 == g.words and g.input_tokens > 0
            assert 15 <= g.ttft_ms < g.total_ms  # the profile's 20 ms before the first token
            # The profile's 20 ms + 19 x 1 ms: never sooner (a busy machine only delays tokens).
            assert g.total_ms >= 38 and g.ms_per_token >= 0
            assert g.ms_per_token == (g.total_ms - g.ttft_ms) / 19
            assert g.tokens_per_second == 20 / ((g.total_ms - g.ttft_ms) / 1000)
            assert g.server_latency_ms is not None and (g.attempts, g.retry_wait_ms) == (1, 0.0)

        def test_not_streamed(bedrock_model):
            g = bedrock_model.converse("How do I reset my password?", stream=False)
            assert (g.operation, g.output_tokens, g.ttft_ms, g.ms_per_token) == ("Converse", 20, None, None)
            assert g.total_ms >= 35

        def test_max_tokens_and_messages(bedrock_model):
            g = bedrock_model.converse([{"role": "user", "content": [{"text": "Hi"}]}], max_tokens=4)
            assert (g.output_tokens, g.stop_reason) == (4, "max_tokens")
        """
    )
    result = bedrock_pytester.run()
    result.assert_outcomes(passed=3)


def test_max_tokens_setting_is_the_handle_default(bedrock_pytester: BedrockPytester) -> None:
    bedrock_pytester.makepyfile(
        test_default_max="""
        def test_default(bedrock_model):
            assert bedrock_model.converse("Hi").output_tokens == 6
            assert bedrock_model.converse("Hi", max_tokens=8).output_tokens == 8
        """
    )
    bedrock_pytester.run("--bedrock-max-tokens", "6").assert_outcomes(passed=1)


def test_bedrock_model_invoke_native_titan_body(bedrock_pytester: BedrockPytester) -> None:
    bedrock_pytester.makepyfile(
        test_invoke="""
        BODY = {"inputText": "Where is my parcel?", "textGenerationConfig": {"maxTokenCount": 300}}

        def test_stream(bedrock_model):
            g = bedrock_model.invoke(BODY)
            assert (g.operation, g.output_tokens, g.words, g.stop_reason) == (
                "InvokeModelWithResponseStream", 20, 20, "FINISH")
            assert g.input_tokens > 0 and g.ttft_ms is not None and g.ms_per_token is not None
            assert g.server_latency_ms is not None  # amazon-bedrock-invocationMetrics

        def test_not_streamed(bedrock_model):
            g = bedrock_model.invoke(BODY, stream=False)
            assert (g.operation, g.output_tokens, g.words, g.stop_reason) == ("InvokeModel", 20, 20, "FINISH")
            assert g.ttft_ms is None and g.text

        def test_length_limit_in_body(bedrock_model):
            g = bedrock_model.invoke({"inputText": "Hi", "textGenerationConfig": {"maxTokenCount": 3}}, stream=False)
            assert (g.output_tokens, g.stop_reason) == (3, "LENGTH")
        """
    )
    bedrock_pytester.run(model="amazon.titan-text-express-v1").assert_outcomes(passed=3)


def test_bedrock_model_invoke_native_anthropic_body(bedrock_pytester: BedrockPytester) -> None:
    bedrock_pytester.makepyfile(
        test_invoke_claude="""
        BODY = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 100,
                "messages": [{"role": "user", "content": "Where is my parcel?"}]}

        def test_both(bedrock_model):
            streamed = bedrock_model.invoke(BODY)
            whole = bedrock_model.invoke(BODY, stream=False)
            for g in (streamed, whole):
                assert (g.output_tokens, g.stop_reason, g.words) == (20, "end_turn", 20)
            assert streamed.input_tokens == whole.input_tokens > 0
            assert streamed.text and whole.text
        """
    )
    bedrock_pytester.run(model="anthropic.claude-3-haiku-20240307-v1:0").assert_outcomes(passed=1)


def test_count_tokens_and_bedrock_calls_grow(bedrock_pytester: BedrockPytester) -> None:
    bedrock_pytester.makepyfile(
        test_calls="""
        def test_grows(bedrock_model, bedrock_calls):
            assert len(bedrock_calls) == 0
            first = bedrock_model.converse("Why was my card charged twice?")
            assert len(bedrock_calls) == 1 and bedrock_calls[0] == first
            tokens = bedrock_model.count_tokens("Why was my card charged twice?")
            assert isinstance(tokens, int) and tokens == first.input_tokens
            assert len(bedrock_calls) == 1  # CountTokens is not a generation
            second = bedrock_model.converse("Thanks", stream=False)
            assert list(bedrock_calls) == [first, second]
            assert [g.operation for g in bedrock_calls] == ["ConverseStream", "Converse"]

        def test_fresh_per_test(bedrock_calls):
            assert len(bedrock_calls) == 0
        """
    )
    bedrock_pytester.run().assert_outcomes(passed=2)


def test_bedrock_runtime_is_a_measured_client(bedrock_pytester: BedrockPytester) -> None:
    bedrock_pytester.makepyfile(
        test_runtime="""
        import os

        def test_client(bedrock_runtime, bedrock_calls, bedrock_emulator):
            assert bedrock_runtime.meta.service_model.service_name == "bedrock-runtime"
            assert bedrock_runtime.meta.endpoint_url == bedrock_emulator.url
            response = bedrock_runtime.converse_stream(
                modelId="amazon.nova-micro-v1:0",
                messages=[{"role": "user", "content": [{"text": "Hello"}]}],
            )
            events = list(response["stream"])
            assert "messageStart" in events[0] and "metadata" in events[-1]
            (g,) = bedrock_calls
            assert (g.model_id, g.operation, g.output_tokens) == ("amazon.nova-micro-v1:0", "ConverseStream", 7)
            assert g.ttft_ms is not None
        """
    )
    bedrock_pytester.run().assert_outcomes(passed=1)


def test_bedrock_baseline_with_and_without_a_base_model(bedrock_pytester: BedrockPytester) -> None:
    bedrock_pytester.makepyfile(
        test_baseline="""
        def test_base(bedrock_baseline, bedrock_calls):
            assert bedrock_baseline.model_id == "amazon.nova-pro-v1:0"
            assert bedrock_baseline.converse("Hi").output_tokens == 9
            assert [g.model_id for g in bedrock_calls] == ["amazon.nova-pro-v1:0"]
        """
    )
    bedrock_pytester.run("--bedrock-baseline", "amazon.nova-pro-v1:0").assert_outcomes(passed=1)
    result = bedrock_pytester.run("-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(
        [
            "SKIPPED [[]1[]] test_baseline.py:*: no base model configured: 'amazon.nova-lite-v1:0' is not a custom model: "
            "it is a foundation model, so it has no base model to compare against. Fix: name the base model explicitly "
            "with --bedrock-baseline MODEL_ID (or the BEDROCK_BASELINE_MODEL_ID environment variable).",
        ]
    )


def test_missing_model_skips_with_a_clear_reason(bedrock_pytester: BedrockPytester) -> None:
    bedrock_pytester.makepyfile(
        test_nomodel="""
        def test_model(bedrock_model):
            raise AssertionError("not reached")

        def test_runtime_needs_no_model(bedrock_runtime):
            pass
        """
    )
    result = bedrock_pytester.run("-rs", model=None)
    result.assert_outcomes(skipped=1, passed=1)
    result.stdout.fnmatch_lines(["SKIPPED [[]1[]] test_nomodel.py:*: --bedrock-model is not set"])


def test_bedrock_emulator_fixture_and_profile_override_reset(
    bedrock_pytester: BedrockPytester,
) -> None:
    bedrock_pytester.makepyfile(
        test_emulator="""
        import os
        from pytest_bedrock_latency.emulator import Emulator

        def test_override(bedrock_emulator, bedrock_model):
            assert isinstance(bedrock_emulator, Emulator)
            assert bedrock_emulator.url.startswith("http://127.0.0.1:")
            assert os.environ["AWS_ENDPOINT_URL_BEDROCK_RUNTIME"] == bedrock_emulator.url
            assert os.environ["AWS_ENDPOINT_URL_BEDROCK"] == bedrock_emulator.url
            bedrock_emulator.set_profile("amazon.nova-lite-v1:0", answer_tokens=3)
            assert bedrock_model.converse("Hi").output_tokens == 3

        def test_reset_after_the_test(bedrock_emulator, bedrock_model):
            assert bedrock_model.converse("Hi").output_tokens == 20
            assert [r.model_id for r in bedrock_emulator.requests] == ["amazon.nova-lite-v1:0"] * 2
        """
    )
    bedrock_pytester.run().assert_outcomes(passed=2)


def test_without_credentials_bedrock_tests_skip_and_suggest_the_emulator(
    bedrock_pytester: BedrockPytester,
) -> None:
    bedrock_pytester.makepyfile(
        test_creds="""
        import pytest

        def test_model(bedrock_model):
            raise AssertionError("not reached")

        @pytest.mark.bedrock_latency(max_ttft_ms=100)
        def test_marked():
            raise AssertionError("not reached")

        def test_unrelated():
            pass
        """
    )
    result = bedrock_pytester.run("-rs", "--bedrock-region", "us-east-1", emulator=False)
    result.assert_outcomes(skipped=2, passed=1)
    reason = (
        "no AWS credentials (set AWS_PROFILE or --bedrock-aws-profile, or AWS_ACCESS_KEY_ID and "
        "AWS_SECRET_ACCESS_KEY) (or try --bedrock-emulator)"
    )
    result.stdout.fnmatch_lines(
        [f"SKIPPED [[]1[]] test_creds.py:*: {reason}", f"SKIPPED [[]1[]] *: {reason}"]
    )

    result = bedrock_pytester.run(
        "--bedrock-region", "us-east-1", "--bedrock-require", emulator=False
    )
    result.assert_outcomes(errors=2, passed=1)  # failed in setup: reported as errors
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "*Bedrock is not configured (--bedrock-require): no AWS credentials (set AWS_PROFILE or "
            "--bedrock-aws-profile, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)",
        ]
    )
    assert "Traceback" not in result.stdout.str()


def test_skip_of_a_marked_test_points_at_the_test(bedrock_pytester: BedrockPytester) -> None:
    bedrock_pytester.makepyfile(
        test_where="""
        import pytest

        @pytest.mark.bedrock_length(max_tokens=10)
        def test_marked():
            pass
        """
    )
    result = bedrock_pytester.run("-rs", "--bedrock-region", "us-east-1", emulator=False)
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["SKIPPED [[]1[]] test_where.py:*: no AWS credentials *"])


def test_without_credentials_or_region_both_are_named(bedrock_pytester: BedrockPytester) -> None:
    bedrock_pytester.makepyfile(test_nothing="def test_model(bedrock_model):\n    pass\n")
    result = bedrock_pytester.run("-rs", emulator=False, model=None)
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(
        [
            "SKIPPED [[]1[]] test_nothing.py:1: --bedrock-model is not set; no AWS credentials (*); "
            "no AWS region (set --bedrock-region, bedrock_region in the ini file, or AWS_REGION) (or try --bedrock-emulator)",
        ]
    )


@pytest.mark.parametrize(
    ("region", "problem"),
    [
        pytest.param(
            "mars", "'mars' is not an AWS region name (e.g. us-east-1)", id="not-a-region"
        ),
        pytest.param(
            "xx-nowhere-9",
            "Bedrock Runtime is not offered in region 'xx-nowhere-9' (set --bedrock-region)",
            id="region-without-bedrock",
        ),
    ],
)
def test_an_unknown_region_skips_with_a_clear_reason(
    bedrock_pytester: BedrockPytester, monkeypatch: pytest.MonkeyPatch, region: str, problem: str
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret-example")
    bedrock_pytester.makepyfile(test_region="def test_model(bedrock_model):\n    pass\n")
    result = bedrock_pytester.run("-rs", "--bedrock-region", region, emulator=False)
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(
        [f"SKIPPED [[]1[]] test_region.py:*: {problem} (or try --bedrock-emulator)"]
    )


def test_the_plugin_restores_endpoint_and_credentials_environment(
    bedrock_pytester: BedrockPytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "http://bedrock.example.invalid")
    before = dict(os.environ)
    bedrock_pytester.makepyfile(
        test_env="""
        import os

        def test_inside(bedrock_emulator, bedrock_model):
            assert os.environ["AWS_ENDPOINT_URL_BEDROCK_RUNTIME"] == bedrock_emulator.url
            assert os.environ["AWS_ACCESS_KEY_ID"] == "testing"  # dummy credentials: none existed
            assert os.environ["AWS_REGION"] == "us-east-1"
            bedrock_model.converse("Hi")
        """
    )
    bedrock_pytester.run().assert_outcomes(passed=1)
    assert {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"} == {
        k: v for k, v in before.items() if k != "PYTEST_CURRENT_TEST"
    }
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_REGION",
        "AWS_ENDPOINT_URL_BEDROCK",
    ):
        assert name not in os.environ


def test_existing_credentials_are_kept(
    bedrock_pytester: BedrockPytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret-example")
    bedrock_pytester.makepyfile(
        test_keep="""
        import os

        def test_inside(bedrock_model):
            assert os.environ["AWS_ACCESS_KEY_ID"] == "AKIDEXAMPLE"
            assert bedrock_model.converse("Hi").output_tokens == 20
        """
    )
    bedrock_pytester.run().assert_outcomes(passed=1)
    assert os.environ["AWS_ACCESS_KEY_ID"] == "AKIDEXAMPLE"
