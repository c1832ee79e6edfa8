"""Every model family's native stream format, as CallRecord reads it (injected clock).

The shapes are Bedrock's own (tool use, extended thinking, each family's chunks); the
emulator serves only text, so these are where reasoning and tool-use streams are timed.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from pytest_bedrock_latency.formats import FAMILIES, Answer, family_of, native_body
from pytest_bedrock_latency.measurement import CallRecord

METRICS = {
    "amazon-bedrock-invocationMetrics": {
        "inputTokenCount": 12,
        "outputTokenCount": 6,
        "invocationLatency": 330,
        "firstByteLatency": 200,
    }
}


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now

    def advance(self, ms: float) -> None:
        self.now += ms / 1000.0


def invoke_record() -> tuple[CallRecord, Clock]:
    clock = Clock()
    rec = CallRecord("m", "InvokeModelWithResponseStream", {}, clock=clock, wall_clock=lambda: 0.0)
    rec.attempt_sent()
    return rec, clock


def chunk(payload: dict[str, Any]) -> dict[str, Any]:
    return {"chunk": {"bytes": json.dumps(payload).encode()}}


def play(
    rec: CallRecord, clock: Clock, chunks: list[dict[str, Any]], *, first_ms: float, gap_ms: float
) -> None:
    """The first chunk at ``first_ms`` after the send, then one per ``gap_ms``."""
    for i, payload in enumerate(chunks):
        clock.advance(first_ms if i == 0 else gap_ms)
        rec.stream_event(chunk(payload))


def anthropic(*deltas: dict[str, Any], stop_metrics: bool = True) -> list[dict[str, Any]]:
    start = {
        "type": "message_start",
        "message": {"usage": {"input_tokens": 12, "output_tokens": 1}},
    }
    end: list[dict[str, Any]] = [
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn"},
            "usage": {"output_tokens": 6},
        },
        {"type": "message_stop", **(METRICS if stop_metrics else {})},
    ]
    body = [{"type": "content_block_delta", "index": 0, "delta": d} for d in deltas]
    return [start, *body, *end]


def test_thinking_then_text_is_timed_from_the_first_thinking_token() -> None:
    rec, clock = invoke_record()
    clock.advance(200)  # TTFT 200 ms: message_start and the first thinking delta arrive together
    rec.stream_event(chunk(anthropic()[0]))
    rec.stream_event(
        chunk(
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "thinking", "thinking": ""},
            }
        )
    )
    deltas = [
        {"type": "thinking_delta", "thinking": "Let me"},
        {"type": "thinking_delta", "thinking": " think"},
        {"type": "signature_delta", "signature": "EqQB"},
        {"type": "text_delta", "text": "Yes"},
        {"type": "text_delta", "text": " it"},
        {"type": "text_delta", "text": " is"},
    ]
    for i, d in enumerate(deltas):
        if i:
            clock.advance(20)
        rec.stream_event(chunk({"type": "content_block_delta", "index": 0, "delta": d}))
    for payload in anthropic()[-3:]:
        rec.stream_event(chunk(payload))
    g = rec.generation()
    assert rec.complete
    assert g.ttft_ms == pytest.approx(200.0)
    # six generated tokens over 100 ms after the first: 20 ms each
    assert g.output_tokens == 6
    assert g.ms_per_token == pytest.approx(100.0 / 5)
    assert g.text == "Yes it is"


def test_a_tool_use_stream_has_a_ttft() -> None:
    rec, clock = invoke_record()
    chunks = anthropic(
        {"type": "input_json_delta", "partial_json": '{"city": '},
        {"type": "input_json_delta", "partial_json": '"Paris"}'},
    )
    chunks.insert(
        1,
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "tool_use", "id": "t1", "name": "weather", "input": {}},
        },
    )
    play(rec, clock, chunks, first_ms=150, gap_ms=10)
    g = rec.generation()
    assert rec.complete and g.ttft_ms == pytest.approx(170.0)  # at the first input_json_delta


def test_complete_at_the_metrics_chunk_without_reading_to_the_end() -> None:
    """LangChain's ChatBedrock returns right after message_stop and closes the generator."""
    rec, clock = invoke_record()
    play(rec, clock, anthropic({"type": "text_delta", "text": "Hi"}), first_ms=200, gap_ms=20)
    rec.stream_abandoned()  # GeneratorExit: the consumer never asked for end-of-stream
    assert rec.complete
    assert rec.generation().output_tokens == 6
    assert rec.generation().server_latency_ms == 330


def test_a_family_stop_event_without_metrics_completes_on_close() -> None:
    rec, clock = invoke_record()
    play(
        rec,
        clock,
        [
            {
                "generation": "Hi",
                "prompt_token_count": 3,
                "generation_token_count": 1,
                "stop_reason": None,
            },
            {"generation": " there", "generation_token_count": 2, "stop_reason": None},
            {"generation": "", "generation_token_count": 2, "stop_reason": "stop"},
        ],
        first_ms=200,
        gap_ms=20,
    )
    assert rec.state == "running"  # a metrics chunk may still follow
    rec.stream_abandoned()
    assert rec.complete and rec.generation().output_tokens == 2


def test_abandoned_before_the_end_says_after_how_many_tokens() -> None:
    rec, clock = invoke_record()
    chunks = anthropic(*({"type": "text_delta", "text": f" w{i}"} for i in range(4)))
    play(rec, clock, chunks[:4], first_ms=200, gap_ms=20)  # message_start + 3 deltas
    rec.stream_abandoned()
    assert rec.state == "abandoned"
    assert "abandoned after 3 tokens" in rec.abandoned_line()


def test_converse_stream_complete_at_metadata() -> None:
    clock = Clock()
    rec = CallRecord("m", "ConverseStream", {}, clock=clock, wall_clock=lambda: 0.0)
    rec.attempt_sent()
    clock.advance(200)
    rec.stream_event({"contentBlockDelta": {"delta": {"reasoningContent": {"text": "hmm"}}}})
    clock.advance(20)
    rec.stream_event({"contentBlockDelta": {"delta": {"toolUse": {"input": "{}"}}}})
    rec.stream_event({"messageStop": {"stopReason": "tool_use"}})
    rec.stream_event({"metadata": {"usage": {"inputTokens": 4, "outputTokens": 2}}})
    assert rec.complete  # the consumer returned on metadata
    assert rec.generation().ttft_ms == pytest.approx(200.0)
    assert rec.generation().ms_per_token == pytest.approx(20.0)


FIRST_CONTENT = {
    "nova": [
        {"messageStart": {"role": "assistant"}},
        {
            "contentBlockDelta": {
                "delta": {"reasoningContent": {"text": "x"}},
                "contentBlockIndex": 0,
            }
        },
    ],
    "titan": [{"outputText": "Hi", "index": 0, "totalOutputTextTokenCount": 1}],
    "llama": [{"generation": "Hi", "prompt_token_count": 3, "generation_token_count": 1}],
    "mistral": [{"outputs": [{"text": "Hi", "stop_reason": None}]}],
    "openai": [
        {"choices": [{"index": 0, "delta": {"role": "assistant"}}]},
        {"choices": [{"index": 0, "delta": {"reasoning_content": "Think"}}]},
    ],
    "cohere": [
        {"is_finished": False, "event_type": "stream-start"},
        {"is_finished": False, "event_type": "text-generation", "text": "Hi"},
    ],
}


@pytest.mark.parametrize("family", sorted(FIRST_CONTENT))
def test_ttft_at_each_familys_first_content(family: str) -> None:
    rec, clock = invoke_record()
    play(rec, clock, [*FIRST_CONTENT[family], {**METRICS}], first_ms=100, gap_ms=50)
    assert family_of(FIRST_CONTENT[family][0]) is not None
    assert family_of(FIRST_CONTENT[family][0]).name == family  # type: ignore[union-attr]
    # the content payload is the last of FIRST_CONTENT's list
    expected = 100 + 50 * (len(FIRST_CONTENT[family]) - 1)
    assert rec.complete and rec.generation().ttft_ms == pytest.approx(expected)


@pytest.mark.parametrize(
    "payload",
    [
        {"choices": [{"index": 0, "text": "<think>", "stop_reason": None}]},  # DeepSeek
        {
            "choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": '{"a'}}]}}]
        },  # OpenAI gpt-oss tool call
        {
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"}}]
        },  # Mistral chat
        {"event_type": "tool-calls-chunk", "tool_call_delta": {"name": "f"}},  # Cohere tool
    ],
)
def test_other_content_shapes_count_as_the_first_token(payload: dict[str, Any]) -> None:
    rec, clock = invoke_record()
    play(rec, clock, [payload, {**METRICS}], first_ms=100, gap_ms=50)
    assert rec.generation().ttft_ms == pytest.approx(100.0)


def test_every_family_has_a_name_and_a_parser() -> None:
    assert sorted(f.name for f in FAMILIES) == [
        "anthropic",
        "cohere",
        "llama",
        "mistral",
        "nova",
        "openai",
        "titan",
    ]


# -- prompt caching ---------------------------------------------------------------------------
def test_cache_usage_of_a_converse_answer() -> None:
    clock = Clock()
    rec = CallRecord("m", "Converse", {}, clock=clock, wall_clock=lambda: 0.0)
    clock.advance(100)
    rec.headers_received(0)
    rec.converse_response(
        {
            "output": {"message": {"content": [{"text": "ok"}]}},
            "stopReason": "end_turn",
            "usage": {
                "inputTokens": 5,
                "outputTokens": 1,
                "totalTokens": 1006,
                "cacheReadInputTokens": 1000,
                "cacheWriteInputTokens": 0,
            },
        }
    )
    g = rec.generation()
    assert (g.input_tokens, g.cache_read_input_tokens, g.cache_write_input_tokens) == (5, 1000, 0)


def test_no_cache_usage_is_none() -> None:
    answer = Answer()
    native_body({"generation": "x", "prompt_token_count": 3, "generation_token_count": 1}, answer)
    assert answer.cache_read_input_tokens is None and answer.cache_write_input_tokens is None


def test_cache_usage_of_native_anthropic_and_invoke_metrics() -> None:
    answer = Answer()
    native_body(
        {
            "type": "message",
            "content": [{"type": "text", "text": "ok"}],
            "usage": {
                "input_tokens": 5,
                "output_tokens": 1,
                "cache_read_input_tokens": 900,
                "cache_creation_input_tokens": 100,
            },
        },
        answer,
    )
    assert (answer.cache_read_input_tokens, answer.cache_write_input_tokens) == (900, 100)
    rec, clock = invoke_record()
    metrics = {
        "amazon-bedrock-invocationMetrics": {
            **METRICS["amazon-bedrock-invocationMetrics"],
            "cacheReadInputTokenCount": 1000,
            "cacheWriteInputTokenCount": 24,
        }
    }
    play(rec, clock, [{"generation": "Hi"}, {"generation": "", **metrics}], first_ms=10, gap_ms=10)
    g = rec.generation()
    assert (g.cache_read_input_tokens, g.cache_write_input_tokens) == (1000, 24)
