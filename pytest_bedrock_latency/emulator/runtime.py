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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

from . import families, validation
from .content import Block
from .error_codes import ERROR_STATUS
from .eventstream import event_frame
from .families import Answer, NativeRequest, RequestValidationError
from .guardrails import (
    DEFAULT_BLOCKED_MESSAGE,
    Guardrail,
    apply_response,
    assessment,
    converse_trace,
    triggered,
)
from .plan import AnswerPlan, ParsedRequest, plan_answer
from .profiles import Profile
from .prompt_cache import CacheUse
from .records import RequestRecord
from .request_features import Features, converse_features, count_features, native_features
from .schedule import ms_per_token_of
from .textgen import count_input_tokens, derive_rng, prompt_sha
from .wire import ClientGone, Responder, Step, pad, sleep_until, stream_exception

__all__ = [
    "OPERATIONS",
    "STREAMING",
    "EmulatorState",
    "Resolved",
    "serve_apply_guardrail",
    "serve_runtime",
]

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

    def cache_use(self, model_id: str, prefixes: Any, ttl_s: float) -> CacheUse:
        """Look up and store a request's prompt-cache prefixes."""

    def guardrail(self, identifier: str) -> Guardrail | None:
        """The guardrail created through the control plane under ``identifier``, if any."""

    def not_found_message(self, model_id: str) -> str:
        """The 404 message for a model id with no profile (names the profiles file)."""


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


def serve_apply_guardrail(
    state: EmulatorState,
    out: Responder,
    identifier: str,
    version: str,
    body: bytes,
    intervention_rate: float,
    seed: int,
) -> None:
    """ApplyGuardrail: check ``content`` texts against a guardrail (see ``guardrails``)."""
    request_id = str(uuid.uuid4())
    try:
        doc = _json_object(body)
        source = doc.get("source")
        if source not in ("INPUT", "OUTPUT"):
            raise RequestValidationError(
                f"1 validation error detected: Value '{source}' at 'source' failed to satisfy "
                "constraint: Member must satisfy enum value set: [INPUT, OUTPUT]"
            )
        content = doc.get("content")
        if not isinstance(content, list) or not content:
            raise RequestValidationError("content must be a non-empty list of content blocks.")
        texts = []
        for block in content:
            text = (block.get("text") or {}).get("text") if isinstance(block, Mapping) else None
            if not isinstance(text, str):
                raise RequestValidationError('Each content block must be {"text": {"text": ...}}.')
            texts.append(text)
    except RequestValidationError as exc:
        out.send_error("ValidationException", request_id, str(exc))
        return
    text = "\n".join(texts)
    guard = state.guardrail(identifier)
    sample = state.next_sample("guardrail:" + identifier, prompt_sha(text))
    u = derive_rng("apply-guardrail", seed, identifier, version, text, sample).random()
    intervened = triggered(guard, text) or u < intervention_rate
    out.send_json(200, apply_response(guard, str(source), text, intervened, 3), request_id)


def _elapsed_ms(t0: float) -> int:
    return round((time.perf_counter() - t0) * 1000)


def _usage(answer: Answer) -> dict[str, int]:
    cached = answer.cache_read_tokens + answer.cache_write_tokens
    usage = {
        "inputTokens": answer.input_tokens,
        "outputTokens": answer.output_tokens,
        "totalTokens": answer.input_tokens + answer.output_tokens + cached,
    }
    if cached:
        usage["cacheReadInputTokens"] = answer.cache_read_tokens
        usage["cacheWriteInputTokens"] = answer.cache_write_tokens
    return usage


def _pick_paths(document: Mapping[str, Any], paths: tuple[str, ...]) -> dict[str, Any]:
    """``additionalModelResponseFields``: the members of the native response the paths name."""
    out: dict[str, Any] = {}
    for path in paths:
        node: Any = document
        keys = [k.replace("~1", "/").replace("~0", "~") for k in path.strip("/").split("/")]
        found = True
        for key in keys:
            if isinstance(node, Mapping) and key in node:
                node = node[key]
            elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
                node = node[int(key)]
            else:
                found = False
                break
        if not found:
            continue
        target = out
        for key in keys[:-1]:
            target = target.setdefault(key, {})
        target[keys[-1]] = node
    return out


def _echo(req: ParsedRequest) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if req.performance_latency:
        out["performanceConfig"] = {"latency": req.performance_latency}
    if req.service_tier:
        out["serviceTier"] = {"type": req.service_tier}
    return out


def _cache_headers(answer: Answer) -> dict[str, str]:
    if not (answer.cache_read_tokens or answer.cache_write_tokens):
        return {}
    return {
        "X-Amzn-Bedrock-Cache-Read-Input-Token-Count": str(answer.cache_read_tokens),
        "X-Amzn-Bedrock-Cache-Write-Input-Token-Count": str(answer.cache_write_tokens),
    }


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
    model_id: str = "",
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
        features = native_features(family, _json_object(body), model_id, native.max_tokens)
        return ParsedRequest(
            native.prompt, native.max_tokens, native.stop_sequences, perf, tier, features
        )
    doc = _json_object(body)
    if op == "CountTokens":
        native, features = _parse_count_tokens(doc, family, max_output_tokens, model_id)
        return ParsedRequest(native.prompt, None, (), None, None, features)
    validation.check_converse(doc, max_output_tokens)
    prompt = families.converse_prompt(doc.get("messages"), doc.get("system"))
    cfg = doc.get("inferenceConfig") or {}
    perf = (doc.get("performanceConfig") or {}).get("latency")
    tier = (doc.get("serviceTier") or {}).get("type")
    features = converse_features(doc, model_id, cfg.get("maxTokens"))
    return ParsedRequest(
        prompt, cfg.get("maxTokens"), tuple(cfg.get("stopSequences") or ()), perf, tier, features
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
    doc: Mapping[str, Any], family: str | None, max_output_tokens: int, model_id: str
) -> tuple[NativeRequest, Features]:
    inp = doc.get("input")
    if not isinstance(inp, dict):
        raise RequestValidationError("The input field is required.")
    if isinstance(inp.get("converse"), dict):
        conv = inp["converse"]
        validation.check_messages(
            conv.get("messages"), conv.get("system"), has_tool_config=bool(conv.get("toolConfig"))
        )
        prompt = families.converse_prompt(conv.get("messages"), conv.get("system"))
        return NativeRequest(prompt, None, ()), Features(tokens=count_features(conv))
    if isinstance(inp.get("invokeModel"), dict):
        if family is None:
            raise RequestValidationError("The model's native body format is unknown.")
        try:
            raw = base64.b64decode(inp["invokeModel"].get("body") or "", validate=True)
        except (ValueError, TypeError):
            raise RequestValidationError("invokeModel.body is not valid base64.") from None
        native = families.parse_native_request(family, raw)
        return native, native_features(family, _json_object(raw), model_id, None)
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
        self.sent = 0  # deltas of a stream built so far (the pacer may build them elsewhere)
        self.guard: Guardrail | None = None
        self.family = "nova"

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
            self._fail("ResourceNotFoundException", self.state.not_found_message(self.model_id))
            return
        profile = resolved.profile
        self.profile_key = profile.key
        try:
            req = parse_request(
                self.op,
                resolved.family,
                body,
                self.headers,
                profile.max_output_tokens,
                self.model_id,
            )
        except RequestValidationError as exc:
            self._fail("ValidationException", str(exc))
            return
        self.sha = prompt_sha(req.prompt)
        features = req.features
        prompt_tokens = features.tokens
        input_tokens = prompt_tokens.total if prompt_tokens else count_input_tokens(req.prompt)
        if self.op == "CountTokens":
            self.input_tokens = input_tokens
            self._log(200, None)
            self.out.send_json(200, {"inputTokens": input_tokens}, self.request_id)
            return
        self.req = req
        sample = self.state.next_sample(self.model_id, self.sha)
        cache = CacheUse()
        if prompt_tokens is not None and prompt_tokens.prefixes:
            cache = self.state.cache_use(self.model_id, prompt_tokens.prefixes, profile.cache_ttl_s)
        guard = None
        messages = (DEFAULT_BLOCKED_MESSAGE, DEFAULT_BLOCKED_MESSAGE)
        if features.guardrail is not None:
            guard = self.state.guardrail(features.guardrail.identifier)
            if guard is not None:
                messages = (guard.blocked_input, guard.blocked_output)
        plan = plan_answer(
            profile,
            self.model_id,
            req,
            sample,
            self.streaming,
            input_tokens=input_tokens,
            cached_tokens=cache.read_tokens,
            guardrail_hit=triggered(guard, features.user_text),
            guardrail_messages=messages,
        )
        if plan.throttled:
            self._fail("ThrottlingException")
            return
        if plan.not_ready:
            self._fail("ModelNotReadyException")
            return
        if injected is not None:  # a camelCase stream exception: fail before the first delta
            plan = replace(plan, stream_error_after=0)
        uncached = max(0, input_tokens - cache.read_tokens - cache.write_tokens)
        self.plan, self.sample, self.input_tokens = plan, sample, uncached
        self.guard = guard

        answer = Answer(
            model_id=self.model_id,
            text=next((b.text for b in plan.blocks if b.kind == "text"), ""),
            input_tokens=uncached,
            output_tokens=plan.output_tokens,
            stop_reason=plan.stop_reason,
            stop_sequence=plan.stop_sequence,
            request_id=self.request_id,
            blocks=plan.blocks,
            cache_read_tokens=cache.read_tokens,
            cache_write_tokens=cache.write_tokens,
        )
        family = resolved.family or "nova"
        self.family = family
        if self.op == "Converse":
            self._converse(req, plan, answer)
        elif self.op == "InvokeModel":
            self._invoke(req, plan, answer, family)
        elif self.op == "ConverseStream":
            self._stream_converse(req, plan, answer, injected)
        else:
            self._stream_invoke(req, plan, answer, injected, family)

    def _response_fields(self, req: ParsedRequest, answer: Answer) -> dict[str, Any]:
        """``additionalModelResponseFields`` for the paths the request asked for (maybe none)."""
        paths = req.features.response_field_paths
        if not paths:
            return {}
        native = families.native_response(self.family, answer)
        return {"additionalModelResponseFields": _pick_paths(native, paths)}

    def _trace(self, req: ParsedRequest, plan: AnswerPlan, answer: Answer) -> dict[str, Any]:
        """The Converse ``trace`` (guardrail assessments) when the request enabled it."""
        asked = req.features.guardrail
        if asked is None or not asked.trace:
            return {}
        gid = self.guard.guardrail_id if self.guard else asked.identifier
        text = req.features.user_text
        inp = assessment(self.guard, text, plan.guardrail == "input", 4)
        output = None
        if plan.guardrail != "input":
            output = assessment(self.guard, answer.text, plan.guardrail == "output", 4)
        return {"trace": converse_trace(gid, inp, output, plan.guardrail is not None)}

    def _converse(self, req: ParsedRequest, plan: AnswerPlan, answer: Answer) -> None:
        sleep_until(self.t0 + plan.done_ms / 1000.0)
        content = [families.converse_content(b) for b in answer.content_blocks()]
        out: dict[str, Any] = {
            "output": {"message": {"role": "assistant", "content": content}},
            "stopReason": plan.stop_reason,
            "usage": _usage(answer),
            "metrics": {"latencyMs": _elapsed_ms(self.t0)},
        }
        out.update(self._response_fields(req, answer))
        out.update(self._trace(req, plan, answer))
        out.update(_echo(req))
        self._log(200, None)
        self.out.send_json(200, out, self.request_id)

    def _invoke(self, req: ParsedRequest, plan: AnswerPlan, answer: Answer, family: str) -> None:
        sleep_until(self.t0 + plan.done_ms / 1000.0)
        headers = {
            "X-Amzn-Bedrock-Input-Token-Count": str(answer.input_tokens),
            "X-Amzn-Bedrock-Output-Token-Count": str(answer.output_tokens),
            "X-Amzn-Bedrock-Invocation-Latency": str(_elapsed_ms(self.t0)),
            **_cache_headers(answer),
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

    def _delta_steps(
        self,
        plan: AnswerPlan,
        first: Callable[[], list[bytes]],
        open_block: Callable[[int, Block], list[bytes]],
        piece: Callable[[int, Block, str, int], bytes],
        close_block: Callable[[int, Block], list[bytes]],
    ) -> tuple[list[Step], Callable[[], list[bytes]]]:
        """A step per delta, opening and closing content blocks around its pieces.

        Stops before delta ``plan.stream_error_after``. Returns the steps and what builds the
        frames of blocks that had no pieces (to go out with the end of the stream, built then
        so frame numbers follow the deltas'). Each step's frames are built when it is sent
        (maybe on the pacer's thread); ``self.sent`` counts the deltas built so far, for the
        request log of a stream whose client went away.
        """
        steps: list[Step] = []
        opened: set[int] = set()
        n = len(plan.deltas)
        for i, (text, offset) in enumerate(zip(plan.deltas, plan.delta_offsets_ms, strict=False)):
            if plan.stream_error_after == i:
                return steps, list
            index = plan.delta_blocks[i] if i < len(plan.delta_blocks) else 0
            block = plan.blocks[index] if index < len(plan.blocks) else Block("text", text, ())
            opens = index not in opened
            opened.add(index)
            closes = i + 1 == n or plan.delta_blocks[i + 1] != index

            def frames(
                i: int = i,
                index: int = index,
                block: Block = block,
                text: str = text,
                opens: bool = opens,
                closes: bool = closes,
            ) -> list[bytes]:
                out = first() if i == 0 else []
                if opens:
                    out += open_block(index, block)
                out.append(piece(index, block, text, i))
                if closes:
                    out += close_block(index, block)
                self.sent = i + 1
                return out

            steps.append(Step(self.t0 + offset / 1000.0, frames, sets_slip=i == 0))

        def empty() -> list[bytes]:
            out: list[bytes] = []
            for index, block in enumerate(plan.blocks):
                if index not in opened:
                    out += open_block(index, block) + close_block(index, block)
            return out

        return steps, empty

    def _stream_converse(
        self, req: ParsedRequest, plan: AnswerPlan, answer: Answer, injected: str | None
    ) -> None:
        out = self.out
        out.start_stream(self.request_id, {})
        n_frames = 0

        def frame(kind: str, payload: dict[str, Any]) -> bytes:
            nonlocal n_frames
            n_frames += 1
            return event_frame(kind, {**payload, "p": pad(n_frames)})

        def open_block(index: int, block: Block) -> list[bytes]:
            if block.kind != "tool_use" or block.tool is None:
                return []
            tool = {"toolUseId": block.tool.tool_use_id, "name": block.tool.name}
            return [
                frame("contentBlockStart", {"start": {"toolUse": tool}, "contentBlockIndex": index})
            ]

        def piece(index: int, block: Block, text: str, i: int) -> bytes:
            delta = families.converse_delta(block, text)
            return frame("contentBlockDelta", {"contentBlockIndex": index, "delta": delta})

        def close_block(index: int, block: Block) -> list[bytes]:
            frames = []
            if block.kind == "reasoning":
                delta = {"reasoningContent": {"signature": block.signature}}
                frames.append(
                    frame("contentBlockDelta", {"contentBlockIndex": index, "delta": delta})
                )
            frames.append(frame("contentBlockStop", {"contentBlockIndex": index}))
            return frames

        # messageStart goes out with the headers, as Bedrock does; TTFT is the first delta.
        steps = [Step(self.t0, lambda: [frame("messageStart", {"role": "assistant"})])]
        deltas, empty = self._delta_steps(plan, list, open_block, piece, close_block)
        steps += deltas
        if plan.stream_error_after is not None:
            steps.append(self._break_step(plan, len(deltas), injected))
        else:

            def end() -> list[bytes]:
                stop: dict[str, Any] = {"stopReason": plan.stop_reason}
                stop.update(self._response_fields(req, answer))
                metadata: dict[str, Any] = {
                    "usage": _usage(answer),
                    "metrics": {"latencyMs": _elapsed_ms(self.t0)},
                }
                metadata.update(self._trace(req, plan, answer))
                metadata.update(_echo(req))
                self._log(200, None)
                return [*empty(), frame("messageStop", stop), frame("metadata", metadata)]

            # Due at once: the end follows the last delta without a wait of its own.
            steps.append(Step(self.t0, end))
        self._play(steps)

    def _play(self, steps: list[Step]) -> None:
        """Send the stream's steps; log a client that went away with the deltas it got."""
        try:
            self.out.play(steps)
        except ClientGone:
            self._log(200, "ClientDisconnected", sent=self.sent)
            raise

    def _break_step(self, plan: AnswerPlan, sent: int, injected: str | None) -> Step:
        """End a stream mid-answer with an exception frame, when the next delta was due."""
        due = plan.delta_offsets_ms[sent] if sent < len(plan.delta_offsets_ms) else plan.done_ms

        def frames() -> list[bytes]:
            member, frame = stream_exception(injected, sent)
            self._log(200, member, sent=sent)
            return [frame]

        return Step(self.t0 + due / 1000.0, frames)

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

        blocky = family in families.BLOCK_STREAM_FAMILIES
        first_byte_ms: int | None = None

        def first() -> list[bytes]:
            # Native preambles (anthropic message_start...) come with the first token.
            nonlocal first_byte_ms
            first_byte_ms = _elapsed_ms(self.t0)
            return [chunk(c) for c in families.native_stream_start(family, answer)]

        def open_block(index: int, block: Block) -> list[bytes]:
            if not blocky:
                return []
            return [chunk(c) for c in families.native_block_start(family, index, block)]

        def piece(index: int, block: Block, text: str, i: int) -> bytes:
            if blocky:
                return chunk(families.native_block_delta(family, index, block, text))
            delta = families.native_stream_delta(family, answer, text, plan.delta_tokens[i], i == 0)
            return chunk(delta)

        def close_block(index: int, block: Block) -> list[bytes]:
            if not blocky:
                return []
            return [chunk(c) for c in families.native_block_stop(family, index, block)]

        steps, empty = self._delta_steps(plan, first, open_block, piece, close_block)
        if plan.stream_error_after is not None:
            steps.append(self._break_step(plan, len(steps), injected))
            self._play(steps)
            return

        def end() -> list[bytes]:
            latency = _elapsed_ms(self.t0)
            metrics = {
                "inputTokenCount": answer.input_tokens,
                "outputTokenCount": answer.output_tokens,
                "invocationLatency": latency,
                "firstByteLatency": first_byte_ms if first_byte_ms is not None else latency,
            }
            if answer.cache_read_tokens or answer.cache_write_tokens:
                metrics["cacheReadInputTokenCount"] = answer.cache_read_tokens
                metrics["cacheWriteInputTokenCount"] = answer.cache_write_tokens
            frames = [chunk(c) for c in families.native_stream_end(family, answer, metrics)]
            if not plan.deltas:
                frames = first() + empty() + frames
            self._log(200, None)
            return frames

        steps.append(Step(self.t0 + plan.done_ms / 1000.0, end))
        self._play(steps)
