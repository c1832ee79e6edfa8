"""Reasoning requests and the guardrail store (pure)."""

from __future__ import annotations

import json

import pytest

from pytest_bedrock_latency.emulator.guardrails import (
    DEFAULT_BLOCKED_MESSAGE,
    GuardrailError,
    GuardrailStore,
    apply_response,
    triggered,
)
from pytest_bedrock_latency.emulator.reasoning import (
    ReasoningError,
    always_reasons,
    reasoning_request,
    reasoning_token_count,
)

CLAUDE = "anthropic.claude-sonnet-4-6"


def test_reasoning_is_requested_or_implied() -> None:
    assert reasoning_request(CLAUDE, None, None) is None
    thinking = {"thinking": {"type": "enabled", "budget_tokens": 2048}}
    asked = reasoning_request(CLAUDE, thinking, 4096)
    assert asked is not None and asked.budget_tokens == 2048
    nova = reasoning_request(
        "amazon.nova-2-lite-v1:0",
        {"reasoningConfig": {"type": "enabled", "maxReasoningEffort": "high"}},
        None,
    )
    assert nova is not None and nova.effort == 2.0
    assert always_reasons("deepseek.r1-v1:0") and always_reasons("us.deepseek.r1-v1:0")
    assert always_reasons("openai.gpt-oss-20b-1:0") and not always_reasons(CLAUDE)
    assert reasoning_request("openai.gpt-oss-20b-1:0", None, None) is not None


@pytest.mark.parametrize(
    ("fields", "max_tokens", "message"),
    [
        (
            {"thinking": {"type": "enabled", "budget_tokens": 100}},
            None,
            "greater than or equal to 1024",
        ),
        ({"thinking": {"type": "enabled", "budget_tokens": 4000}}, 2000, "max_tokens"),
        ({"thinking": {"type": "enabled"}}, None, "Field required"),
        ({"reasoningConfig": {"type": "enabled", "maxReasoningEffort": "max"}}, None, "one of"),
    ],
)
def test_bad_reasoning_requests(
    fields: dict[str, object], max_tokens: int | None, message: str
) -> None:
    with pytest.raises(ReasoningError, match=message):
        reasoning_request(CLAUDE, fields, max_tokens)


def test_reasoning_tokens_follow_effort_and_budget() -> None:
    low = reasoning_request("x", {"reasoning_effort": "low"}, None)
    assert low is not None and reasoning_token_count(low, 200, 1.0) == 100
    capped = reasoning_request(
        CLAUDE, {"thinking": {"type": "enabled", "budget_tokens": 1024}}, None
    )
    assert capped is not None and reasoning_token_count(capped, 5000, 1.0) == 1024


def body(doc: dict[str, object]) -> bytes:
    return json.dumps(doc).encode()


def test_guardrail_store_round_trip() -> None:
    store = GuardrailStore()
    created = store.handle(
        "POST",
        [],
        body(
            {
                "name": "no-refunds",
                "blockedInputMessaging": "I can't discuss that.",
                "blockedOutputsMessaging": "I can't say that.",
                "wordPolicyConfig": {"wordsConfig": [{"text": "refund"}]},
            }
        ),
    )
    assert created is not None and created["version"] == "DRAFT"
    gid = created["guardrailId"]
    got = store.handle("GET", [gid], b"")
    assert got is not None and got["wordPolicy"] == {"words": [{"text": "refund"}]}
    assert store.handle("GET", [created["guardrailArn"]], b"") == got
    assert store.handle("POST", [gid], body({}))["version"] == "1"  # type: ignore[index]
    assert [g["id"] for g in store.handle("GET", [], b"")["guardrails"]] == [gid]  # type: ignore[index]
    guard = store.lookup(gid)
    assert triggered(guard, "I want a REFUND now") and not triggered(guard, "hello")
    blocked = apply_response(guard, "INPUT", "refund please", True, 3)
    assert blocked["action"] == "GUARDRAIL_INTERVENED"
    assert blocked["outputs"] == [{"text": "I can't discuss that."}]
    assert blocked["assessments"][0]["wordPolicy"]["customWords"][0]["match"] == "refund"
    assert apply_response(None, "OUTPUT", "fine", False, 1)["action"] == "NONE"
    assert apply_response(None, "OUTPUT", "x", True, 1)["outputs"] == [
        {"text": DEFAULT_BLOCKED_MESSAGE}
    ]
    with pytest.raises(GuardrailError) as info:
        store.handle(
            "POST",
            [],
            body(
                {"name": "no-refunds", "blockedInputMessaging": "a", "blockedOutputsMessaging": "b"}
            ),
        )
    assert info.value.code == "ConflictException"
    store.handle("DELETE", [gid], b"")
    with pytest.raises(GuardrailError) as missing:
        store.handle("GET", [gid], b"")
    assert missing.value.code == "ResourceNotFoundException"
