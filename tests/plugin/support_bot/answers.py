"""How the bot answers: streaming, non-streaming, native InvokeModel, early stop, threads."""

from __future__ import annotations

import json
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from typing import Any

from .config import SYSTEM_PROMPT
from .config import model_id as configured_model


@dataclass
class Answer:
    """What the application got back: the text, and for streams every event as received."""

    text: str
    stop_reason: str | None = None
    output_tokens: int | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    stream_type: str = ""  # the class name of the stream object the application was handed
    stream_is_event_stream: bool | None = None


def _request(question: str, model: str | None, max_tokens: int) -> dict[str, Any]:
    return {
        "modelId": model or configured_model(),
        "system": [{"text": SYSTEM_PROMPT}],
        "messages": [{"role": "user", "content": [{"text": question}]}],
        "inferenceConfig": {"maxTokens": max_tokens, "temperature": 0.2},
    }


def stream_answer(
    client: Any, question: str, *, model: str | None = None, max_tokens: int = 400
) -> Answer:
    """Ask with ConverseStream and build the text from the deltas as they arrive."""
    from botocore.eventstream import EventStream

    response = client.converse_stream(**_request(question, model, max_tokens))
    stream = response["stream"]
    result = Answer(
        text="",
        stream_type=type(stream).__name__,
        stream_is_event_stream=isinstance(stream, EventStream),
    )
    parts: list[str] = []
    for event in stream:
        result.events.append(event)
        if "contentBlockDelta" in event:
            parts.append(event["contentBlockDelta"]["delta"].get("text", ""))
        elif "messageStop" in event:
            result.stop_reason = event["messageStop"]["stopReason"]
        elif "metadata" in event:
            result.output_tokens = event["metadata"]["usage"]["outputTokens"]
    result.text = "".join(parts)
    return result


def first_words(client: Any, question: str, words: int, *, model: str | None = None) -> Answer:
    """Show a preview: stop reading after ``words`` text deltas, then close the stream."""
    response = client.converse_stream(**_request(question, model, 400))
    stream = response["stream"]
    result = Answer(text="", stream_type=type(stream).__name__)
    parts: list[str] = []
    try:
        for event in stream:
            result.events.append(event)
            if "contentBlockDelta" in event:
                parts.append(event["contentBlockDelta"]["delta"].get("text", ""))
                if len(parts) >= words:
                    break
    finally:
        stream.close()
    result.text = "".join(parts)
    return result


def answer(
    client: Any, question: str, *, model: str | None = None, max_tokens: int = 400
) -> Answer:
    """Ask with Converse (the whole answer at once)."""
    response = client.converse(**_request(question, model, max_tokens))
    content = response["output"]["message"]["content"]
    return Answer(
        text="".join(block.get("text", "") for block in content),
        stop_reason=response["stopReason"],
        output_tokens=response["usage"]["outputTokens"],
    )


def invoke_answer(client: Any, question: str, *, model: str | None = None) -> Answer:
    """Ask with InvokeModel and a native Titan Text body."""
    body = {
        "inputText": question,
        "textGenerationConfig": {"maxTokenCount": 400, "temperature": 0.2},
    }
    response = client.invoke_model(
        modelId=model or configured_model(),
        body=json.dumps(body),
        contentType="application/json",
        accept="application/json",
    )
    raw = response["body"].read()
    payload = json.loads(raw)
    result = payload["results"][0]
    return Answer(
        text=result["outputText"],
        stop_reason=result.get("completionReason"),
        output_tokens=result.get("tokenCount"),
        stream_type=type(response["body"]).__name__,
    )


def stream_in_background(
    executor: Executor, client: Any, question: str, *, model: str | None = None
) -> Future[Answer]:
    """Start the request here, read the stream on a worker thread (as web frameworks do)."""
    response = client.converse_stream(**_request(question, model, 400))
    stream = response["stream"]

    def consume() -> Answer:
        parts: list[str] = []
        result = Answer(text="", stream_type=type(stream).__name__)
        for event in stream:
            result.events.append(event)
            if "contentBlockDelta" in event:
                parts.append(event["contentBlockDelta"]["delta"].get("text", ""))
            elif "metadata" in event:
                result.output_tokens = event["metadata"]["usage"]["outputTokens"]
        result.text = "".join(parts)
        return result

    return executor.submit(consume)
