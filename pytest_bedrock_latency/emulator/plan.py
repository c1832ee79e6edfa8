"""Pure answer planning: what one request is answered with and when each delta is due.

Everything is decided up front and is deterministic from the profile's seed, the model id,
the prompt and the sample number, so a rerun of a suite sees the same answers and timings.
"""

from __future__ import annotations

from dataclasses import dataclass

from .profiles import Profile
from .schedule import chunk_boundaries, chunk_offsets, token_offsets
from .textgen import derive_rng, generate_words, lognormal_factor

__all__ = ["AnswerPlan", "ParsedRequest", "plan_answer"]


@dataclass(frozen=True)
class ParsedRequest:
    """The parts of a runtime request that shape its answer."""

    prompt: str
    max_tokens: int | None
    stop_sequences: tuple[str, ...]
    performance_latency: str | None
    service_tier: str | None


@dataclass(frozen=True)
class AnswerPlan:
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


def plan_answer(
    profile: Profile, model_id: str, req: ParsedRequest, sample: int, streaming: bool
) -> AnswerPlan:
    """Plan the answer to ``req`` from ``profile`` (the ``sample``-th time this prompt is asked)."""
    # The prompt factor depends on the prompt only (not the model), so a prompt that makes
    # one model verbose makes its candidate verbose too - like real prompts do.
    prompt_rng = derive_rng("prompt", profile.seed, req.prompt)
    prompt_factor = lognormal_factor(prompt_rng, profile.prompt_spread)
    rng = derive_rng("request", profile.seed, model_id, req.prompt, sample)
    # Fixed draw order keeps every decision repeatable whatever the rates are.
    u_throttle, u_not_ready, u_outlier, u_stream, u_pos = (rng.random() for _ in range(5))
    sample_factor = lognormal_factor(rng, profile.answer_tokens_spread)
    n = max(1, round(profile.answer_tokens * prompt_factor * sample_factor))
    cap = profile.max_output_tokens
    if req.max_tokens is not None:
        cap = min(cap, req.max_tokens)
    # Words past the cap are never sent, so they are never generated (a huge answer_tokens
    # costs nothing); the look-ahead still finds a stop sequence that starts before the cap.
    lookahead = max((len(s.split()) for s in req.stop_sequences), default=0) + 1
    words = generate_words(model_id, req.prompt, sample, min(n, cap + lookahead))

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
    if cap < limit:
        words, stop_reason, stop_sequence = words[:cap], "max_tokens", None
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
    return AnswerPlan(
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
