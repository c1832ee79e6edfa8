"""The emulator's transport and its public object: Bedrock Runtime plus moto's control plane on one port.

Design notes:

* stdlib ``ThreadingHTTPServer`` with an HTTP/1.1 handler (keep-alive; Nagle off, because a
  delayed ACK would add ~40 ms to small frames). A connection that opens with the HTTP/2
  preface (h2c with prior knowledge, the JS SDK's default) is served by ``h2c.py``. How answers are written is in ``wire.py``,
  the runtime operations in ``runtime.py``, the moto bridge in ``control_plane.py``.
* The raw request path is split on ``/`` before unquoting, because model ids are ARNs
  whose ``/`` arrive as ``%2F``.
* Every frame is sent at ``t0 + scheduled offset`` (absolute deadlines), so oversleeping
  one gap does not delay the rest of the stream. HTTP/1.1 streams are sent by the server's
  ``pacer.Pacer`` (a few threads for all of them), not by their handler threads.
"""

from __future__ import annotations

import contextlib
import math
import re
import socket
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import unquote

from . import families
from .catalogue import Catalogue
from .content_tokens import CachePrefix
from .control_plane import ControlPlane, HttpRequest, custom_model_base
from .error_codes import ERROR_MESSAGES, ERROR_STATUS, ERROR_TYPE_SUFFIX, STREAM_EXCEPTIONS
from .eventstream import exception_frame
from .guardrails import Guardrail, GuardrailStore
from .pacer import Pacer
from .profiles import Profile, ProfileSet, ProfileSource, load_profiles
from .prompt_cache import CacheUse, PromptCache
from .records import EmulatorFault, RequestRecord
from .runtime import OPERATIONS, Resolved, serve_apply_guardrail, serve_runtime
from .wire import PREFACE_LINE, ClientGone, Http1Responder, Responder

__all__ = [
    "ERROR_MESSAGES",
    "ERROR_STATUS",
    "OPERATIONS",
    "Emulator",
    "EmulatorFault",
    "RequestRecord",
]

_FM_ARN = re.compile(r"^arn:aws[\w-]*:bedrock:[^:]*::foundation-model/(?P<id>.+)$")


@dataclass
class _Injected:
    code: str
    model_id: str | None
    remaining: int


class _State:
    """The emulator's shared, lock-guarded state; the runtime sees it as ``EmulatorState``."""

    def __init__(self, profiles: ProfileSet, not_found_hint: str | None = None) -> None:
        self.profiles = profiles
        self.not_found_hint = not_found_hint
        self.catalogue = Catalogue(profiles)
        self.lock = threading.Lock()
        self.records: list[RequestRecord] = []
        self.faults: list[EmulatorFault] = []
        self.samples: dict[tuple[str, str], int] = {}
        self.overrides: dict[str, Profile] = {}
        self.injected: list[_Injected] = []
        self.prompt_cache = PromptCache()
        self.guardrails = GuardrailStore()

    def cache_use(self, model_id: str, prefixes: Sequence[CachePrefix], ttl_s: float) -> CacheUse:
        return self.prompt_cache.use(model_id, prefixes, ttl_s)

    def guardrail(self, identifier: str) -> Guardrail | None:
        return self.guardrails.lookup(identifier)

    def not_found_message(self, model_id: str) -> str:
        """Bedrock's 404 wording, then what the emulator lacks and how to add it."""
        source = self.profiles.source
        where = "the profiles given to Emulator(profiles=...)" if source == "<dict>" else source
        fix = self.not_found_hint or (
            f'add [models."{model_id}"] to {where}, or a glob or "*" profile that covers it, '
            f"or call emulator.set_profile({model_id!r}, ...)"
        )
        return (
            "The provided model identifier is invalid. (Bedrock emulator: no profile matches "
            f"{model_id!r}; {fix}.)"
        )

    def record(self, record: RequestRecord) -> None:
        with self.lock:
            self.records.append(record)

    def next_sample(self, model_id: str, sha: str) -> int:
        with self.lock:
            n = self.samples.get((model_id, sha), 0)
            self.samples[(model_id, sha)] = n + 1
            return n

    def take_injected(self, model_id: str, streaming: bool) -> str | None:
        with self.lock:
            for item in self.injected:
                if item.model_id not in (None, model_id):
                    continue
                if item.code in STREAM_EXCEPTIONS and not streaming:
                    continue
                item.remaining -= 1
                if item.remaining == 0:
                    self.injected.remove(item)
                return item.code
        return None

    def resolve(self, model_id: str, depth: int = 0) -> Resolved | None:
        """exact (overrides, then file) > longest glob > the model an application inference
        profile runs > the model a cross-region inference profile names > custom model's base
        (moto) > "*"."""
        candidates = [model_id]
        fm = _FM_ARN.match(model_id)
        if fm:
            candidates.append(fm.group("id"))  # a foundation-model ARN reaches the id's profile
        with self.lock:
            overrides = dict(self.overrides)

        def done(profile: Profile, hint: str) -> Resolved:
            family = (
                profile.family
                or families.family_from_model_id(hint)
                or families.family_from_model_id(profile.key)
            )
            return Resolved(profile, family)

        for cand in candidates:
            if cand in overrides:
                return done(overrides[cand], cand)
        for cand in candidates:
            exact = self.profiles.match_exact(cand)
            if exact is not None:
                return done(exact, cand)
        for cand in candidates:
            glob = self.profiles.match_glob(cand, include_star=False)
            if glob is not None:
                return done(glob, cand)
        app_model = self.catalogue.application_profile_model(model_id)
        if app_model is not None and depth < 3:
            # An application inference profile runs the model it was created from.
            inner = self.resolve(app_model, depth + 1)
            if inner is not None:
                return inner
        served = families.served_model_id(model_id)
        if served != model_id and depth < 3:
            # A cross-region inference profile (us.x, global.x, or its ARN) runs model x.
            inner = self.resolve(served, depth + 1)
            if inner is not None:
                return inner
        base = custom_model_base(model_id) if depth < 3 else None
        if base is not None:
            inner = self.resolve(base, depth + 1)
            if inner is not None:
                family = inner.family or families.family_from_model_id(base)
                return Resolved(inner.profile, family)
        star = self.profiles.match_glob(model_id)
        return done(star, model_id) if star is not None else None


class _BadRequest(Exception):
    """A request whose HTTP framing cannot be read: answered 400, then the connection closed."""


#: Bodies above this are refused before they are read (Bedrock's own limits are far lower).
MAX_BODY_BYTES = 32 * 1024 * 1024
_LENGTH = re.compile(r"\s*(\d{1,12})\s*")
_CHUNK_SIZE = re.compile(rb"\s*([0-9A-Fa-f]{1,8})\s*(;[^\r\n]*)?")


class Backend(Protocol):
    """What the transport serves requests with: the emulator, or the measuring proxy."""

    def _handle(self, out: Responder, request: HttpRequest, t0: float, received_at: float) -> bool:
        """Answer one request; False when the backend faulted (the connection then closes)."""

    def _fault(
        self, exc: BaseException, method: str, target: str, out: Responder | None = None
    ) -> None:
        """Keep an exception raised outside a request's own handling."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Keep-alive connections must not block shutdown.
    block_on_close = False
    # socketserver's default backlog of 5 refuses connections under a burst of clients.
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], emulator: Backend, idle_timeout: float) -> None:
        self.emulator = emulator
        self.idle_timeout = idle_timeout
        self.open_sockets: set[socket.socket] = set()
        self.sockets_lock = threading.Lock()
        self.pacer: Pacer | None = None  # set by Serving; paces every HTTP/1.1 stream
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

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Reached only for an exception outside a request's own handling (which answers it):
        # keep it with the emulator's faults instead of printing a traceback to stderr.
        exc = sys.exc_info()[1]
        if exc is not None and not isinstance(exc, OSError):
            self.emulator._fault(exc, "connection", str(client_address))

    def close_open_connections(self) -> None:
        with self.sockets_lock:
            sockets = list(self.open_sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class Serving:
    """A :class:`_Server` serving in a daemon thread: what the emulator and the proxy share."""

    def __init__(
        self, address: tuple[str, int], backend: Backend, idle_timeout: float, name: str
    ) -> None:
        self.server = _Server(address, backend, idle_timeout)
        self.server.pacer = self._pacer = Pacer(name + "-pacer")
        self._thread = threading.Thread(
            target=self.server.serve_forever,
            # How long close() may wait for the loop to see the request: socketserver's
            # loop checks it between polls. 20 ms costs an idle server 50 wake-ups a second.
            kwargs={"poll_interval": 0.02},
            name=name,
            daemon=True,
        )
        self._thread.start()

    def close(self) -> None:
        """Stop serving, close every open connection and wait for the serving thread."""
        self.server.shutdown()
        self.server.close_open_connections()
        self.server.server_close()
        self._thread.join(timeout=5)
        self._pacer.stop()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive and chunked streaming
    disable_nagle_algorithm = True  # a delayed ACK would add ~40 ms to small frames
    server: _Server

    def setup(self) -> None:
        # An idle or half-sent connection must not hold a thread forever.
        super().setup()
        self.connection.settimeout(self.server.idle_timeout)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the request log is the record; stderr chatter would drown test output

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own errors (bad request line, headers too long...) in Bedrock's shape."""
        self.close_connection = True
        # An unparsable request line leaves HTTP/0.9, which would send a body without headers.
        self.request_version = self.protocol_version
        error = "ValidationException" if code < 500 else "InternalServerException"
        text = f"Malformed HTTP request: {message or explain or code}."
        Http1Responder(self).send_json(
            code,
            {"message": text},
            str(uuid.uuid4()),
            {"x-amzn-ErrorType": error + ERROR_TYPE_SUFFIX},
        )

    def _read_body(self) -> bytes:
        codings = [
            c.strip().lower()
            for value in self.headers.get_all("Transfer-Encoding") or []
            for c in value.split(",")
            if c.strip()
        ]
        if codings:
            if codings != ["chunked"]:
                raise _BadRequest(
                    f"Transfer-Encoding {', '.join(codings)!r} is not supported (only chunked)"
                )
            return self._read_chunked()
        lengths = {v.strip() for v in self.headers.get_all("Content-Length") or []}
        if not lengths:
            return b""
        if len(lengths) > 1:
            raise _BadRequest("conflicting Content-Length headers")
        value = lengths.pop()
        match = _LENGTH.fullmatch(value)
        if match is None:
            raise _BadRequest(
                f"Content-Length header value {value[:40]!r} is not a non-negative integer"
            )
        length = int(match.group(1))
        if length > MAX_BODY_BYTES:
            raise _BadRequest(
                f"Content-Length {length} exceeds the emulator's limit of {MAX_BODY_BYTES} bytes"
            )
        data = self.rfile.read(length)
        if len(data) < length:
            raise ClientGone()  # closed mid-body
        return data

    def _read_chunked(self) -> bytes:
        out = bytearray()
        while True:
            line = self.rfile.readline(1024)
            if not line.endswith(b"\n"):
                if not line:
                    raise ClientGone()
                raise _BadRequest("chunk size line too long")
            match = _CHUNK_SIZE.fullmatch(line.rstrip(b"\r\n"))
            if match is None:
                raise _BadRequest(f"invalid chunk size line {line[:40]!r}")
            size = int(match.group(1), 16)
            if size == 0:
                for _ in range(100):  # trailer section, up to its blank line
                    if self.rfile.readline(8192) in (b"\r\n", b"\n", b""):
                        return bytes(out)
                raise _BadRequest("too many trailer lines")
            if len(out) + size > MAX_BODY_BYTES:
                raise _BadRequest(
                    f"chunked body exceeds the emulator's limit of {MAX_BODY_BYTES} bytes"
                )
            chunk = self.rfile.read(size)
            if len(chunk) < size:
                raise ClientGone()
            out += chunk
            if self.rfile.readline(3) not in (b"\r\n", b"\n"):
                raise _BadRequest("chunk data is not followed by CRLF")

    def _dispatch(self) -> None:
        t0 = time.perf_counter()
        received_at = time.time()
        out = Http1Responder(self, self.server.pacer)
        try:
            try:
                body = self._read_body()
            except _BadRequest as exc:
                self.close_connection = True  # the rest of the stream cannot be framed
                out.send_error(
                    "ValidationException", str(uuid.uuid4()), f"Malformed HTTP request: {exc}."
                )
                return
            request = HttpRequest(
                method=self.command,
                target=self.path,
                headers=list(self.headers.items()),
                body=body,
                http_version=self.request_version,
                server_address=(str(self.server.server_address[0]), self.server.server_port),
                client_host=str(self.client_address[0]),
            )
            if not self.server.emulator._handle(out, request, t0, received_at):
                self.close_connection = self.close_connection or out.started
        except (ClientGone, OSError):
            self.close_connection = True

    def handle_one_request(self) -> None:
        # http.server's own loop, plus one branch: an HTTP/2 preface hands the connection over.
        try:
            self.raw_requestline = self.rfile.readline(65537)
            if len(self.raw_requestline) > 65536:
                self.requestline = self.request_version = self.command = ""
                self.send_error(414, "request line too long")
                return
            if not self.raw_requestline:
                self.close_connection = True
                return
            if self.raw_requestline == PREFACE_LINE:
                self.close_connection = True
                self._serve_h2()
                return
            if not self.parse_request():
                return
            method = getattr(self, "do_" + self.command, None)
            if method is None:
                self.send_error(501, f"unsupported method {self.command!r}")
                return
            method()
            self.wfile.flush()
        except TimeoutError:
            self.close_connection = True  # idle, or a request that stopped half-way

    def _serve_h2(self) -> None:
        # Imported here: only HTTP/2 clients (the JS SDK) pay for loading h2.
        from .h2c import serve_h2_connection

        emulator = self.server.emulator
        serve_h2_connection(
            self.connection,
            self.rfile,
            emulator._handle,
            server_address=(str(self.server.server_address[0]), self.server.server_port),
            client_host=str(self.client_address[0]),
            idle_timeout=self.server.idle_timeout,
            max_body=MAX_BODY_BYTES,
        )

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _dispatch


def _lower_headers(request: HttpRequest) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in request.headers:
        key = name.lower()
        out[key] = f"{out[key]},{value}" if key in out else value
    return out


class Emulator:
    """A local, wire-compatible Amazon Bedrock Runtime (plus moto's control plane) on one port.

    Use as a context manager or call :meth:`start`/:meth:`stop`::

        with Emulator(profiles={"my-model": {"ttft_ms": 100, "ms_per_token": 5}}) as emu:
            client = boto3.client("bedrock-runtime", endpoint_url=emu.url, region_name="us-east-1",
                                  aws_access_key_id="testing", aws_secret_access_key="testing")

    ``profiles`` is a TOML path, a dict, a :class:`ProfileSet`, or ``None`` for the shipped
    defaults. ``idle_timeout`` (seconds) closes a connection that sends nothing, or stops
    half-way through a request, for that long. ``not_found_hint`` replaces the fix the 404
    for a model with no profile suggests (the plugin names its own option there).
    Everything is validated in the constructor, before any socket is bound.
    """

    def __init__(
        self,
        profiles: ProfileSource = None,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        idle_timeout: float = 5.0,
        not_found_hint: str | None = None,
    ) -> None:
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"port must be an integer from 0 to 65535 (got {port!r})")
        if (
            isinstance(idle_timeout, bool)
            or not isinstance(idle_timeout, (int, float))
            or not math.isfinite(idle_timeout)
            or idle_timeout <= 0
        ):
            raise ValueError(
                f"idle_timeout must be a finite number of seconds > 0 (got {idle_timeout!r})"
            )
        self._idle_timeout = float(idle_timeout)
        self._state = _State(load_profiles(profiles), not_found_hint)
        self._host = host
        self._requested_port = port
        self._lock = threading.Lock()
        self._serving: Serving | None = None
        self._control_plane = ControlPlane()
        self._state.catalogue.install(self._control_plane)
        self._state.guardrails.install(self._control_plane)

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> Emulator:
        """Bind and serve in a background thread. Calling it again while running is a no-op."""
        with self._lock:
            if self._serving is not None:
                return self
            self._serving = Serving(
                (self._host, self._requested_port), self, self._idle_timeout, "bedrock-emulator"
            )
        return self

    def stop(self) -> None:
        """Stop serving and close every open connection. Idempotent."""
        with self._lock:
            serving, self._serving = self._serving, None
        if serving is not None:
            serving.close()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._serving is not None

    @property
    def host(self) -> str:
        """The host the server binds to."""
        return self._host

    @property
    def port(self) -> int:
        """The bound port (the real one when started with port 0)."""
        serving = self._serving
        if serving is None:
            raise RuntimeError("the emulator is not running; call start() first")
        return int(serving.server.server_address[1])

    @property
    def url(self) -> str:
        """``http://host:port`` for ``endpoint_url`` / ``AWS_ENDPOINT_URL_BEDROCK_RUNTIME``."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    @property
    def profiles(self) -> ProfileSet:
        """The validated profile set loaded at construction."""
        return self._state.profiles

    # -- request log ------------------------------------------------------------------------

    @property
    def requests(self) -> list[RequestRecord]:
        """A snapshot copy of the request log, oldest first."""
        with self._state.lock:
            return list(self._state.records)

    def clear_requests(self) -> None:
        """Empty the request log (sample numbers keep counting)."""
        with self._state.lock:
            self._state.records.clear()

    # -- faults -----------------------------------------------------------------------------

    @property
    def errors(self) -> list[EmulatorFault]:
        """The emulator's own faults (exceptions while serving), oldest first, with tracebacks."""
        with self._state.lock:
            return list(self._state.faults)

    def clear_errors(self) -> None:
        """Forget the recorded faults."""
        with self._state.lock:
            self._state.faults.clear()

    def _fault(
        self, exc: BaseException, method: str, target: str, out: Responder | None = None
    ) -> None:
        """Keep a fault and answer it, non-retryably, the one way still open on ``out``."""
        path = target.split("?", 1)[0]
        fault = EmulatorFault(
            request=f"{method} {path}",
            error=f"{type(exc).__name__}: {exc}",
            traceback="".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
            at=time.time(),
        )
        with self._state.lock:
            self._state.faults.append(fault)
        if out is None:
            return
        message = (
            f"Emulator fault: the emulator failed serving {fault.request} ({fault.error}). "
            "This is a bug in the emulator, not a model error; the traceback is on "
            "Emulator.errors."
        )
        if not out.started:
            # 501, not 500: botocore and the JS SDK retry every 500, and a bug does not go away.
            out.send_json(
                501,
                {"message": message},
                str(uuid.uuid4()),
                {"x-amzn-ErrorType": "InternalServerException" + ERROR_TYPE_SUFFIX},
            )
        elif out.streaming:
            out.write(exception_frame("internalServerException", {"message": message}))
            out.end()

    # -- per-test overrides -----------------------------------------------------------------

    def set_profile(self, model_id: str, **fields: Any) -> Profile:
        """Override profile fields for exactly ``model_id`` until :meth:`reset_overrides`.

        Starts from the profile ``model_id`` resolves to now (or the defaults when it has none),
        so ``set_profile("new-model")`` makes an unknown id servable. Fields are validated like
        a profile file (``ProfileError`` on mistakes).
        """
        current = self._state.resolve(model_id)
        profile = self._state.profiles.derive(
            model_id, current.profile if current else None, fields
        )
        if profile.family is None and current is not None and current.family is not None:
            profile = replace(profile, family=current.family)
        with self._state.lock:
            self._state.overrides[model_id] = profile
        return profile

    def reset_overrides(self) -> None:
        """Drop every :meth:`set_profile` override and every pending :meth:`inject_error`."""
        with self._state.lock:
            self._state.overrides.clear()
            self._state.injected.clear()

    def inject_error(self, code: str, *, model_id: str | None = None, times: int = 1) -> None:
        """Answer the next ``times`` runtime requests (for ``model_id``, or any) with ``code``.

        A PascalCase code from :data:`ERROR_STATUS` is an HTTP error before any output. A
        camelCase stream exception member (e.g. ``"throttlingException"``) is sent mid-stream,
        as an exception frame where the first delta would have been (stream operations only;
        non-stream requests pass through untouched and do not consume it).
        """
        if code not in ERROR_STATUS and code not in STREAM_EXCEPTIONS:
            allowed = ", ".join([*ERROR_STATUS, *STREAM_EXCEPTIONS])
            raise ValueError(f"unknown error code {code!r} (allowed: {allowed})")
        if times < 1:
            raise ValueError("times must be >= 1")
        with self._state.lock:
            self._state.injected.append(_Injected(code, model_id, times))

    # -- profile resolution -----------------------------------------------------------------

    def profile_for(self, model_id: str) -> Profile | None:
        """The profile a request for ``model_id`` would use, or None (404)."""
        resolved = self._state.resolve(model_id)
        return resolved.profile if resolved else None

    # -- dispatch ---------------------------------------------------------------------------

    def _handle(self, out: Responder, request: HttpRequest, t0: float, received_at: float) -> bool:
        """Serve one request; a fault is kept and answered. False if the emulator faulted."""
        try:
            self._serve(out, request, t0, received_at)
        except (ClientGone, OSError):
            raise
        except Exception as exc:
            self._fault(exc, request.method, request.target, out)
            return False
        return True

    def _serve(self, out: Responder, request: HttpRequest, t0: float, received_at: float) -> None:
        """Route one request: a runtime operation, else the control plane."""
        raw_path = request.target.split("?", 1)[0]
        parts = raw_path.split("/")  # split the raw path first: ARNs carry %2F
        if (
            request.method == "POST"
            and len(parts) == 4
            and parts[0] == ""
            and parts[1] == "model"
            and parts[3] in OPERATIONS
            and parts[2]
        ):
            serve_runtime(
                self._state,
                out,
                OPERATIONS[parts[3]],
                unquote(parts[2]),
                request.body,
                _lower_headers(request),
                t0,
                received_at,
            )
        elif (
            request.method == "POST"
            and len(parts) == 6
            and parts[0] == ""
            and (parts[1], parts[3], parts[5]) == ("guardrail", "version", "apply")
        ):
            defaults = self._state.profiles.defaults_profile("ApplyGuardrail")
            serve_apply_guardrail(
                self._state,
                out,
                unquote(parts[2]),
                unquote(parts[4]),
                request.body,
                defaults.guardrail_intervention_rate,
                defaults.seed,
            )
        else:
            self._control_plane.serve(out, request)
