"""Reasoning ("extended thinking"): whether a request reasons, and how many tokens it spends.

A request reasons when it asks to, in ``additionalModelRequestFields`` (Converse) or the
native body (InvokeModel):

* Anthropic Claude: ``{"thinking": {"type": "enabled", "budget_tokens": N}}`` (N >= 1024, and
  below ``max_tokens`` when that is set) or ``{"thinking": {"type": "adaptive"}}``;
* Amazon Nova: ``{"reasoningConfig": {"type": "enabled", "maxReasoningEffort": "low" |
  "medium" | "high"}}``;
* OpenAI gpt-oss: ``reasoning_effort`` ``low`` | ``medium`` | ``high``;

or always, for models that always reason (DeepSeek-R1, OpenAI gpt-oss). The profile's
``reasoning_tokens`` is the mean number of reasoning tokens at medium effort; low halves it,
high doubles it, and a ``budget_tokens`` caps it. Reasoning tokens count in ``outputTokens``,
as Bedrock counts them.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ReasoningError",
    "ReasoningRequest",
    "always_reasons",
    "reasoning_request",
    "reasoning_token_count",
    "signature",
]

_EFFORT = {"minimal": 0.25, "low": 0.5, "medium": 1.0, "high": 2.0}
_ALWAYS = re.compile(r"(^|[./])(deepseek\.r1|openai\.gpt-oss)")
_MIN_BUDGET = 1024


class ReasoningError(ValueError):
    """A reasoning request Bedrock would reject (ValidationException text)."""


@dataclass(frozen=True)
class ReasoningRequest:
    """What the request asked for: an effort multiplier and an optional token budget."""

    effort: float
    budget_tokens: int | None


def always_reasons(model_id: str) -> bool:
    """True for models that reason on every request (DeepSeek-R1, OpenAI gpt-oss)."""
    return bool(_ALWAYS.search(model_id))


def _effort(value: Any, where: str) -> float:
    if value is None:
        return 1.0
    if value not in _EFFORT:
        raise ReasoningError(f"{where} must be one of {', '.join(_EFFORT)} (got {value!r}).")
    return _EFFORT[value]


def reasoning_request(
    model_id: str, fields: Mapping[str, Any] | None, max_tokens: int | None
) -> ReasoningRequest | None:
    """The reasoning ``fields`` (additionalModelRequestFields or a native body) ask for, if any."""
    fields = fields or {}
    thinking = fields.get("thinking")
    if isinstance(thinking, Mapping) and thinking.get("type") in ("enabled", "adaptive"):
        budget = thinking.get("budget_tokens")
        if thinking.get("type") == "enabled":
            if not isinstance(budget, int) or isinstance(budget, bool):
                raise ReasoningError("thinking.enabled.budget_tokens: Field required")
            if budget < _MIN_BUDGET:
                raise ReasoningError(
                    "thinking.enabled.budget_tokens: Input should be greater than or equal "
                    f"to {_MIN_BUDGET}"
                )
            if max_tokens is not None and budget >= max_tokens:
                raise ReasoningError(
                    "`max_tokens` must be greater than `thinking.budget_tokens`. Please "
                    "consult our documentation at https://docs.claude.com/en/docs/build-with-"
                    "claude/extended-thinking#max-tokens-and-context-window-size"
                )
            return ReasoningRequest(1.0, budget)
        return ReasoningRequest(1.0, None)
    config = fields.get("reasoningConfig")
    if isinstance(config, Mapping) and config.get("type") == "enabled":
        return ReasoningRequest(
            _effort(config.get("maxReasoningEffort"), "reasoningConfig.maxReasoningEffort"),
            None,
        )
    if "reasoning_effort" in fields:
        return ReasoningRequest(_effort(fields.get("reasoning_effort"), "reasoning_effort"), None)
    if always_reasons(model_id):
        return ReasoningRequest(1.0, None)
    return None


def reasoning_token_count(request: ReasoningRequest, mean_tokens: float, factor: float) -> int:
    """Reasoning tokens of one answer: the profile mean × effort × a per-sample factor, capped."""
    n = max(1, round(mean_tokens * request.effort * factor)) if mean_tokens > 0 else 0
    if request.budget_tokens is not None:
        n = min(n, request.budget_tokens)
    return n


def signature(*parts: object) -> str:
    """A deterministic stand-in for the opaque signature that ends a reasoning block."""
    digest = hashlib.sha512("\x1f".join(str(p) for p in parts).encode("utf-8")).digest()
    return base64.b64encode(digest * 2).decode("ascii")
