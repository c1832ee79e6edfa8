"""The Bedrock Runtime operations: parse a request, plan its answer, serve it (paced).

Transport-free: the server hands over the operation, model id, body and lower-cased headers
with a :class:`~.wire.Responder` to answer through, and an :class:`EmulatorState` for the
shared state (profiles, injected faults, sample counters, the request log).
"""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

from . import families, validation
from .error_codes import ERROR_STATUS
from .eventstream import event_frame
from .families import Answer, NativeRequest, RequestValidationError
from .plan import AnswerPlan, ParsedRequest, plan_answer
from .profiles import Profile
from .records import RequestRecord
from .schedule import ms_per_token_of
from .textgen import count_input_tokens, prompt_sha
from .wire import ClientGone, Responder, pad, stream_exception

__all__ = ["OPERATIONS", "STREAMING", "EmulatorState", "Resolved", "serve_runtime"]

#: URI suffix -> botocore operation name.
OPERATIONS: Mapping[str, str] = {
    "converse": "Converse",
    "converse-stream": "ConverseStream",
    "invoke": "InvokeModel",
    "invoke-with-response-stream": "InvokeModelWithResponseStream",
    "count-tokens": "CountTokens",
}
#: The operations that answer with an event stream.
STREAMING = frozenset({"ConverseStream", "InvokeModelWithResponseStream"})

_ATTEMPT = re.compile(r"(?:^|;)\s*attempt=([^;]*)")


@dataclass(frozen=True)
class Resolved:
    """The profile a model id is served with, and its native body family (if known)."""

    profile: Profile
    family: str | None


class EmulatorState(Protocol):
    """What serving a runtime request needs from the emulator."""

    def resolve(self, model_id: str) -> Resolved | None:
        """The profile for ``model_id``, or None (404)."""

    def take_injected(self, model_id: str, streaming: bool) -> str | None:
        """Consume one injected error code that applies to this request, if any."""

    def next_sample(self, model_id: str, sha: str) -> int:
        """How many times this prompt was asked of this model before (then count this one)."""

    def record(self, record: RequestRecord) -> None:
        """Append to the request log."""


def serve_runtime(
    state: EmulatorState,
    out: Responder,
    op: str,
    model_id: str,
    body: bytes,
    headers: Mapping[str, str],
    t0: float,
    received_at: float,
) -> None:
    """Answer one runtime request. ``headers`` has lower-cased names; ``t0`` is perf_counter."""
    _Call(state, out, op, model_id, headers, t0, received_at).serve(body)


def _sleep_until(deadline: float) -> None:
    remaining = deadline - time.perf_counter()
    if remaining > 0:
        time.sleep(remaining)


def _elapsed_ms(t0: float) -> int:
    return round((time.perf_counter() - t0) * 1000)


def _usage(answer: Answer) -> dict[str, int]:
    return {
        "inputTokens": answer.input_tokens,
        "outputTokens": answer.output_tokens,
        "totalTokens": answer.input_tokens + answer.output_tokens,
    }


def _echo(req: ParsedRequest) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if req.performance_latency:
        out["performanceConfig"] = {"latency": req.performance_latency}
    if req.service_tier:
        out["serviceTier"] = {"type": req.service_tier}
    return out


def _echo_headers(req: ParsedRequest) -> dict[str, str]:
    out: dict[str, str] = {}
    if req.performance_latency:
        out["X-Amzn-Bedrock-PerformanceConfig-Latency"] = req.performance_latency
    if req.service_tier:
        out["X-Amzn-Bedrock-Service-Tier"] = req.service_tier
    return out


def parse_request(
    op: str,
    family: str | None,
    body: bytes,
    headers: Mapping[str, str],
    max_output_tokens: int,
) -> ParsedRequest:
    """The answer-shaping parts of a runtime request; ``RequestValidationError`` when invalid."""
    if op in ("InvokeModel", "InvokeModelWithResponseStream"):
        if family is None:
            raise RequestValidationError(
                "The emulator cannot tell this model's native body format; set `family` "
                "in its profile (anthropic, nova, titan, llama, mistral)."
            )
        native = families.parse_native_request(family, body)
        if native.max_tokens is not None and native.max_tokens > max_output_tokens:
            raise RequestValidationError(
                f"The maximum tokens you requested exceeds the model limit of "
                f"{max_output_tokens}. Try again with a maximum tokens value that is lower than "
                f"{max_output_tokens + 1}."
            )
        perf = headers.get("x-amzn-bedrock-performanceconfig-latency")
        if perf not in (None, "standard", "optimized"):
            raise RequestValidationError(
                f"1 validation error detected: Value '{perf[:80]}' at "
                "'performanceConfigLatency' failed to satisfy constraint: Member must satisfy "
                "enum value set: [standard, optimized]"
            )
        tier = headers.get("x-amzn-bedrock-service-tier")
        if tier not in (None, "priority", "default", "flex", "reserved"):
            raise RequestValidationError(
                f"1 validation error detected: Value '{tier[:80]}' at 'serviceTier' failed to "
                "satisfy constraint: Member must satisfy enum value set: "
                "[priority, default, flex, reserved]"
            )
        return ParsedRequest(native.prompt, native.max_tokens, native.stop_sequences, perf, tier)
    doc = _json_object(body)
    if op == "CountTokens":
        native = _parse_count_tokens(doc, family, max_output_tokens)
        return ParsedRequest(native.prompt, None, (), None, None)
    validation.check_converse(doc, max_output_tokens)
    prompt = families.converse_prompt(doc.get("messages"), doc.get("system"))
    cfg = doc.get("inferenceConfig") or {}
    perf = (doc.get("performanceConfig") or {}).get("latency")
    tier = (doc.get("serviceTier") or {}).get("type")
    return ParsedRequest(
        prompt, cfg.get("maxTokens"), tuple(cfg.get("stopSequences") or ()), perf, tier
    )


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(body.decode("utf-8") or "null")
    except UnicodeDecodeError:
        raise RequestValidationError("Malformed request body: not UTF-8.") from None
    except RecursionError:
        raise RequestValidationError("Malformed request body: JSON nested too deeply.") from None
    except ValueError as exc:  # JSONDecodeError, or an integer of more than 4300 digits
        raise RequestValidationError(f"Malformed request body: not valid JSON ({exc}).") from None
    if not isinstance(doc, dict):
        raise RequestValidationError("Malformed request body: expected a JSON object.")
    return doc


def _parse_count_tokens(
    doc: Mapping[str, Any], family: str | None, max_output_tokens: int
) -> NativeRequest:
    inp = doc.get("input")
    if not isinstance(inp, dict):
        raise RequestValidationError("The input field is required.")
    if isinstance(inp.get("converse"), dict):
        conv = inp["converse"]
        validation.check_messages(
            conv.get("messages"), conv.get("system"), has_tool_config=bool(conv.get("toolConfig"))
        )
        return NativeRequest(
            families.converse_prompt(conv.get("messages"), conv.get("system")), None, ()
        )
    if isinstance(inp.get("invokeModel"), dict):
        if family is None:
            raise RequestValidationError("The model's native body format is unknown.")
        try:
            raw = base64.b64decode(inp["invokeModel"].get("body") or "", validate=True)
        except (ValueError, TypeError):
            raise RequestValidationError("invokeModel.body is not valid base64.") from None
        return families.parse_native_request(family, raw)
    del max_output_tokens  # CountTokens counts the input only
    raise RequestValidationError("The input must contain converse or invokeModel.")


class _Call:
    """One runtime request being served; what is known about it grows as it is parsed."""

    def __init__(
        self,
        state: EmulatorState,
        out: Responder,
        op: str,
        model_id: str,
        headers: Mapping[str, str],
        t0: float,
        received_at: float,
    ) -> None:
        self.state, self.out, self.op, self.model_id = state, out, op, model_id
        self.headers, self.t0, self.received_at = headers, t0, received_at
        self.request_id = str(uuid.uuid4())
        self.attempt = 1
        self.streaming = op in STREAMING
        self.profile_key: str | None = None
        self.req: ParsedRequest | None = None
        self.sha: str | None = None
        self.input_tokens: int | None = None
        self.plan: AnswerPlan | None = None
        self.sample: int | None = None

    def _log(self, status: int, error: str | None, *, sent: int | None = None) -> None:
        """Record this request as answered so far (``sent``: deltas sent before a break)."""
        plan, req = self.plan, self.req
        offsets: tuple[float, ...] = ()
        tokens: int | None = None
        if plan is not None:
            n_deltas = len(plan.deltas) if sent is None else sent
            offsets = plan.delta_offsets_ms[:n_deltas]
            tokens = plan.delta_tokens[n_deltas - 1] if n_deltas else 0
        self.state.record(
            RequestRecord(
                model_id=self.model_id,
                profile_key=self.profile_key,
                operation=self.op,
                attempt=self.attempt,
                status=status,
                error_code=error,
                input_tokens=self.input_tokens,
                output_tokens=tokens,
                stop_reason=plan.stop_reason if plan is not None and error is None else None,
                ttft_ms=offsets[0] if offsets else None,
                token_offsets_ms=offsets,
                ms_per_token=ms_per_token_of(offsets, tokens) if tokens is not None else None,
                performance_latency=req.performance_latency if req else None,
                service_tier=req.service_tier if req else None,
                outlier=plan.outlier if plan is not None else False,
                received_at=self.received_at,
                prompt_sha=self.sha,
                sample=self.sample,
                request_id=self.request_id,
                user_agent=self.headers.get("user-agent", ""),
            )
        )

    def _fail(
        self, code: str, message: str | None = None, extra: Mapping[str, Any] | None = None
    ) -> None:
        self._log(ERROR_STATUS[code], code)
        self.out.send_error(code, self.request_id, message, extra)

    def _read_attempt(self) -> str | None:
        """Take the attempt number from ``amz-sdk-request``; an error message if it is garbage."""
        match = _ATTEMPT.search(self.headers.get("amz-sdk-request", ""))
        if match is None:
            return None
        value = match.group(1).strip()
        if not value.isascii() or not value.isdigit() or len(value) > 9 or int(value) < 1:
            return (
                "Invalid amz-sdk-request header: attempt must be a positive integer of at most "
                f"9 digits (got '{value[:40]}{'...' if len(value) > 40 else ''}')."
            )
        self.attempt = int(value)
        return None

    def serve(self, body: bytes) -> None:
        bad_attempt = self._read_attempt()
        if bad_attempt is not None:
            self._fail("ValidationException", bad_attempt)
            return
        injected = self.state.take_injected(self.model_id, self.streaming)
        if injected is not None and injected in ERROR_STATUS:
            extra: dict[str, Any] = {}
            if injected == "ModelErrorException":
                extra = {"originalStatusCode": 500, "resourceName": self.model_id}
            elif injected == "ModelStreamErrorException":
                extra = {"originalStatusCode": 500, "originalMessage": "Model stream failed"}
            self._fail(injected, extra=extra)
            return
        resolved = self.state.resolve(self.model_id)
        if resolved is None:
            self._fail("ResourceNotFoundException")
            return
        profile = resolved.profile
        self.profile_key = profile.key
        try:
            req = parse_request(
                self.op, resolved.family, body, self.headers, profile.max_output_tokens
            )
        except RequestValidationError as exc:
            self._fail("ValidationException", str(exc))
            return
        self.sha = prompt_sha(req.prompt)
        input_tokens = count_input_tokens(req.prompt)
        if self.op == "CountTokens":
            self.input_tokens = input_tokens
            self._log(200, None)
            self.out.send_json(200, {"inputTokens": input_tokens}, self.request_id)
            return
        self.req = req
        sample = self.state.next_sample(self.model_id, self.sha)
        plan = plan_answer(profile, self.model_id, req, sample, self.streaming)
        if plan.throttled:
            self._fail("ThrottlingException")
            return
        if plan.not_ready:
            self._fail("ModelNotReadyException")
            return
        if injected is not None:  # a camelCase stream exception: fail before the first delta
            plan = replace(plan, stream_error_after=0)
        self.plan, self.sample, self.input_tokens = plan, sample, input_tokens

        answer = Answer(
            model_id=self.model_id,
            text="".join(plan.deltas),
            input_tokens=input_tokens,
            output_tokens=len(plan.words),
            stop_reason=plan.stop_reason,
            stop_sequence=plan.stop_sequence,
            request_id=self.request_id,
        )
        family = resolved.family or "nova"
        if self.op == "Converse":
            self._converse(req, plan, answer)
        elif self.op == "InvokeModel":
            self._invoke(req, plan, answer, family)
        elif self.op == "ConverseStream":
            self._stream_converse(req, plan, answer, injected)
        else:
            self._stream_invoke(req, plan, answer, injected, family)

    def _converse(self, req: ParsedRequest, plan: AnswerPlan, answer: Answer) -> None:
        _sleep_until(self.t0 + plan.done_ms / 1000.0)
        out: dict[str, Any] = {
            "output": {"message": {"role": "assistant", "content": [{"text": answer.text}]}},
            "stopReason": plan.stop_reason,
            "usage": _usage(answer),
            "metrics": {"latencyMs": _elapsed_ms(self.t0)},
        }
        out.update(_echo(req))
        self._log(200, None)
        self.out.send_json(200, out, self.request_id)

    def _invoke(self, req: ParsedRequest, plan: AnswerPlan, answer: Answer, family: str) -> None:
        _sleep_until(self.t0 + plan.done_ms / 1000.0)
        headers = {
            "X-Amzn-Bedrock-Input-Token-Count": str(answer.input_tokens),
            "X-Amzn-Bedrock-Output-Token-Count": str(answer.output_tokens),
            "X-Amzn-Bedrock-Invocation-Latency": str(_elapsed_ms(self.t0)),
            **_echo_headers(req),
        }
        self._log(200, None)
        self.out.send_json(
            200,
            families.native_response(family, answer),
            self.request_id,
            headers,
            content_type=self.headers.get("accept") or "application/json",
        )

    def _stream_converse(
        self, req: ParsedRequest, plan: AnswerPlan, answer: Answer, injected: str | None
    ) -> None:
        out = self.out
        out.start_stream(self.request_id, {})
        sent = 0
        try:
            # messageStart goes out with the headers, as Bedrock does; TTFT is the first delta.
            out.write(event_frame("messageStart", {"p": pad(0), "role": "assistant"}))
            for i, (text, offset) in enumerate(
                zip(plan.deltas, plan.delta_offsets_ms, strict=False)
            ):
                if plan.stream_error_after == i:
                    break
                _sleep_until(self.t0 + offset / 1000.0)
                out.write(
                    event_frame(
                        "contentBlockDelta",
                        {"contentBlockIndex": 0, "delta": {"text": text}, "p": pad(i + 1)},
                    )
                )
                sent = i + 1
            if plan.stream_error_after is not None:
                self._break_stream(plan, sent, injected)
                return
            metadata: dict[str, Any] = {
                "usage": _usage(answer),
                "metrics": {"latencyMs": _elapsed_ms(self.t0)},
                "p": pad(sent + 3),
            }
            metadata.update(_echo(req))
            self._log(200, None)
            out.write(
                event_frame("contentBlockStop", {"contentBlockIndex": 0, "p": pad(sent + 1)}),
                event_frame("messageStop", {"stopReason": plan.stop_reason, "p": pad(sent + 2)}),
                event_frame("metadata", metadata),
            )
            out.end()
        except ClientGone:
            self._log(200, "ClientDisconnected", sent=sent)
            raise

    def _break_stream(self, plan: AnswerPlan, sent: int, injected: str | None) -> None:
        """End a stream mid-answer with an exception frame, when the next delta was due."""
        due = plan.delta_offsets_ms[sent] if sent < len(plan.delta_offsets_ms) else plan.done_ms
        _sleep_until(self.t0 + due / 1000.0)
        member, frame = stream_exception(injected, sent)
        self._log(200, member, sent=sent)
        self.out.write(frame)
        self.out.end()

    def _stream_invoke(
        self,
        req: ParsedRequest,
        plan: AnswerPlan,
        answer: Answer,
        injected: str | None,
        family: str,
    ) -> None:
        out = self.out
        out.start_stream(
            self.request_id,
            {"X-Amzn-Bedrock-Content-Type": "application/json", **_echo_headers(req)},
        )
        n_frames = 0

        def chunk(obj: Mapping[str, Any]) -> bytes:
            nonlocal n_frames
            n_frames += 1
            raw = json.dumps(obj, separators=(",", ":")).encode("utf-8")
            return event_frame(
                "chunk", {"bytes": base64.b64encode(raw).decode("ascii"), "p": pad(n_frames)}
            )

        sent = 0
        first_byte_ms: int | None = None
        try:
            for i, (text, offset) in enumerate(
                zip(plan.deltas, plan.delta_offsets_ms, strict=False)
            ):
                if plan.stream_error_after == i:
                    break
                _sleep_until(self.t0 + offset / 1000.0)
                frames = []
                if i == 0:
                    # Native preambles (anthropic message_start...) come with the first token.
                    first_byte_ms = _elapsed_ms(self.t0)
                    frames = [chunk(c) for c in families.native_stream_start(family, answer)]
                frames.append(
                    chunk(
                        families.native_stream_delta(
                            family, answer, text, plan.delta_tokens[i], i == 0
                        )
                    )
                )
                out.write(*frames)
                sent = i + 1
            if plan.stream_error_after is not None:
                self._break_stream(plan, sent, injected)
                return
            _sleep_until(self.t0 + plan.done_ms / 1000.0)
            latency = _elapsed_ms(self.t0)
            metrics = {
                "inputTokenCount": answer.input_tokens,
                "outputTokenCount": answer.output_tokens,
                "invocationLatency": latency,
                "firstByteLatency": first_byte_ms if first_byte_ms is not None else latency,
            }
            end = families.native_stream_end(family, answer, metrics)
            if not plan.deltas:
                end = families.native_stream_start(family, answer) + end
            self._log(200, None)
            out.write(*[chunk(c) for c in end])
            out.end()
        except ClientGone:
            self._log(200, "ClientDisconnected", sent=sent)
            raise
