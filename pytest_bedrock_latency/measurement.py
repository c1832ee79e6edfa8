"""Turning what a Bedrock Runtime call returns into a measured :class:`Generation`.

Pure code: no pytest, no boto3. The instrumentation feeds a :class:`CallRecord` with
timestamps from an injected clock and with the response data exactly as botocore parsed
it; the record turns that into the figures the markers bound. Definitions follow
``metrics.md``:

* TTFT: first content delta received - request sent (the final attempt's send, so client
  retry waits are excluded and reported separately in ``retry_wait_ms``);
* total: last event received - request sent;
* ms/token: (total - TTFT) / (output_tokens - 1), undefined for one token or none;
* tokens/s: output_tokens / (total - TTFT), the formula of AWS's Bedrock documentation;
* token counts come from Bedrock's own usage fields, never from counting chunks.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

Clock = Callable[[], float]
"""A monotonic clock in seconds, ``time.perf_counter`` in production."""

Coster = Callable[["Generation"], "float | None"]
"""What a measured call cost in USD, ``None`` when unknown (see ``prices.PriceTable.coster``)."""

MEASURED_OPERATIONS = frozenset(
    {"Converse", "ConverseStream", "InvokeModel", "InvokeModelWithResponseStream"}
)
STREAMING_OPERATIONS = frozenset({"ConverseStream", "InvokeModelWithResponseStream"})


@dataclass(frozen=True)
class Generation:
    """One measured Bedrock answer.

    Times are milliseconds on the client. ``ttft_ms`` and ``ms_per_token`` are ``None``
    for non-streaming calls (the whole answer arrives at once) and ``ms_per_token`` also
    when the answer has fewer than two tokens. ``server_latency_ms`` is what Bedrock says
    the model took (``metrics.latencyMs`` or ``invocationLatency``), which lets a report
    separate network and client time from model time. ``cache_read_input_tokens`` and
    ``cache_write_input_tokens`` are prompt-caching usage (``None`` when Bedrock sends
    none); ``input_tokens`` excludes them, as Bedrock counts it. ``cost_usd`` is what the
    call cost at the run's prices (``None`` when the model has no price).

    Its repr shows the answer's length, not the answer (``text=<118 chars>``), so a
    failing ``assert answer.output_tokens < 3`` does not print the answer into the
    terminal and JUnit XML; with ``--bedrock-report-text`` the plugin's generations have
    ``text_in_repr`` set and show it.
    """

    model_id: str
    operation: str
    text: str
    input_tokens: int | None
    output_tokens: int | None
    stop_reason: str | None
    ttft_ms: float | None
    total_ms: float
    ms_per_token: float | None
    tokens_per_second: float | None
    server_latency_ms: float | None
    words: int
    chars: int
    attempts: int
    retry_wait_ms: float
    started_at: float
    cache_read_input_tokens: int | None = None
    cache_write_input_tokens: int | None = None
    cost_usd: float | None = None
    # Keyword-only, so fields added later never have to come before it.
    text_in_repr: bool = field(default=False, kw_only=True, repr=False, compare=False)

    def __repr__(self) -> str:
        parts = []
        for f in fields(self):
            if not f.repr:
                continue
            value = getattr(self, f.name)
            if f.name == "text" and not self.text_in_repr:
                parts.append(f"text=<{len(value)} chars>")
            else:
                parts.append(f"{f.name}={value!r}")
        return f"{type(self).__name__}({', '.join(parts)})"

    def to_json(self, *, include_text: bool) -> dict[str, Any]:
        """A JSON-ready dict; the answer text only when ``include_text`` (privacy)."""
        data = asdict(self)
        del data["text_in_repr"]
        if not include_text:
            del data["text"]
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Generation:
        """Rebuild a generation sent as :meth:`to_json` (e.g. from an xdist worker)."""
        values = dict(data)
        values.setdefault("text", "")
        return cls(**values)


def display_model(model_id: str) -> str:
    """A short model name for messages: the last path segment of an ARN."""
    return model_id.rsplit("/", 1)[-1] if model_id.startswith("arn:") else model_id


def failure_text(code: str, model_id: str, operation: str, attempts: int, message: str) -> str:
    """One line for a failed Bedrock call: Bedrock's error, the model and the attempts."""
    tries = f", {attempts} attempts" if attempts > 1 else ""
    return (
        f"{code} from Bedrock for model {display_model(model_id)} ({operation}{tries}): {message}"
    )


def ms_per_token(total_ms: float, ttft_ms: float | None, output_tokens: int | None) -> float | None:
    """(total - TTFT) / (tokens - 1), or ``None`` where it is undefined."""
    if ttft_ms is None or output_tokens is None or output_tokens < 2:
        return None
    return (total_ms - ttft_ms) / (output_tokens - 1)


def tokens_per_second(
    total_ms: float, ttft_ms: float | None, output_tokens: int | None
) -> float | None:
    """Output tokens per second after the first token, as AWS's Bedrock docs define OTPS."""
    if ttft_ms is None or not output_tokens or total_ms <= ttft_ms:
        return None
    return output_tokens / ((total_ms - ttft_ms) / 1000.0)


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _float_or_none(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


class _Answer:
    """Accumulates text, token counts, stop reason and server latency of one answer."""

    def __init__(self) -> None:
        self.text_parts: list[str] = []
        self.input_tokens: int | None = None
        self.output_tokens: int | None = None
        self.stop_reason: str | None = None
        self.server_latency_ms: float | None = None

    @property
    def text(self) -> str:
        return "".join(self.text_parts)

    def usage(self, usage: Mapping[str, Any] | None) -> None:
        if not usage:
            return
        self.input_tokens = _int_or_none(usage.get("inputTokens", self.input_tokens))
        self.output_tokens = _int_or_none(usage.get("outputTokens", self.output_tokens))

    def invocation_metrics(self, metrics: Mapping[str, Any]) -> None:
        """``amazon-bedrock-invocationMetrics``: Bedrock's authoritative counts for invoke streams."""
        self.input_tokens = _int_or_none(metrics.get("inputTokenCount")) or self.input_tokens
        output = _int_or_none(metrics.get("outputTokenCount"))
        self.output_tokens = output if output is not None else self.output_tokens
        self.server_latency_ms = _float_or_none(metrics.get("invocationLatency"))

    def converse_response(self, response: Mapping[str, Any]) -> None:
        message = response.get("output", {}).get("message", {})
        for block in message.get("content", []) or []:
            if isinstance(block, Mapping) and isinstance(block.get("text"), str):
                self.text_parts.append(block["text"])
        self.stop_reason = response.get("stopReason")
        self.usage(response.get("usage"))
        self.server_latency_ms = _float_or_none(response.get("metrics", {}).get("latencyMs"))

    def converse_event(self, event: Mapping[str, Any]) -> bool:
        """Feed one ConverseStream event; True when it carried answer content."""
        if "contentBlockDelta" in event:
            delta = event["contentBlockDelta"].get("delta", {})
            text = delta.get("text")
            if isinstance(text, str):
                self.text_parts.append(text)
                return bool(text)
            # Tool-use and reasoning deltas are content too: the model is generating.
            return bool(delta)
        if "messageStop" in event:
            self.stop_reason = event["messageStop"].get("stopReason")
        elif "metadata" in event:
            metadata = event["metadata"]
            self.usage(metadata.get("usage"))
            self.server_latency_ms = _float_or_none(metadata.get("metrics", {}).get("latencyMs"))
        return False

    def native_payload(self, payload: Mapping[str, Any], *, streaming: bool) -> bool:
        """Feed one native InvokeModel body or stream chunk, whatever the model family.

        The family is recognised from the payload's shape rather than the model id, so
        custom-model and inference-profile ARNs parse too. True when text was carried.
        """
        before = len(self.text_parts)
        metrics = payload.get("amazon-bedrock-invocationMetrics")
        kind = payload.get("type")
        if isinstance(kind, str):  # Anthropic messages API
            self._anthropic(payload, kind)
        elif "outputText" in payload:  # Titan Text stream chunk
            self.text_parts.append(str(payload.get("outputText") or ""))
            self.input_tokens = (
                _int_or_none(payload.get("inputTextTokenCount")) or self.input_tokens
            )
            count = _int_or_none(payload.get("totalOutputTextTokenCount"))
            self.output_tokens = count if count is not None else self.output_tokens
            self.stop_reason = payload.get("completionReason") or self.stop_reason
        elif "results" in payload:  # Titan Text body
            self.input_tokens = _int_or_none(payload.get("inputTextTokenCount"))
            for result in payload.get("results") or []:
                self.text_parts.append(str(result.get("outputText") or ""))
                self.output_tokens = _int_or_none(result.get("tokenCount"))
                self.stop_reason = result.get("completionReason")
        elif "generation" in payload:  # Meta Llama
            self.text_parts.append(str(payload.get("generation") or ""))
            self.input_tokens = _int_or_none(payload.get("prompt_token_count")) or self.input_tokens
            count = _int_or_none(payload.get("generation_token_count"))
            self.output_tokens = count if count is not None else self.output_tokens
            self.stop_reason = payload.get("stop_reason") or self.stop_reason
        elif "outputs" in payload:  # Mistral text completion
            for output in payload.get("outputs") or []:
                self.text_parts.append(str(output.get("text") or ""))
                self.stop_reason = output.get("stop_reason") or self.stop_reason
        elif "choices" in payload:  # Mistral chat (OpenAI-like)
            for choice in payload.get("choices") or []:
                message = choice.get("message") or choice.get("delta") or {}
                self.text_parts.append(str(message.get("content") or ""))
                self.stop_reason = (
                    choice.get("stop_reason") or choice.get("finish_reason") or self.stop_reason
                )
            usage = payload.get("usage") or {}
            self.input_tokens = _int_or_none(usage.get("prompt_tokens")) or self.input_tokens
            self.output_tokens = _int_or_none(usage.get("completion_tokens")) or self.output_tokens
        elif "output" in payload and not streaming:  # Nova body: Converse-shaped
            self.converse_response(payload)
        elif any(key in payload for key in ("contentBlockDelta", "messageStop", "metadata")):
            self.converse_event(payload)  # Nova stream chunk: Converse-stream-shaped
        elif "text" in payload or "generations" in payload:  # Cohere
            self.text_parts.append(str(payload.get("text") or ""))
            for generation in payload.get("generations") or []:
                self.text_parts.append(str(generation.get("text") or ""))
            self.stop_reason = payload.get("finish_reason") or self.stop_reason
        if isinstance(metrics, Mapping):
            self.invocation_metrics(metrics)
        return any(self.text_parts[before:])

    def _anthropic(self, payload: Mapping[str, Any], kind: str) -> None:
        if kind == "message":  # the whole InvokeModel body
            for block in payload.get("content") or []:
                if block.get("type") == "text":
                    self.text_parts.append(str(block.get("text") or ""))
            self.stop_reason = payload.get("stop_reason")
            usage = payload.get("usage") or {}
            self.input_tokens = _int_or_none(usage.get("input_tokens"))
            self.output_tokens = _int_or_none(usage.get("output_tokens"))
        elif kind == "message_start":
            usage = (payload.get("message") or {}).get("usage") or {}
            self.input_tokens = _int_or_none(usage.get("input_tokens"))
        elif kind == "content_block_delta":
            delta = payload.get("delta") or {}
            self.text_parts.append(str(delta.get("text") or ""))
        elif kind == "message_delta":
            self.stop_reason = (payload.get("delta") or {}).get("stop_reason") or self.stop_reason
            output = _int_or_none((payload.get("usage") or {}).get("output_tokens"))
            self.output_tokens = output if output is not None else self.output_tokens

    def headers(self, headers: Mapping[str, str]) -> None:
        """InvokeModel's token and latency headers (lower-cased by botocore)."""
        input_tokens = _int_or_none(headers.get("x-amzn-bedrock-input-token-count"))
        output_tokens = _int_or_none(headers.get("x-amzn-bedrock-output-token-count"))
        latency = _float_or_none(headers.get("x-amzn-bedrock-invocation-latency"))
        self.input_tokens = input_tokens if input_tokens is not None else self.input_tokens
        self.output_tokens = output_tokens if output_tokens is not None else self.output_tokens
        self.server_latency_ms = latency if latency is not None else self.server_latency_ms


class CallRecord:
    """The measurement of one Bedrock Runtime call, fed as the call progresses.

    Thread-safe: a stream may be consumed on another thread than the one that made the
    call (langchain hops pool threads). ``state`` is ``running`` until the answer is
    complete, then ``complete``; ``error`` when the call or its stream failed;
    ``abandoned`` when the application stopped reading early (provisional: re-iterating
    an EventStream resumes it).
    """

    def __init__(
        self,
        model_id: str,
        operation: str,
        request: Mapping[str, Any],
        *,
        clock: Clock,
        wall_clock: Clock,
    ) -> None:
        self.model_id = model_id
        self.operation = operation
        self.request = dict(request)
        self._clock = clock
        self._lock = threading.Lock()
        self.call_started = clock()
        self.started_at = wall_clock()
        self.sent_at = self.call_started
        self.first_sent_at: float | None = None
        self.first_content_at: float | None = None
        self.last_event_at: float | None = None
        self.attempts = 0
        self.state = "running"
        self.error_code: str | None = None
        self.error_message: str | None = None
        self._answer = _Answer()
        self._body = bytearray()
        self.coster: Coster | None = None  # set by the instrumentation when prices are known

    # -- per attempt ---------------------------------------------------------------------
    def attempt_sent(self) -> None:
        """An HTTP attempt is about to be sent; the latest one is the one that counts."""
        with self._lock:
            self.attempts += 1
            self.sent_at = self._clock()
            if self.first_sent_at is None:
                self.first_sent_at = self.sent_at

    # -- responses -----------------------------------------------------------------------
    def headers_received(self, retry_attempts: int | None) -> None:
        """The call returned (headers for streams, the whole answer otherwise)."""
        now = self._clock()
        with self._lock:
            if retry_attempts is not None:
                self.attempts = max(self.attempts, retry_attempts + 1)
            self.attempts = max(self.attempts, 1)
            self.last_event_at = now

    def converse_response(self, response: Mapping[str, Any]) -> None:
        with self._lock:
            self._answer.converse_response(response)
            self.state = "complete"

    def invoke_response(self, headers: Mapping[str, str]) -> None:
        """A non-streaming InvokeModel returned: counts from headers; text once the body is read."""
        with self._lock:
            self._answer.headers(headers)
            self.state = "complete"

    def body_read(self, data: bytes, *, finished: bool) -> None:
        """Bytes of a non-streaming InvokeModel body as the application reads them."""
        with self._lock:
            self._body.extend(data)
            if not finished:
                return
            payload = _json_object(bytes(self._body))
            if payload is not None:
                counts = (self._answer.input_tokens, self._answer.output_tokens)
                self._answer.native_payload(payload, streaming=False)
                # The headers are Bedrock's own usage; the body only fills gaps.
                self._answer.input_tokens = (
                    counts[0] if counts[0] is not None else self._answer.input_tokens
                )
                self._answer.output_tokens = (
                    counts[1] if counts[1] is not None else self._answer.output_tokens
                )

    def stream_event(self, event: Mapping[str, Any]) -> None:
        """One event of a ConverseStream or InvokeModelWithResponseStream, as the app pulls it."""
        now = self._clock()
        with self._lock:
            if self.operation == "ConverseStream":
                content = self._answer.converse_event(event)
            else:
                payload = _json_object((event.get("chunk") or {}).get("bytes", b""))
                content = payload is not None and self._answer.native_payload(
                    payload, streaming=True
                )
            if self.state == "abandoned":  # a second loop over the stream resumes it
                self.state = "running"
            if content and self.first_content_at is None:
                self.first_content_at = now
            self.last_event_at = now

    def stream_finished(self) -> None:
        with self._lock:
            self.state = "complete"

    def stream_abandoned(self) -> None:
        with self._lock:
            if self.state == "running":
                self.state = "abandoned"

    def failed(self, code: str, message: str, retry_attempts: int | None = None) -> None:
        """The call or its stream failed; the record keeps what arrived before."""
        with self._lock:
            self.state = "error"
            self.error_code = code
            self.error_message = message
            if retry_attempts is not None:
                self.attempts = max(self.attempts, retry_attempts + 1)

    # -- results -------------------------------------------------------------------------
    def failure_line(self) -> str:
        """Bedrock's error for this call with the model id, as a report shows it."""
        return failure_text(
            str(self.error_code),
            self.model_id,
            self.operation,
            self.attempts,
            str(self.error_message),
        )

    @property
    def complete(self) -> bool:
        return self.state == "complete"

    def generation(self, *, text_in_repr: bool = False) -> Generation:
        """The figures of this call, with its cost; meaningful once :attr:`complete`."""
        generation = self._figures(text_in_repr)
        return (
            generation
            if self.coster is None
            else replace(generation, cost_usd=self.coster(generation))
        )

    def _figures(self, text_in_repr: bool) -> Generation:
        with self._lock:
            end = self.last_event_at if self.last_event_at is not None else self.sent_at
            total = (end - self.sent_at) * 1000.0
            ttft = None
            if self.operation in STREAMING_OPERATIONS and self.first_content_at is not None:
                ttft = (self.first_content_at - self.sent_at) * 1000.0
            answer = self._answer
            text = answer.text
            return Generation(
                model_id=self.model_id,
                operation=self.operation,
                text=text,
                input_tokens=answer.input_tokens,
                output_tokens=answer.output_tokens,
                stop_reason=answer.stop_reason,
                ttft_ms=ttft,
                total_ms=total,
                ms_per_token=ms_per_token(total, ttft, answer.output_tokens),
                tokens_per_second=tokens_per_second(total, ttft, answer.output_tokens),
                server_latency_ms=answer.server_latency_ms,
                words=len(text.split()),
                chars=len(text),
                attempts=max(self.attempts, 1),
                # Failed attempts and the backoff between them; time before the first
                # send (signing, an adaptive rate-limiter wait) is in neither figure.
                retry_wait_ms=(self.sent_at - (self.first_sent_at or self.sent_at)) * 1000.0,
                started_at=self.started_at,
                text_in_repr=text_in_repr,
            )


def _json_object(raw: bytes | str) -> dict[str, Any] | None:
    try:
        value = json.loads(raw)
    except (ValueError, TypeError):
        return None
    return value if isinstance(value, dict) else None
