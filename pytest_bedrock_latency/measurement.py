"""Turning what a Bedrock Runtime call returns into a measured :class:`Generation`.

Pure code: no pytest, no boto3. The instrumentation feeds a :class:`CallRecord` with
timestamps from an injected clock and with the response data exactly as botocore parsed
it; the record turns that into the figures the markers bound. The definitions (README,
"What is measured, exactly"):

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

from .formats import Answer, NativeStream, Seen, converse_event, converse_response, native_body

Clock = Callable[[], float]
"""A monotonic clock in seconds, ``time.perf_counter`` in production."""

Coster = Callable[["Generation"], "float | None"]
"""What a measured call cost in USD, ``None`` when unknown (see ``prices.PriceTable.coster``)."""

MEASURED_OPERATIONS = frozenset(
    {"Converse", "ConverseStream", "InvokeModel", "InvokeModelWithResponseStream"}
)
STREAMING_OPERATIONS = frozenset({"ConverseStream", "InvokeModelWithResponseStream"})

#: The header a request measured in-process carries to a loopback endpoint, so the
#: measuring proxy (``emulator/proxy.py``) forwards it without counting the call twice.
MEASURED_HEADER = "x-bedrock-latency-measured"


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
    ``prompt_sha`` identifies the request's prompt without its text (the emulator's own
    prompt hash, so a recorded profile's per-prompt entries match what the emulator sees;
    ``None`` when the request has no recognisable prompt); ``chunks`` is the number of
    content events of a stream (``None`` for non-streaming calls).

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
    prompt_sha: str | None = None
    chunks: int | None = None
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


class CallRecord:
    """The measurement of one Bedrock Runtime call, fed as the call progresses.

    Thread-safe: a stream may be consumed on another thread than the one that made the
    call (langchain hops pool threads). ``state`` is ``running`` until the answer is
    complete, then ``complete``; ``error`` when Bedrock (or the transport) failed the call
    or its stream; ``abandoned`` when the application stopped reading before the answer's
    last meaningful event (provisional: re-iterating an EventStream resumes it).

    A stream is complete at its last meaningful event (ConverseStream ``metadata``, the
    invoke-stream chunk with ``amazon-bedrock-invocationMetrics``), whether or not the
    application reads on to the end of the stream; one that stops after the family's own
    stop event is complete too.
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
        self.interrupted_by: str | None = None
        self.closed = False
        self._arrived_at: float | None = None
        self.user_agent: str | None = None
        self._stopped = False
        self._final = False
        self._answer = Answer()
        self._native = NativeStream()
        self._body = bytearray()
        self.coster: Coster | None = None  # set by the instrumentation when prices are known
        self._prompt_sha: str | bool | None = False  # False: not computed yet

    # -- per attempt ---------------------------------------------------------------------
    def attempt_sent(self, user_agent: str | None = None) -> None:
        """An HTTP attempt is about to be sent; the latest one is the one that counts."""
        with self._lock:
            self.attempts += 1
            self.sent_at = self._clock()
            if self.first_sent_at is None:
                self.first_sent_at = self.sent_at
            if user_agent:
                self.user_agent = user_agent

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
            converse_response(response, self._answer)
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
            if payload is None:
                return
            answer = self._answer
            counts = (answer.input_tokens, answer.output_tokens, answer.server_latency_ms)
            native_body(payload, answer)
            # The headers are Bedrock's own usage; the body only fills gaps.
            answer.input_tokens = counts[0] if counts[0] is not None else answer.input_tokens
            answer.output_tokens = counts[1] if counts[1] is not None else answer.output_tokens
            answer.server_latency_ms = (
                counts[2] if counts[2] is not None else answer.server_latency_ms
            )

    def bytes_arrived(self) -> None:
        """A piece of the stream's body arrived: the events it holds were received now."""
        now = self._clock()
        with self._lock:
            self._arrived_at = now

    def stream_event(self, event: Mapping[str, Any]) -> None:
        """One event of a ConverseStream or InvokeModelWithResponseStream, as the app pulls it.

        It counts as received when the bytes holding it arrived (:meth:`bytes_arrived`), or
        now when the transport does not say.
        """
        now = self._clock()
        with self._lock:
            if self._arrived_at is not None:
                now = self._arrived_at
            if self._final:  # nothing after the last meaningful event changes the figures
                return
            seen: Seen
            if self.operation == "ConverseStream":
                seen = converse_event(event, self._answer)
            else:
                payload = _json_object((event.get("chunk") or {}).get("bytes", b""))
                seen = self._native.chunk(payload, self._answer) if payload is not None else Seen()
            if self.state == "abandoned":  # a second loop over the stream resumes it
                self.state = "running"
                self.interrupted_by = None
            if seen.content:
                self._answer.content_events += 1
                if self.first_content_at is None:
                    self.first_content_at = now
            self.last_event_at = now
            self._stopped = self._stopped or seen.stop
            if seen.final:
                self._final = True
                if self.state == "running":
                    self.state = "complete"

    def stream_finished(self) -> None:
        """The stream reached its end."""
        with self._lock:
            if self.state in ("running", "abandoned"):
                self.state = "complete"

    def stream_abandoned(self, interrupted_by: str | None = None) -> None:
        """The application closed the stream, or stopped reading it, or its read was cut.

        After the family's stop event the answer is whole (only the metrics may be
        missing), so the call counts as complete.
        """
        with self._lock:
            if self.state != "running":
                return
            if self._stopped:
                self.state = "complete"
            else:
                self.state = "abandoned"
                self.interrupted_by = interrupted_by

    def stream_closed(self) -> None:
        """The application called ``close()`` on the stream."""
        with self._lock:
            self.closed = True
            if self.state == "abandoned" and self.interrupted_by is None:
                self.interrupted_by = "closed"  # a loop broke off, then the stream was closed
        self.stream_abandoned("closed")

    def failed(self, code: str, message: str, retry_attempts: int | None = None) -> None:
        """The call or its stream failed; the record keeps what arrived before."""
        with self._lock:
            if self._final:  # the answer was whole before the failure (e.g. a late read error)
                return
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
    def tokens_received(self) -> int:
        """Output tokens received so far: Bedrock's running count, else content events."""
        with self._lock:
            answer = self._answer
            return max(answer.output_tokens or 0, answer.content_events)

    def abandoned_line(self) -> str:
        """Why this call has no figures: the application stopped reading it early."""
        how = f" ({self.interrupted_by})" if self.interrupted_by else ""
        return (
            f"{self.operation} to {display_model(self.model_id)} abandoned after "
            f"{self.tokens_received} tokens{how}"
        )

    @property
    def complete(self) -> bool:
        return self.state == "complete"

    @property
    def streaming(self) -> bool:
        return self.operation in STREAMING_OPERATIONS

    def generation(self, *, text_in_repr: bool = False) -> Generation:
        """The figures of this call, with its cost; meaningful once :attr:`complete`."""
        generation = self._figures(text_in_repr)
        return (
            generation
            if self.coster is None
            else replace(generation, cost_usd=self.coster(generation))
        )

    @property
    def prompt_sha(self) -> str | None:
        """The request's prompt hash (computed once, on first use)."""
        if self._prompt_sha is False:
            from .promptkey import request_prompt_sha

            self._prompt_sha = request_prompt_sha(self.model_id, self.operation, self.request)
        return self._prompt_sha if isinstance(self._prompt_sha, str) else None

    def _figures(self, text_in_repr: bool) -> Generation:
        sha = self.prompt_sha
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
                cache_read_input_tokens=answer.cache_read_input_tokens,
                cache_write_input_tokens=answer.cache_write_input_tokens,
                prompt_sha=sha,
                chunks=answer.content_events if self.operation in STREAMING_OPERATIONS else None,
                text_in_repr=text_in_repr,
            )


def _json_object(raw: bytes | str) -> dict[str, Any] | None:
    try:
        value = json.loads(raw)
    except (ValueError, TypeError):
        return None
    return value if isinstance(value, dict) else None
