"""Which served requests no measured call accounts for (pure)."""

from __future__ import annotations

from pytest_bedrock_latency.unmeasured import Unmeasured, unmeasured

BOTO = "Boto3/1.44.8 md/Botocore#1.44.8"
CLI = "aws-cli/1.46.3 md/Botocore#1.44.8"


def test_every_served_request_measured_leaves_nothing() -> None:
    served = [("ConverseStream", BOTO), ("ConverseStream", BOTO), ("Converse", BOTO)]
    measured = [("ConverseStream", BOTO, 2), ("Converse", BOTO, 1)]  # one call retried once
    assert unmeasured(served, measured) == []


def test_requests_of_another_client_are_named_by_operation_and_agent() -> None:
    served = [("ConverseStream", BOTO), ("ConverseStream", CLI), ("ConverseStream", CLI)]
    (left,) = unmeasured(served, [("ConverseStream", BOTO, 1)])
    assert left == Unmeasured("ConverseStream", CLI, 2)
    assert left.line == (
        f"2 ConverseStream requests reached the emulator unmeasured (user agent: {CLI})"
    )


def test_gate_replays_without_an_agent_stand_for_any_request_of_their_operation() -> None:
    served = [("Converse", BOTO), ("Converse", "other")]
    assert unmeasured(served, [("Converse", BOTO, 1), ("Converse", None, 1)]) == []


def test_control_plane_and_count_tokens_are_not_invocations() -> None:
    assert unmeasured([("CountTokens", BOTO), ("GetCustomModel", BOTO)], []) == []
    assert unmeasured([("InvokeModel", "")], [])[0].line.endswith("(user agent: (none))")
