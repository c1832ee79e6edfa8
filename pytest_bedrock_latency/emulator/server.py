"""The emulator's HTTP server: Bedrock Runtime operations plus moto's control plane on one port.

Design notes (see docs/reference: bedrock-wire.md):

* stdlib ``ThreadingHTTPServer`` with an HTTP/1.1 handler. Streams are sent with
  ``Transfer-Encoding: chunked``, one event frame per HTTP chunk, because urllib3 only
  yields data per chunk; a Content-Length or close-delimited body would hide pacing.
* The raw request path is split on ``/`` before unquoting, because model ids are ARNs
  whose ``/`` arrive as ``%2F``.
* Requests that are not runtime operations are handed to moto's WSGI application, so
  ``bedrock`` control-plane calls work against the same URL.
* Every frame is sent at ``t0 + scheduled offset`` (absolute deadlines), so oversleeping
  one gap does not delay the rest of the stream.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import re
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, unquote_to_bytes

from . import families
from .eventstream import LAST_CHUNK, event_frame, exception_frame, http_chunk
from .families import Answer, NativeRequest, RequestValidationError
from .profiles import Profile, ProfileSet, ProfileSource, load_profiles
from .schedule import chunk_boundaries, chunk_offsets, ms_per_token_of, token_offsets
from .textgen import count_input_tokens, derive_rng, generate_words, lognormal_factor, prompt_sha

__all__ = ["ERROR_MESSAGES", "ERROR_STATUS", "OPERATIONS", "Emulator", "RequestRecord"]

#: URI suffix -> botocore operation name.
OPERATIONS: Mapping[str, str] = {
    "converse": "Converse",
    "converse-stream": "ConverseStream",
    "invoke": "InvokeModel",
    "invoke-with-response-stream": "InvokeModelWithResponseStream",
    "count-tokens": "CountTokens",
}

#: HTTP status of every Bedrock Runtime error code.
ERROR_STATUS: Mapping[str, int] = {
    "AccessDeniedException": 403,
    "ResourceNotFoundException": 404,
    "ThrottlingException": 429,
    "ModelTimeoutException": 408,
    "InternalServerException": 500,
    "ServiceUnavailableException": 503,
    "ValidationException": 400,
    "ModelNotReadyException": 429,
    "ModelErrorException": 424,
    "ModelStreamErrorException": 424,
    "ServiceQuotaExceededException": 400,
    "ConflictException": 400,
}

#: Messages as real Bedrock words them.
ERROR_MESSAGES: Mapping[str, str] = {
    "AccessDeniedException": "You don't have access to the model with the specified model ID.",
    "ResourceNotFoundException": "The provided model identifier is invalid.",
    "ThrottlingException": "Too many requests, please wait before trying again.",
    "ModelTimeoutException": "Model has timed out in processing the request. Try your request again.",
    "InternalServerException": "The server encountered an internal error while processing the "
    "request. Try your request again.",
    "ServiceUnavailableException": "Bedrock is unable to process your request.",
    "ValidationException": "Input validation failed. Check your request parameters and retry "
    "the request.",
    "ModelNotReadyException": "Model is not ready for inference. Wait and try your request again.",
    "ModelErrorException": "The model returned an error. Try your request again.",
    "ModelStreamErrorException": "An error occurred while streaming the response. Retry your "
    "request.",
    "ServiceQuotaExceededException": "Your request exceeds the service quota for your account. "
    "You can view your quotas at Service Quotas.",
    "ConflictException": "The request could not be completed because of a conflicting operation.",
}

# Mid-stream exception members of the ConverseStream/ResponseStream unions.
_STREAM_EXCEPTIONS = (
    "modelStreamErrorException",
    "internalServerException",
    "validationException",
    "throttlingException",
    "serviceUnavailableException",
    "modelTimeoutException",
)
_ERROR_TYPE_SUFFIX = ":http://internal.amazon.com/coral/com.amazon.bedrock/"
_FM_ARN = re.compile(r"^arn:aws[\w-]*:bedrock:[^:]*::foundation-model/(?P<id>.+)$")
_CUSTOM_ARN = re.compile(r"^arn:aws[\w-]*:bedrock:(?P<region>[^:]+):(?P<account>\d*):custom-model/")
_ATTEMPT = re.compile(r"attempt=(\d+)")
_PAD_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_MOTO_ACCOUNT = "123456789012"
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "date", "server"}


@dataclass(frozen=True)
class RequestRecord:
    """One request the emulator answered (retries are separate records).

    Times are milliseconds from request receipt and come from the emulator's schedule, so a
    test can compare them with what its client observed. The prompt is never stored, only
    ``prompt_sha``. ``stop_reason`` uses the Converse vocabulary for every operation.
    """

    model_id: str
    profile_key: str | None
    operation: str
    attempt: int
    status: int
    error_code: str | None
    input_tokens: int | None
    output_tokens: int | None
    stop_reason: str | None
    ttft_ms: float | None
    token_offsets_ms: tuple[float, ...]
    ms_per_token: float | None
    performance_latency: str | None
    service_tier: str | None
    outlier: bool
    received_at: float
    prompt_sha: str | None
    sample: int | None = None
    request_id: str = ""


class _ClientGone(Exception):
    """The client closed the connection while we were writing."""


@dataclass(frozen=True)
class _Resolved:
    profile: Profile
    family: str | None


@dataclass(frozen=True)
class _Plan:
    """Everything decided up front about one answer (deterministic from seed/model/prompt/sample)."""

    throttled: bool
    not_ready: bool
    outlier: bool
    words: tuple[str, ...]
    stop_reason: str
    stop_sequence: str | None
    deltas: tuple[str, ...]
    delta_tokens: tuple[int, ...]  # cumulative token count after each delta
    delta_offsets_ms: tuple[float, ...]
    done_ms: float
    stream_error_after: int | None  # number of deltas sent before a mid-stream error


@dataclass(frozen=True)
class _Request:
    prompt: str
    max_tokens: int | None
    stop_sequences: tuple[str, ...]
    performance_latency: str | None
    service_tier: str | None


@dataclass
class _Injected:
    code: str
    model_id: str | None
    remaining: int


def _pad(n: int) -> str:
    # Real Bedrock pads every event payload with a random-length "p" field; a deterministic
    # length is enough to exercise clients that must ignore it.
    length = 1 + (n * 7) % 23
    return (_PAD_ALPHABET * 2)[n % 31 : n % 31 + length]


def _plan_answer(
    profile: Profile, model_id: str, req: _Request, sample: int, streaming: bool
) -> _Plan:
    # The prompt factor depends on the prompt only (not the model), so a prompt that makes
    # one model verbose makes its candidate verbose too - like real prompts do.
    prompt_rng = derive_rng("prompt", profile.seed, req.prompt)
    prompt_factor = lognormal_factor(prompt_rng, profile.prompt_spread)
    rng = derive_rng("request", profile.seed, model_id, req.prompt, sample)
    # Fixed draw order keeps every decision repeatable whatever the rates are.
    u_throttle, u_not_ready, u_outlier, u_stream, u_pos = (rng.random() for _ in range(5))
    sample_factor = lognormal_factor(rng, profile.answer_tokens_spread)
    n = max(1, round(profile.answer_tokens * prompt_factor * sample_factor))
    words = generate_words(model_id, req.prompt, sample, n)

    stop_reason, stop_sequence = "end_turn", None
    stop_words: list[str] | None = None
    if req.stop_sequences:
        full = " ".join(words)
        hits = [(full.find(s), s) for s in req.stop_sequences if s in full]
        if hits:
            at, stop_sequence = min(hits)
            prefix = full[:at].rstrip()
            stop_words = prefix.split(" ") if prefix else []
    limit = len(stop_words) if stop_words is not None else len(words)
    if req.max_tokens is not None and req.max_tokens < limit:
        words, stop_reason, stop_sequence = words[: req.max_tokens], "max_tokens", None
    elif stop_words is not None:
        words, stop_reason = stop_words, "stop_sequence"

    outlier = u_outlier < profile.outlier_rate
    factor = 1.0
    if req.performance_latency == "optimized":
        factor /= profile.optimized_speedup
    if outlier:
        factor *= profile.outlier_factor
    tokens = token_offsets(
        profile.ttft_ms * factor, profile.ms_per_token * factor, len(words), profile.jitter, rng
    )
    bounds = chunk_boundaries(len(words), profile.tokens_per_chunk)
    offsets = chunk_offsets(tokens, bounds)
    deltas = tuple((" " if start else "") + " ".join(words[start:end]) for start, end in bounds)
    done = offsets[-1] if offsets else profile.ttft_ms * factor
    error_after: int | None = None
    if streaming and u_stream < profile.stream_error_rate:
        # "After some deltas": at least one when there are two or more, never all of them.
        error_after = (
            min(max(1, int(u_pos * len(deltas))), len(deltas) - 1) if len(deltas) > 1 else 0
        )
    return _Plan(
        throttled=u_throttle < profile.throttle_rate,
        not_ready=u_not_ready < profile.not_ready_rate,
        outlier=outlier,
        words=tuple(words),
        stop_reason=stop_reason,
        stop_sequence=stop_sequence,
        deltas=deltas,
        delta_tokens=tuple(end for _, end in bounds),
        delta_offsets_ms=tuple(offsets),
        done_ms=done,
        stream_error_after=error_after,
    )


def _sleep_until(deadline: float) -> None:
    remaining = deadline - time.perf_counter()
    if remaining > 0:
        time.sleep(remaining)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Keep-alive connections must not block shutdown.
    block_on_close = False

    def __init__(self, address: tuple[str, int], emulator: Emulator) -> None:
        self.emulator = emulator
        self.open_sockets: set[socket.socket] = set()
        self.sockets_lock = threading.Lock()
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.address_family = family
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.sockets_lock:
            self.open_sockets.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.sockets_lock:
            self.open_sockets.discard(request)
        super().shutdown_request(request)

    def close_open_connections(self) -> None:
        with self.sockets_lock:
            sockets = list(self.open_sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive and chunked streaming
    disable_nagle_algorithm = True  # a delayed ACK would add ~40 ms to small frames
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the request log is the record; stderr chatter would drown test output

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _dispatch(self) -> None:
        t0 = time.perf_counter()
        received_at = time.time()
        try:
            body = self._read_body()
            raw_path = self.path.split("?", 1)[0]
            parts = raw_path.split("/")  # split the raw path first: ARNs carry %2F
            if (
                self.command == "POST"
                and len(parts) == 4
                and parts[0] == ""
                and parts[1] == "model"
                and parts[3] in OPERATIONS
                and parts[2]
            ):
                self.server.emulator._serve_runtime(
                    self, OPERATIONS[parts[3]], unquote(parts[2]), body, t0, received_at
                )
            else:
                self.server.emulator._serve_control_plane(self, body)
        except (TimeoutError, BrokenPipeError, ConnectionResetError, _ClientGone):
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _dispatch


class Emulator:
    """A local, wire-compatible Amazon Bedrock Runtime (plus moto's control plane) on one port.

    Use as a context manager or call :meth:`start`/:meth:`stop`::

        with Emulator(profiles={"my-model": {"ttft_ms": 100, "ms_per_token": 5}}) as emu:
            client = boto3.client("bedrock-runtime", endpoint_url=emu.url, region_name="us-east-1",
                                  aws_access_key_id="testing", aws_secret_access_key="testing")

    ``profiles`` is a TOML path, a dict, a :class:`ProfileSet`, or ``None`` for the shipped
    defaults. Everything is validated in the constructor, before any socket is bound.
    """

    def __init__(
        self, profiles: ProfileSource = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self._profiles: ProfileSet = load_profiles(profiles)
        self._host = host
        self._requested_port = port
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._records: list[RequestRecord] = []
        self._samples: dict[tuple[str, str], int] = {}
        self._overrides: dict[str, Profile] = {}
        self._injected: list[_Injected] = []
        self._moto_app: Callable[..., Iterable[bytes]] | None = None

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> Emulator:
        """Bind and serve in a background thread. Calling it again while running is a no-op."""
        with self._lock:
            if self._server is not None:
                return self
            server = _Server((self._host, self._requested_port), self)
            thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.1},
                name="bedrock-emulator",
                daemon=True,
            )
            thread.start()
            self._server, self._thread = server, thread
        return self

    def stop(self) -> None:
        """Stop serving and close every open connection. Idempotent."""
        with self._lock:
            server, thread = self._server, self._thread
            self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.close_open_connections()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._server is not None

    @property
    def host(self) -> str:
        """The host the server binds to."""
        return self._host

    @property
    def port(self) -> int:
        """The bound port (the real one when started with port 0)."""
        server = self._server
        if server is None:
            raise RuntimeError("the emulator is not running; call start() first")
        return int(server.server_address[1])

    @property
    def url(self) -> str:
        """``http://host:port`` for ``endpoint_url`` / ``AWS_ENDPOINT_URL_BEDROCK_RUNTIME``."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    @property
    def profiles(self) -> ProfileSet:
        """The validated profile set loaded at construction."""
        return self._profiles

    # -- request log ------------------------------------------------------------------------

    @property
    def requests(self) -> list[RequestRecord]:
        """A snapshot copy of the request log, oldest first."""
        with self._lock:
            return list(self._records)

    def clear_requests(self) -> None:
        """Empty the request log (sample numbers keep counting)."""
        with self._lock:
            self._records.clear()

    def _record(self, record: RequestRecord) -> None:
        with self._lock:
            self._records.append(record)

    # -- per-test overrides -----------------------------------------------------------------

    def set_profile(self, model_id: str, **fields: Any) -> Profile:
        """Override profile fields for exactly ``model_id`` until :meth:`reset_overrides`.

        Starts from the profile ``model_id`` resolves to now (or the defaults when it has none),
        so ``set_profile("new-model")`` makes an unknown id servable. Fields are validated like
        a profile file (``ProfileError`` on mistakes).
        """
        current = self._resolve(model_id)
        profile = self._profiles.derive(model_id, current.profile if current else None, fields)
        if profile.family is None and current is not None and current.family is not None:
            profile = replace(profile, family=current.family)
        with self._lock:
            self._overrides[model_id] = profile
        return profile

    def reset_overrides(self) -> None:
        """Drop every :meth:`set_profile` override and every pending :meth:`inject_error`."""
        with self._lock:
            self._overrides.clear()
            self._injected.clear()

    def inject_error(self, code: str, *, model_id: str | None = None, times: int = 1) -> None:
        """Answer the next ``times`` runtime requests (for ``model_id``, or any) with ``code``.

        A PascalCase code from :data:`ERROR_STATUS` is an HTTP error before any output. A
        camelCase stream exception member (e.g. ``"throttlingException"``) is sent mid-stream,
        as an exception frame where the first delta would have been (stream operations only;
        non-stream requests pass through untouched and do not consume it).
        """
        if code not in ERROR_STATUS and code not in _STREAM_EXCEPTIONS:
            allowed = ", ".join([*ERROR_STATUS, *_STREAM_EXCEPTIONS])
            raise ValueError(f"unknown error code {code!r} (allowed: {allowed})")
        if times < 1:
            raise ValueError("times must be >= 1")
        with self._lock:
            self._injected.append(_Injected(code, model_id, times))

    def _take_injected(self, model_id: str, streaming: bool) -> str | None:
        with self._lock:
            for item in self._injected:
                if item.model_id not in (None, model_id):
                    continue
                if item.code in _STREAM_EXCEPTIONS and not streaming:
                    continue
                item.remaining -= 1
                if item.remaining == 0:
                    self._injected.remove(item)
                return item.code
        return None

    # -- profile resolution -----------------------------------------------------------------

    def profile_for(self, model_id: str) -> Profile | None:
        """The profile a request for ``model_id`` would use, or None (404)."""
        resolved = self._resolve(model_id)
        return resolved.profile if resolved else None

    def _resolve(self, model_id: str, depth: int = 0) -> _Resolved | None:
        """exact (overrides, then file) > longest glob > custom model's base (moto) > "*"."""
        candidates = [model_id]
        fm = _FM_ARN.match(model_id)
        if fm:
            candidates.append(fm.group("id"))  # a foundation-model ARN reaches the id's profile
        with self._lock:
            overrides = dict(self._overrides)

        def done(profile: Profile, hint: str) -> _Resolved:
            family = (
                profile.family
                or families.family_from_model_id(hint)
                or families.family_from_model_id(profile.key)
            )
            return _Resolved(profile, family)

        for cand in candidates:
            if cand in overrides:
                return done(overrides[cand], cand)
        for cand in candidates:
            exact = self._profiles.match_exact(cand)
            if exact is not None:
                return done(exact, cand)
        for cand in candidates:
            glob = self._profiles.match_glob(cand, include_star=False)
            if glob is not None:
                return done(glob, cand)
        base = self._custom_model_base(model_id) if depth < 3 else None
        if base is not None:
            inner = self._resolve(base, depth + 1)
            if inner is not None:
                family = inner.family or families.family_from_model_id(base)
                return _Resolved(inner.profile, family)
        star = self._profiles.match_glob(model_id)
        return done(star, model_id) if star is not None else None

    def _custom_model_base(self, model_arn: str) -> str | None:
        """The baseModelArn moto's bedrock backend knows for a custom-model ARN, if any."""
        match = _CUSTOM_ARN.match(model_arn)
        if match is None:
            return None
        try:
            from moto.bedrock.models import bedrock_backends

            backend = bedrock_backends[match.group("account") or _MOTO_ACCOUNT][
                match.group("region")
            ]
            for model in list(backend.custom_models.values()):
                if model.model_arn == model_arn:
                    return str(model.base_model_arn)
        except Exception:  # an unknown region/account in moto means "not known", not a crash
            return None
        return None

    # -- runtime operations -----------------------------------------------------------------

    def _next_sample(self, model_id: str, sha: str) -> int:
        with self._lock:
            n = self._samples.get((model_id, sha), 0)
            self._samples[(model_id, sha)] = n + 1
            return n

    def _parse(
        self, op: str, family: str | None, body: bytes, headers: Message[str, str]
    ) -> _Request:
        if op in ("InvokeModel", "InvokeModelWithResponseStream"):
            if family is None:
                raise RequestValidationError(
                    "The emulator cannot tell this model's native body format; set `family` "
                    "in its profile (anthropic, nova, titan, llama, mistral)."
                )
            native = families.parse_native_request(family, body)
            perf = headers.get("X-Amzn-Bedrock-PerformanceConfig-Latency")
            if perf not in (None, "standard", "optimized"):
                raise RequestValidationError(f"Invalid performanceConfigLatency: {perf}")
            return _Request(
                native.prompt,
                native.max_tokens,
                native.stop_sequences,
                perf,
                headers.get("X-Amzn-Bedrock-Service-Tier"),
            )
        try:
            doc = json.loads(body.decode("utf-8") or "null")
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise RequestValidationError("Malformed request body: not valid JSON.") from None
        if not isinstance(doc, dict):
            raise RequestValidationError("Malformed request body: expected a JSON object.")
        if op == "CountTokens":
            native = self._parse_count_tokens(doc, family)
            return _Request(native.prompt, None, (), None, None)
        prompt = families.converse_prompt(doc.get("messages"), doc.get("system"))
        cfg = doc.get("inferenceConfig") or {}
        if not isinstance(cfg, dict):
            raise RequestValidationError("inferenceConfig must be an object.")
        max_tokens = cfg.get("maxTokens")
        if max_tokens is not None and (
            not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1
        ):
            raise RequestValidationError(
                "1 validation error detected: Value at 'inferenceConfig.maxTokens' failed to "
                "satisfy constraint: Member must have value greater than or equal to 1"
            )
        stops = cfg.get("stopSequences") or []
        if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
            raise RequestValidationError("stopSequences must be a list of non-empty strings.")
        perf = (doc.get("performanceConfig") or {}).get("latency")
        if perf not in (None, "standard", "optimized"):
            raise RequestValidationError(
                f"1 validation error detected: Value '{perf}' at 'performanceConfig.latency' "
                "failed to satisfy constraint: Member must satisfy enum value set: "
                "[standard, optimized]"
            )
        tier = (doc.get("serviceTier") or {}).get("type")
        return _Request(prompt, max_tokens, tuple(stops), perf, tier)

    @staticmethod
    def _parse_count_tokens(doc: Mapping[str, Any], family: str | None) -> NativeRequest:
        inp = doc.get("input")
        if not isinstance(inp, dict):
            raise RequestValidationError("The input field is required.")
        if isinstance(inp.get("converse"), dict):
            conv = inp["converse"]
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
        raise RequestValidationError("The input must contain converse or invokeModel.")

    def _serve_runtime(
        self, h: _Handler, op: str, model_id: str, body: bytes, t0: float, received_at: float
    ) -> None:
        request_id = str(uuid.uuid4())
        match = _ATTEMPT.search(h.headers.get("amz-sdk-request", ""))
        attempt = int(match.group(1)) if match else 1
        streaming = op in ("ConverseStream", "InvokeModelWithResponseStream")
        base = dict(
            model_id=model_id,
            operation=op,
            attempt=attempt,
            received_at=received_at,
            request_id=request_id,
        )

        def fail(
            code: str,
            message: str | None = None,
            profile_key: str | None = None,
            sha: str | None = None,
            req: _Request | None = None,
            extra: Mapping[str, Any] | None = None,
        ) -> None:
            self._record(
                RequestRecord(
                    profile_key=profile_key,
                    status=ERROR_STATUS[code],
                    error_code=code,
                    input_tokens=None,
                    output_tokens=None,
                    stop_reason=None,
                    ttft_ms=None,
                    token_offsets_ms=(),
                    ms_per_token=None,
                    performance_latency=req.performance_latency if req else None,
                    service_tier=req.service_tier if req else None,
                    outlier=False,
                    prompt_sha=sha,
                    **base,  # type: ignore[arg-type]
                )
            )
            payload: dict[str, Any] = {"message": message or ERROR_MESSAGES[code]}
            payload.update(extra or {})
            self._send_json(
                h,
                ERROR_STATUS[code],
                payload,
                request_id,
                {"x-amzn-ErrorType": code + _ERROR_TYPE_SUFFIX},
            )

        injected = self._take_injected(model_id, streaming)
        if injected is not None and injected in ERROR_STATUS:
            extra: dict[str, Any] = {}
            if injected == "ModelErrorException":
                extra = {"originalStatusCode": 500, "resourceName": model_id}
            elif injected == "ModelStreamErrorException":
                extra = {"originalStatusCode": 500, "originalMessage": "Model stream failed"}
            fail(injected, extra=extra)
            return
        resolved = self._resolve(model_id)
        if resolved is None:
            fail("ResourceNotFoundException")
            return
        profile = resolved.profile
        try:
            req = self._parse(op, resolved.family, body, h.headers)
        except RequestValidationError as exc:
            fail("ValidationException", str(exc), profile.key)
            return
        sha = prompt_sha(req.prompt)
        input_tokens = count_input_tokens(req.prompt)
        if op == "CountTokens":
            self._record(
                RequestRecord(
                    profile_key=profile.key,
                    status=200,
                    error_code=None,
                    input_tokens=input_tokens,
                    output_tokens=None,
                    stop_reason=None,
                    ttft_ms=None,
                    token_offsets_ms=(),
                    ms_per_token=None,
                    performance_latency=None,
                    service_tier=None,
                    outlier=False,
                    prompt_sha=sha,
                    **base,  # type: ignore[arg-type]
                )
            )
            self._send_json(h, 200, {"inputTokens": input_tokens}, request_id)
            return
        sample = self._next_sample(model_id, sha)
        plan = _plan_answer(profile, model_id, req, sample, streaming)
        if plan.throttled:
            fail("ThrottlingException", None, profile.key, sha, req)
            return
        if plan.not_ready:
            fail("ModelNotReadyException", None, profile.key, sha, req)
            return
        if injected is not None:  # a camelCase stream exception: fail before the first delta
            plan = replace(plan, stream_error_after=0)

        answer = Answer(
            model_id=model_id,
            text="".join(plan.deltas),
            input_tokens=input_tokens,
            output_tokens=len(plan.words),
            stop_reason=plan.stop_reason,
            stop_sequence=plan.stop_sequence,
            request_id=request_id,
        )

        def record(status: int = 200, error: str | None = None, sent: int | None = None) -> None:
            n_deltas = len(plan.deltas) if sent is None else sent
            offsets = plan.delta_offsets_ms[:n_deltas]
            tokens = plan.delta_tokens[n_deltas - 1] if n_deltas else 0
            self._record(
                RequestRecord(
                    profile_key=profile.key,
                    status=status,
                    error_code=error,
                    input_tokens=input_tokens,
                    output_tokens=tokens,
                    stop_reason=plan.stop_reason if error is None else None,
                    ttft_ms=offsets[0] if offsets else None,
                    token_offsets_ms=tuple(offsets),
                    ms_per_token=ms_per_token_of(offsets, tokens),
                    performance_latency=req.performance_latency,
                    service_tier=req.service_tier,
                    outlier=plan.outlier,
                    prompt_sha=sha,
                    sample=sample,
                    **base,  # type: ignore[arg-type]
                )
            )

        if op == "Converse":
            _sleep_until(t0 + plan.done_ms / 1000.0)
            out: dict[str, Any] = {
                "output": {"message": {"role": "assistant", "content": [{"text": answer.text}]}},
                "stopReason": plan.stop_reason,
                "usage": self._usage(answer),
                "metrics": {"latencyMs": self._elapsed_ms(t0)},
            }
            out.update(self._echo(req))
            record()
            self._send_json(h, 200, out, request_id)
        elif op == "InvokeModel":
            _sleep_until(t0 + plan.done_ms / 1000.0)
            family = resolved.family or "nova"
            headers = {
                "X-Amzn-Bedrock-Input-Token-Count": str(answer.input_tokens),
                "X-Amzn-Bedrock-Output-Token-Count": str(answer.output_tokens),
                "X-Amzn-Bedrock-Invocation-Latency": str(self._elapsed_ms(t0)),
                **self._echo_headers(req),
            }
            record()
            self._send_json(
                h,
                200,
                families.native_response(family, answer),
                request_id,
                headers,
                content_type=h.headers.get("Accept") or "application/json",
            )
        elif op == "ConverseStream":
            self._stream_converse(h, t0, req, plan, answer, request_id, record, injected)
        else:
            self._stream_invoke(
                h, t0, req, plan, answer, request_id, record, injected, resolved.family or "nova"
            )

    @staticmethod
    def _elapsed_ms(t0: float) -> int:
        return round((time.perf_counter() - t0) * 1000)

    @staticmethod
    def _usage(answer: Answer) -> dict[str, int]:
        return {
            "inputTokens": answer.input_tokens,
            "outputTokens": answer.output_tokens,
            "totalTokens": answer.input_tokens + answer.output_tokens,
        }

    @staticmethod
    def _echo(req: _Request) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if req.performance_latency:
            out["performanceConfig"] = {"latency": req.performance_latency}
        if req.service_tier:
            out["serviceTier"] = {"type": req.service_tier}
        return out

    @staticmethod
    def _echo_headers(req: _Request) -> dict[str, str]:
        out: dict[str, str] = {}
        if req.performance_latency:
            out["X-Amzn-Bedrock-PerformanceConfig-Latency"] = req.performance_latency
        if req.service_tier:
            out["X-Amzn-Bedrock-Service-Tier"] = req.service_tier
        return out

    # -- wire helpers -----------------------------------------------------------------------

    @staticmethod
    def _send_json(
        h: _Handler,
        status: int,
        payload: Mapping[str, Any],
        request_id: str,
        headers: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> None:
        data = json.dumps(payload).encode("utf-8")
        h.send_response(status)  # also sends Server and Date; never add Date again
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(data)))
        h.send_header("x-amzn-RequestId", request_id)
        for name, value in (headers or {}).items():
            h.send_header(name, value)
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(data)

    @staticmethod
    def _start_stream(h: _Handler, request_id: str, headers: Mapping[str, str]) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/vnd.amazon.eventstream")
        h.send_header("Transfer-Encoding", "chunked")
        h.send_header("x-amzn-RequestId", request_id)
        for name, value in headers.items():
            h.send_header(name, value)
        h.end_headers()

    @staticmethod
    def _write(h: _Handler, *frames: bytes) -> None:
        # wfile is unbuffered (wbufsize=0): each write is one send, i.e. one HTTP chunk.
        try:
            for frame in frames:
                h.wfile.write(http_chunk(frame))
            h.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError) as exc:
            raise _ClientGone() from exc

    @staticmethod
    def _end(h: _Handler) -> None:
        try:
            h.wfile.write(LAST_CHUNK)
            h.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError) as exc:
            raise _ClientGone() from exc

    @staticmethod
    def _stream_exception(code: str | None, n: int) -> tuple[str, bytes]:
        member = code if code in _STREAM_EXCEPTIONS else "modelStreamErrorException"
        assert member is not None
        payload: dict[str, Any] = {"message": ERROR_MESSAGES[member[0].upper() + member[1:]]}
        if member == "modelStreamErrorException":
            payload.update(originalStatusCode=500, originalMessage="Model stream interrupted")
        payload["p"] = _pad(n)
        return member, exception_frame(member, payload)

    def _stream_converse(
        self,
        h: _Handler,
        t0: float,
        req: _Request,
        plan: _Plan,
        answer: Answer,
        request_id: str,
        record: Callable[..., None],
        injected: str | None,
    ) -> None:
        self._start_stream(h, request_id, {})
        sent = 0
        try:
            # messageStart goes out with the headers, as Bedrock does; TTFT is the first delta.
            self._write(h, event_frame("messageStart", {"p": _pad(0), "role": "assistant"}))
            for i, (text, offset) in enumerate(
                zip(plan.deltas, plan.delta_offsets_ms, strict=False)
            ):
                if plan.stream_error_after == i:
                    break
                _sleep_until(t0 + offset / 1000.0)
                self._write(
                    h,
                    event_frame(
                        "contentBlockDelta",
                        {"contentBlockIndex": 0, "delta": {"text": text}, "p": _pad(i + 1)},
                    ),
                )
                sent = i + 1
            if plan.stream_error_after is not None:
                self._break_stream(h, t0, plan, sent, injected, record)
                return
            metadata: dict[str, Any] = {
                "usage": self._usage(answer),
                "metrics": {"latencyMs": self._elapsed_ms(t0)},
                "p": _pad(sent + 3),
            }
            metadata.update(self._echo(req))
            record()
            self._write(
                h,
                event_frame("contentBlockStop", {"contentBlockIndex": 0, "p": _pad(sent + 1)}),
                event_frame("messageStop", {"stopReason": plan.stop_reason, "p": _pad(sent + 2)}),
                event_frame("metadata", metadata),
            )
            self._end(h)
        except _ClientGone:
            record(200, "ClientDisconnected", sent)
            h.close_connection = True

    def _break_stream(
        self,
        h: _Handler,
        t0: float,
        plan: _Plan,
        sent: int,
        injected: str | None,
        record: Callable[..., None],
    ) -> None:
        """End a stream mid-answer with an exception frame, when the next delta was due."""
        due = plan.delta_offsets_ms[sent] if sent < len(plan.delta_offsets_ms) else plan.done_ms
        _sleep_until(t0 + due / 1000.0)
        member, frame = self._stream_exception(injected, sent)
        record(200, member, sent)
        self._write(h, frame)
        self._end(h)

    def _stream_invoke(
        self,
        h: _Handler,
        t0: float,
        req: _Request,
        plan: _Plan,
        answer: Answer,
        request_id: str,
        record: Callable[..., None],
        injected: str | None,
        family: str,
    ) -> None:
        self._start_stream(
            h,
            request_id,
            {"X-Amzn-Bedrock-Content-Type": "application/json", **self._echo_headers(req)},
        )
        n_frames = 0

        def chunk(obj: Mapping[str, Any]) -> bytes:
            nonlocal n_frames
            n_frames += 1
            raw = json.dumps(obj, separators=(",", ":")).encode("utf-8")
            return event_frame(
                "chunk", {"bytes": base64.b64encode(raw).decode("ascii"), "p": _pad(n_frames)}
            )

        sent = 0
        first_byte_ms: int | None = None
        try:
            for i, (text, offset) in enumerate(
                zip(plan.deltas, plan.delta_offsets_ms, strict=False)
            ):
                if plan.stream_error_after == i:
                    break
                _sleep_until(t0 + offset / 1000.0)
                frames = []
                if i == 0:
                    # Native preambles (anthropic message_start...) come with the first token.
                    first_byte_ms = self._elapsed_ms(t0)
                    frames = [chunk(c) for c in families.native_stream_start(family, answer)]
                frames.append(
                    chunk(
                        families.native_stream_delta(
                            family, answer, text, plan.delta_tokens[i], i == 0
                        )
                    )
                )
                self._write(h, *frames)
                sent = i + 1
            if plan.stream_error_after is not None:
                self._break_stream(h, t0, plan, sent, injected, record)
                return
            _sleep_until(t0 + plan.done_ms / 1000.0)
            latency = self._elapsed_ms(t0)
            metrics = {
                "inputTokenCount": answer.input_tokens,
                "outputTokenCount": answer.output_tokens,
                "invocationLatency": latency,
                "firstByteLatency": first_byte_ms if first_byte_ms is not None else latency,
            }
            end = families.native_stream_end(family, answer, metrics)
            if not plan.deltas:
                end = families.native_stream_start(family, answer) + end
            record()
            self._write(h, *[chunk(c) for c in end])
            self._end(h)
        except _ClientGone:
            record(200, "ClientDisconnected", sent)
            h.close_connection = True

    # -- control plane (moto) ---------------------------------------------------------------

    def _moto(self) -> Callable[..., Iterable[bytes]]:
        with self._lock:
            if self._moto_app is None:
                # Imported lazily: moto's server app costs ~0.4 s and most runs never need it.
                from moto.moto_server.werkzeug_app import (
                    DomainDispatcherApplication,
                    create_backend_app,
                )

                self._moto_app = DomainDispatcherApplication(create_backend_app)
            return self._moto_app

    def _serve_control_plane(self, h: _Handler, body: bytes) -> None:
        """Run moto's WSGI app on this request (a minimal wsgiref-style bridge)."""
        raw_path, _, query = h.path.partition("?")
        host, port = h.server.server_address[:2]
        environ: dict[str, Any] = {
            "REQUEST_METHOD": h.command,
            "SCRIPT_NAME": "",
            "PATH_INFO": unquote_to_bytes(raw_path).decode("latin-1"),
            "QUERY_STRING": query,
            "RAW_URI": h.path,
            "REQUEST_URI": h.path,
            "SERVER_NAME": str(host),
            "SERVER_PORT": str(port),
            "SERVER_PROTOCOL": h.request_version,
            "REMOTE_ADDR": h.client_address[0],
            "CONTENT_TYPE": h.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        for name, value in h.headers.items():
            key = "HTTP_" + name.upper().replace("-", "_")
            if key in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"):
                continue
            environ[key] = f"{environ[key]},{value}" if key in environ else value
        captured: dict[str, Any] = {}

        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Callable[[bytes], None]:
            captured["status"], captured["headers"] = status, headers
            return lambda data: None

        try:
            result = self._moto()(environ, start_response)
            try:
                data = b"".join(result)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        except Exception as exc:  # moto raising must not kill the connection
            self._send_json(
                h,
                500,
                {"message": f"control plane error: {exc}"},
                str(uuid.uuid4()),
                {"x-amzn-ErrorType": "InternalServerException" + _ERROR_TYPE_SUFFIX},
            )
            return
        code, _, reason = str(captured.get("status", "500 Internal Server Error")).partition(" ")
        h.send_response(int(code), reason or None)
        for name, value in captured.get("headers", []):
            if name.lower() not in _HOP_BY_HOP:
                h.send_header(name, value)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(data)
