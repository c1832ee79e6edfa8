"""An application's own call to a model without an emulator profile gets the fix in its 404."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conftest import BedrockPytester


def test_application_calls_see_how_to_add_a_profile(bedrock_pytester: BedrockPytester) -> None:
    bedrock_pytester.makepyfile(
        test_app="""
        import boto3
        import pytest

        @pytest.mark.bedrock_latency(max_ms_per_token=1000)
        def test_app():
            client = boto3.client("bedrock-runtime")
            client.converse(
                modelId="vendor.not-in-profiles-v1",
                messages=[{"role": "user", "content": [{"text": "hi"}]}],
            )
        """
    )
    result = bedrock_pytester.run("--tb=line", model=None)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*ResourceNotFoundException*The provided model identifier is invalid. (Bedrock "
            "emulator: no profile matches 'vendor.not-in-profiles-v1'; add a profile for it to "
            "the file given with --bedrock-emulator-profiles*"
        ]
    )
