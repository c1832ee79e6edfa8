"""The ``bedrock`` control plane on the runtime's port: every request that is not a runtime operation.

Requests are matched to their operation with botocore's own service models (bedrock,
bedrock-runtime, bedrock-agent). Operations the emulator emulates (the catalogue, inference
profiles; see ``catalogue.py``) are answered by registered handlers; those moto implements
(custom models, customization jobs) go through a minimal wsgiref-style bridge to moto's
server application, so a custom-model ARN used as a runtime ``modelId`` is served with its
base model's profile; every other Bedrock operation is refused at once, non-retryably, as not
emulated; anything else is a 404.
"""

from __future__ import annotations

import io
import json
import re
import sys
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, unquote_to_bytes

from .error_codes import ERROR_TYPE_SUFFIX
from .wire import Responder

__all__ = [
    "NOT_EMULATED_STATUS",
    "ControlCall",
    "ControlPlane",
    "ControlPlaneError",
    "Handler",
    "HttpRequest",
    "custom_model_base",
]

_CUSTOM_ARN = re.compile(r"^arn:aws[\w-]*:bedrock:(?P<region>[^:]+):(?P<account>\d*):custom-model/")
_MOTO_ACCOUNT = "123456789012"
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "date", "server"}


@dataclass(frozen=True)
class HttpRequest:
    """A request as the transport read it (``target``: the raw path and query, percent-encoded)."""

    method: str
    target: str
    headers: Sequence[tuple[str, str]]
    body: bytes
    http_version: str
    server_address: tuple[str, int]
    client_host: str

    def header(self, name: str, default: str = "") -> str:
        """The first header called ``name`` (case-insensitive)."""
        lowered = name.lower()
        return next((v for k, v in self.headers if k.lower() == lowered), default)


class ControlPlaneError(Exception):
    """A control-plane error answer: Bedrock's ``code`` (its status from the table) and message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class ControlCall:
    """One control-plane call, matched to its operation."""

    operation: str
    method: str
    params: Mapping[str, str]  # URI labels, unquoted
    query: Mapping[str, str]
    body: Any  # the parsed JSON body ({} when empty)
    region: str


#: handler(call) -> the JSON payload of a 200 answer; raises ControlPlaneError otherwise.
Handler = Callable[[ControlCall], Mapping[str, Any]]

_STATUS = {
    "ValidationException": 400,
    "ConflictException": 409,
    "ResourceNotFoundException": 404,
    "AccessDeniedException": 403,
    "ServiceQuotaExceededException": 400,
    "TooManyTagsException": 400,
    "ThrottlingException": 429,
    "InternalServerException": 500,
}
#: Not emulated: 501, which no SDK retries (they retry 500, 502, 503 and 504).
NOT_EMULATED_STATUS = 501
_REGION = re.compile(r"Credential=[^/]+/\d{8}/(?P<region>[a-z0-9-]+)/")


@dataclass(frozen=True)
class _Route:
    service: str
    operation: str
    method: str
    pattern: re.Pattern[str]
    literal: int  # characters outside labels: the more, the more specific


def _routes() -> list[_Route]:
    """Every operation of bedrock, bedrock-agent and bedrock-runtime, from botocore's models."""
    import botocore.session

    session = botocore.session.get_session()
    routes: list[_Route] = []
    for service in ("bedrock", "bedrock-runtime", "bedrock-agent"):
        model = session.get_service_model(service)
        for name in model.operation_names:
            http = model.operation_model(name).http
            template = str(http["requestUri"]).split("?", 1)[0]
            regex, literal, pos = "", 0, 0
            for label in re.finditer(r"\{(\w+)(\+?)\}", template):
                chunk = template[pos : label.start()]
                regex += re.escape(chunk)
                literal += len(chunk)
                regex += f"(?P<{label.group(1)}>{'.+' if label.group(2) else '[^/]+'})"
                pos = label.end()
            regex += re.escape(template[pos:])
            literal += len(template) - pos
            routes.append(
                _Route(service, name, str(http["method"]), re.compile(f"^{regex}/?$"), literal)
            )
    # Most specific first; on a tie bedrock (the control plane) before the agent service.
    order = {"bedrock": 0, "bedrock-runtime": 1, "bedrock-agent": 2}
    routes.sort(key=lambda r: (-r.literal, order[r.service]))
    return routes


def _moto_operations() -> set[str]:
    """The bedrock and bedrock-agent operations moto implements (its response methods)."""
    import botocore.session
    from botocore import xform_name
    from moto.bedrock.responses import BedrockResponse
    from moto.bedrockagent.responses import AgentsforBedrockResponse

    session = botocore.session.get_session()
    out: set[str] = set()
    for service, cls in (("bedrock", BedrockResponse), ("bedrock-agent", AgentsforBedrockResponse)):
        for name in session.get_service_model(service).operation_names:
            if callable(getattr(cls, xform_name(name), None)):
                out.add(name)
    return out


class ControlPlane:
    """The non-runtime requests: emulated operations, moto's, and clear refusals for the rest.

    An operation registered with :meth:`register` is answered by its handler; one moto
    implements (custom models, customization jobs, agents) goes to moto's server application;
    any other Bedrock operation answers at once ``501 UnknownOperationException`` saying it is
    not emulated; a path that is no Bedrock API answers 404.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._app: Callable[..., Iterable[bytes]] | None = None
        self._routes: list[_Route] | None = None
        self._moto_ops: set[str] | None = None
        self._handlers: dict[str, Handler] = {}

    def register(self, operation: str, handler: Handler) -> None:
        """Answer ``operation`` (a botocore operation name, e.g. ``"GetGuardrail"``) with ``handler``."""
        with self._lock:
            self._handlers[operation] = handler

    def emulated(self) -> list[str]:
        """The operations answered by the emulator itself, sorted."""
        with self._lock:
            return sorted(self._handlers)

    def _tables(self) -> tuple[list[_Route], set[str]]:
        with self._lock:
            if self._routes is None or self._moto_ops is None:
                self._routes, self._moto_ops = _routes(), _moto_operations()
            return self._routes, self._moto_ops

    def _moto(self) -> Callable[..., Iterable[bytes]]:
        with self._lock:
            if self._app is None:
                # Imported lazily: moto's server app costs ~0.4 s and most runs never need it.
                from moto.moto_server.werkzeug_app import (
                    DomainDispatcherApplication,
                    create_backend_app,
                )

                self._app = DomainDispatcherApplication(create_backend_app)
            return self._app

    def _match(self, method: str, path: str) -> tuple[_Route, dict[str, str]] | None:
        routes, _ = self._tables()
        for route in routes:
            if route.method != method and not (method == "HEAD" and route.method == "GET"):
                continue
            found = route.pattern.match(path)
            if found is not None:
                return route, {k: unquote(v) for k, v in found.groupdict().items()}
        return None

    def serve(self, out: Responder, request: HttpRequest) -> None:
        """Answer one non-runtime request through ``out``."""
        request_id = str(uuid.uuid4())
        raw_path, _, query = request.target.partition("?")
        matched = self._match(request.method, raw_path)
        if matched is None:
            self._refuse(
                out,
                404,
                request_id,
                f"No Bedrock API at {request.method} {raw_path[:200]}: the emulator serves "
                "Bedrock Runtime and the bedrock control plane.",
            )
            return
        route, params = matched
        with self._lock:
            handler = self._handlers.get(route.operation)
        if handler is not None:
            self._call(out, request, route.operation, params, query, handler, request_id)
            return
        _, moto_ops = self._tables()
        if route.operation in moto_ops:
            self._forward(out, request)
            return
        self._refuse(
            out,
            NOT_EMULATED_STATUS,
            request_id,
            f"{route.operation} ({route.service}) is not emulated by the pytest-bedrock-latency "
            f"emulator. Emulated control-plane operations: {', '.join(self.emulated())}; moto "
            f"serves: {', '.join(sorted(moto_ops))}.",
        )

    @staticmethod
    def _refuse(out: Responder, status: int, request_id: str, message: str) -> None:
        out.send_json(
            status,
            {"message": message},
            request_id,
            {"x-amzn-ErrorType": "UnknownOperationException" + ERROR_TYPE_SUFFIX},
        )

    def _call(
        self,
        out: Responder,
        request: HttpRequest,
        operation: str,
        params: Mapping[str, str],
        query: str,
        handler: Handler,
        request_id: str,
    ) -> None:
        def error(code: str, message: str) -> None:
            out.send_json(
                _STATUS.get(code, 400),
                {"message": message},
                request_id,
                {"x-amzn-ErrorType": code + ERROR_TYPE_SUFFIX},
            )

        try:
            body = json.loads(request.body.decode("utf-8")) if request.body.strip() else {}
        except (UnicodeDecodeError, ValueError, RecursionError):
            error("ValidationException", "The request body is not valid JSON.")
            return
        found = _REGION.search(request.header("Authorization"))
        call = ControlCall(
            operation=operation,
            method=request.method,
            params=params,
            query=dict(parse_qsl(query)),
            body=body,
            region=found.group("region") if found else "us-east-1",
        )
        try:
            payload = handler(call)
        except ControlPlaneError as exc:
            error(exc.code, exc.message)
            return
        out.send_json(200, payload, request_id)

    def _forward(self, out: Responder, request: HttpRequest) -> None:
        """Run moto's WSGI app on ``request`` and send its answer through ``out``."""
        raw_path, _, query = request.target.partition("?")
        host, port = request.server_address[:2]
        environ: dict[str, Any] = {
            "REQUEST_METHOD": request.method,
            "SCRIPT_NAME": "",
            "PATH_INFO": unquote_to_bytes(raw_path).decode("latin-1"),
            "QUERY_STRING": query,
            "RAW_URI": request.target,
            "REQUEST_URI": request.target,
            "SERVER_NAME": str(host),
            "SERVER_PORT": str(port),
            "SERVER_PROTOCOL": request.http_version,
            "REMOTE_ADDR": request.client_host,
            "CONTENT_TYPE": request.header("Content-Type"),
            "CONTENT_LENGTH": str(len(request.body)),
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(request.body),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        for name, value in request.headers:
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
            out.send_error(
                "InternalServerException", str(uuid.uuid4()), f"control plane error: {exc}"
            )
            return
        code, _, reason = str(captured.get("status", "500 Internal Server Error")).partition(" ")
        headers = [
            (name, value)
            for name, value in captured.get("headers", [])
            if name.lower() not in _HOP_BY_HOP
        ]
        out.send(int(code), headers, data, reason or None)


def custom_model_base(model_arn: str) -> str | None:
    """The baseModelArn moto's bedrock backend knows for a custom-model ARN, if any."""
    match = _CUSTOM_ARN.match(model_arn)
    if match is None:
        return None
    try:
        from moto.bedrock.models import bedrock_backends

        backend = bedrock_backends[match.group("account") or _MOTO_ACCOUNT][match.group("region")]
        for model in list(backend.custom_models.values()):
            if model.model_arn == model_arn:
                return str(model.base_model_arn)
    except Exception:  # an unknown region/account in moto means "not known", not a crash
        return None
    return None
