"""What the emulator keeps about the requests it served: answers, and its own faults."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["EmulatorFault", "RequestRecord"]


@dataclass(frozen=True)
class RequestRecord:
    """One request the emulator answered (retries are separate records).

    Times are milliseconds from request receipt and come from the emulator's schedule, so a
    test can compare them with what its client observed. The prompt is never stored, only
    ``prompt_sha``. ``stop_reason`` uses the Converse vocabulary for every operation.
    ``user_agent`` is the client's ``User-Agent`` header: it tells which client sent a
    request the plugin did not measure.
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
    user_agent: str = ""


@dataclass(frozen=True)
class EmulatorFault:
    """An exception inside the emulator while it served a request (a bug in the emulator).

    The client was answered ``501 InternalServerException`` whose message starts with
    "Emulator fault" (or, mid-stream, an ``internalServerException`` frame).
    """

    request: str  # "POST /model/.../converse"
    error: str  # "KeyError: 'x'"
    traceback: str
    at: float  # time.time()

    def __str__(self) -> str:
        return f"emulator fault while serving {self.request}: {self.error}\n{self.traceback}"
