"""Every runtime operation and every native family, through real boto3 clients."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pytest_bedrock_latency.emulator import Emulator

from .conftest import FAST, FAST_DONE_MS, MSGS

HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"


def stream_events(resp: Any) -> list[dict[str, Any]]:
    return list(resp["stream"])


def test_converse(emulator: Emulator, client: Any) -> None:
    resp = client.converse(modelId=HAIKU, messages=MSGS)
    text = resp["output"]["message"]["content"][0]["text"]
    assert resp["stopReason"] == "end_turn"
    assert resp["usage"]["outputTokens"] == 20 == len(text.split())
    assert resp["usage"]["inputTokens"] == 7  # 5 words * 1.3, rounded half up
    assert resp["usage"]["totalTokens"] == resp["usage"]["inputTokens"] + 20
    assert resp["metrics"]["latencyMs"] >= FAST_DONE_MS
    rec = emulator.requests[-1]
    assert (rec.operation, rec.status, rec.output_tokens, rec.attempt) == ("Converse", 200, 20, 1)
    assert rec.profile_key == HAIKU and rec.model_id == HAIKU
    assert len(rec.prompt_sha or "") == 16 and rec.ttft_ms == FAST["ttft_ms"]
    assert rec.ms_per_token == pytest.approx(FAST["ms_per_token"])


def test_converse_stream_event_order(emulator: Emulator, client: Any) -> None:
    events = stream_events(client.converse_stream(modelId="test.fast", messages=MSGS))
    kinds = [next(iter(e)) for e in events]
    assert kinds[0] == "messageStart" and events[0]["messageStart"]["role"] == "assistant"
    assert kinds[1:-3] == ["contentBlockDelta"] * 20
    assert kinds[-3:] == ["contentBlockStop", "messageStop", "metadata"]
    text = "".join(e["contentBlockDelta"]["delta"]["text"] for e in events[1:-3])
    assert len(text.split()) == 20 and not text.startswith(" ")
    meta = events[-1]["metadata"]
    assert meta["usage"]["outputTokens"] == 20
    assert meta["metrics"]["latencyMs"] >= FAST_DONE_MS
    assert events[-2]["messageStop"]["stopReason"] == "end_turn"
    assert emulator.requests[-1].operation == "ConverseStream"
    assert len(emulator.requests[-1].token_offsets_ms) == 20


def test_tokens_per_chunk(emulator: Emulator, client: Any) -> None:
    emulator.set_profile("test.fast", tokens_per_chunk=3)
    events = stream_events(client.converse_stream(modelId="test.fast", messages=MSGS))
    deltas = [e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e]
    assert [len(d.split()) for d in deltas] == [3] * 6 + [2]
    assert events[-1]["metadata"]["usage"]["outputTokens"] == 20


def test_count_tokens_matches_converse(client: Any) -> None:
    counted = client.count_tokens(modelId=HAIKU, input={"converse": {"messages": MSGS}})
    used = client.converse(modelId=HAIKU, messages=MSGS)["usage"]["inputTokens"]
    assert counted["inputTokens"] == used
    body = json.dumps(
        {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 10, "messages": MSGS}
    ).encode()
    via_invoke = client.count_tokens(modelId=HAIKU, input={"invokeModel": {"body": body}})
    assert via_invoke["inputTokens"] == used


NATIVE: dict[str, tuple[str, dict[str, Any]]] = {
    "anthropic": (
        HAIKU,
        {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 200, "messages": MSGS},
    ),
    "nova": (
        "amazon.nova-lite-v1:0",
        {"schemaVersion": "messages-v1", "messages": MSGS, "inferenceConfig": {"maxTokens": 200}},
    ),
    "titan": (
        "amazon.titan-text-express-v1",
        {
            "inputText": "Summarise the release notes please",
            "textGenerationConfig": {"maxTokenCount": 200},
        },
    ),
    "llama": (
        "meta.llama3-1-8b-instruct-v1:0",
        {"prompt": "Summarise the release notes please", "max_gen_len": 200},
    ),
    "mistral": (
        "mistral.mistral-7b-instruct-v0:2",
        {"prompt": "<s>[INST] Summarise the release notes please [/INST]", "max_tokens": 200},
    ),
}
LIMIT_FIELD = {
    "anthropic": ("max_tokens",),
    "nova": ("inferenceConfig", "maxTokens"),
    "titan": ("textGenerationConfig", "maxTokenCount"),
    "llama": ("max_gen_len",),
    "mistral": ("max_tokens",),
}


def parse_native(family: str, body: dict[str, Any]) -> tuple[str, int | None, str]:
    """(text, output tokens from the body or None, native stop reason)."""
    if family == "anthropic":
        return body["content"][0]["text"], body["usage"]["output_tokens"], body["stop_reason"]
    if family == "nova":
        return (
            body["output"]["message"]["content"][0]["text"],
            body["usage"]["outputTokens"],
            body["stopReason"],
        )
    if family == "titan":
        r = body["results"][0]
        return r["outputText"], r["tokenCount"], r["completionReason"]
    if family == "llama":
        return body["generation"], body["generation_token_count"], body["stop_reason"]
    return body["outputs"][0]["text"], None, body["outputs"][0]["stop_reason"]


def parse_native_stream(
    family: str, chunks: list[dict[str, Any]]
) -> tuple[str, str, dict[str, Any]]:
    """(text, native stop reason, invocation metrics) from decoded stream chunks."""
    text, stop = "", ""
    for c in chunks:
        if family == "anthropic":
            if c["type"] == "content_block_delta":
                text += c["delta"]["text"]
            if c["type"] == "message_delta":
                stop = c["delta"]["stop_reason"]
        elif family == "nova":
            text += c.get("contentBlockDelta", {}).get("delta", {}).get("text", "")
            stop = c.get("messageStop", {}).get("stopReason", stop)
        elif family == "titan":
            text += c["outputText"]
            stop = c["completionReason"] or stop
        elif family == "llama":
            text += c["generation"]
            stop = c["stop_reason"] or stop
        else:
            text += c["outputs"][0]["text"]
            stop = c["outputs"][0]["stop_reason"] or stop
    return text, stop, chunks[-1]["amazon-bedrock-invocationMetrics"]


END = {
    "anthropic": "end_turn",
    "nova": "end_turn",
    "titan": "FINISH",
    "llama": "stop",
    "mistral": "stop",
}
LENGTH = {
    "anthropic": "max_tokens",
    "nova": "max_tokens",
    "titan": "LENGTH",
    "llama": "length",
    "mistral": "length",
}


@pytest.mark.parametrize("family", sorted(NATIVE))
def test_invoke_model_native(emulator: Emulator, client: Any, family: str) -> None:
    model, body = NATIVE[family]
    resp = client.invoke_model(
        modelId=model,
        body=json.dumps(body),
        contentType="application/json",
        accept="application/json",
    )
    assert resp["contentType"] == "application/json"
    text, tokens, stop = parse_native(family, json.loads(resp["body"].read()))
    headers = resp["ResponseMetadata"]["HTTPHeaders"]
    assert stop == END[family]
    assert int(headers["x-amzn-bedrock-output-token-count"]) == 20 == len(text.split())
    assert tokens in (None, 20)
    assert int(headers["x-amzn-bedrock-input-token-count"]) == emulator.requests[-1].input_tokens
    assert int(headers["x-amzn-bedrock-invocation-latency"]) >= FAST_DONE_MS


@pytest.mark.parametrize("family", sorted(NATIVE))
def test_invoke_stream_native(emulator: Emulator, client: Any, family: str) -> None:
    model, body = NATIVE[family]
    resp = client.invoke_model_with_response_stream(modelId=model, body=json.dumps(body))
    assert resp["contentType"] == "application/json"
    chunks = [json.loads(e["chunk"]["bytes"]) for e in resp["body"]]
    text, stop, metrics = parse_native_stream(family, chunks)
    assert stop == END[family]
    assert len(text.split()) == 20 and metrics["outputTokenCount"] == 20
    assert metrics["inputTokenCount"] == emulator.requests[-1].input_tokens
    assert metrics["invocationLatency"] >= metrics["firstByteLatency"] >= FAST["ttft_ms"] - 1


@pytest.mark.parametrize("family", sorted(NATIVE))
@pytest.mark.parametrize("stream", [False, True], ids=["invoke", "stream"])
def test_native_max_tokens(emulator: Emulator, client: Any, family: str, stream: bool) -> None:
    model, body = NATIVE[family]
    body = json.loads(json.dumps(body))
    *path, leaf = LIMIT_FIELD[family]
    target = body
    for p in path:
        target = target[p]
    target[leaf] = 7
    if stream:
        resp = client.invoke_model_with_response_stream(modelId=model, body=json.dumps(body))
        text, stop, metrics = parse_native_stream(
            family, [json.loads(e["chunk"]["bytes"]) for e in resp["body"]]
        )
        assert metrics["outputTokenCount"] == 7
    else:
        resp = client.invoke_model(modelId=model, body=json.dumps(body))
        text, _, stop = parse_native(family, json.loads(resp["body"].read()))
    assert stop == LENGTH[family] and len(text.split()) == 7
    assert emulator.requests[-1].stop_reason == "max_tokens"


def test_converse_max_tokens(client: Any) -> None:
    resp = client.converse(modelId="test.fast", messages=MSGS, inferenceConfig={"maxTokens": 5})
    assert resp["stopReason"] == "max_tokens" and resp["usage"]["outputTokens"] == 5
    assert len(resp["output"]["message"]["content"][0]["text"].split()) == 5


def test_stop_sequences(emulator: Emulator, client: Any) -> None:
    # Sentences end with "." and are at most 14 words long, so "." always hits in 20 words.
    resp = client.converse(
        modelId="test.fast", messages=MSGS, inferenceConfig={"stopSequences": ["."]}
    )
    text = resp["output"]["message"]["content"][0]["text"]
    assert resp["stopReason"] == "stop_sequence"
    assert "." not in text and 5 <= resp["usage"]["outputTokens"] == len(text.split()) <= 14
    events = list(
        client.converse_stream(
            modelId="test.fast", messages=MSGS, inferenceConfig={"stopSequences": ["."]}
        )["stream"]
    )
    streamed = "".join(
        e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e
    )
    assert "." not in streamed and events[-2]["messageStop"]["stopReason"] == "stop_sequence"
    body = {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 100,
        "messages": MSGS,
        "stop_sequences": ["."],
    }
    native = json.loads(client.invoke_model(modelId=HAIKU, body=json.dumps(body))["body"].read())
    assert native["stop_reason"] == "stop_sequence" and native["stop_sequence"] == "."


def test_optimized_latency_is_faster_and_echoed(emulator: Emulator, client: Any) -> None:
    model = "us.anthropic.claude-3-5-haiku-20241022-v1:0"
    std = client.converse(modelId=model, messages=MSGS)
    opt = client.converse(
        modelId=model,
        messages=MSGS,
        performanceConfig={"latency": "optimized"},
        serviceTier={"type": "priority"},
    )
    assert opt["performanceConfig"] == {"latency": "optimized"}
    assert opt["serviceTier"] == {"type": "priority"}
    assert "performanceConfig" not in std
    assert opt["metrics"]["latencyMs"] < 0.7 * std["metrics"]["latencyMs"]
    rec_std, rec_opt = emulator.requests[-2:]
    assert rec_opt.ttft_ms == pytest.approx(rec_std.ttft_ms / 2)  # type: ignore[operator]
    assert rec_opt.performance_latency == "optimized" and rec_opt.service_tier == "priority"
    body = json.dumps(
        {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 50, "messages": MSGS}
    )
    inv = client.invoke_model(
        modelId=model, body=body, performanceConfigLatency="optimized", serviceTier="flex"
    )
    assert inv["performanceConfigLatency"] == "optimized" and inv["serviceTier"] == "flex"
    assert emulator.requests[-1].ttft_ms == pytest.approx(60.0)
    events = list(
        client.converse_stream(
            modelId=model, messages=MSGS, performanceConfig={"latency": "optimized"}
        )["stream"]
    )
    assert events[-1]["metadata"]["performanceConfig"] == {"latency": "optimized"}


@pytest.mark.parametrize(
    ("model_id", "key"),
    [
        (
            "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0",
            HAIKU,
        ),
        (
            "arn:aws:bedrock:us-east-1:123456789012:custom-model/abc/xyz123",
            "arn:aws:bedrock:*:custom-model/*",
        ),
    ],
)
def test_arn_model_ids(emulator: Emulator, client: Any, model_id: str, key: str) -> None:
    events = list(client.converse_stream(modelId=model_id, messages=MSGS)["stream"])
    assert "metadata" in events[-1]
    rec = emulator.requests[-1]
    assert rec.model_id == model_id and rec.profile_key == key


def test_inference_profile_arn(emulator: Emulator, client: Any) -> None:
    arn = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-sonnet"
    emulator.set_profile(arn, ttft_ms=5, ms_per_token=1, answer_tokens=4)
    body = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 10, "messages": MSGS}
    out = json.loads(client.invoke_model(modelId=arn, body=json.dumps(body))["body"].read())
    # The family comes from the id inside the ARN.
    assert out["type"] == "message" and out["usage"]["output_tokens"] == 4
    assert emulator.requests[-1].model_id == arn


def test_unknown_model_is_resource_not_found(client: Any) -> None:
    with pytest.raises(client.exceptions.ResourceNotFoundException) as info:
        client.converse(modelId="no.such-model-v9", messages=MSGS)
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert "model identifier is invalid" in str(info.value)


def test_set_profile_on_unknown_id(emulator: Emulator, client: Any) -> None:
    emulator.set_profile("brand.new-model", answer_tokens=3, family="llama")
    out = client.invoke_model(
        modelId="brand.new-model", body=json.dumps({"prompt": "hi there", "max_gen_len": 9})
    )
    assert json.loads(out["body"].read())["generation_token_count"] == 3
    emulator.reset_overrides()
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.converse(modelId="brand.new-model", messages=MSGS)


@pytest.mark.parametrize(
    ("model", "body"),
    [
        (HAIKU, {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 10}),
        (HAIKU, {"anthropic_version": "bedrock-2023-05-31", "messages": MSGS}),
        ("amazon.titan-text-express-v1", {"textGenerationConfig": {}}),
        ("meta.llama3-1-8b-instruct-v1:0", "not json"),
    ],
)
def test_malformed_bodies_are_validation_errors(
    emulator: Emulator, client: Any, model: str, body: Any
) -> None:
    raw = body if isinstance(body, str) else json.dumps(body)
    with pytest.raises(client.exceptions.ValidationException) as info:
        client.invoke_model(modelId=model, body=raw)
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert "Malformed input request" in str(info.value)
    assert emulator.requests[-1].error_code == "ValidationException"


def test_keep_alive_reuses_one_connection(emulator: Emulator, client: Any) -> None:
    ports = []
    for _ in range(3):
        resp = client.converse(modelId="test.fast", messages=MSGS, inferenceConfig={"maxTokens": 2})
        ports.append(resp["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"])
        list(
            client.converse_stream(
                modelId="test.fast", messages=MSGS, inferenceConfig={"maxTokens": 2}
            )["stream"]
        )
    pool = client._endpoint.http_session._manager.connection_from_url(emulator.url)
    assert pool.num_connections == 1
    assert len(set(ports)) == 3
