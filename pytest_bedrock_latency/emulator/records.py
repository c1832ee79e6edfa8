"""The request log's entry: what the emulator answered to one request."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RequestRecord"]


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
