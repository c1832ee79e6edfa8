"""The agent-facing parts of a request: tools, reasoning, guardrail, cache points, field paths.

Read from a Converse body or a native InvokeModel body (Anthropic messages API, Amazon Nova)
into one family-neutral :class:`Features`, so planning and serving need not know which API
the request came through. Native tools are converted to the Converse ``toolConfig`` shape.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .content_tokens import PromptTokens, prompt_tokens
from .families import RequestValidationError
from .reasoning import ReasoningError, ReasoningRequest, reasoning_request
from .tooluse import ToolConfigError, choose_tool

__all__ = [
    "NO_FEATURES",
    "Features",
    "GuardrailRequest",
    "converse_features",
    "count_features",
    "native_features",
]


@dataclass(frozen=True)
class GuardrailRequest:
    """``guardrailConfig`` of a Converse request."""

    identifier: str
    version: str
    trace: bool


@dataclass(frozen=True)
class Features:
    """What a request asks beyond plain text generation."""

    tool_config: Mapping[str, Any] | None = None  # Converse shape
    answered_tool_results: bool = False  # the last user turn carries tool results
    used_tools: tuple[str, ...] = ()
    reasoning: ReasoningRequest | None = None
    response_field_paths: tuple[str, ...] = ()
    guardrail: GuardrailRequest | None = None
    tokens: PromptTokens | None = None  # None: count the prompt text only
    user_text: str = ""  # the last user turn's text, which an input guardrail checks


NO_FEATURES = Features()


def _blocks(message: Any) -> list[Mapping[str, Any]]:
    content = message.get("content") if isinstance(message, Mapping) else None
    if isinstance(content, str):
        return [{"text": content}]
    return [b for b in content or [] if isinstance(b, Mapping)] if isinstance(content, list) else []


def _history(messages: Any) -> tuple[bool, tuple[str, ...], str]:
    """(last user turn has tool results, tool names used so far, last user turn's text)."""
    if not isinstance(messages, list):
        return False, (), ""
    used: list[str] = []
    for message in messages:
        for block in _blocks(message):
            use = block.get("toolUse")
            if isinstance(use, Mapping) and isinstance(use.get("name"), str):
                used.append(use["name"])
            if block.get("type") == "tool_use" and isinstance(block.get("name"), str):
                used.append(block["name"])
    last = next(
        (m for m in reversed(messages) if isinstance(m, Mapping) and m.get("role") == "user"),
        None,
    )
    blocks = _blocks(last)
    answered = any("toolResult" in b or b.get("type") == "tool_result" for b in blocks)
    text = " ".join(str(b["text"]) for b in blocks if isinstance(b.get("text"), str))
    return answered, tuple(dict.fromkeys(used)), text


def _check_tools(tool_config: Mapping[str, Any] | None) -> None:
    if tool_config is None:
        return
    try:  # validates the config as Bedrock would, whatever the answer turns out to be
        choose_tool(
            tool_config,
            tool_use_rate=0.0,
            answered_tool_results=False,
            used_tools=(),
            rng=random.Random(0),
        )
    except ToolConfigError as exc:
        raise RequestValidationError(str(exc)) from None


def _reasoning(model_id: str, fields: Any, max_tokens: int | None) -> ReasoningRequest | None:
    try:
        return reasoning_request(
            model_id, fields if isinstance(fields, Mapping) else None, max_tokens
        )
    except ReasoningError as exc:
        raise RequestValidationError(str(exc)) from None


def _paths(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
        raise RequestValidationError("additionalModelResponseFieldPaths must be a list of strings.")
    for path in value:
        if not path.startswith("/"):
            raise RequestValidationError(
                f"The additionalModelResponseFieldPaths entry {path!r} is not a valid JSON "
                "pointer: it must start with '/'."
            )
    return tuple(value)


def _guardrail(value: Any) -> GuardrailRequest | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise RequestValidationError("guardrailConfig must be an object.")
    ident, version = value.get("guardrailIdentifier"), value.get("guardrailVersion")
    if not isinstance(ident, str) or not ident or not isinstance(version, str) or not version:
        raise RequestValidationError(
            "guardrailConfig needs guardrailIdentifier and guardrailVersion."
        )
    trace = value.get("trace", "disabled")
    if trace not in ("enabled", "disabled", "enabled_full"):
        raise RequestValidationError(
            f"1 validation error detected: Value '{trace}' at 'guardrailConfig.trace' failed "
            "to satisfy constraint: Member must satisfy enum value set: [enabled, disabled, "
            "enabled_full]"
        )
    return GuardrailRequest(ident, version, trace != "disabled")


def converse_features(doc: Mapping[str, Any], model_id: str, max_tokens: int | None) -> Features:
    """Features of a Converse / ConverseStream body (already checked by ``validation``)."""
    tool_config = doc.get("toolConfig")
    tool_config = tool_config if isinstance(tool_config, Mapping) else None
    _check_tools(tool_config)
    answered, used, text = _history(doc.get("messages"))
    tools = tool_config.get("tools") if tool_config else None
    return Features(
        tool_config=tool_config,
        answered_tool_results=answered,
        used_tools=used,
        reasoning=_reasoning(model_id, doc.get("additionalModelRequestFields"), max_tokens),
        response_field_paths=_paths(doc.get("additionalModelResponseFieldPaths")),
        guardrail=_guardrail(doc.get("guardrailConfig")),
        tokens=prompt_tokens(tools, doc.get("system"), doc.get("messages")),
        user_text=text,
    )


def count_features(conv: Mapping[str, Any]) -> PromptTokens:
    """The input tokens of CountTokens' ``input.converse`` member."""
    tool_config = conv.get("toolConfig")
    tools = tool_config.get("tools") if isinstance(tool_config, Mapping) else None
    return prompt_tokens(tools, conv.get("system"), conv.get("messages"))


def _anthropic_tool_config(doc: Mapping[str, Any]) -> Mapping[str, Any] | None:
    tools = doc.get("tools")
    if not isinstance(tools, list) or not tools:
        return None
    specs = []
    for tool in tools:
        if not isinstance(tool, Mapping):
            raise RequestValidationError("Malformed input request: #/tools: expected objects.")
        specs.append(
            {
                "toolSpec": {
                    "name": tool.get("name"),
                    "description": tool.get("description", ""),
                    "inputSchema": {"json": tool.get("input_schema")},
                }
            }
        )
    choice = doc.get("tool_choice") or {"type": "auto"}
    kind = choice.get("type") if isinstance(choice, Mapping) else None
    if kind == "tool":
        converse_choice: dict[str, Any] = {"tool": {"name": choice.get("name")}}
    elif kind == "any":
        converse_choice = {"any": {}}
    elif kind in ("auto", None):
        converse_choice = {"auto": {}}
    elif kind == "none":
        return None
    else:
        raise RequestValidationError(f"Malformed input request: #/tool_choice/type: {kind!r}.")
    return {"tools": specs, "toolChoice": converse_choice}


def native_features(
    family: str, doc: Mapping[str, Any], model_id: str, max_tokens: int | None
) -> Features:
    """Features of a native InvokeModel body (tools and reasoning for Anthropic and Nova)."""
    if family == "anthropic":
        tool_config = _anthropic_tool_config(doc)
        _check_tools(tool_config)
        answered, used, text = _history(doc.get("messages"))
        return Features(
            tool_config=tool_config,
            answered_tool_results=answered,
            used_tools=used,
            reasoning=_reasoning(model_id, doc, max_tokens),
            tokens=prompt_tokens(doc.get("tools"), doc.get("system"), doc.get("messages")),
            user_text=text,
        )
    if family == "nova":
        tool_config = doc.get("toolConfig")
        tool_config = tool_config if isinstance(tool_config, Mapping) else None
        _check_tools(tool_config)
        answered, used, text = _history(doc.get("messages"))
        tools = tool_config.get("tools") if tool_config else None
        return Features(
            tool_config=tool_config,
            answered_tool_results=answered,
            used_tools=used,
            reasoning=_reasoning(model_id, doc, max_tokens),
            tokens=prompt_tokens(tools, doc.get("system"), doc.get("messages")),
            user_text=text,
        )
    return NO_FEATURES
