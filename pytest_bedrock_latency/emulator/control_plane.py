"""The ``bedrock`` control plane: requests that are not runtime operations go to moto's WSGI app.

A minimal wsgiref-style bridge, so custom models (``CreateModelCustomizationJob``,
``GetCustomModel``) work against the same URL as the runtime, and a custom-model ARN used as a
runtime ``modelId`` is served with its base model's profile.
"""

from __future__ import annotations

import io
import re
import sys
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_to_bytes

from .wire import Responder

__all__ = ["ControlPlane", "HttpRequest"]

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


class ControlPlane:
    """moto's server application behind the emulator's port, created on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._app: Callable[..., Iterable[bytes]] | None = None

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

    def serve(self, out: Responder, request: HttpRequest) -> None:
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
