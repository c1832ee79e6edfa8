"""The measuring proxy: a loopback Bedrock endpoint that forwards every request and times it.

A service under test in another process (a Node backend, a container, the AWS CLI) is
pointed at the proxy (``AWS_ENDPOINT_URL_BEDROCK_RUNTIME`` / ``AWS_ENDPOINT_URL_BEDROCK``).
Each Bedrock Runtime and control-plane request is forwarded to the upstream - Amazon
Bedrock (``"aws"``: re-signed with the local AWS credentials through botocore's SigV4, the
signing name ``bedrock`` for the runtime and the control plane alike) or any URL (the
emulator, in tests) - and its response is passed back unchanged as it arrives: the same
status, headers and bytes, an event stream forwarded read by read (no buffering), so the
client sees the upstream's pacing. Meanwhile the proxy parses the event stream (or the JSON
body) as it passes and fills a :class:`~pytest_bedrock_latency.measurement.CallRecord` per
runtime call, with the plugin's own definitions of TTFT, ms/token and usage.

The proxy reuses the emulator's HTTP/1.1 (and HTTP/2 prior-knowledge) transport. It binds
loopback only. Credentials never reach its records: a record keeps the model, operation,
request parameters (in memory, as the plugin's in-process records do) and timings; the
``Authorization`` and security-token headers are neither logged nor stored.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..measurement import MEASURED_HEADER, CallRecord
from .control_plane import HttpRequest
from .error_codes import ERROR_TYPE_SUFFIX
from .wire import ClientGone, Responder

if TYPE_CHECKING:
    from .server import Serving

__all__ = ["MEASURED_HEADER", "Proxy", "ProxyError", "UpstreamError"]

_OPERATIONS = {
    "converse": "Converse",
    "converse-stream": "ConverseStream",
    "invoke": "InvokeModel",
    "invoke-with-response-stream": "InvokeModelWithResponseStream",
}
_RUNTIME_PREFIXES = ("/model/", "/guardrail/", "/async-invoke")
# Hop-by-hop or recomputed headers: never forwarded either way.
_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "content-length",
        "host",
        "date",
        "server",
    }
)
# Replaced by the re-signing when the upstream is Amazon Bedrock.
_SIGNING = frozenset(
    {"authorization", "x-amz-date", "x-amz-security-token", "x-amz-content-sha256"}
)
_READ = 65536


class ProxyError(Exception):
    """The proxy cannot start (bad upstream, no credentials, port in use): one clear line."""


class UpstreamError(Exception):
    """The upstream could not be reached for one request."""


@dataclass(frozen=True)
class ProxyStats:
    """What the proxy forwarded: requests, upstream error answers (passed through), and
    requests it could not forward at all."""

    requests: int
    upstream_errors: int
    unreachable: int


class Proxy:
    """A loopback Bedrock endpoint forwarding to ``upstream`` (``"aws"`` or a URL).

    ``on_call`` receives each runtime call's :class:`CallRecord` when the request arrives
    (so the caller can attribute it to what was running then); the record completes as
    the response passes, and ``on_done`` receives it once the response is forwarded. ``region`` is Amazon Bedrock's region (``"aws"`` only; default:
    botocore's). Use as a context manager or :meth:`start` / :meth:`stop`.
    """

    def __init__(
        self,
        upstream: str,
        *,
        on_call: Callable[[CallRecord], None] | None = None,
        on_done: Callable[[CallRecord], None] | None = None,
        region: str | None = None,
        port: int = 0,
        idle_timeout: float = 30.0,
        timeout: float = 300.0,
    ) -> None:
        import urllib3

        self.upstream = upstream
        self.on_call = on_call
        self.on_done = on_done
        self._port = port
        self._idle_timeout = idle_timeout
        self._lock = threading.Lock()
        self._records: list[CallRecord] = []
        self._requests = self._upstream_errors = self._unreachable = 0
        self._serving: Serving | None = None
        self._signer: Callable[[str, str, dict[str, str], bytes], dict[str, str]] | None = None
        if upstream == "aws":
            self._runtime_base, self._control_base, self._signer = _aws_upstream(region)
        else:
            parts = urllib.parse.urlsplit(upstream)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ProxyError(f"upstream {upstream!r} is not 'aws' or an http(s) URL")
            base = upstream.rstrip("/")
            self._runtime_base = self._control_base = base
        self._pool = urllib3.PoolManager(
            maxsize=64, block=False, timeout=urllib3.Timeout(connect=10.0, read=timeout)
        )

    # -- lifecycle --------------------------------------------------------------------------
    def check_upstream(self, timeout: float = 3.0) -> None:
        """Raise :class:`ProxyError` when the upstream's host does not accept connections."""
        for base in {self._runtime_base, self._control_base}:
            parts = urllib.parse.urlsplit(base)
            port = parts.port or (443 if parts.scheme == "https" else 80)
            try:
                socket.create_connection((parts.hostname or "", port), timeout=timeout).close()
            except OSError as error:
                reason = error.strerror or str(error) or type(error).__name__
                raise ProxyError(f"upstream {base} is unreachable: {reason}") from None

    def start(self) -> Proxy:
        """Bind 127.0.0.1 and serve in a background thread."""
        from .server import Serving

        with self._lock:
            if self._serving is not None:
                return self
            try:
                self._serving = Serving(
                    ("127.0.0.1", self._port), self, self._idle_timeout, "bedrock-proxy"
                )
            except OSError as error:
                raise ProxyError(
                    f"cannot listen on 127.0.0.1:{self._port}: {error.strerror}"
                ) from None
        return self

    def stop(self) -> None:
        """Stop serving and close open connections. Idempotent."""
        with self._lock:
            serving, self._serving = self._serving, None
        if serving is None:
            return
        serving.close()
        self._pool.clear()

    def __enter__(self) -> Proxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` once started."""
        if self._serving is None:
            raise RuntimeError("the proxy is not started")
        return f"http://127.0.0.1:{self._serving.server.server_port}"

    @property
    def records(self) -> list[CallRecord]:
        """Every runtime call the proxy measured (not the ones tagged as measured in-process)."""
        with self._lock:
            return list(self._records)

    @property
    def stats(self) -> ProxyStats:
        with self._lock:
            return ProxyStats(self._requests, self._upstream_errors, self._unreachable)

    # -- the transport's backend interface ----------------------------------------------------
    def _fault(
        self, exc: BaseException, method: str, target: str, out: Responder | None = None
    ) -> None:
        if out is not None and not out.started:
            out.send_error(
                "InternalServerException",
                str(uuid.uuid4()),
                f"bedrock proxy fault while forwarding {method} {target.split('?', 1)[0]}: "
                f"{type(exc).__name__}",
            )

    def _handle(self, out: Responder, request: HttpRequest, t0: float, received_at: float) -> bool:
        try:
            self._forward(out, request)
        except (ClientGone, OSError):
            raise
        except Exception as exc:  # a bug in the proxy: answered, never a hang
            self._fault(exc, request.method, request.target, out)
            return False
        return True

    # -- forwarding ---------------------------------------------------------------------------
    def _forward(self, out: Responder, request: HttpRequest) -> None:
        path = request.target.split("?", 1)[0]
        runtime = path.startswith(_RUNTIME_PREFIXES)
        record = self._record_for(request, path) if runtime else None
        base = self._runtime_base if runtime else self._control_base
        url = base + request.target
        headers = {k: v for k, v in request.headers if k.lower() not in _HOP}
        headers = {k: v for k, v in headers.items() if k.lower() != MEASURED_HEADER}
        if self._signer is not None:
            headers = {k: v for k, v in headers.items() if k.lower() not in _SIGNING}
            headers = self._signer(request.method, url, headers, request.body)
        with self._lock:
            self._requests += 1
        if record is not None:
            record.attempt_sent(request.header("User-Agent") or None)
        try:
            response = self._pool.urlopen(
                request.method,
                url,
                body=request.body or None,
                headers=headers,
                preload_content=False,
                decode_content=False,
                redirect=False,
                retries=False,
            )
        except Exception as error:  # urllib3's connection errors: one clear answer
            with self._lock:
                self._unreachable += 1
            reason = str(getattr(error, "reason", None) or error)
            message = f"bedrock proxy: upstream {base} unreachable: {reason}"
            if record is not None:
                record.failed("ServiceUnavailableException", message)
            out.send_json(
                503,
                {"message": message},
                str(uuid.uuid4()),
                {"x-amzn-ErrorType": "ServiceUnavailableException" + ERROR_TYPE_SUFFIX},
            )
            return
        try:
            self._relay(out, response, record)
        finally:
            response.release_conn()
            if record is not None and self.on_done is not None:
                self.on_done(record)

    def _record_for(self, request: HttpRequest, path: str) -> CallRecord | None:
        parts = path.split("/")
        if request.method != "POST" or len(parts) != 4 or parts[1] != "model":
            return None
        operation = _OPERATIONS.get(parts[3])
        if operation is None or request.header(MEASURED_HEADER):
            return None
        model_id = urllib.parse.unquote(parts[2])
        params: dict[str, Any] = {"modelId": model_id}
        if operation.startswith("Invoke"):
            params["body"] = request.body
        else:
            try:
                doc = json.loads(request.body.decode("utf-8") or "{}")
            except (UnicodeDecodeError, ValueError, RecursionError):
                doc = {}
            if isinstance(doc, dict):
                params.update(doc)
        record = CallRecord(
            model_id, operation, params, clock=time.perf_counter, wall_clock=time.time
        )
        with self._lock:
            self._records.append(record)
        if self.on_call is not None:
            self.on_call(record)
        return record

    def _relay(self, out: Responder, response: Any, record: CallRecord | None) -> None:
        status = int(response.status)
        pairs: Sequence[tuple[str, str]] = [
            (k, v) for k, v in response.headers.items() if k.lower() not in _HOP
        ]
        lowered = {k.lower(): v for k, v in pairs}
        stream = status == 200 and lowered.get("content-type", "").startswith(
            "application/vnd.amazon.eventstream"
        )
        if not stream:
            body = response.read(decode_content=False)
            if status >= 400:
                with self._lock:
                    self._upstream_errors += 1
            out.send(status, pairs, body, response.reason)
            if record is not None:
                _record_body(record, status, lowered, body)
            return
        if record is not None:
            record.headers_received(None)
        request_id = lowered.get("x-amzn-requestid", "")
        extra = {k: v for k, v in pairs if k.lower() not in ("content-type", "x-amzn-requestid")}
        out.start_stream(request_id, extra)
        parser = _StreamParser(record) if record is not None else None
        chunks = (
            response.read_chunked(decode_content=False)
            if response.chunked
            else iter(lambda: response.read1(_READ), b"")
        )
        for data in chunks:
            out.write(data)  # as it arrived: the client sees the upstream's pacing
            if parser is not None:
                parser.feed(data)
        out.end()
        if record is not None:
            record.stream_finished()


def _error_code(headers: Mapping[str, str], body: bytes) -> tuple[str, str]:
    code = headers.get("x-amzn-errortype", "").split(":", 1)[0]
    message = ""
    try:
        doc = json.loads(body.decode("utf-8") or "{}")
        if isinstance(doc, dict):
            message = str(doc.get("message") or doc.get("Message") or "")
            code = code or str(doc.get("__type", "")).rsplit("#", 1)[-1]
    except (UnicodeDecodeError, ValueError, RecursionError):
        pass
    return code or "UnknownError", message


def _record_body(record: CallRecord, status: int, headers: Mapping[str, str], body: bytes) -> None:
    record.headers_received(None)
    if status >= 300:
        record.failed(*_error_code(headers, body))
        return
    if record.operation == "Converse":
        try:
            doc = json.loads(body.decode("utf-8") or "{}")
        except (UnicodeDecodeError, ValueError, RecursionError):
            doc = {}
        record.converse_response(doc if isinstance(doc, dict) else {})
    else:
        record.invoke_response(headers)
        record.body_read(body, finished=True)


class _StreamParser:
    """Decodes event-stream frames as bytes pass and feeds them to the call's record."""

    def __init__(self, record: CallRecord) -> None:
        from botocore.eventstream import EventStreamBuffer

        self._record = record
        self._buffer: Any = EventStreamBuffer()  # botocore's stubs type its messages loosely
        self._broken = False

    def feed(self, data: bytes) -> None:
        if self._broken:
            return
        try:
            self._buffer.add_data(data)
            for message in self._buffer:
                self._message(message.headers, message.payload)
        except Exception:  # a frame we cannot read is forwarded all the same
            self._broken = True

    def _message(self, headers: Mapping[str, Any], payload: bytes) -> None:
        kind = headers.get(":message-type")
        try:
            doc = json.loads(payload.decode("utf-8") or "{}")
        except (UnicodeDecodeError, ValueError):
            doc = {}
        if kind == "exception" or kind == "error":
            code = str(headers.get(":exception-type") or headers.get(":error-code") or "")
            self._record.failed(code or "UnknownError", str(doc.get("message", "")))
            return
        event = str(headers.get(":event-type", ""))
        if event == "chunk" and isinstance(doc.get("bytes"), str):
            doc = {"bytes": base64.b64decode(doc["bytes"])}
        self._record.stream_event({event: doc})


def _aws_upstream(
    region: str | None,
) -> tuple[str, str, Callable[[str, str, dict[str, str], bytes], dict[str, str]]]:
    """Amazon Bedrock's endpoints and a SigV4 signer with the local credentials."""
    import botocore.session
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    session = botocore.session.get_session()
    region = region or session.get_config_variable("region")
    if not region:
        raise ProxyError(
            "no AWS region for the upstream 'aws' (set AWS_REGION or --bedrock-region)"
        )
    credentials = session.get_credentials()
    if credentials is None:
        raise ProxyError(
            "no AWS credentials for the upstream 'aws' (configure them as for the AWS CLI)"
        )

    def sign(method: str, url: str, headers: dict[str, str], body: bytes) -> dict[str, str]:
        request = AWSRequest(method=method, url=url, data=body, headers=headers)
        # Refreshable credentials are read per request; "bedrock" signs runtime and
        # control plane alike (the runtime's signingName).
        SigV4Auth(credentials.get_frozen_credentials(), "bedrock", region).add_auth(request)
        return dict(request.headers.items())

    return (
        f"https://bedrock-runtime.{region}.amazonaws.com",
        f"https://bedrock.{region}.amazonaws.com",
        sign,
    )
