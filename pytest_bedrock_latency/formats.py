"""How each Bedrock answer format reads: one parser per model family.

Pure code: no pytest, no boto3. A parser turns one decoded payload (a ConverseStream event,
an InvokeModelWithResponseStream chunk, or a whole InvokeModel body) into additions to an
:class:`Answer` and a :class:`Seen` saying what the payload was:

* ``content``: the model generated something: text, reasoning (``thinking_delta``,
  ``reasoningContent``) or tool-use input (``input_json_delta``, ``toolUse``, OpenAI
  ``tool_calls``). TTFT is taken at the first such payload, whatever its kind, so a stream
  that thinks or calls a tool first is timed from its real first token;
* ``stop``: the family's own end-of-answer event (Anthropic ``message_stop``, a Llama or
  Mistral ``stop_reason``, Titan ``completionReason``, Cohere ``is_finished``, OpenAI
  ``finish_reason``, Converse ``messageStop``);
* ``final``: the last meaningful event: ConverseStream ``metadata`` or the invoke-stream chunk
  carrying ``amazon-bedrock-invocationMetrics``. The answer is complete there, whether or not
  the application reads on to the end of the stream.

The family of an invoke stream is recognised from its first payload's shape, not from the
model id, so custom-model and inference-profile ARNs parse too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

INVOCATION_METRICS = "amazon-bedrock-invocationMetrics"


def int_or_none(value: Any) -> int | None:
    """An int from a JSON field (or a header string), ``None`` for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def float_or_none(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class Seen:
    """What one payload was: see the module docstring."""

    content: bool = False
    stop: bool = False
    final: bool = False


NOTHING = Seen()


class Answer:
    """Accumulates text, token counts, stop reason and server latency of one answer."""

    def __init__(self) -> None:
        self.text_parts: list[str] = []
        self.input_tokens: int | None = None
        self.output_tokens: int | None = None
        self.cache_read_input_tokens: int | None = None
        self.cache_write_input_tokens: int | None = None
        self.stop_reason: str | None = None
        self.server_latency_ms: float | None = None
        self.content_events = 0

    @property
    def text(self) -> str:
        return "".join(self.text_parts)

    def add_text(self, value: Any) -> bool:
        """Append answer text; True when there was some."""
        if isinstance(value, str) and value:
            self.text_parts.append(value)
            return True
        return False

    def set_counts(
        self,
        input_tokens: Any = None,
        output_tokens: Any = None,
        cache_read: Any = None,
        cache_write: Any = None,
    ) -> None:
        """Overwrite the counts that are given; leave the others."""
        for name, value in (
            ("input_tokens", input_tokens),
            ("output_tokens", output_tokens),
            ("cache_read_input_tokens", cache_read),
            ("cache_write_input_tokens", cache_write),
        ):
            number = int_or_none(value)
            if number is not None:
                setattr(self, name, number)

    def stopped(self, reason: Any) -> bool:
        if isinstance(reason, str) and reason:
            self.stop_reason = reason
            return True
        return False

    def invocation_metrics(self, metrics: Mapping[str, Any]) -> None:
        """``amazon-bedrock-invocationMetrics``: Bedrock's authoritative counts for invoke streams."""
        self.set_counts(
            metrics.get("inputTokenCount"),
            metrics.get("outputTokenCount"),
            metrics.get("cacheReadInputTokenCount"),
            metrics.get("cacheWriteInputTokenCount"),
        )
        latency = float_or_none(metrics.get("invocationLatency"))
        self.server_latency_ms = latency if latency is not None else self.server_latency_ms

    def converse_usage(self, usage: Any) -> None:
        if isinstance(usage, Mapping):
            self.set_counts(
                usage.get("inputTokens"),
                usage.get("outputTokens"),
                usage.get("cacheReadInputTokens", usage.get("cacheReadInputTokenCount")),
                usage.get("cacheWriteInputTokens", usage.get("cacheWriteInputTokenCount")),
            )

    def headers(self, headers: Mapping[str, str]) -> None:
        """InvokeModel's token and latency headers (lower-cased by botocore)."""
        self.set_counts(
            headers.get("x-amzn-bedrock-input-token-count"),
            headers.get("x-amzn-bedrock-output-token-count"),
            headers.get("x-amzn-bedrock-cache-read-input-token-count"),
            headers.get("x-amzn-bedrock-cache-write-input-token-count"),
        )
        latency = float_or_none(headers.get("x-amzn-bedrock-invocation-latency"))
        self.server_latency_ms = latency if latency is not None else self.server_latency_ms


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> Sequence[Any]:
    return value if isinstance(value, list) else []


# -- the Converse API (ConverseStream events, Converse bodies, Nova native bodies) ------------
def converse_event(event: Mapping[str, Any], answer: Answer) -> Seen:
    """One ConverseStream event (also the shape of Nova's native stream chunks)."""
    if "contentBlockDelta" in event:
        delta = _map(_map(event["contentBlockDelta"]).get("delta"))
        if answer.add_text(delta.get("text")):
            return Seen(content=True)
        # Reasoning text and tool-use input are generated tokens too (a reasoning signature is not).
        reasoning = _map(delta.get("reasoningContent"))
        if reasoning.get("text") or reasoning.get("redactedContent"):
            return Seen(content=True)
        if _map(delta.get("toolUse")).get("input"):
            return Seen(content=True)
        return NOTHING
    if "messageStop" in event:
        return Seen(stop=answer.stopped(_map(event["messageStop"]).get("stopReason")))
    if "metadata" in event:
        metadata = _map(event["metadata"])
        answer.converse_usage(metadata.get("usage"))
        latency = float_or_none(_map(metadata.get("metrics")).get("latencyMs"))
        answer.server_latency_ms = latency if latency is not None else answer.server_latency_ms
        return Seen(final=True)
    return NOTHING


def converse_response(response: Mapping[str, Any], answer: Answer) -> None:
    """A whole Converse answer (also Nova's native InvokeModel body)."""
    message = _map(_map(response.get("output")).get("message"))
    for block in _list(message.get("content")):
        answer.add_text(_map(block).get("text"))
    answer.stopped(response.get("stopReason"))
    answer.converse_usage(response.get("usage"))
    latency = float_or_none(_map(response.get("metrics")).get("latencyMs"))
    answer.server_latency_ms = latency if latency is not None else answer.server_latency_ms


# -- native families ----------------------------------------------------------------------------
class Family(Protocol):
    """One model family's native InvokeModel format."""

    name: str

    def matches(self, payload: Mapping[str, Any]) -> bool:
        """Whether ``payload`` is in this family's format."""

    def chunk(self, payload: Mapping[str, Any], answer: Answer) -> Seen:
        """One decoded InvokeModelWithResponseStream chunk."""

    def body(self, payload: Mapping[str, Any], answer: Answer) -> None:
        """A whole InvokeModel response body."""


class Anthropic:
    """The Anthropic messages API: typed events, text / thinking / tool-use deltas."""

    name = "anthropic"

    def matches(self, payload: Mapping[str, Any]) -> bool:
        return isinstance(payload.get("type"), str) and (
            payload["type"] == "message" or payload["type"].startswith(("message_", "content_"))
        )

    def chunk(self, payload: Mapping[str, Any], answer: Answer) -> Seen:
        kind = payload.get("type")
        if kind == "message_start":
            self._usage(_map(_map(payload.get("message")).get("usage")), answer, output=False)
        elif kind == "content_block_start":
            block = _map(payload.get("content_block"))
            # A block can open with content already in it.
            if answer.add_text(block.get("text")) or block.get("thinking"):
                return Seen(content=True)
        elif kind == "content_block_delta":
            delta = _map(payload.get("delta"))
            kind = delta.get("type")
            if kind == "text_delta":
                return Seen(content=answer.add_text(delta.get("text")))
            if kind == "thinking_delta":
                return Seen(content=bool(delta.get("thinking")))
            if kind == "input_json_delta":
                return Seen(content=bool(delta.get("partial_json")))
            # signature_delta and citations carry no generated tokens.
        elif kind == "message_delta":
            answer.stopped(_map(payload.get("delta")).get("stop_reason"))
            self._usage(_map(payload.get("usage")), answer, output=True)
        elif kind == "message_stop":
            return Seen(stop=True)
        return NOTHING

    def body(self, payload: Mapping[str, Any], answer: Answer) -> None:
        for block in _list(payload.get("content")):
            if _map(block).get("type") == "text":
                answer.add_text(block.get("text"))
        answer.stopped(payload.get("stop_reason"))
        self._usage(_map(payload.get("usage")), answer, output=True)

    @staticmethod
    def _usage(usage: Mapping[str, Any], answer: Answer, *, output: bool) -> None:
        answer.set_counts(
            usage.get("input_tokens"),
            usage.get("output_tokens") if output else None,
            usage.get("cache_read_input_tokens"),
            usage.get("cache_creation_input_tokens"),
        )


class Nova:
    """Amazon Nova: the Converse shapes, inside native chunks and bodies."""

    name = "nova"
    _KEYS = ("messageStart", "contentBlockStart", "contentBlockDelta", "contentBlockStop")

    def matches(self, payload: Mapping[str, Any]) -> bool:
        return any(key in payload for key in (*self._KEYS, "messageStop", "metadata", "output"))

    def chunk(self, payload: Mapping[str, Any], answer: Answer) -> Seen:
        return converse_event(payload, answer)

    def body(self, payload: Mapping[str, Any], answer: Answer) -> None:
        converse_response(payload, answer)


class Titan:
    """Amazon Titan Text: ``outputText`` chunks, ``results`` bodies."""

    name = "titan"

    def matches(self, payload: Mapping[str, Any]) -> bool:
        return "outputText" in payload or "results" in payload

    def chunk(self, payload: Mapping[str, Any], answer: Answer) -> Seen:
        content = answer.add_text(payload.get("outputText"))
        answer.set_counts(
            payload.get("inputTextTokenCount"), payload.get("totalOutputTextTokenCount")
        )
        return Seen(content=content, stop=answer.stopped(payload.get("completionReason")))

    def body(self, payload: Mapping[str, Any], answer: Answer) -> None:
        answer.set_counts(payload.get("inputTextTokenCount"))
        for result in _list(payload.get("results")):
            answer.add_text(_map(result).get("outputText"))
            answer.set_counts(output_tokens=result.get("tokenCount"))
            answer.stopped(result.get("completionReason"))


class Llama:
    """Meta Llama: ``generation`` text with running token counts."""

    name = "llama"

    def matches(self, payload: Mapping[str, Any]) -> bool:
        return "generation" in payload

    def chunk(self, payload: Mapping[str, Any], answer: Answer) -> Seen:
        content = answer.add_text(payload.get("generation"))
        answer.set_counts(payload.get("prompt_token_count"), payload.get("generation_token_count"))
        return Seen(content=content, stop=answer.stopped(payload.get("stop_reason")))

    def body(self, payload: Mapping[str, Any], answer: Answer) -> None:
        self.chunk(payload, answer)


class MistralText:
    """Mistral text completion: ``outputs[].text``; no counts (headers and metrics have them)."""

    name = "mistral"

    def matches(self, payload: Mapping[str, Any]) -> bool:
        return "outputs" in payload

    def chunk(self, payload: Mapping[str, Any], answer: Answer) -> Seen:
        content = stop = False
        for output in _list(payload.get("outputs")):
            content = answer.add_text(_map(output).get("text")) or content
            stop = answer.stopped(output.get("stop_reason")) or stop
        return Seen(content=content, stop=stop)

    def body(self, payload: Mapping[str, Any], answer: Answer) -> None:
        self.chunk(payload, answer)


class OpenAIChat:
    """OpenAI-style chat completions: Mistral Large 2407+, OpenAI gpt-oss, DeepSeek (``text``).

    Content is ``delta.content`` (``message.content`` in Mistral's chunks), reasoning
    (``reasoning_content`` / ``reasoning``), tool-call argument fragments, or DeepSeek's
    ``choices[].text``.
    """

    name = "openai"

    def matches(self, payload: Mapping[str, Any]) -> bool:
        return "choices" in payload

    def chunk(self, payload: Mapping[str, Any], answer: Answer) -> Seen:
        content = stop = False
        for choice in _list(payload.get("choices")):
            choice = _map(choice)
            message = _map(choice.get("delta")) or _map(choice.get("message"))
            content = answer.add_text(message.get("content")) or content
            content = answer.add_text(choice.get("text")) or content
            if message.get("reasoning_content") or message.get("reasoning"):
                content = True
            for call in _list(message.get("tool_calls")):
                function = _map(_map(call).get("function"))
                content = content or bool(function.get("arguments") or function.get("name"))
            reason = choice.get("finish_reason") or choice.get("stop_reason")
            stop = answer.stopped(reason) or stop
        usage = _map(payload.get("usage"))
        details = _map(usage.get("prompt_tokens_details"))
        answer.set_counts(
            usage.get("prompt_tokens"), usage.get("completion_tokens"), details.get("cached_tokens")
        )
        return Seen(content=content, stop=stop)

    def body(self, payload: Mapping[str, Any], answer: Answer) -> None:
        self.chunk(payload, answer)


class Cohere:
    """Cohere Command R (``event_type`` chunks) and legacy Command (``generations``)."""

    name = "cohere"

    def matches(self, payload: Mapping[str, Any]) -> bool:
        return any(key in payload for key in ("event_type", "is_finished", "generations", "text"))

    def chunk(self, payload: Mapping[str, Any], answer: Answer) -> Seen:
        content = False
        kind = payload.get("event_type")
        if kind in (None, "text-generation"):
            content = answer.add_text(payload.get("text"))
        elif kind == "tool-calls-chunk":
            delta = _map(payload.get("tool_call_delta"))
            content = bool(delta.get("parameters") or delta.get("name") or payload.get("text"))
        for generation in _list(payload.get("generations")):
            content = answer.add_text(_map(generation).get("text")) or content
        stop = answer.stopped(payload.get("finish_reason")) or payload.get("is_finished") is True
        return Seen(content=content, stop=stop)

    def body(self, payload: Mapping[str, Any], answer: Answer) -> None:
        self.chunk(payload, answer)


#: In recognition order: the more specific shapes first (Cohere's bare ``text`` is last).
FAMILIES: tuple[Family, ...] = (
    Anthropic(),
    Nova(),
    Titan(),
    Llama(),
    MistralText(),
    OpenAIChat(),
    Cohere(),
)


def family_of(payload: Mapping[str, Any]) -> Family | None:
    """The family whose format ``payload`` is in, or ``None``."""
    for family in FAMILIES:
        if family.matches(payload):
            return family
    return None


class NativeStream:
    """Reads one InvokeModelWithResponseStream's chunks with its family's parser."""

    def __init__(self) -> None:
        self.family: Family | None = None

    def chunk(self, payload: Mapping[str, Any], answer: Answer) -> Seen:
        if self.family is None:
            self.family = family_of(payload)
        seen = self.family.chunk(payload, answer) if self.family is not None else NOTHING
        metrics = payload.get(INVOCATION_METRICS)
        if isinstance(metrics, Mapping):
            answer.invocation_metrics(metrics)
            return Seen(content=seen.content, stop=True, final=True)
        return seen


def native_body(payload: Mapping[str, Any], answer: Answer) -> None:
    """A whole InvokeModel response body, whatever its family."""
    family = family_of(payload)
    if family is not None:
        family.body(payload, answer)
