"""Tables keyed by model id or by glob, and the one rule that picks an entry for a model.

The emulator's profiles and the price table share it: a key equal to the model id wins;
otherwise the longest matching glob (``fnmatch`` syntax, case-sensitive; ties broken
alphabetically); the bare ``"*"`` matches everything and only when nothing else does.

Pure code: no pytest, no boto3.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable

__all__ = ["KeyMatcher", "is_glob"]


def is_glob(key: str) -> bool:
    """Whether ``key`` is a pattern (``*``, ``?`` or ``[...]``) rather than one model id."""
    return any(ch in key for ch in "*?[")


class KeyMatcher:
    """Exact and glob lookup over a fixed set of keys; returns the key that matches."""

    def __init__(self, keys: Iterable[str]) -> None:
        self._exact = frozenset(keys)
        # Longest glob first, so "the longest pattern wins" is a linear scan.
        self._globs = sorted((k for k in self._exact if is_glob(k)), key=lambda k: (-len(k), k))

    def exact(self, model_id: str) -> str | None:
        """``model_id`` itself when it is a key (globs are not consulted)."""
        return model_id if model_id in self._exact else None

    def glob(self, model_id: str, include_star: bool = True) -> str | None:
        """The longest glob key matching ``model_id``; the bare ``"*"`` only if ``include_star``."""
        for pattern in self._globs:
            if pattern == "*" and not include_star:
                continue
            if fnmatch.fnmatchcase(model_id, pattern):
                return pattern
        return None

    def match(self, model_id: str, include_star: bool = True) -> str | None:
        """Exact key first, then the longest matching glob."""
        return self.exact(model_id) or self.glob(model_id, include_star)
