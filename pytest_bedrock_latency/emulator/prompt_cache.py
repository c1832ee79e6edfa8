"""The emulator's prompt cache: which prompt prefixes were written, per model, and until when.

Bedrock semantics, simplified: a request whose cache points mark prefixes reads the longest
prefix still cached (``cacheReadInputTokens``) and writes the tokens between it and its
longest prefix (``cacheWriteInputTokens``). A hit refreshes the entry's time to live, as
Anthropic's cache does. Minimum cacheable lengths per model are not modelled.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .content_tokens import CachePrefix

__all__ = ["CacheUse", "PromptCache"]


@dataclass(frozen=True)
class CacheUse:
    """The cache outcome of one request."""

    read_tokens: int = 0
    write_tokens: int = 0


class PromptCache:
    """Thread-safe store of cached prefixes keyed by (model, prefix digest), with expiry."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._expiry: dict[tuple[str, str], float] = {}

    def use(self, model_key: str, prefixes: Sequence[CachePrefix], ttl_s: float) -> CacheUse:
        """Look ``prefixes`` (shortest first) up for ``model_key``, then store the longest."""
        if not prefixes:
            return CacheUse()
        now = self._clock()
        with self._lock:
            hit = 0
            for prefix in reversed(prefixes):
                key = (model_key, prefix.digest)
                if self._expiry.get(key, -1.0) > now:
                    hit = prefix.tokens
                    self._expiry[key] = now + ttl_s
                    break
            longest = prefixes[-1]
            for prefix in prefixes:
                if prefix.tokens >= hit:
                    self._expiry[(model_key, prefix.digest)] = now + ttl_s
            # Drop expired entries now and then, so a long session does not grow without end.
            if len(self._expiry) > 4096:
                self._expiry = {k: v for k, v in self._expiry.items() if v > now}
        return CacheUse(read_tokens=hit, write_tokens=max(0, longest.tokens - hit))

    def clear(self) -> None:
        """Forget every cached prefix."""
        with self._lock:
            self._expiry.clear()
