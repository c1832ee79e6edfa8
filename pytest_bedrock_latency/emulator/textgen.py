"""Deterministic pseudo-English answers and token counting.

One word is one token, so the number of words in an answer always equals the output token
count the emulator reports. Nothing here keeps state: every function derives its randomness
from a sha256 of its inputs, which keeps answers repeatable under any concurrency.
"""

from __future__ import annotations

import hashlib
import math
import random

__all__ = [
    "count_input_tokens",
    "derive_rng",
    "generate_words",
    "lognormal_factor",
    "prompt_sha",
]

_NOUNS = [
    "model",
    "answer",
    "request",
    "system",
    "latency",
    "token",
    "stream",
    "result",
    "customer",
    "order",
    "account",
    "service",
    "report",
    "value",
    "change",
    "release",
    "baseline",
    "test",
    "window",
    "region",
    "profile",
    "budget",
    "policy",
    "record",
    "message",
    "network",
    "cache",
    "queue",
    "batch",
    "metric",
    "signal",
    "summary",
    "question",
    "context",
    "detail",
    "team",
    "project",
    "process",
    "update",
    "version",
    "option",
    "feature",
    "document",
    "table",
    "query",
    "user",
    "session",
]
_VERBS = [
    "shows",
    "keeps",
    "needs",
    "uses",
    "returns",
    "checks",
    "builds",
    "sends",
    "finds",
    "takes",
    "gives",
    "makes",
    "moves",
    "improves",
    "reduces",
    "explains",
    "covers",
    "follows",
    "handles",
    "tracks",
    "measures",
    "compares",
    "supports",
]
_ADJECTIVES = [
    "short",
    "clear",
    "fast",
    "stable",
    "simple",
    "useful",
    "recent",
    "small",
    "large",
    "careful",
    "quiet",
    "early",
    "typical",
    "common",
    "direct",
    "steady",
    "local",
    "final",
    "main",
    "correct",
]
_LINKS = ["and", "but", "so", "because", "while", "then", "also"]
_DETERMINERS = ["the", "a", "this", "each", "every", "our", "your", "that"]
_PREPOSITIONS = ["with", "for", "in", "on", "from", "after", "before", "over", "under", "about"]


def derive_rng(*parts: object) -> random.Random:
    """A ``random.Random`` seeded from a sha256 of ``parts`` (stable across processes, unlike hash())."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).digest()
    return random.Random(int.from_bytes(digest[:16], "big"))


def prompt_sha(prompt: str) -> str:
    """Short sha256 of the prompt text; the emulator logs this instead of the prompt."""
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:16]


def count_input_tokens(text: str) -> int:
    """Deterministic input-token estimate: 1.3 tokens per whitespace-separated word, at least 1.

    Converse, InvokeModel and CountTokens all use this, so CountTokens predicts the usage
    the other operations report.
    """
    words = len(text.split())
    return max(1, math.floor(words * 1.3 + 0.5))


def lognormal_factor(rng: random.Random, cv: float) -> float:
    """A multiplicative factor with mean 1 and coefficient of variation ``cv`` (1.0 when cv == 0)."""
    if cv <= 0:
        return 1.0
    sigma2 = math.log1p(cv * cv)
    return math.exp(rng.gauss(-sigma2 / 2.0, math.sqrt(sigma2)))


def _sentence(rng: random.Random, length: int) -> list[str]:
    words: list[str] = []
    while len(words) < length:
        pattern = rng.randrange(4)
        if pattern == 0:
            words += [rng.choice(_DETERMINERS), rng.choice(_NOUNS), rng.choice(_VERBS)]
        elif pattern == 1:
            words += [rng.choice(_DETERMINERS), rng.choice(_ADJECTIVES), rng.choice(_NOUNS)]
        elif pattern == 2:
            words += [rng.choice(_PREPOSITIONS), rng.choice(_DETERMINERS), rng.choice(_NOUNS)]
        else:
            words += [rng.choice(_LINKS), rng.choice(_NOUNS), rng.choice(_VERBS)]
    words = words[:length]
    words[0] = words[0].capitalize()
    words[-1] += "."
    return words


def generate_words(model_id: str, prompt: str, sample: int, n_words: int) -> list[str]:
    """``n_words`` words of readable pseudo-English, fixed by (model, prompt, sample number).

    Sentences are 5-14 words long and end with ``.``, so ``"."`` works as a stop sequence.
    """
    rng = derive_rng("text", model_id, prompt, sample)
    words: list[str] = []
    while len(words) < n_words:
        remaining = n_words - len(words)
        length = min(remaining, rng.randint(5, 14))
        words += _sentence(rng, length)
    return words
