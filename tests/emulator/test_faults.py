"""A bug inside the emulator is answered (not retried), kept with its traceback, never printed.

The bug is simulated by making one of the emulator's own functions raise: there is no other
way to have a correct emulator fail.
"""

from __future__ import annotations

import json
from typing import Any

import botocore.exceptions
import pytest

from pytest_bedrock_latency.emulator import Emulator, runtime

from .conftest import MSGS, make_client


def _boom(*args: Any, **kwargs: Any) -> Any:
    raise KeyError("simulated emulator bug")


def test_a_fault_answers_a_non_retried_error_and_is_kept(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    emulator.clear_errors()
    monkeypatch.setattr(runtime, "plan_answer", _boom)
    # Retries on, without backoff waits mattering: a 501 is not retried at all.
    client = make_client(emulator.url, retries={"total_max_attempts": 4, "mode": "standard"})
    with pytest.raises(botocore.exceptions.ClientError) as info:
        client.converse(modelId="test.fast", messages=MSGS)
    error = info.value.response
    assert error["Error"]["Code"] == "InternalServerException"
    assert error["Error"]["Message"].startswith("Emulator fault")
    assert "KeyError" in error["Error"]["Message"]
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 501
    assert error["ResponseMetadata"]["RetryAttempts"] == 0
    (fault,) = emulator.errors
    assert fault.request == "POST /model/test.fast/converse"
    assert "simulated emulator bug" in fault.error
    assert "plan_answer" in fault.traceback or "_boom" in fault.traceback
    assert "Traceback" not in capfd.readouterr().err
    monkeypatch.undo()
    assert client.converse(modelId="test.fast", messages=MSGS)["stopReason"] == "end_turn"
    emulator.clear_errors()
    assert emulator.errors == []


def test_a_fault_mid_stream_ends_the_stream_with_an_exception_frame(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator.clear_errors()
    monkeypatch.setattr(runtime.families, "native_stream_delta", _boom)
    client = make_client(emulator.url)
    body = json.dumps({"inputText": "hello"})
    response = client.invoke_model_with_response_stream(
        modelId="amazon.titan-text-express-v1", body=body
    )
    with pytest.raises(botocore.exceptions.EventStreamError, match="Emulator fault"):
        list(response["body"])
    assert len(emulator.errors) == 1
    emulator.clear_errors()
