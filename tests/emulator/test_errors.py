"""Error responses: every modelled code, retries, and mid-stream exceptions.

How errors are forced (the emulator's test side channels):

* ``emulator.set_profile(model, throttle_rate=1.0)`` -> every request is a 429 ThrottlingException;
  ``not_ready_rate=1.0`` -> 429 ModelNotReadyException; ``stream_error_rate=1.0`` -> every
  stream ends in a ``modelStreamErrorException`` frame after some deltas.
* ``emulator.inject_error(code, model_id=None, times=1)`` -> the next ``times`` runtime requests
  get the HTTP error ``code`` (any code of bedrock-wire.md's table) before any output; a camelCase
  stream member such as ``"throttlingException"`` is instead sent as a mid-stream exception frame.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import EventStreamError

from pytest_bedrock_latency.emulator import Emulator
from pytest_bedrock_latency.emulator.server import ERROR_STATUS

from .conftest import MSGS


@pytest.mark.parametrize("code", sorted(ERROR_STATUS))
@pytest.mark.parametrize("op", ["converse", "converse_stream"])
def test_every_error_code_is_modelled(emulator: Emulator, client: Any, code: str, op: str) -> None:
    emulator.inject_error(code, model_id="test.fast")
    with pytest.raises(getattr(client.exceptions, code)) as info:
        getattr(client, op)(modelId="test.fast", messages=MSGS)
    err = info.value.response
    assert err["Error"]["Code"] == code
    assert err["ResponseMetadata"]["HTTPStatusCode"] == ERROR_STATUS[code]
    assert err["Error"]["Message"]
    rec = emulator.requests[-1]
    assert (rec.error_code, rec.status, rec.attempt) == (code, ERROR_STATUS[code], 1)
    if code == "ModelErrorException":
        assert err["originalStatusCode"] == 500 and err["resourceName"] == "test.fast"


def test_throttling_is_retried_and_logged(
    emulator: Emulator, retrying_client: Callable[[int], Any]
) -> None:
    client = retrying_client(3)
    emulator.set_profile("test.fast", throttle_rate=1.0)
    with pytest.raises(client.exceptions.ThrottlingException) as info:
        client.converse(modelId="test.fast", messages=MSGS)
    assert info.value.response["ResponseMetadata"]["RetryAttempts"] == 2
    assert "Too many requests" in str(info.value)
    recs = emulator.requests
    assert [r.attempt for r in recs] == [1, 2, 3]
    assert {r.error_code for r in recs} == {"ThrottlingException"}
    assert {r.status for r in recs} == {429}


def test_transient_throttle_then_success(
    emulator: Emulator, retrying_client: Callable[[int], Any]
) -> None:
    client = retrying_client(3)
    emulator.inject_error("ThrottlingException", model_id="test.fast", times=1)
    events = list(client.converse_stream(modelId="test.fast", messages=MSGS)["stream"])
    assert "metadata" in events[-1]
    assert [(r.attempt, r.status) for r in emulator.requests] == [(1, 429), (2, 200)]


def test_model_not_ready_rate(emulator: Emulator, client: Any) -> None:
    emulator.set_profile("test.fast", not_ready_rate=1.0)
    with pytest.raises(client.exceptions.ModelNotReadyException):
        client.converse(modelId="test.fast", messages=MSGS)
    assert emulator.requests[-1].status == 429


def test_mid_stream_model_stream_error(emulator: Emulator, client: Any) -> None:
    emulator.set_profile("test.fast", stream_error_rate=1.0)
    resp = client.converse_stream(modelId="test.fast", messages=MSGS)
    deltas: list[bool] = []

    def read() -> None:
        deltas.extend("contentBlockDelta" in event for event in resp["stream"])

    with pytest.raises(EventStreamError) as info:
        read()
    assert info.value.response["Error"]["Code"] == "modelStreamErrorException"
    assert 1 <= sum(deltas) < 20
    rec = emulator.requests[-1]
    assert rec.error_code == "modelStreamErrorException" and rec.status == 200
    assert rec.output_tokens == sum(deltas) == len(rec.token_offsets_ms)


def test_mid_stream_error_on_invoke_stream(emulator: Emulator, client: Any) -> None:
    emulator.set_profile("amazon.titan-text-express-v1", stream_error_rate=1.0)
    resp = client.invoke_model_with_response_stream(
        modelId="amazon.titan-text-express-v1", body='{"inputText": "hello"}'
    )
    with pytest.raises(EventStreamError) as info:
        list(resp["body"])
    assert info.value.response["Error"]["Code"] == "modelStreamErrorException"


def test_injected_stream_exception_member(emulator: Emulator, client: Any) -> None:
    emulator.inject_error("throttlingException", model_id="test.fast")
    with pytest.raises(EventStreamError) as info:
        list(client.converse_stream(modelId="test.fast", messages=MSGS)["stream"])
    assert info.value.response["Error"]["Code"] == "throttlingException"


def test_inject_error_rejects_unknown_codes(emulator: Emulator) -> None:
    with pytest.raises(ValueError, match="unknown error code"):
        emulator.inject_error("TeapotException")
