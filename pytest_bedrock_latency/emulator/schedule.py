"""Pure timing maths: when each token and each stream delta of an answer is due.

Offsets are milliseconds from request receipt. The server sleeps until ``t0 + offset`` for
every frame (an absolute schedule), so the error of one sleep never carries into the next.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from .textgen import lognormal_factor

__all__ = [
    "chunk_boundaries",
    "chunk_offsets",
    "ms_per_token_of",
    "prefill_ttft_ms",
    "token_offsets",
]


def prefill_ttft_ms(
    ttft_ms: float,
    prefill_ms_per_1k_input_tokens: float,
    input_tokens: int,
    cached_tokens: int = 0,
    cached_prefill_factor: float = 1.0,
) -> float:
    """Mean TTFT of one request: the profile's TTFT plus prefill time for the prompt's length.

    A prompt-cache hit covering ``cached_tokens`` of ``input_tokens`` (the whole prompt,
    cached part included) scales that share of the TTFT by ``cached_prefill_factor``, so a
    fully cached prompt starts ``cached_prefill_factor`` times the uncached TTFT.
    """
    full = ttft_ms + prefill_ms_per_1k_input_tokens * max(0, input_tokens) / 1000.0
    if input_tokens <= 0 or cached_tokens <= 0:
        return full
    share = min(cached_tokens, input_tokens) / input_tokens
    return full * (1.0 - share * (1.0 - cached_prefill_factor))


def token_offsets(
    ttft_ms: float,
    ms_per_token: float,
    n_tokens: int,
    jitter: float,
    rng: random.Random,
) -> list[float]:
    """Offset of every token: the first at a jittered TTFT, then one jittered gap per token.

    Jitter is a mean-1 lognormal factor with coefficient of variation ``jitter``, drawn
    independently for the TTFT and for each gap.
    """
    if n_tokens <= 0:
        return []
    offsets = [ttft_ms * lognormal_factor(rng, jitter)]
    for _ in range(n_tokens - 1):
        offsets.append(offsets[-1] + ms_per_token * lognormal_factor(rng, jitter))
    return offsets


def chunk_boundaries(n_tokens: int, tokens_per_chunk: int) -> list[tuple[int, int]]:
    """``(start, end)`` token index ranges of each stream delta."""
    return [
        (start, min(start + tokens_per_chunk, n_tokens))
        for start in range(0, n_tokens, tokens_per_chunk)
    ]


def chunk_offsets(tokens: Sequence[float], boundaries: Sequence[tuple[int, int]]) -> list[float]:
    """When each delta is due, so that a client observes the profile's TTFT and ms/token.

    The first delta goes out at the first token's offset and the last delta at the last
    token's; the deltas in between keep the (jittered) spacing of their last tokens,
    stretched over that span. So with several tokens per chunk a client still measures
    TTFT = ``ttft_ms`` and (last delta - first delta) / (tokens - 1) = ``ms_per_token``,
    the way it would see a model whose first chunk already carries several tokens.
    """
    if not boundaries:
        return []
    first = tokens[0]
    head = tokens[boundaries[0][1] - 1]  # the last token of the first delta
    last = tokens[boundaries[-1][1] - 1]
    span = last - head
    stretch = (last - first) / span if span > 0 else 0.0
    return [first] + [first + (tokens[end - 1] - head) * stretch for _, end in boundaries[1:]]


def ms_per_token_of(delta_offsets: Sequence[float], n_tokens: int) -> float | None:
    """(last delta - first delta) / (tokens - 1), the client-side TPOT; None for <= 1 token."""
    if n_tokens <= 1 or not delta_offsets:
        return None
    return (delta_offsets[-1] - delta_offsets[0]) / (n_tokens - 1)
