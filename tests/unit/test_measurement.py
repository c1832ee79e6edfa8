"""Unit tests of CallRecord and Generation with an injected clock: no network, no sleeps."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from pytest_bedrock_latency.measurement import (
    CallRecord,
    Generation,
    ms_per_token,
    tokens_per_second,
)

WALL = 1_700_000_000.0


class FakeClock:
    """A monotonic clock the test moves by hand, in milliseconds."""

    def __init__(self) -> None:
        self.now = 1000.0  # seconds; any origin works, only differences count

    def __call__(self) -> float:
        return self.now

    def advance(self, ms: float) -> None:
        self.now += ms / 1000.0


def record(
    operation: str = "ConverseStream", clock: FakeClock | None = None, model: str = "support-v3"
) -> tuple[CallRecord, FakeClock]:
    clock = clock or FakeClock()
    return CallRecord(
        model, operation, {"modelId": model}, clock=clock, wall_clock=lambda: WALL
    ), clock


def delta(text: str) -> dict[str, Any]:
    return {"contentBlockDelta": {"delta": {"text": text}, "contentBlockIndex": 0}}


def metadata(output_tokens: int, input_tokens: int = 7, latency_ms: int = 120) -> dict[str, Any]:
    return {
        "metadata": {
            "usage": {
                "inputTokens": input_tokens,
                "outputTokens": output_tokens,
                "totalTokens": input_tokens + output_tokens,
            },
            "metrics": {"latencyMs": latency_ms},
        }
    }


def chunk(payload: dict[str, Any]) -> dict[str, Any]:
    return {"chunk": {"bytes": json.dumps(payload).encode()}}


def converse_stream(
    rec: CallRecord,
    clock: FakeClock,
    words: list[str],
    *,
    gap_ms: float = 10.0,
    output_tokens: int | None = None,
) -> None:
    """messageStart 60 ms after the send, first delta at 100 ms, one delta per ``gap_ms``."""
    clock.advance(50)
    rec.headers_received(0)
    clock.advance(10)
    rec.stream_event({"messageStart": {"role": "assistant"}})
    clock.advance(40)
    for i, word in enumerate(words):
        if i:
            clock.advance(gap_ms)
        rec.stream_event(delta(("" if i == 0 else " ") + word))
    clock.advance(5)
    rec.stream_event({"contentBlockStop": {"contentBlockIndex": 0}})
    rec.stream_event({"messageStop": {"stopReason": "end_turn"}})
    clock.advance(5)
    rec.stream_event(metadata(len(words) if output_tokens is None else output_tokens))
    rec.stream_finished()


# -- the derived figures ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("total", "ttft", "tokens", "expected"),
    [
        (135.0, 100.0, 5, 8.75),
        (100.0, 20.0, 2, 80.0),
        (100.0, 20.0, 1, None),
        (100.0, 20.0, 0, None),
        (100.0, 20.0, None, None),
        (100.0, None, 10, None),
    ],
)
def test_ms_per_token_is_time_after_first_token_over_remaining_tokens(
    total: float, ttft: float | None, tokens: int | None, expected: float | None
) -> None:
    assert ms_per_token(total, ttft, tokens) == expected


def test_tokens_per_second_follows_the_bedrock_documentation() -> None:
    assert tokens_per_second(135.0, 100.0, 5) == pytest.approx(5 / 0.035)
    assert tokens_per_second(100.0, 20.0, 1) == pytest.approx(1 / 0.080)
    assert tokens_per_second(100.0, None, 5) is None
    assert tokens_per_second(100.0, 20.0, 0) is None
    assert tokens_per_second(100.0, 100.0, 5) is None  # no time after the first token


# -- ConverseStream -------------------------------------------------------------------------
def test_stream_ttft_is_first_content_delta_not_message_start_and_total_is_last_event() -> None:
    rec, clock = record()
    clock.advance(3)  # signing before the send is not part of any figure
    rec.attempt_sent()
    converse_stream(rec, clock, ["one", "two", "three", "four", "five"])
    assert rec.complete and rec.state == "complete"
    g = rec.generation()
    assert g.ttft_ms == pytest.approx(100.0)
    assert g.total_ms == pytest.approx(150.0)  # 100 + 4 gaps of 10 + 5 + 5
    assert g.ms_per_token == pytest.approx((150.0 - 100.0) / 4)
    assert g.tokens_per_second == pytest.approx(5 / 0.050)
    assert g.text == "one two three four five"
    assert (g.words, g.chars) == (5, len("one two three four five"))
    assert (g.input_tokens, g.output_tokens, g.stop_reason) == (7, 5, "end_turn")
    assert g.server_latency_ms == 120.0
    assert (g.attempts, g.retry_wait_ms) == (1, 0.0)
    assert g.started_at == WALL
    assert (g.model_id, g.operation) == ("support-v3", "ConverseStream")


def test_token_counts_come_from_usage_not_from_counting_chunks() -> None:
    rec, clock = record()
    rec.attempt_sent()
    converse_stream(rec, clock, ["two words", "then three more"], output_tokens=12)
    g = rec.generation()
    assert g.output_tokens == 12
    assert g.words == 5
    assert g.ms_per_token == pytest.approx((g.total_ms - g.ttft_ms) / 11)


def test_an_empty_first_delta_is_not_the_first_token() -> None:
    rec, clock = record()
    rec.attempt_sent()
    clock.advance(30)
    rec.stream_event(delta(""))
    clock.advance(20)
    rec.stream_event(delta("Hello"))
    clock.advance(10)
    rec.stream_event(delta(" world"))
    rec.stream_event(metadata(2))
    rec.stream_finished()
    g = rec.generation()
    assert g.ttft_ms == pytest.approx(50.0)
    assert g.ms_per_token == pytest.approx(10.0)


def test_a_tool_use_delta_counts_as_content() -> None:
    rec, clock = record()
    rec.attempt_sent()
    clock.advance(40)
    rec.stream_event(
        {"contentBlockDelta": {"delta": {"toolUse": {"input": '{"city"'}}, "contentBlockIndex": 0}}
    )
    clock.advance(10)
    rec.stream_event(metadata(3))
    rec.stream_finished()
    assert rec.generation().ttft_ms == pytest.approx(40.0)


def test_one_token_answer_has_no_ms_per_token() -> None:
    rec, clock = record()
    rec.attempt_sent()
    converse_stream(rec, clock, ["Yes"])
    g = rec.generation()
    assert g.output_tokens == 1
    assert g.ttft_ms == pytest.approx(100.0)
    assert g.ms_per_token is None
    assert g.tokens_per_second == pytest.approx(1 / 0.010)


def test_retry_wait_is_excluded_from_ttft_and_reported() -> None:
    rec, clock = record()
    rec.attempt_sent()  # first attempt: throttled
    clock.advance(250)  # its round trip and the backoff
    rec.attempt_sent()  # the attempt that counts
    converse_stream(rec, clock, ["a", "b", "c"])
    g = rec.generation()
    assert g.attempts == 2
    assert g.retry_wait_ms == pytest.approx(250.0)
    assert g.ttft_ms == pytest.approx(100.0)
    assert g.total_ms == pytest.approx(100.0 + 2 * 10 + 10)


def test_attempts_come_from_retry_attempts_when_the_hook_missed_them() -> None:
    rec, clock = record("Converse")
    rec.attempt_sent()
    clock.advance(30)
    rec.headers_received(2)
    rec.converse_response(
        {
            "output": {"message": {"content": [{"text": "ok"}]}},
            "stopReason": "end_turn",
            "usage": {"inputTokens": 1, "outputTokens": 1},
            "metrics": {"latencyMs": 25},
        }
    )
    assert rec.generation().attempts == 3


def test_a_call_that_never_reported_an_attempt_counts_one() -> None:
    rec, clock = record("Converse")
    clock.advance(30)
    rec.headers_received(None)
    rec.converse_response({"output": {"message": {"content": []}}, "stopReason": "end_turn"})
    g = rec.generation()
    assert g.attempts == 1
    assert g.total_ms == pytest.approx(30.0)  # from the record's creation


def test_abandoned_stream_is_not_complete_until_resumed_and_finished() -> None:
    rec, clock = record()
    rec.attempt_sent()
    clock.advance(100)
    rec.stream_event(delta("Hello"))
    rec.stream_abandoned()
    assert rec.state == "abandoned" and not rec.complete
    clock.advance(10)
    rec.stream_event(delta(" again"))  # a second loop over the EventStream resumes it
    assert rec.state == "running"
    clock.advance(10)
    rec.stream_event(metadata(2))
    rec.stream_finished()
    assert rec.complete
    g = rec.generation()
    assert g.text == "Hello again"
    assert g.ttft_ms == pytest.approx(100.0)
    assert g.total_ms == pytest.approx(120.0)


def test_abandon_after_completion_changes_nothing() -> None:
    rec, clock = record()
    rec.attempt_sent()
    converse_stream(rec, clock, ["a", "b"])
    rec.stream_abandoned()
    assert rec.state == "complete"


def test_error_state_keeps_code_message_and_attempts() -> None:
    rec, clock = record()
    rec.attempt_sent()
    clock.advance(100)
    rec.stream_event(delta("partial"))
    rec.failed("modelStreamErrorException", "The stream broke", retry_attempts=2)
    assert rec.state == "error" and not rec.complete
    assert (rec.error_code, rec.error_message) == ("modelStreamErrorException", "The stream broke")
    assert rec.attempts == 3
    assert rec.generation().text == "partial"  # what arrived before is kept


# -- Converse (not streamed) ------------------------------------------------------------------
def test_converse_response_has_total_but_no_ttft() -> None:
    rec, clock = record("Converse")
    rec.attempt_sent()
    clock.advance(480)
    rec.headers_received(0)
    rec.converse_response(
        {
            "output": {
                "message": {
                    "role": "assistant",
                    "content": [{"text": "Reset it "}, {"text": "in settings."}],
                }
            },
            "stopReason": "max_tokens",
            "usage": {"inputTokens": 11, "outputTokens": 40, "totalTokens": 51},
            "metrics": {"latencyMs": 470},
        }
    )
    g = rec.generation()
    assert rec.complete
    assert g.total_ms == pytest.approx(480.0)
    assert (g.ttft_ms, g.ms_per_token, g.tokens_per_second) == (None, None, None)
    assert (g.text, g.stop_reason, g.input_tokens, g.output_tokens) == (
        "Reset it in settings.",
        "max_tokens",
        11,
        40,
    )
    assert g.server_latency_ms == 470.0


# -- InvokeModel (not streamed) ---------------------------------------------------------------
def invoke(
    body: dict[str, Any], headers: dict[str, str] | None = None, *, split: bool = False
) -> Generation:
    rec, clock = record("InvokeModel")
    rec.attempt_sent()
    clock.advance(300)
    rec.headers_received(0)
    rec.invoke_response(headers or {})
    raw = json.dumps(body).encode()
    if split:
        rec.body_read(raw[:10], finished=False)
        rec.body_read(raw[10:], finished=False)
        rec.body_read(b"", finished=True)
    else:
        rec.body_read(raw, finished=True)
    assert rec.complete
    return rec.generation()


HEADERS = {
    "x-amzn-bedrock-input-token-count": "13",
    "x-amzn-bedrock-output-token-count": "42",
    "x-amzn-bedrock-invocation-latency": "290",
}


def test_invoke_headers_are_bedrock_usage_and_win_over_the_body() -> None:
    body = {
        "inputTextTokenCount": 99,
        "results": [
            {"tokenCount": 99, "outputText": "Parcel on its way.", "completionReason": "FINISH"}
        ],
    }
    g = invoke(body, HEADERS)
    assert (g.input_tokens, g.output_tokens, g.server_latency_ms) == (13, 42, 290.0)
    assert (g.text, g.stop_reason) == ("Parcel on its way.", "FINISH")
    assert g.total_ms == pytest.approx(300.0)
    assert g.ttft_ms is None and g.ms_per_token is None


def test_invoke_body_read_in_pieces_is_parsed_once_finished() -> None:
    body = {
        "generation": "Hello there friend",
        "prompt_token_count": 4,
        "generation_token_count": 3,
        "stop_reason": "stop",
    }
    g = invoke(body, split=True)
    assert (g.text, g.input_tokens, g.output_tokens, g.stop_reason) == (
        "Hello there friend",
        4,
        3,
        "stop",
    )


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "content": [{"type": "text", "text": "Claude says hi"}],
                "stop_reason": "end_turn",
                "usage": {"input_tokens": 8, "output_tokens": 4},
            },
            ("Claude says hi", 8, 4, "end_turn"),
            id="anthropic",
        ),
        pytest.param(
            {
                "output": {"message": {"role": "assistant", "content": [{"text": "Nova says hi"}]}},
                "stopReason": "end_turn",
                "usage": {"inputTokens": 5, "outputTokens": 3, "totalTokens": 8},
            },
            ("Nova says hi", 5, 3, "end_turn"),
            id="nova",
        ),
        pytest.param(
            {
                "inputTextTokenCount": 6,
                "results": [
                    {"tokenCount": 3, "outputText": "Titan says hi", "completionReason": "LENGTH"}
                ],
            },
            ("Titan says hi", 6, 3, "LENGTH"),
            id="titan",
        ),
        pytest.param(
            {
                "generation": "Llama says hi",
                "prompt_token_count": 9,
                "generation_token_count": 3,
                "stop_reason": "length",
            },
            ("Llama says hi", 9, 3, "length"),
            id="llama",
        ),
        pytest.param(
            {"outputs": [{"text": "Mistral says hi", "stop_reason": "stop"}]},
            ("Mistral says hi", None, None, "stop"),
            id="mistral-completion",
        ),
        pytest.param(
            {
                "choices": [
                    {
                        "message": {"role": "assistant", "content": "Chat says hi"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 10, "completion_tokens": 3},
            },
            ("Chat says hi", 10, 3, "stop"),
            id="choices",
        ),
    ],
)
def test_native_invoke_bodies_per_family(body: dict[str, Any], expected: tuple[Any, ...]) -> None:
    g = invoke(body)
    assert (g.text, g.input_tokens, g.output_tokens, g.stop_reason) == expected


def test_invoke_body_that_is_not_json_leaves_text_empty_but_keeps_header_counts() -> None:
    rec, clock = record("InvokeModel")
    rec.attempt_sent()
    clock.advance(10)
    rec.headers_received(0)
    rec.invoke_response(HEADERS)
    rec.body_read(b"not json", finished=True)
    g = rec.generation()
    assert (g.text, g.output_tokens) == ("", 42)


# -- InvokeModelWithResponseStream --------------------------------------------------------------
def stream_chunks(chunks: list[dict[str, Any]], *, first_text_index: int) -> Generation:
    """Feed chunks 10 ms apart after a 50 ms wait; returns the generation."""
    rec, clock = record("InvokeModelWithResponseStream")
    rec.attempt_sent()
    clock.advance(40)
    rec.headers_received(0)
    for i, payload in enumerate(chunks):
        clock.advance(10)
        rec.stream_event(chunk(payload))
        if i == first_text_index:
            first_at = clock.now
    rec.stream_finished()
    g = rec.generation()
    assert g.ttft_ms == pytest.approx(40.0 + 10.0 * (first_text_index + 1))
    assert g.total_ms == pytest.approx(40.0 + 10.0 * len(chunks))
    assert first_at  # the index named a real chunk
    return g


METRICS = {
    "inputTokenCount": 21,
    "outputTokenCount": 3,
    "invocationLatency": 77,
    "firstByteLatency": 30,
}


def test_anthropic_stream_ttft_at_first_text_delta() -> None:
    g = stream_chunks(
        [
            {
                "type": "message_start",
                "message": {
                    "type": "message",
                    "role": "assistant",
                    "content": [],
                    "usage": {"input_tokens": 21, "output_tokens": 1},
                },
            },
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "Hi"},
            },
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": " there"},
            },
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": " you"},
            },
            {"type": "content_block_stop", "index": 0},
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn"},
                "usage": {"output_tokens": 3},
            },
            {"type": "message_stop", "amazon-bedrock-invocationMetrics": METRICS},
        ],
        first_text_index=2,
    )
    assert (g.text, g.input_tokens, g.output_tokens, g.stop_reason, g.server_latency_ms) == (
        "Hi there you",
        21,
        3,
        "end_turn",
        77.0,
    )
    assert g.ms_per_token == pytest.approx((g.total_ms - g.ttft_ms) / 2)


def test_nova_stream_chunks_are_converse_shaped() -> None:
    g = stream_chunks(
        [
            {"messageStart": {"role": "assistant"}},
            {"contentBlockDelta": {"delta": {"text": "Nova"}, "contentBlockIndex": 0}},
            {"contentBlockDelta": {"delta": {"text": " streams"}, "contentBlockIndex": 0}},
            {"contentBlockStop": {"contentBlockIndex": 0}},
            {"messageStop": {"stopReason": "end_turn"}},
            {
                "metadata": {"usage": {"inputTokens": 4, "outputTokens": 2}},
                "amazon-bedrock-invocationMetrics": {
                    **METRICS,
                    "inputTokenCount": 4,
                    "outputTokenCount": 2,
                },
            },
        ],
        first_text_index=1,
    )
    assert (g.text, g.input_tokens, g.output_tokens, g.stop_reason) == (
        "Nova streams",
        4,
        2,
        "end_turn",
    )


def test_titan_stream_counts_and_completion_reason() -> None:
    g = stream_chunks(
        [
            {
                "outputText": "Your parcel",
                "index": 0,
                "totalOutputTextTokenCount": 2,
                "completionReason": None,
                "inputTextTokenCount": 21,
            },
            {
                "outputText": " ships today",
                "index": 0,
                "totalOutputTextTokenCount": 4,
                "completionReason": None,
                "inputTextTokenCount": None,
            },
            {
                "outputText": "",
                "index": 0,
                "totalOutputTextTokenCount": 4,
                "completionReason": "FINISH",
                "amazon-bedrock-invocationMetrics": {**METRICS, "outputTokenCount": 4},
            },
        ],
        first_text_index=0,
    )
    assert (g.text, g.input_tokens, g.output_tokens, g.stop_reason) == (
        "Your parcel ships today",
        21,
        4,
        "FINISH",
    )


def test_llama_stream() -> None:
    g = stream_chunks(
        [
            {
                "generation": "",
                "prompt_token_count": 21,
                "generation_token_count": 0,
                "stop_reason": None,
            },
            {
                "generation": "Llama",
                "prompt_token_count": None,
                "generation_token_count": 1,
                "stop_reason": None,
            },
            {
                "generation": " here",
                "prompt_token_count": None,
                "generation_token_count": 2,
                "stop_reason": "stop",
                "amazon-bedrock-invocationMetrics": {**METRICS, "outputTokenCount": 2},
            },
        ],
        first_text_index=1,
    )
    assert (g.text, g.input_tokens, g.output_tokens, g.stop_reason) == ("Llama here", 21, 2, "stop")


def test_mistral_and_choices_streams_take_counts_from_invocation_metrics() -> None:
    g = stream_chunks(
        [
            {"outputs": [{"text": "Bonjour", "stop_reason": None}]},
            {
                "outputs": [{"text": " monde", "stop_reason": "stop"}],
                "amazon-bedrock-invocationMetrics": {**METRICS, "outputTokenCount": 2},
            },
        ],
        first_text_index=0,
    )
    assert (g.text, g.input_tokens, g.output_tokens, g.stop_reason) == (
        "Bonjour monde",
        21,
        2,
        "stop",
    )
    g = stream_chunks(
        [
            {
                "choices": [
                    {
                        "index": 0,
                        "delta": {"role": "assistant", "content": ""},
                        "finish_reason": None,
                    }
                ]
            },
            {"choices": [{"index": 0, "delta": {"content": "Hola"}, "finish_reason": None}]},
            {
                "choices": [{"index": 0, "delta": {"content": " mundo"}, "stop_reason": "stop"}],
                "amazon-bedrock-invocationMetrics": {**METRICS, "outputTokenCount": 2},
            },
        ],
        first_text_index=1,
    )
    assert (g.text, g.input_tokens, g.output_tokens, g.stop_reason) == ("Hola mundo", 21, 2, "stop")


def test_a_chunk_that_is_not_json_is_ignored() -> None:
    rec, clock = record("InvokeModelWithResponseStream")
    rec.attempt_sent()
    clock.advance(10)
    rec.stream_event({"chunk": {"bytes": b"\xff not json"}})
    clock.advance(10)
    rec.stream_event(chunk({"outputText": "ok", "totalOutputTextTokenCount": 1}))
    rec.stream_finished()
    g = rec.generation()
    assert (g.text, g.output_tokens, g.ttft_ms) == ("ok", 1, pytest.approx(20.0))


# -- Generation ---------------------------------------------------------------------------------
def sample_generation(**changes: Any) -> Generation:
    rec, clock = record()
    rec.attempt_sent()
    converse_stream(rec, clock, ["a", "b", "c"])
    return dataclasses.replace(rec.generation(), **changes)


def test_generation_is_frozen_with_the_documented_fields() -> None:
    g = sample_generation()
    assert [f.name for f in dataclasses.fields(Generation)] == [
        "model_id",
        "operation",
        "text",
        "input_tokens",
        "output_tokens",
        "stop_reason",
        "ttft_ms",
        "total_ms",
        "ms_per_token",
        "tokens_per_second",
        "server_latency_ms",
        "words",
        "chars",
        "attempts",
        "retry_wait_ms",
        "started_at",
        "cache_read_input_tokens",
        "cache_write_input_tokens",
        "cost_usd",
        "prompt_sha",
        "chunks",
        "text_in_repr",
    ]
    with pytest.raises(dataclasses.FrozenInstanceError):
        g.text = "changed"  # type: ignore[misc]


def test_generation_repr_shows_the_length_of_the_text_not_the_text() -> None:
    g = dataclasses.replace(sample_generation(), text="a secret answer")
    assert "secret" not in repr(g)
    assert "text=<15 chars>" in repr(g) and "output_tokens=3" in repr(g)
    assert "text_in_repr" not in repr(g)
    shown = dataclasses.replace(g, text_in_repr=True)
    assert "text='a secret answer'" in repr(shown)
    assert shown == g  # the flag is presentation, not data
    assert "text_in_repr" not in g.to_json(include_text=True)


def test_generation_json_has_text_only_when_asked_and_round_trips() -> None:
    g = sample_generation()
    without = g.to_json(include_text=False)
    assert "text" not in without
    assert without["output_tokens"] == 3
    assert Generation.from_json(without) == dataclasses.replace(g, text="")
    with_text = g.to_json(include_text=True)
    assert with_text["text"] == "a b c"
    assert Generation.from_json(json.loads(json.dumps(with_text))) == g


def test_generation_is_importable_from_the_package() -> None:
    from pytest_bedrock_latency import Generation as Exported  # type: ignore[attr-defined]

    assert Exported is Generation
