"""Bounds on the answers of our support model: fast enough per token, short enough.

Run: pytest examples   (the emulator starts by itself; see pytest.ini)
"""

import pytest

QUESTIONS = [
    "How do I reset my password?",
    "Can I change the delivery address of an order that has already shipped?",
    "Why was my card charged twice?",
]


@pytest.mark.bedrock_latency(max_ms_per_token=4.0, max_ttft_ms=250, percentile=90)
@pytest.mark.bedrock_length(max_tokens=250, min_tokens=5)
@pytest.mark.parametrize("question", QUESTIONS, ids=["password", "address", "double-charge"])
def test_answers_are_fast_and_short(bedrock_model, question):
    answer = bedrock_model.converse(question, system="You are a concise support agent.")
    assert answer.stop_reason == "end_turn"
    assert answer.text


@pytest.mark.bedrock_length(max_words=150)
def test_native_invoke_body(bedrock_model):
    """The same model through InvokeModel with a native Titan body."""
    answer = bedrock_model.invoke(
        {"inputText": "Where is my parcel?", "textGenerationConfig": {"maxTokenCount": 300}}
    )
    assert answer.output_tokens == answer.words  # the emulator's words track tokens


@pytest.mark.bedrock_latency(max_total_ms=1500)
def test_several_turns(bedrock_model, bedrock_calls):
    first = bedrock_model.converse("My order 1234 has not arrived.")
    bedrock_model.converse(
        [
            {"role": "user", "content": [{"text": "My order 1234 has not arrived."}]},
            {"role": "assistant", "content": [{"text": first.text}]},
            {"role": "user", "content": [{"text": "It was due last Monday."}]},
        ]
    )
    assert len(bedrock_calls) == 2
