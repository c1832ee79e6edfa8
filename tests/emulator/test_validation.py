"""The request rules Bedrock enforces, enforced offline with Bedrock's code and wording."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from typing import Any

import pytest

from pytest_bedrock_latency.emulator import Emulator

USER = {"role": "user", "content": [{"text": "Summarise the notes"}]}
ASSISTANT = {"role": "assistant", "content": [{"text": "Sure."}]}
TOOL_USE = {"toolUse": {"toolUseId": "t1", "name": "lookup", "input": {}}}
TOOL_RESULT = {"toolResult": {"toolUseId": "t1", "content": [{"text": "42"}]}}
TOOLS = {"tools": [{"toolSpec": {"name": "lookup", "inputSchema": {"json": {"type": "object"}}}}]}

CASES: dict[str, tuple[dict[str, Any], str]] = {
    "starts with the assistant": (
        {"messages": [ASSISTANT, USER]},
        "A conversation must start with a user message",
    ),
    "two user turns in a row": (
        {"messages": [USER, USER]},
        "A conversation must alternate between user and assistant roles",
    ),
    "an empty text block": (
        {"messages": [{"role": "user", "content": [{"text": ""}]}]},
        "The text field in the ContentBlock object at messages.0.content.0 is blank",
    ),
    "a blank text block": (
        {"messages": [{"role": "user", "content": [{"text": "  \n"}]}]},
        "is blank",
    ),
    "an empty content list": (
        {"messages": [{"role": "user", "content": []}]},
        "The content field in the Message object at messages.0 is empty",
    ),
    "toolUse without toolConfig": (
        {"messages": [USER, {"role": "assistant", "content": [TOOL_USE]}]},
        "The toolConfig field must be defined when using toolUse and toolResult",
    ),
    "toolResult without toolConfig": (
        {"messages": [{"role": "user", "content": [TOOL_RESULT]}]},
        "The toolConfig field must be defined",
    ),
    "maxTokens above the model's limit": (
        {"messages": [USER], "inferenceConfig": {"maxTokens": 4097}},
        "The maximum tokens you requested exceeds the model limit of 4096",
    ),
    "temperature above 1": (
        {"messages": [USER], "inferenceConfig": {"temperature": 1.5}},
        "'inferenceConfig.temperature' failed to satisfy constraint: Member must have value "
        "less than or equal to 1",
    ),
    "topP below 0": (
        {"messages": [USER], "inferenceConfig": {"topP": -0.1}},
        "'inferenceConfig.topP' failed to satisfy constraint: Member must have value greater "
        "than or equal to 0",
    ),
    "an unknown content block": (
        {"messages": [{"role": "user", "content": [{"picture": {}}]}]},
        "ContentBlock has unknown member 'picture'",
    ),
    "a system role message": (
        {"messages": [{"role": "system", "content": [{"text": "x"}]}]},
        "'messages.0.role' failed to satisfy constraint",
    ),
}


def _post(url: str, path: str, doc: Any) -> tuple[int, dict[str, str], dict[str, Any]]:
    request = urllib.request.Request(
        url + path, data=json.dumps(doc).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read())


HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"


@pytest.fixture(autouse=True)
def _haiku_limit(emulator: Emulator) -> None:
    # The catalogue's limit for this model (the test profiles use the built-in default).
    emulator.set_profile(HAIKU, max_output_tokens=4096)


@pytest.mark.parametrize("case", list(CASES))
def test_bedrock_rejects_it_so_the_emulator_does(emulator: Emulator, case: str) -> None:
    body, message = CASES[case]
    # Over plain HTTP: botocore itself refuses some of these (ranges, unknown members) before
    # sending, other clients (the JS SDK, httpx-based ones) do not.
    status, headers, answer = _post(emulator.url, f"/model/{HAIKU}/converse", body)
    assert status == 400 and headers["x-amzn-ErrorType"].startswith("ValidationException")
    assert message in answer["message"]


@pytest.mark.parametrize(
    "case",
    [
        "starts with the assistant",
        "two user turns in a row",
        "an empty text block",
        "toolUse without toolConfig",
    ],
)
def test_the_application_sees_bedrocks_exception(client: Any, case: str) -> None:
    body, message = CASES[case]
    with pytest.raises(client.exceptions.ValidationException, match=re.escape(message)):
        client.converse(modelId=HAIKU, **body)


def test_unknown_top_level_fields_are_rejected(emulator: Emulator) -> None:
    # boto3 refuses unknown parameters itself, so this goes over plain HTTP.
    status, headers, body = _post(
        emulator.url, "/model/test.fast/converse", {"messages": [USER], "temprature": 0.5}
    )
    assert status == 400 and headers["x-amzn-ErrorType"].startswith("ValidationException")
    assert "unknown field 'temprature'" in body["message"]


def test_valid_conversations_still_pass(client: Any) -> None:
    ok = client.converse(
        modelId="test.fast",
        messages=[USER, ASSISTANT, USER],
        system=[{"text": "Be brief."}],
        inferenceConfig={"maxTokens": 5, "temperature": 0.0, "topP": 1.0},
    )
    assert ok["usage"]["outputTokens"] == 5
    with_tools = client.converse(
        modelId="test.fast",
        messages=[
            USER,
            {"role": "assistant", "content": [TOOL_USE]},
            {"role": "user", "content": [TOOL_RESULT]},
        ],
        toolConfig=TOOLS,
    )
    assert with_tools["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_the_output_limit_applies_to_native_bodies_and_streams(client: Any) -> None:
    native = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 5000, "messages": [USER]}
    with pytest.raises(client.exceptions.ValidationException, match="model limit of 4096"):
        client.invoke_model(modelId=HAIKU, body=json.dumps(native))
    with pytest.raises(client.exceptions.ValidationException, match="model limit of 4096"):
        client.converse_stream(
            modelId=HAIKU,
            messages=[USER],
            inferenceConfig={"maxTokens": 10_000},
        )
