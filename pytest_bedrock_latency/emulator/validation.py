"""The request rules Bedrock enforces on Converse/ConverseStream bodies, with its error wording.

Every rule raises :class:`~.families.RequestValidationError` (a 400 ``ValidationException``)
whose message names the field or the rule, so an application bug that real Bedrock rejects is
rejected offline too. The rules (README, "Request validation", lists them):

* the body is a JSON object whose top-level fields are Converse's own (unknown ones rejected);
* ``messages`` is a non-empty list; the first message is from the user; roles alternate;
  every message has a non-empty ``content`` list of content blocks, each an object with one
  known member; a ``text`` block is not blank;
* ``toolUse`` / ``toolResult`` blocks need ``toolConfig``;
* ``inferenceConfig.maxTokens`` is an integer from 1 to the model's output limit;
  ``temperature`` and ``topP`` are numbers from 0 to 1; ``stopSequences`` a list of at most
  2,500 non-empty strings;
* ``performanceConfig.latency`` is ``standard`` or ``optimized``; ``serviceTier.type`` is one
  of ``priority``, ``default``, ``flex``, ``reserved``;
* the object-valued fields are objects, the list-valued ones lists.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from .families import RequestValidationError

__all__ = ["CONVERSE_FIELDS", "check_converse", "check_messages", "check_number"]

#: Top-level members of ConverseRequest / ConverseStreamRequest (modelId travels in the path).
CONVERSE_FIELDS: tuple[str, ...] = (
    "messages",
    "system",
    "inferenceConfig",
    "toolConfig",
    "guardrailConfig",
    "projectIdentifier",
    "additionalModelRequestFields",
    "promptVariables",
    "additionalModelResponseFieldPaths",
    "requestMetadata",
    "performanceConfig",
    "serviceTier",
    "outputConfig",
)
_OBJECT_FIELDS = (
    "inferenceConfig",
    "toolConfig",
    "guardrailConfig",
    "additionalModelRequestFields",
    "promptVariables",
    "requestMetadata",
    "performanceConfig",
    "serviceTier",
    "outputConfig",
)
_CONTENT_BLOCKS = frozenset(
    {
        "text",
        "image",
        "document",
        "video",
        "audio",
        "toolUse",
        "toolResult",
        "guardContent",
        "cachePoint",
        "reasoningContent",
        "citationsContent",
        "searchResult",
        "toolAddition",
        "toolRemoval",
    }
)
_SYSTEM_BLOCKS = frozenset({"text", "guardContent", "cachePoint"})
_LATENCIES = ("standard", "optimized")
_TIERS = ("priority", "default", "flex", "reserved")


def _type_name(value: Any) -> str:
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list):
        return "list"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return "number"


def _invalid(path: str, constraint: str, value: Any = None) -> RequestValidationError:
    shown = "" if value is None else f"Value '{str(value)[:80]}' "
    return RequestValidationError(
        f"1 validation error detected: {shown}at '{path}' failed to satisfy constraint: "
        f"{constraint}"
    )


def _expect(path: str, value: Any, kind: str) -> None:
    ok = isinstance(value, Mapping) if kind == "object" else isinstance(value, list)
    if not ok:
        raise _invalid(path, f"Member must be a JSON {kind} (got a {_type_name(value)})")


def check_number(path: str, value: Any, low: float, high: float) -> float:
    """A finite JSON number within [low, high] (Bedrock's range wording otherwise)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _invalid(path, f"Member must be a number (got a {_type_name(value)})")
    if not math.isfinite(value):
        raise _invalid(path, "Member must be a finite number", value)
    if value < low:
        raise _invalid(path, f"Member must have value greater than or equal to {low:g}", value)
    if value > high:
        raise _invalid(path, f"Member must have value less than or equal to {high:g}", value)
    return float(value)


def check_messages(messages: Any, system: Any, *, has_tool_config: bool) -> None:
    """The conversation rules: roles, alternation, content blocks, blank text, tool blocks."""
    if messages is None:
        raise _invalid("messages", "Member must not be null")
    _expect("messages", messages, "list")
    if not messages:
        raise RequestValidationError(
            "A conversation must start with a user message. Try again with a conversation "
            "that starts with a user message."
        )
    previous: str | None = None
    for i, message in enumerate(messages):
        where = f"messages.{i}"
        _expect(where, message, "object")
        unknown = sorted(set(message) - {"role", "content"})
        if unknown:
            raise _invalid(where, f"Member has unknown field '{unknown[0]}'")
        role = message.get("role")
        if role not in ("user", "assistant"):
            raise _invalid(
                f"{where}.role", "Member must satisfy enum value set: [user, assistant]", role
            )
        if i == 0 and role != "user":
            raise RequestValidationError(
                "A conversation must start with a user message. Try again with a conversation "
                "that starts with a user message."
            )
        if role == previous:
            raise RequestValidationError(
                "A conversation must alternate between user and assistant roles. Make sure the "
                "conversation alternates between user and assistant roles and try again."
            )
        previous = role
        content = message.get("content")
        if content is None:
            raise _invalid(f"{where}.content", "Member must not be null")
        _expect(f"{where}.content", content, "list")
        if not content:
            raise RequestValidationError(
                f"The content field in the Message object at {where} is empty. Add a "
                "ContentBlock object to the content field and try again."
            )
        for j, block in enumerate(content):
            _check_block(f"{where}.content.{j}", block, _CONTENT_BLOCKS, "ContentBlock")
            if ("toolUse" in block or "toolResult" in block) and not has_tool_config:
                raise RequestValidationError(
                    "The toolConfig field must be defined when using toolUse and toolResult "
                    "content blocks."
                )
    if system is not None:
        _expect("system", system, "list")
        for j, block in enumerate(system):
            _check_block(f"system.{j}", block, _SYSTEM_BLOCKS, "SystemContentBlock")


def _check_block(where: str, block: Any, allowed: frozenset[str], shape: str) -> None:
    _expect(where, block, "object")
    members = [key for key in block if key in allowed]
    unknown = sorted(set(block) - allowed)
    if unknown:
        raise _invalid(where, f"{shape} has unknown member '{unknown[0]}'")
    if len(members) != 1:
        raise _invalid(where, f"{shape} must have exactly one member set (got {len(members)})")
    if "text" in block:
        text = block["text"]
        if not isinstance(text, str):
            raise _invalid(f"{where}.text", f"Member must be a string (got a {_type_name(text)})")
        if not text.strip():
            raise RequestValidationError(
                f"The text field in the {shape} object at {where} is blank. Add text to the "
                "text field, and try again."
            )


def check_converse(doc: Mapping[str, Any], max_output_tokens: int) -> None:
    """Every rule above for a Converse/ConverseStream body (``doc`` is the parsed JSON object)."""
    unknown = [key for key in doc if key not in CONVERSE_FIELDS]
    if unknown:
        raise RequestValidationError(
            f"The request body has an unknown field '{str(unknown[0])[:80]}'. Allowed fields: "
            f"{', '.join(CONVERSE_FIELDS)}."
        )
    for name in _OBJECT_FIELDS:
        if doc.get(name) is not None:
            _expect(name, doc[name], "object")
    if doc.get("additionalModelResponseFieldPaths") is not None:
        paths = doc["additionalModelResponseFieldPaths"]
        _expect("additionalModelResponseFieldPaths", paths, "list")
        if not all(isinstance(p, str) for p in paths):
            raise _invalid("additionalModelResponseFieldPaths", "Member must be a list of strings")
    tool_config = doc.get("toolConfig")
    if tool_config is not None:
        tools = tool_config.get("tools")
        _expect("toolConfig.tools", tools, "list")
        if not tools:
            raise _invalid("toolConfig.tools", "Member must have length greater than or equal to 1")
    check_messages(doc.get("messages"), doc.get("system"), has_tool_config=tool_config is not None)
    cfg = doc.get("inferenceConfig") or {}
    max_tokens = cfg.get("maxTokens")
    if max_tokens is not None:
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
            raise _invalid(
                "inferenceConfig.maxTokens",
                f"Member must be an integer (got a {_type_name(max_tokens)})",
            )
        if max_tokens < 1:
            raise _invalid(
                "inferenceConfig.maxTokens", "Member must have value greater than or equal to 1"
            )
        if max_tokens > max_output_tokens:
            raise RequestValidationError(
                f"The maximum tokens you requested exceeds the model limit of "
                f"{max_output_tokens}. Try again with a maximum tokens value that is lower than "
                f"{max_output_tokens + 1}."
            )
    for name in ("temperature", "topP"):
        if cfg.get(name) is not None:
            check_number(f"inferenceConfig.{name}", cfg[name], 0.0, 1.0)
    stops = cfg.get("stopSequences")
    if stops is not None:
        _expect("inferenceConfig.stopSequences", stops, "list")
        if len(stops) > 2500 or not all(isinstance(s, str) and s for s in stops):
            raise _invalid(
                "inferenceConfig.stopSequences",
                "Member must be a list of at most 2500 non-empty strings",
            )
    perf = doc.get("performanceConfig")
    if perf is not None and perf.get("latency") not in (None, *_LATENCIES):
        raise _invalid(
            "performanceConfig.latency",
            "Member must satisfy enum value set: [standard, optimized]",
            perf.get("latency"),
        )
    tier = doc.get("serviceTier")
    if tier is not None and tier.get("type") not in _TIERS:
        raise _invalid(
            "serviceTier.type",
            "Member must satisfy enum value set: [priority, default, flex, reserved]",
            tier.get("type"),
        )
