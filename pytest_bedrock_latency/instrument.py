"""Measure every Bedrock Runtime call that any botocore client in the process makes.

The anchor is a class-level patch of ``botocore.client.BaseClient._make_api_call``, the
one place that reaches every client: ones created before the plugin loaded, ones from any
``boto3.Session``, ones built inside libraries such as LangChain (the same anchor as
OpenTelemetry, X-Ray and Datadog use). Streams are wrapped in a transparent
``EventStream`` subclass that timestamps each event as the application pulls it, so the
application receives the same events, the same exceptions and the same dict.

The patch is installed only while a test needs it and uninstalled to the identical
function object, so unmarked tests and other sessions pay nothing.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import inspect
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit, urlunsplit

from botocore.client import BaseClient, ClientCreator
from botocore.eventstream import EventStream, EventStreamBuffer
from botocore.exceptions import BotoCoreError, ClientError
from botocore.response import StreamingBody
from urllib3.exceptions import TimeoutError as TransportTimeout

from .instrument_httpx import HttpxPatch
from .measurement import MEASURED_HEADER, MEASURED_OPERATIONS, CallRecord, Clock, Coster

# ContextVars belong at module level (one per process by design). They hold per-context
# values, not shared state: the call in flight on this thread or task, for the
# per-attempt hooks, and an optional capture list that diverts records away from the
# current test (the plugin's own model handle and the regression gate use it).
_CURRENT_CALL: ContextVar[CallRecord | None] = ContextVar("bedrock_latency_call", default=None)
_CAPTURE: ContextVar[list[CallRecord] | None] = ContextVar("bedrock_latency_capture", default=None)

_HOOK_ID = "pytest-bedrock-latency"
_REDIRECT_ID = "pytest-bedrock-latency-offline"
_BEDROCK_SERVICES = frozenset({"bedrock-runtime", "bedrock"})
_STREAM_MEMBER = {"ConverseStream": "stream", "InvokeModelWithResponseStream": "body"}

Sink = Callable[[CallRecord], None]
Pricing = Callable[[str | None], Coster]
"""Given the calling client's region, how to price its calls (``PriceTable.coster``)."""

if TYPE_CHECKING:  # botocore's stubs make EventStream generic; the runtime class is not
    _EventStreamBase = EventStream[dict[str, Any]]
else:
    _EventStreamBase = EventStream


def _on_before_send(request: Any = None, **_: Any) -> None:
    """Generic ``before-send`` handler, registered after the client's own handlers.

    Registered last on the generic event name, it runs after the adaptive-retry rate
    limiter, so a limiter wait is not counted as network time. The user agent is kept to
    tell this call apart from unmeasured ones the emulator served.
    """
    record = _CURRENT_CALL.get()
    if record is not None:
        headers = getattr(request, "headers", {})
        agent = headers.get("User-Agent")
        record.attempt_sent(agent.decode() if isinstance(agent, bytes) else agent)
        if _is_loopback(getattr(request, "url", "")):
            # Unsigned, and only to a local endpoint: the measuring proxy then knows this
            # call is measured here already and does not count it twice.
            headers[MEASURED_HEADER] = "1"


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host in ("localhost", "::1") or host.startswith("127.")


def error_details(error: BaseException) -> tuple[str, str, int | None]:
    """Bedrock's error code, message and botocore's retry count (None when unknown)."""
    if isinstance(error, ClientError):
        details = error.response.get("Error", {})
        retries = error.response.get("ResponseMetadata", {}).get("RetryAttempts")
        return (
            str(details.get("Code", type(error).__name__)),
            str(details.get("Message", error)),
            retries,
        )
    return type(error).__name__, str(error), None


class Instrumentation:
    """Installs the measurement patch and routes each call's record to a sink.

    Records go to the innermost :meth:`capture` of the calling context when there is one,
    otherwise to :attr:`sink` (the current test). A process-wide sink rather than a
    context variable is deliberate: code under test often hands work to plain thread
    pools, which do not copy context variables.

    With :meth:`redirect` (offline runs) the same patch also sends every ``bedrock-runtime``
    and ``bedrock`` request of the process to one endpoint, whatever endpoint its client
    was made with.
    """

    def __init__(self, *, clock: Clock = time.perf_counter, wall_clock: Clock = time.time) -> None:
        self._clock = clock
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self._users = 0
        self._active = False
        self._patched: list[tuple[type[Any], Any, Any]] = []  # (class, original, wrapper)
        self._hooked: weakref.WeakSet[BaseClient] = weakref.WeakSet()
        self._redirect_url: str | None = None
        self._on_redirect: Callable[[str], None] | None = None
        self._guarded: weakref.WeakSet[BaseClient] = weakref.WeakSet()
        self._created_at: weakref.WeakKeyDictionary[BaseClient, str] = weakref.WeakKeyDictionary()
        self._httpx: HttpxPatch | None = None
        self.sink: Sink | None = None
        self.pricing: Pricing | None = None

    # -- installation ------------------------------------------------------------------
    def install(self) -> None:
        """Measure (reference counted: nested installs are cheap)."""
        with self._lock:
            self._users += 1
            self._active = True
            self._patch()

    def uninstall(self) -> None:
        """Undo :meth:`install`; the original function objects come back unchanged.

        If another library wrapped on top of our patch meanwhile, removing ours would drop
        theirs, so ours stays in place as an inert pass-through instead.
        """
        with self._lock:
            if self._users == 0:
                return
            self._users -= 1
            if self._users:
                return
            self._active = False
            self._unpatch_if_unused()

    def redirect(self, url: str, on_redirect: Callable[[str], None] | None = None) -> None:
        """Send every Bedrock request of the process to ``url`` from now on (offline runs).

        ``on_redirect`` hears, once per client, about a client that was aimed elsewhere.
        """
        with self._lock:
            self._redirect_url = url.rstrip("/")
            self._on_redirect = on_redirect
            self._patch()
            creator = ClientCreator.__dict__["create_client"]
            if not getattr(creator, "_bl_tracks_creation", False):
                self._patched.append((ClientCreator, creator, self._tracking(creator)))
                setattr(ClientCreator, "create_client", self._patched[-1][2])  # noqa: B010

    def stop_redirect(self) -> None:
        with self._lock:
            self._redirect_url = None
            self._on_redirect = None
            self._unpatch_if_unused()

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """Installed for the duration of the block."""
        self.install()
        try:
            yield
        finally:
            self.uninstall()

    @contextlib.contextmanager
    def capture(self) -> Iterator[list[CallRecord]]:
        """Collect the records of calls made in this context (thread or task) here."""
        records: list[CallRecord] = []
        token = _CAPTURE.set(records)
        try:
            with self.active():
                yield records
        finally:
            _CAPTURE.reset(token)

    def _patch(self) -> None:
        if any(cls is BaseClient for cls, _, _ in self._patched):
            return
        original = BaseClient.__dict__["_make_api_call"]
        wrapper = self._make_wrapper(original)
        self._patched.append((BaseClient, original, wrapper))
        # setattr: the stubs do not declare the private method we patch.
        setattr(BaseClient, "_make_api_call", wrapper)  # noqa: B010
        aio = _aio_client_class()
        if aio is not None:
            original = aio.__dict__["_make_api_call"]
            wrapper = self._make_async_wrapper(original)
            self._patched.append((aio, original, wrapper))
            setattr(aio, "_make_api_call", wrapper)  # noqa: B010
        if "httpx" in sys.modules or importlib.util.find_spec("httpx") is not None:
            self._httpx = HttpxPatch(
                self._httpx_record, lambda: self._active, lambda: self._redirect_url
            )
            self._httpx.install()

    def _unpatch_if_unused(self) -> None:
        if self._users or self._redirect_url is not None:
            return
        for cls, original, wrapper in reversed(self._patched):
            name = "create_client" if cls is ClientCreator else "_make_api_call"
            if cls.__dict__.get(name) is wrapper:
                setattr(cls, name, original)
        self._patched.clear()
        if self._httpx is not None:
            self._httpx.uninstall()
            self._httpx = None

    # -- the patch -----------------------------------------------------------------------
    def _wants(self, client: BaseClient, operation_name: str) -> bool:
        if self._redirect_url is not None:
            self._guard(client)
        return (
            self._active
            and operation_name in MEASURED_OPERATIONS
            and client.meta.service_model.service_name == "bedrock-runtime"
        )

    def _make_wrapper(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def _make_api_call(
            client: BaseClient, operation_name: str, api_params: Mapping[str, Any]
        ) -> Any:
            __tracebackhide__ = True  # pytest: keep our frames out of the application's tracebacks
            if not self._wants(client, operation_name):
                return original(client, operation_name, api_params)
            return self._measured_call(original, client, operation_name, api_params)

        _make_api_call.__wrapped__ = original  # type: ignore[attr-defined]
        return _make_api_call

    def _make_async_wrapper(self, original: Callable[..., Any]) -> Callable[..., Any]:
        async def _make_api_call(
            client: BaseClient, operation_name: str, api_params: Mapping[str, Any]
        ) -> Any:
            __tracebackhide__ = True
            if not self._wants(client, operation_name):
                return await original(client, operation_name, api_params)
            record = self._start(client, operation_name, api_params)
            token = _CURRENT_CALL.set(record)
            try:
                response = await original(client, operation_name, api_params)
            except BaseException as error:
                _record_failure(record, error)
                raise
            finally:
                _CURRENT_CALL.reset(token)
            self._attach_safely(record, operation_name, response)
            return response

        _make_api_call.__wrapped__ = original  # type: ignore[attr-defined]
        return _make_api_call

    def _start(
        self, client: BaseClient, operation_name: str, api_params: Mapping[str, Any]
    ) -> CallRecord:
        record = CallRecord(
            str(api_params.get("modelId", "")),
            operation_name,
            api_params,
            clock=self._clock,
            wall_clock=self._wall_clock,
        )
        if self.pricing is not None:
            record.coster = self.pricing(client.meta.region_name)
        self._hook(client)
        self._route(record)
        return record

    def _httpx_record(self, model_id: str, operation: str, params: dict[str, Any]) -> CallRecord:
        params.setdefault("modelId", model_id)
        record = CallRecord(
            model_id, operation, params, clock=self._clock, wall_clock=self._wall_clock
        )
        if self.pricing is not None:
            record.coster = self.pricing(None)
        self._route(record)
        return record

    def _measured_call(
        self,
        original: Callable[..., Any],
        client: BaseClient,
        operation_name: str,
        api_params: Mapping[str, Any],
    ) -> Any:
        __tracebackhide__ = True
        record = self._start(client, operation_name, api_params)
        token = _CURRENT_CALL.set(record)
        try:
            response = original(client, operation_name, api_params)
        except BaseException as error:
            _record_failure(record, error)
            raise
        finally:
            _CURRENT_CALL.reset(token)
        self._attach_safely(record, operation_name, response)
        return response

    def _attach_safely(self, record: CallRecord, operation_name: str, response: Any) -> None:
        try:
            self._attach(record, operation_name, response)
        except Exception as error:  # measurement must never change what the caller gets
            record.failed("MeasurementError", f"{type(error).__name__}: {error}")

    def _attach(self, record: CallRecord, operation_name: str, response: dict[str, Any]) -> None:
        metadata = response.get("ResponseMetadata", {})
        record.headers_received(metadata.get("RetryAttempts"))
        member = _STREAM_MEMBER.get(operation_name)
        if member is not None:
            stream = response.get(member)
            aio_stream = _aio_stream_class()
            if aio_stream is not None and isinstance(stream, aio_stream):
                response[member] = _timed_aio_stream(aio_stream)(stream, record)
            elif isinstance(stream, EventStream):
                response[member] = TimedEventStream(stream, record)
        elif operation_name == "Converse":
            record.converse_response(response)
        else:  # InvokeModel
            record.invoke_response(metadata.get("HTTPHeaders", {}))
            body = response.get("body")
            if isinstance(body, StreamingBody):
                response["body"] = MeasuredBody(body, record)
            elif body is not None and hasattr(body, "read"):
                _measure_async_body(body, record)

    def _hook(self, client: BaseClient) -> None:
        # Handlers registered on a session never reach clients created earlier (each
        # client copies its session's emitter), so hook each client at its first call.
        if client in self._hooked:
            return
        client.meta.events.register_last("before-send", _on_before_send, unique_id=_HOOK_ID)
        self._hooked.add(client)

    def _route(self, record: CallRecord) -> None:
        captured = _CAPTURE.get()
        if captured is not None:
            captured.append(record)
        elif self.sink is not None:
            self.sink(record)

    # -- offline: every Bedrock request to one endpoint ------------------------------------
    def _guard(self, client: BaseClient) -> None:
        url = self._redirect_url
        if url is None or client in self._guarded:
            return
        service = client.meta.service_model.service_name
        if service not in _BEDROCK_SERVICES:
            return
        self._guarded.add(client)
        endpoint = str(client.meta.endpoint_url or "").rstrip("/")
        if endpoint == url:
            return
        client.meta.events.register_first(
            "before-sign", functools.partial(_redirect_request, url), unique_id=_REDIRECT_ID
        )
        if self._on_redirect is not None:
            where = self._created_at.get(client, "before the plugin loaded")
            self._on_redirect(
                f"a {service} client created {where} was aimed at {endpoint or '(no endpoint)'}; "
                f"its requests were sent to the emulator at {url} instead"
            )

    def _tracking(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def create_client(creator: Any, service_name: str, *args: Any, **kwargs: Any) -> Any:
            client = original(creator, service_name, *args, **kwargs)
            if service_name in _BEDROCK_SERVICES:
                with contextlib.suppress(TypeError):  # a client class that refuses weak references
                    self._created_at[client] = _caller()
            return client

        create_client._bl_tracks_creation = True  # type: ignore[attr-defined]
        create_client.__wrapped__ = original  # type: ignore[attr-defined]
        return create_client


def _caller() -> str:
    """``at file:line`` of the code that made a client: the first frame outside botocore,
    boto3 and this plugin, and outside installed packages when there is such a frame.

    Libraries wrap the client factories (langchain-aws replaces ``boto3.client`` and
    ``Session.client`` at import to add its user agent): their wrapper is not where the
    client was made, the user's line that called it is.
    """
    installed_frame = None
    frame = sys._getframe(2)
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        if not name.startswith(
            ("botocore", "boto3", "aiobotocore", "aioboto3", __package__ or "-")
        ):
            where = f"at {frame.f_code.co_filename}:{frame.f_lineno}"
            if not _INSTALLED.intersection(Path(frame.f_code.co_filename).parts):
                return where
            installed_frame = installed_frame or where
        frame = frame.f_back  # type: ignore[assignment]
    return installed_frame or "(location unknown)"


#: Directories that hold installed packages, not the user's code.
_INSTALLED = frozenset({"site-packages", "dist-packages"})


def _redirect_request(url: str, request: Any = None, **_: Any) -> None:
    """``before-sign``: point the request at ``url`` before it is signed and sent."""
    if request is None:
        return
    target = urlsplit(url)
    parts = urlsplit(request.url)
    path = target.path.rstrip("/") + parts.path
    request.url = urlunsplit((target.scheme, target.netloc, path, parts.query, parts.fragment))


def _record_failure(record: CallRecord, error: BaseException) -> None:
    """Bedrock's (or the transport's) error is a failed call; anything else interrupted it.

    An exception raised by the application's own code, or by cancelling or closing the
    stream from another thread, is not a Bedrock error.
    """
    if isinstance(error, (ClientError, BotoCoreError, TransportTimeout)) and not record.closed:
        record.failed(*error_details(error))
    else:
        record.stream_abandoned(interrupted_by=f"interrupted by {type(error).__name__}")


class TimedEventStream(_EventStreamBase):
    """An ``EventStream`` that timestamps each event as the application pulls it.

    Transparent: it is an ``EventStream`` (``isinstance`` checks in applications and in
    other instrumentations keep working) whose ``vars()`` are botocore's own attributes
    (``_raw_stream``, ``_event_generator``, ...: the very objects of the wrapped stream,
    so a second loop resumes and code that reaches the socket through
    ``vars(stream)['_raw_stream']`` to cancel a blocked read still does). It yields the
    same events, re-raises the same exceptions and closes the same body.
    """

    def __init__(self, inner: _EventStreamBase, record: CallRecord) -> None:
        # EventStream.__init__ is not called: the wrapped stream's attributes are ours.
        self.__dict__.update(vars(inner))
        self._bl_record = record
        # Nothing has pulled the wrapped stream's (lazy) generator yet: this one reads the
        # same body, noting when each piece of it arrived, which is when its events were
        # received, however long the application then takes over the events before them.
        self._event_generator = self._bl_raw_events()

    def _bl_raw_events(self) -> Iterator[Any]:
        buffer = EventStreamBuffer()
        for chunk in vars(self)["_raw_stream"].stream():
            self._bl_record.bytes_arrived()
            buffer.add_data(chunk)
            yield from buffer

    def __iter__(self) -> Iterator[dict[str, Any]]:
        __tracebackhide__ = True
        record = self._bl_record
        try:
            for event in super().__iter__():
                try:  # noqa: SIM105 - a plain try is cheaper per event than contextlib.suppress
                    record.stream_event(event)
                except Exception:  # never let a parsing surprise break the application
                    pass
                yield event
        except GeneratorExit:
            record.stream_abandoned()
            raise
        except BaseException as error:
            _record_failure(record, error)
            raise
        record.stream_finished()

    def close(self) -> None:
        self._bl_record.stream_closed()
        super().close()


def _timed_aio_stream(base: type[Any]) -> type[Any]:
    """The async twin of :class:`TimedEventStream` for aiobotocore's ``AioEventStream``."""
    cached = base.__dict__.get("_bl_timed")
    if cached is not None:
        return cast(type[Any], cached)

    class TimedAioEventStream(base):  # type: ignore[misc]
        __doc__ = TimedEventStream.__doc__

        def __init__(self, inner: Any, record: CallRecord) -> None:
            self.__dict__.update(vars(inner))
            self._bl_record = record
            self._event_generator = self._bl_raw_events()

        async def _bl_raw_events(self) -> Any:
            buffer = EventStreamBuffer()
            async for chunk, _ in self._raw_stream.content.iter_chunks():
                self._bl_record.bytes_arrived()
                buffer.add_data(chunk)
                for event in buffer:
                    yield event

        def __aiter__(self) -> Any:
            return self._bl_events()

        async def _bl_events(self) -> Any:
            record = self._bl_record
            try:
                async for event in base.__aiter__(self):
                    try:  # noqa: SIM105
                        record.stream_event(event)
                    except Exception:
                        pass
                    yield event
            except GeneratorExit:
                record.stream_abandoned()
                raise
            except BaseException as error:
                _record_failure(record, error)
                raise
            record.stream_finished()

        def close(self) -> Any:
            self._bl_record.stream_closed()
            return base.close(self)

    TimedAioEventStream.__name__ = TimedAioEventStream.__qualname__ = "TimedAioEventStream"
    setattr(base, "_bl_timed", TimedAioEventStream)  # noqa: B010
    return TimedAioEventStream


def _measure_async_body(body: Any, record: CallRecord) -> None:
    """aiobotocore's InvokeModel body: its ``read`` is a coroutine; hand what it reads over.

    The body object stays the same (aiobotocore's own class); only its bound ``read`` is
    shadowed on the instance.
    """
    read = body.read
    if not inspect.iscoroutinefunction(read):
        return

    async def measured_read(amt: int | None = None) -> bytes:
        chunk = await read(amt)
        record.body_read(chunk, finished=amt is None or not chunk)
        return cast(bytes, chunk)

    body.read = measured_read


def _aio_client_class() -> type[Any] | None:
    """aiobotocore's client base, when aiobotocore is installed and works with this botocore."""
    if "aiobotocore" not in sys.modules and importlib.util.find_spec("aiobotocore") is None:
        return None
    try:
        module = importlib.import_module("aiobotocore.client")
        importlib.import_module("aiobotocore.eventstream")
    except Exception:  # installed for another botocore: its clients cannot exist here either
        return None
    return cast(type[Any], module.AioBaseClient)


def _aio_stream_class() -> type[Any] | None:
    module = sys.modules.get("aiobotocore.eventstream")
    return cast(type[Any], getattr(module, "AioEventStream", None)) if module else None


class MeasuredBody(StreamingBody):
    """A non-streaming InvokeModel body that hands the bytes it reads to the record.

    The wrapped body serves as the raw stream (no content length of our own), so its own
    content-length check still runs.
    """

    def __init__(self, inner: StreamingBody, record: CallRecord) -> None:
        super().__init__(cast(IO[bytes], inner), cast(int, None))
        self._bl_inner = inner
        self._bl_record = record

    def read(self, amt: int | None = None) -> bytes:
        chunk = self._bl_inner.read(amt)
        self._bl_record.body_read(chunk, finished=amt is None or not chunk)
        return chunk

    def readinto(self, buffer: Any) -> int:
        count = self._bl_inner.readinto(buffer)
        self._bl_record.body_read(bytes(memoryview(buffer)[:count]), finished=count == 0)
        return count

    def set_socket_timeout(self, timeout: float) -> None:
        self._bl_inner.set_socket_timeout(timeout)
