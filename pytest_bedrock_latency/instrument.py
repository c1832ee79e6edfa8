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
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from typing import IO, TYPE_CHECKING, Any, cast

from botocore.client import BaseClient
from botocore.eventstream import EventStream
from botocore.exceptions import ClientError
from botocore.response import StreamingBody

from .measurement import MEASURED_OPERATIONS, CallRecord, Clock, Coster

# ContextVars belong at module level (one per process by design). They hold per-context
# values, not shared state: the call in flight on this thread or task, for the
# per-attempt hooks, and an optional capture list that diverts records away from the
# current test (the plugin's own model handle and the regression gate use it).
_CURRENT_CALL: ContextVar[CallRecord | None] = ContextVar("bedrock_latency_call", default=None)
_CAPTURE: ContextVar[list[CallRecord] | None] = ContextVar("bedrock_latency_capture", default=None)

_HOOK_ID = "pytest-bedrock-latency"
_STREAM_MEMBER = {"ConverseStream": "stream", "InvokeModelWithResponseStream": "body"}

Sink = Callable[[CallRecord], None]
Pricing = Callable[[str | None], Coster]
"""Given the calling client's region, how to price its calls (``PriceTable.coster``)."""

if TYPE_CHECKING:  # botocore's stubs make EventStream generic; the runtime class is not
    _EventStreamBase = EventStream[dict[str, Any]]
else:
    _EventStreamBase = EventStream


def _on_before_send(**_: Any) -> None:
    """Generic ``before-send`` handler, registered after the client's own handlers.

    Registered last on the generic event name, it runs after the adaptive-retry rate
    limiter, so a limiter wait is not counted as network time.
    """
    record = _CURRENT_CALL.get()
    if record is not None:
        record.attempt_sent()


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
    """

    def __init__(self, *, clock: Clock = time.perf_counter, wall_clock: Clock = time.time) -> None:
        self._clock = clock
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self._users = 0
        self._active = False
        self._original: Any = None
        self._wrapper: Any = None
        self._hooked: weakref.WeakSet[BaseClient] = weakref.WeakSet()
        self.sink: Sink | None = None
        self.pricing: Pricing | None = None

    # -- installation ------------------------------------------------------------------
    def install(self) -> None:
        """Patch botocore (reference counted: nested installs are cheap)."""
        with self._lock:
            self._users += 1
            if self._users > 1:
                return
            self._original = BaseClient.__dict__["_make_api_call"]
            self._wrapper = self._make_wrapper(self._original)
            # setattr: the stubs do not declare the private method we patch.
            setattr(BaseClient, "_make_api_call", self._wrapper)  # noqa: B010
            self._active = True

    def uninstall(self) -> None:
        """Undo :meth:`install`; the original function object comes back unchanged.

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
            if BaseClient.__dict__.get("_make_api_call") is self._wrapper:
                setattr(BaseClient, "_make_api_call", self._original)  # noqa: B010

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

    # -- the patch -----------------------------------------------------------------------
    def _make_wrapper(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def _make_api_call(
            client: BaseClient, operation_name: str, api_params: Mapping[str, Any]
        ) -> Any:
            __tracebackhide__ = True  # pytest: keep our frames out of the application's tracebacks
            if (
                not self._active
                or operation_name not in MEASURED_OPERATIONS
                or client.meta.service_model.service_name != "bedrock-runtime"
            ):
                return original(client, operation_name, api_params)
            return self._measured_call(original, client, operation_name, api_params)

        _make_api_call.__wrapped__ = original  # type: ignore[attr-defined]
        return _make_api_call

    def _measured_call(
        self,
        original: Callable[..., Any],
        client: BaseClient,
        operation_name: str,
        api_params: Mapping[str, Any],
    ) -> Any:
        __tracebackhide__ = True
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
        token = _CURRENT_CALL.set(record)
        try:
            response = original(client, operation_name, api_params)
        except BaseException as error:
            record.failed(*error_details(error))
            raise
        finally:
            _CURRENT_CALL.reset(token)
        try:
            self._attach(record, operation_name, response)
        except Exception as error:  # measurement must never change what the caller gets
            record.failed("MeasurementError", f"{type(error).__name__}: {error}")
        return response

    def _attach(self, record: CallRecord, operation_name: str, response: dict[str, Any]) -> None:
        metadata = response.get("ResponseMetadata", {})
        record.headers_received(metadata.get("RetryAttempts"))
        member = _STREAM_MEMBER.get(operation_name)
        if member is not None:
            stream = response.get(member)
            if isinstance(stream, EventStream):
                response[member] = TimedEventStream(stream, record)
        elif operation_name == "Converse":
            record.converse_response(response)
        else:  # InvokeModel
            record.invoke_response(metadata.get("HTTPHeaders", {}))
            body = response.get("body")
            if isinstance(body, StreamingBody):
                response["body"] = MeasuredBody(body, record)

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


class TimedEventStream(_EventStreamBase):
    """An ``EventStream`` that timestamps each event as the application pulls it.

    It stays an ``EventStream`` (``isinstance`` checks in applications and in other
    instrumentations keep working), yields the very same events, re-raises the very same
    exceptions, forwards ``close()`` and keeps EventStream's "a second loop resumes"
    behaviour. ``EventStream.__init__`` is deliberately not called: all state lives in
    the wrapped stream.
    """

    def __init__(self, inner: _EventStreamBase, record: CallRecord) -> None:
        self._bl_inner = inner
        self._bl_record = record

    def __iter__(self) -> Iterator[dict[str, Any]]:
        __tracebackhide__ = True
        record = self._bl_record
        try:
            for event in self._bl_inner:
                try:  # noqa: SIM105 - a plain try is cheaper per event than contextlib.suppress
                    record.stream_event(event)
                except Exception:  # never let a parsing surprise break the application
                    pass
                yield event
        except GeneratorExit:
            record.stream_abandoned()
            raise
        except BaseException as error:
            record.failed(*error_details(error))
            raise
        record.stream_finished()

    def close(self) -> None:
        self._bl_record.stream_abandoned()
        self._bl_inner.close()

    def get_initial_response(self) -> Any:
        return self._bl_inner.get_initial_response()

    def __getattr__(self, name: str) -> Any:
        # Guard our own names: copy.copy() probes attributes before __init__ has run.
        if name.startswith("_bl_"):
            raise AttributeError(name)
        return getattr(self._bl_inner, name)

    def __repr__(self) -> str:
        return repr(self._bl_inner)


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
