"""Emulator trouble under pytest: a bug inside it fails the test during which it happened (with
its traceback); a profile file it cannot read is a usage error."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conftest import BedrockPytester


def test_an_emulator_fault_fails_the_running_test_with_its_traceback(
    bedrock_pytester: BedrockPytester,
) -> None:
    bedrock_pytester.makepyfile(
        test_fault="""
        import pytest
        from pytest_bedrock_latency.emulator import runtime

        def boom(*args, **kwargs):
            raise ZeroDivisionError("simulated emulator bug")

        def test_swallows_the_error(bedrock_model, monkeypatch):
            monkeypatch.setattr(runtime, "plan_answer", boom)
            with pytest.raises(Exception):  # the client's error, swallowed by the test
                bedrock_model.converse("Hi")

        def test_next_test_is_not_blamed(bedrock_model):
            assert bedrock_model.converse("Hi").output_tokens > 0
        """
    )
    result = bedrock_pytester.run()
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(
        [
            "*test_swallows_the_error*",
            "*the Bedrock emulator faulted 1 time(s) during this test*ZeroDivisionError*",
            "*bedrock emulator faults*",
            "*emulator fault while serving POST /model/*/converse*",
            "*Traceback (most recent call last)*",
            "*simulated emulator bug*",
            "FAILED test_fault.py::test_swallows_the_error*",
        ]
    )
    assert "INTERNALERROR" not in result.stdout.str()


def test_a_profile_file_that_is_not_utf8_is_a_usage_error(
    bedrock_pytester: BedrockPytester,
) -> None:
    (bedrock_pytester.path / "profiles.toml").write_bytes(b'[models."m"]\nttft_ms = 1 # \xff\n')
    bedrock_pytester.makepyfile(test_x="def test_x(bedrock_model):\n    pass\n")
    result = bedrock_pytester.run()
    assert result.ret == 4  # pytest's usage error
    result.stderr.fnmatch_lines(["*profiles.toml: not UTF-8 text*"])
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
