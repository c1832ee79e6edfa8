"""Measure Bedrock Runtime calls sent with httpx (litellm), and keep them offline.

litellm signs its Bedrock requests with botocore but sends them with httpx, so the
botocore patch never sees them. Its callback API would: but its start time is taken
before litellm's own request building and its success callbacks may run on a thread
pool after the test has ended. This patch sits where the request leaves the process,
``httpx.Client.send`` / ``httpx.AsyncClient.send``, and reads the response exactly as
the botocore path does: the same :class:`CallRecord`, fed with the same events (the
AWS event-stream frames are decoded with botocore's own decoder as the application
pulls the bytes), so the figures mean the same.

Only requests to a Bedrock Runtime operation path (``/model/<id>/converse`` and its
three siblings) on a Bedrock host, signed for the ``bedrock`` service, or sent to the
offline endpoint are touched; everything else passes straight through.
"""

from __future__ import annotations

import base64
import functools
import importlib
import json
import re
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, cast
from urllib.parse import unquote, urlsplit

from botocore.eventstream import EventStreamBuffer

from .measurement import CallRecord

# httpx is optional (litellm brings it): annotations name its types without importing it.
HttpxRequest = Any  # HttpxRequest
HttpxResponse = Any  # HttpxResponse

_PATH = re.compile(
    r"^/model/(?P<model>[^/]+)/(?P<op>converse-stream|converse|invoke-with-response-stream|invoke)$"
)
OPERATIONS = {
    "converse": "Converse",
    "converse-stream": "ConverseStream",
    "invoke": "InvokeModel",
    "invoke-with-response-stream": "InvokeModelWithResponseStream",
}

NewRecord = Callable[[str, str, dict[str, Any]], CallRecord]
"""Makes and routes a record: (model id, operation, request parameters) -> record."""


def is_bedrock_host(host: str) -> bool:
    return host.startswith(("bedrock-runtime.", "bedrock-runtime-fips.", "bedrock.")) and (
        host.endswith((".amazonaws.com", ".amazonaws.com.cn", ".api.aws"))
    )


class HttpxPatch:
    """The class-level patch of httpx's two ``send`` methods (installed and removed exactly)."""

    def __init__(
        self,
        new_record: NewRecord,
        measuring: Callable[[], bool],
        redirect_url: Callable[[], str | None],
    ) -> None:
        self._new_record = new_record
        self._measuring = measuring
        self._redirect_url = redirect_url
        self._patched: list[tuple[type[Any], Any, Any]] = []

    def install(self) -> None:
        httpx: Any = importlib.import_module("httpx")
        if self._patched:
            return
        for cls, make in ((httpx.Client, self._sync), (httpx.AsyncClient, self._async)):
            original = cls.__dict__["send"]
            wrapper = make(original)
            wrapper.__wrapped__ = original  # type: ignore[attr-defined]
            self._patched.append((cls, original, wrapper))
            setattr(cls, "send", wrapper)  # noqa: B010

    def uninstall(self) -> None:
        for cls, original, wrapper in reversed(self._patched):
            if cls.__dict__.get("send") is wrapper:
                setattr(cls, "send", original)  # noqa: B010
        self._patched.clear()

    # -- the two wrappers ----------------------------------------------------------------
    def _prepare(self, request: HttpxRequest) -> CallRecord | None:
        """Redirect an offline request; a record when the call is to be measured."""
        url = request.url
        match = _PATH.match(url.raw_path.decode("ascii", "replace").split("?", 1)[0])
        if match is None:
            return None
        target = self._redirect_url()
        if target is not None and is_bedrock_host(url.host):
            parts = urlsplit(target)
            request.url = url.copy_with(scheme=parts.scheme, host=parts.hostname, port=parts.port)
            request.headers["Host"] = parts.netloc
        elif not (
            is_bedrock_host(url.host)
            # SigV4's credential scope names the service: .../<region>/bedrock/aws4_request
            or "/bedrock/aws4_request" in request.headers.get("Authorization", "")
            or (target is not None and str(request.url).startswith(target))
        ):
            return None
        if not self._measuring():
            return None
        try:
            params = json.loads(request.content or b"{}")
        except ValueError:
            params = {}
        model_id = unquote(match.group("model"))
        params = params if isinstance(params, dict) else {}
        record = self._new_record(model_id, OPERATIONS[match.group("op")], params)
        record.attempt_sent(request.headers.get("User-Agent"))
        return record

    def _sync(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def send(client: Any, request: HttpxRequest, *args: Any, **kwargs: Any) -> Any:
            record = self._prepare(request)
            if record is None:
                return original(client, request, *args, **kwargs)
            try:
                response = original(client, request, *args, **kwargs)
            except BaseException as error:
                record.failed(type(error).__name__, str(error))
                raise
            _attach(record, response, asynchronous=False)
            return response

        return send

    def _async(self, original: Callable[..., Any]) -> Callable[..., Any]:
        async def send(client: Any, request: HttpxRequest, *args: Any, **kwargs: Any) -> Any:
            record = self._prepare(request)
            if record is None:
                return await original(client, request, *args, **kwargs)
            try:
                response = await original(client, request, *args, **kwargs)
            except BaseException as error:
                record.failed(type(error).__name__, str(error))
                raise
            _attach(record, response, asynchronous=True)
            return response

        return send


def _attach(record: CallRecord, response: HttpxResponse, *, asynchronous: bool) -> None:
    """Feed the record from the response; never changes what the application receives."""
    try:
        record.headers_received(None)
        if response.status_code >= 400:
            error = response.headers.get("x-amzn-ErrorType", "").split(":", 1)[0]
            record.failed(error or f"HTTP {response.status_code}", response.reason_phrase)
            return
        if record.streaming:
            httpx: Any = importlib.import_module("httpx")
            if asynchronous and isinstance(response.stream, httpx.AsyncByteStream):
                response.stream = _timed_async_stream(httpx)(response.stream, record)
            elif isinstance(response.stream, httpx.SyncByteStream):
                response.stream = _timed_sync_stream(httpx)(response.stream, record)
            return
        content = response.content if _is_read(response) else None
        if record.operation == "Converse":
            record.converse_response(json.loads(content) if content else {})
        else:
            record.invoke_response({k.lower(): v for k, v in response.headers.items()})
            if content is not None:
                record.body_read(content, finished=True)
    except Exception as error:  # measurement must never change what the caller gets
        record.failed("MeasurementError", f"{type(error).__name__}: {error}")


def _is_read(response: HttpxResponse) -> bool:
    try:
        response.content  # noqa: B018 - raises ResponseNotRead for an unread stream
    except Exception:
        return False
    return True


class _Frames:
    """Decodes AWS event-stream frames from raw bytes into the events botocore would parse."""

    def __init__(self, record: CallRecord) -> None:
        self._record = record
        self._buffer = EventStreamBuffer()

    def feed(self, data: bytes) -> None:
        self._record.bytes_arrived()
        self._buffer.add_data(data)
        for message in self._buffer:
            headers: dict[str, Any] = dict(cast(Any, message.headers))
            kind = headers.get(":message-type")
            name = str(headers.get(":event-type") or headers.get(":exception-type") or "")
            try:
                payload = json.loads(message.payload or b"{}")
            except ValueError:
                payload = {}
            if kind in ("exception", "error"):
                text = payload.get("message", "") if isinstance(payload, dict) else ""
                self._record.failed(name or str(headers.get(":error-code")), str(text))
            elif name == "chunk" and isinstance(payload, dict):
                raw = base64.b64decode(payload.get("bytes", "") or b"")
                self._record.stream_event({"chunk": {"bytes": raw}})
            else:
                self._record.stream_event({name: payload})


@functools.cache
def _timed_sync_stream(httpx: Any) -> type[Any]:
    class TimedByteStream(httpx.SyncByteStream):  # type: ignore[misc]
        def __init__(self, inner: Any, record: CallRecord) -> None:
            self._inner, self._record, self._frames = inner, record, _Frames(record)

        def __iter__(self) -> Iterator[bytes]:
            try:
                for data in self._inner:
                    try:  # noqa: SIM105
                        self._frames.feed(data)
                    except Exception:
                        pass
                    yield data
            except GeneratorExit:
                self._record.stream_abandoned()
                raise
            except BaseException as error:
                self._record.stream_abandoned(f"interrupted by {type(error).__name__}")
                raise
            self._record.stream_finished()

        def close(self) -> None:
            self._record.stream_closed()
            self._inner.close()

    return TimedByteStream


@functools.cache
def _timed_async_stream(httpx: Any) -> type[Any]:
    class TimedAsyncByteStream(httpx.AsyncByteStream):  # type: ignore[misc]
        def __init__(self, inner: Any, record: CallRecord) -> None:
            self._inner, self._record, self._frames = inner, record, _Frames(record)

        async def __aiter__(self) -> AsyncIterator[bytes]:
            try:
                async for data in self._inner:
                    try:  # noqa: SIM105
                        self._frames.feed(data)
                    except Exception:
                        pass
                    yield data
            except GeneratorExit:
                self._record.stream_abandoned()
                raise
            except BaseException as error:
                self._record.stream_abandoned(f"interrupted by {type(error).__name__}")
                raise
            self._record.stream_finished()

        async def aclose(self) -> None:
            self._record.stream_closed()
            await self._inner.aclose()

    return TimedAsyncByteStream
