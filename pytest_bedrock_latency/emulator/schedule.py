"""Pure timing maths: when each token and each stream delta of an answer is due.

Offsets are milliseconds from request receipt. The server sleeps until ``t0 + offset`` for
every frame (an absolute schedule), so the error of one sleep never carries into the next.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from .textgen import lognormal_factor

__all__ = ["chunk_boundaries", "chunk_offsets", "ms_per_token_of", "token_offsets"]


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
    """A delta is sent when its last token has been generated."""
    return [tokens[end - 1] for _, end in boundaries]


def ms_per_token_of(delta_offsets: Sequence[float], n_tokens: int) -> float | None:
    """(last delta - first delta) / (tokens - 1), the client-side TPOT; None for <= 1 token."""
    if n_tokens <= 1 or not delta_offsets:
        return None
    return (delta_offsets[-1] - delta_offsets[0]) / (n_tokens - 1)
