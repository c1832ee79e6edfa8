"""Tool use, reasoning, response fields, guardrails and prompt caching through real boto3."""

from __future__ import annotations

import json
import struct
import zlib
from typing import Any

import jsonschema
import pytest

from pytest_bedrock_latency.emulator import Emulator

from .conftest import MSGS, make_client

HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"
NOVA = "amazon.nova-lite-v1:0"

WEATHER_SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "minLength": 2},
        "unit": {"enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
        "when": {"type": "string", "format": "date"},
    },
    "required": ["city", "unit", "days"],
}
TOOLS = {
    "tools": [
        {
            "toolSpec": {
                "name": "get_weather",
                "description": "Weather forecast for a city",
                "inputSchema": {"json": WEATHER_SCHEMA},
            }
        }
    ]
}
FORCED = {**TOOLS, "toolChoice": {"tool": {"name": "get_weather"}}}


def stream_events(resp: dict[str, Any]) -> list[dict[str, Any]]:
    return list(resp["stream"])


def invoke_chunks(resp: dict[str, Any]) -> list[dict[str, Any]]:
    return [json.loads(e["chunk"]["bytes"]) for e in resp["body"] if "chunk" in e]


# -- tool use -----------------------------------------------------------------------------------


def test_forced_tool_use_returns_schema_valid_input(client: Any) -> None:
    resp = client.converse(modelId=HAIKU, messages=MSGS, toolConfig=FORCED)
    assert resp["stopReason"] == "tool_use"
    (block,) = resp["output"]["message"]["content"]
    use = block["toolUse"]
    assert use["name"] == "get_weather" and use["toolUseId"].startswith("tooluse_")
    jsonschema.validate(use["input"], WEATHER_SCHEMA, format_checker=jsonschema.FormatChecker())
    assert resp["usage"]["outputTokens"] >= len(json.dumps(use["input"])) // 5


def test_streamed_tool_use(client: Any, emulator: Emulator) -> None:
    events = stream_events(client.converse_stream(modelId=HAIKU, messages=MSGS, toolConfig=FORCED))
    start = next(e["contentBlockStart"] for e in events if "contentBlockStart" in e)
    assert start["start"]["toolUse"]["name"] == "get_weather"
    pieces = [
        e["contentBlockDelta"]["delta"]["toolUse"]["input"]
        for e in events
        if "contentBlockDelta" in e
    ]
    assert len(pieces) > 1  # paced as tokens, not one burst
    jsonschema.validate(json.loads("".join(pieces)), WEATHER_SCHEMA)
    assert next(e for e in events if "messageStop" in e)["messageStop"]["stopReason"] == "tool_use"
    usage = events[-1]["metadata"]["usage"]
    assert usage["outputTokens"] == emulator.requests[-1].output_tokens > 0
    assert len(emulator.requests[-1].token_offsets_ms) == len(pieces)


def test_a_tool_result_turn_is_answered_with_text(client: Any) -> None:
    first = client.converse(
        modelId=HAIKU, messages=MSGS, toolConfig=TOOLS | {"toolChoice": {"auto": {}}}
    )
    emulator_turn = first["output"]["message"]
    use = next(b["toolUse"] for b in emulator_turn["content"] if "toolUse" in b)
    result = {"toolResult": {"toolUseId": use["toolUseId"], "content": [{"json": {"temp": 21}}]}}
    second = client.converse(
        modelId=HAIKU,
        messages=[*MSGS, emulator_turn, {"role": "user", "content": [result]}],
        toolConfig=TOOLS,
    )
    assert second["stopReason"] == "end_turn"
    assert second["output"]["message"]["content"][0]["text"]


def test_auto_tool_choice_follows_tool_use_rate(client: Any, emulator: Emulator) -> None:
    emulator.set_profile(HAIKU, tool_use_rate=0.0)
    never = client.converse(modelId=HAIKU, messages=MSGS, toolConfig=TOOLS)
    assert never["stopReason"] == "end_turn"
    emulator.set_profile(HAIKU, tool_use_rate=1.0)
    always = client.converse(modelId=HAIKU, messages=MSGS, toolConfig=TOOLS)
    assert always["stopReason"] == "tool_use"


def test_an_unknown_forced_tool_is_a_validation_error(client: Any) -> None:
    with pytest.raises(client.exceptions.ValidationException, match="nope"):
        client.converse(
            modelId=HAIKU,
            messages=MSGS,
            toolConfig=TOOLS | {"toolChoice": {"tool": {"name": "nope"}}},
        )


ANTHROPIC_TOOL_BODY = {
    "anthropic_version": "bedrock-2023-05-31",
    "max_tokens": 500,
    "messages": MSGS,
    "tools": [{"name": "get_weather", "description": "d", "input_schema": WEATHER_SCHEMA}],
    "tool_choice": {"type": "tool", "name": "get_weather"},
}


def test_native_anthropic_tool_use(client: Any) -> None:
    body = json.loads(
        client.invoke_model(modelId=HAIKU, body=json.dumps(ANTHROPIC_TOOL_BODY))["body"].read()
    )
    assert body["stop_reason"] == "tool_use"
    (block,) = body["content"]
    assert block["type"] == "tool_use" and block["name"] == "get_weather"
    jsonschema.validate(block["input"], WEATHER_SCHEMA)
    chunks = invoke_chunks(
        client.invoke_model_with_response_stream(
            modelId=HAIKU, body=json.dumps(ANTHROPIC_TOOL_BODY)
        )
    )
    kinds = [c["type"] for c in chunks]
    assert kinds[:2] == ["message_start", "content_block_start"]
    assert chunks[1]["content_block"]["type"] == "tool_use"
    partial = "".join(
        c["delta"]["partial_json"] for c in chunks if c["type"] == "content_block_delta"
    )
    jsonschema.validate(json.loads(partial), WEATHER_SCHEMA)
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert chunks[-2]["delta"]["stop_reason"] == "tool_use"


def test_native_nova_tool_use(client: Any) -> None:
    body = {"schemaVersion": "messages-v1", "messages": MSGS, "toolConfig": FORCED}
    out = json.loads(client.invoke_model(modelId=NOVA, body=json.dumps(body))["body"].read())
    assert out["stopReason"] == "tool_use"
    jsonschema.validate(out["output"]["message"]["content"][0]["toolUse"]["input"], WEATHER_SCHEMA)


# -- reasoning ----------------------------------------------------------------------------------

THINKING = {"thinking": {"type": "enabled", "budget_tokens": 1024}}


def test_converse_reasoning_precedes_the_answer(client: Any, emulator: Emulator) -> None:
    emulator.set_profile(HAIKU, reasoning_tokens=30)
    resp = client.converse(modelId=HAIKU, messages=MSGS, additionalModelRequestFields=THINKING)
    reasoning, text = resp["output"]["message"]["content"]
    assert len(reasoning["reasoningContent"]["reasoningText"]["text"].split()) == 30
    assert reasoning["reasoningContent"]["reasoningText"]["signature"]
    assert resp["usage"]["outputTokens"] == 30 + len(text["text"].split())


def test_streamed_reasoning_then_signature_then_text(client: Any, emulator: Emulator) -> None:
    emulator.set_profile(HAIKU, reasoning_tokens=12)
    events = stream_events(
        client.converse_stream(modelId=HAIKU, messages=MSGS, additionalModelRequestFields=THINKING)
    )
    deltas = [e["contentBlockDelta"] for e in events if "contentBlockDelta" in e]
    reasoning = [d for d in deltas if d["contentBlockIndex"] == 0]
    assert all("reasoningContent" in d["delta"] for d in reasoning)
    assert "signature" in reasoning[-1]["delta"]["reasoningContent"]
    thought = "".join(d["delta"]["reasoningContent"].get("text", "") for d in reasoning)
    assert len(thought.split()) == 12
    stops = [e["contentBlockStop"]["contentBlockIndex"] for e in events if "contentBlockStop" in e]
    assert stops == [0, 1]
    text = "".join(d["delta"]["text"] for d in deltas if d["contentBlockIndex"] == 1)
    assert events[-1]["metadata"]["usage"]["outputTokens"] == 12 + len(text.split())


def test_reasoning_models_always_reason(client: Any, emulator: Emulator) -> None:
    emulator.set_profile("deepseek.r1-v1:0", reasoning_tokens=8, ttft_ms=5, ms_per_token=1)
    resp = client.converse(modelId="us.deepseek.r1-v1:0", messages=MSGS)
    assert "reasoningContent" in resp["output"]["message"]["content"][0]


def test_native_anthropic_thinking_stream(client: Any, emulator: Emulator) -> None:
    emulator.set_profile(HAIKU, reasoning_tokens=6)
    body = {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 2000,
        "messages": MSGS,
        **THINKING,
    }
    chunks = invoke_chunks(
        client.invoke_model_with_response_stream(modelId=HAIKU, body=json.dumps(body))
    )
    starts = [c["content_block"]["type"] for c in chunks if c["type"] == "content_block_start"]
    assert starts == ["thinking", "text"]
    delta_types = [c["delta"]["type"] for c in chunks if c["type"] == "content_block_delta"]
    first_text = delta_types.index("text_delta")
    assert set(delta_types[: first_text - 1]) == {"thinking_delta"}
    assert delta_types[first_text - 1] == "signature_delta"


def test_bad_thinking_budget_is_rejected(client: Any) -> None:
    with pytest.raises(client.exceptions.ValidationException, match="1024"):
        client.converse(
            modelId=HAIKU,
            messages=MSGS,
            additionalModelRequestFields={"thinking": {"type": "enabled", "budget_tokens": 10}},
        )


# -- additionalModelResponseFields --------------------------------------------------------------


def test_additional_model_response_fields(client: Any) -> None:
    resp = client.converse(
        modelId=HAIKU, messages=MSGS, additionalModelResponseFieldPaths=["/stop_sequence", "/id"]
    )
    fields = resp["additionalModelResponseFields"]
    assert fields["stop_sequence"] is None and fields["id"].startswith("msg_bdrk_")
    events = stream_events(
        client.converse_stream(
            modelId=HAIKU, messages=MSGS, additionalModelResponseFieldPaths=["/stop_sequence"]
        )
    )
    stop = next(e["messageStop"] for e in events if "messageStop" in e)
    assert stop["additionalModelResponseFields"] == {"stop_sequence": None}


# -- guardrails ---------------------------------------------------------------------------------


@pytest.fixture
def guardrail(emulator: Emulator) -> dict[str, Any]:
    control = make_client(emulator.url, "bedrock")
    name = f"support-{len(control.list_guardrails()['guardrails'])}"
    created = control.create_guardrail(
        name=name,
        blockedInputMessaging="Sorry, I can't help with refunds.",
        blockedOutputsMessaging="Sorry, I can't say that.",
        wordPolicyConfig={"wordsConfig": [{"text": "refund"}]},
        contentPolicyConfig={
            "filtersConfig": [
                {"type": "VIOLENCE", "inputStrength": "HIGH", "outputStrength": "HIGH"}
            ]
        },
    )
    got = control.get_guardrail(guardrailIdentifier=created["guardrailId"])
    assert got["name"] == name and got["status"] == "READY"
    assert got["wordPolicy"]["words"] == [{"text": "refund"}]
    return {"guardrailIdentifier": created["guardrailId"], "guardrailVersion": "DRAFT"}


def test_guardrail_blocks_a_matching_input(client: Any, guardrail: dict[str, Any]) -> None:
    msgs = [{"role": "user", "content": [{"text": "I want a refund for my order"}]}]
    resp = client.converse(
        modelId=HAIKU, messages=msgs, guardrailConfig={**guardrail, "trace": "enabled"}
    )
    assert resp["stopReason"] == "guardrail_intervened"
    assert resp["output"]["message"]["content"] == [{"text": "Sorry, I can't help with refunds."}]
    trace = resp["trace"]["guardrail"]
    found = trace["inputAssessment"][guardrail["guardrailIdentifier"]]
    assert found["wordPolicy"]["customWords"][0]["match"] == "refund"
    fine = client.converse(
        modelId=HAIKU, messages=MSGS, guardrailConfig={**guardrail, "trace": "enabled"}
    )
    assert fine["stopReason"] == "end_turn"
    assert (
        "invocationMetrics"
        in fine["trace"]["guardrail"]["outputAssessments"][guardrail["guardrailIdentifier"]][0]
    )
    quiet = client.converse(modelId=HAIKU, messages=MSGS, guardrailConfig=guardrail)
    assert "trace" not in quiet


def test_guardrail_intervention_rate(client: Any, emulator: Emulator) -> None:
    emulator.set_profile(HAIKU, guardrail_intervention_rate=1.0)
    config = {"guardrailIdentifier": "gr-unknown-offline", "guardrailVersion": "1"}
    resp = client.converse(modelId=HAIKU, messages=MSGS, guardrailConfig=config)
    assert resp["stopReason"] == "guardrail_intervened"
    assert (
        resp["output"]["message"]["content"][0]["text"]
        == "Sorry, the model cannot answer this question."
    )
    events = stream_events(
        client.converse_stream(modelId=HAIKU, messages=MSGS, guardrailConfig=config)
    )
    assert (
        next(e for e in events if "messageStop" in e)["messageStop"]["stopReason"]
        == "guardrail_intervened"
    )


def test_apply_guardrail(client: Any, guardrail: dict[str, Any]) -> None:
    blocked = client.apply_guardrail(
        **guardrail, source="INPUT", content=[{"text": {"text": "Give me a refund"}}]
    )
    assert blocked["action"] == "GUARDRAIL_INTERVENED"
    assert blocked["outputs"] == [{"text": "Sorry, I can't help with refunds."}]
    passed = client.apply_guardrail(
        **guardrail, source="OUTPUT", content=[{"text": {"text": "Your order shipped"}}]
    )
    assert passed["action"] == "NONE" and passed["outputs"] == []
    assert passed["usage"]["wordPolicyUnits"] == 1


def test_guardrail_control_plane_errors(emulator: Emulator) -> None:
    control = make_client(emulator.url, "bedrock")
    with pytest.raises(control.exceptions.ResourceNotFoundException):
        control.get_guardrail(guardrailIdentifier="doesnotexist")


# -- prompt caching, prefill, input tokens ------------------------------------------------------

SYSTEM = [
    {"text": "You are the support assistant of a shop. " * 80},
    {"cachePoint": {"type": "default"}},
]


def test_cache_point_writes_then_reads(client: Any, emulator: Emulator) -> None:
    emulator.set_profile(
        NOVA, ttft_ms=40, prefill_ms_per_1k_input_tokens=100, cached_prefill_factor=0.25
    )
    msgs = [{"role": "user", "content": [{"text": "Where is my parcel, order 1?"}]}]
    first = client.converse(modelId=NOVA, system=SYSTEM, messages=msgs)["usage"]
    assert first["cacheWriteInputTokens"] == 832 and first["cacheReadInputTokens"] == 0
    cold = emulator.requests[-1].ttft_ms
    msgs2 = [{"role": "user", "content": [{"text": "Where is my parcel, order 2?"}]}]
    events = stream_events(client.converse_stream(modelId=NOVA, system=SYSTEM, messages=msgs2))
    second = events[-1]["metadata"]["usage"]
    assert second["cacheReadInputTokens"] == 832 and second["cacheWriteInputTokens"] == 0
    assert second["totalTokens"] == second["inputTokens"] + second["outputTokens"] + 832
    warm = emulator.requests[-1].ttft_ms
    assert cold is not None and warm is not None and warm < cold / 2


def test_ttft_grows_with_input_length(client: Any, emulator: Emulator) -> None:
    emulator.set_profile(NOVA, ttft_ms=20, prefill_ms_per_1k_input_tokens=50)
    short = [{"role": "user", "content": [{"text": "hi there"}]}]
    long = [{"role": "user", "content": [{"text": "word " * 3000}]}]
    stream_events(client.converse_stream(modelId=NOVA, messages=short))
    quick = emulator.requests[-1].ttft_ms
    stream_events(client.converse_stream(modelId=NOVA, messages=long))
    slow = emulator.requests[-1].ttft_ms
    assert quick is not None and slow is not None
    assert slow == pytest.approx(20 + 50 * 3.9, abs=1) and quick < 21


def png(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", 13)
        + b"IHDR"
        + ihdr
        + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    )


def test_image_and_tool_spec_input_tokens(client: Any) -> None:
    image = {"image": {"format": "png", "source": {"bytes": png(750, 100)}}}
    resp = client.converse(modelId=HAIKU, messages=[{"role": "user", "content": [image]}])
    assert resp["usage"]["inputTokens"] == 100
    counted = client.count_tokens(
        modelId=HAIKU, input={"converse": {"messages": [{"role": "user", "content": [image]}]}}
    )
    assert counted["inputTokens"] == 100
    plain = client.converse(modelId=HAIKU, messages=MSGS)["usage"]["inputTokens"]
    with_tools = client.converse(modelId=HAIKU, messages=MSGS, toolConfig=FORCED)["usage"][
        "inputTokens"
    ]
    assert with_tools > plain + 20


def test_unknown_model_404_names_the_profiles_and_the_fix(client: Any) -> None:
    with pytest.raises(client.exceptions.ResourceNotFoundException) as info:
        client.converse(modelId="xai.grok-9", messages=MSGS)
    message = info.value.response["Error"]["Message"]
    assert message.startswith("The provided model identifier is invalid.")
    assert "Emulator(profiles=...)" in message and "set_profile('xai.grok-9'" in message


def test_chunked_streams_keep_the_profile_ttft(client: Any, emulator: Emulator) -> None:
    emulator.set_profile("test.fast", tokens_per_chunk=5, ttft_ms=30, ms_per_token=3)
    stream_events(client.converse_stream(modelId="test.fast", messages=MSGS))
    rec = emulator.requests[-1]
    assert rec.ttft_ms == pytest.approx(30)
    assert rec.ms_per_token == pytest.approx(3)


def test_native_anthropic_cache_control(client: Any) -> None:
    system = [
        {"type": "text", "text": "Shop policy. " * 300, "cache_control": {"type": "ephemeral"}}
    ]
    body = json.dumps(
        {
            "anthropic_version": "bedrock-2023-05-31",
            "max_tokens": 100,
            "system": system,
            "messages": [{"role": "user", "content": [{"type": "text", "text": "Return policy?"}]}],
        }
    )
    first = client.invoke_model(modelId=HAIKU, body=body)
    usage = json.loads(first["body"].read())["usage"]
    assert usage["cache_creation_input_tokens"] == 780 and usage["cache_read_input_tokens"] == 0
    headers = first["ResponseMetadata"]["HTTPHeaders"]
    assert headers["x-amzn-bedrock-cache-write-input-token-count"] == "780"
    chunks = invoke_chunks(client.invoke_model_with_response_stream(modelId=HAIKU, body=body))
    metrics = chunks[-1]["amazon-bedrock-invocationMetrics"]
    assert metrics["cacheReadInputTokenCount"] == 780
    assert chunks[0]["message"]["usage"]["cache_read_input_tokens"] == 780


def test_native_nova_reasoning(client: Any, emulator: Emulator) -> None:
    emulator.set_profile(NOVA, reasoning_tokens=10)
    body = {
        "schemaVersion": "messages-v1",
        "messages": MSGS,
        "reasoningConfig": {"type": "enabled", "maxReasoningEffort": "low"},
    }
    out = json.loads(client.invoke_model(modelId=NOVA, body=json.dumps(body))["body"].read())
    reasoning, text = out["output"]["message"]["content"]
    assert len(reasoning["reasoningContent"]["reasoningText"]["text"].split()) == 5  # low: half
    assert out["usage"]["outputTokens"] == 5 + len(text["text"].split())
    chunks = invoke_chunks(
        client.invoke_model_with_response_stream(modelId=NOVA, body=json.dumps(body))
    )
    deltas = [c["contentBlockDelta"] for c in chunks if "contentBlockDelta" in c]
    thinking = [d["delta"]["reasoningContent"] for d in deltas if d["contentBlockIndex"] == 0]
    assert thinking[-1].keys() == {"signature"} and all("text" in t for t in thinking[:-1])
    assert all("text" in d["delta"] for d in deltas if d["contentBlockIndex"] == 1)


def test_max_tokens_bounds_reasoning_and_answer_together(client: Any, emulator: Emulator) -> None:
    emulator.set_profile(HAIKU, reasoning_tokens=1000, answer_tokens=50)
    resp = client.converse(
        modelId=HAIKU,
        messages=MSGS,
        inferenceConfig={"maxTokens": 1030},
        additionalModelRequestFields={"thinking": {"type": "enabled", "budget_tokens": 1025}},
    )
    assert resp["stopReason"] == "max_tokens" and resp["usage"]["outputTokens"] == 1030
