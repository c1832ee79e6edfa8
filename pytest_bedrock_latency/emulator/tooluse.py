"""Tool use: whether an answer calls a tool, which one, and an input valid against its schema.

Pure and deterministic: every choice comes from the ``random.Random`` the caller passes (the
emulator seeds it from profile seed, model, prompt and sample number), so a test sees the
same tool call every run.

The value generator covers the JSON Schema that tool and structured-output libraries emit
(pydantic's ``model_json_schema``, LangChain's and strands' tool specs): ``type`` (also a
list of types), ``properties``/``required``, ``enum``, ``const``, ``default``, arrays with
``items``/``prefixItems`` and ``minItems``/``maxItems``/``uniqueItems``, nested objects,
``$ref`` into ``$defs``/``definitions``, ``anyOf``/``oneOf``/``allOf``, numeric bounds
(``minimum``, ``maximum``, exclusive bounds, ``multipleOf``), string lengths and the formats
``date``, ``date-time``, ``time``, ``email``, ``uri``/``url``, ``uuid``, ``ipv4``, ``hostname``.
``pattern`` is not honoured (a regex cannot in general be inverted); such strings are plain
words.
"""

from __future__ import annotations

import copy
import json
import math
import random
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ToolCall",
    "ToolConfigError",
    "choose_tool",
    "instance_for_schema",
    "json_fragments",
    "json_tokens",
    "tool_use_id",
]

_WORDS = (
    "alpha",
    "amber",
    "harbor",
    "meadow",
    "river",
    "summit",
    "copper",
    "willow",
    "orbit",
    "signal",
    "garden",
    "lantern",
    "north",
    "delta",
    "cobalt",
    "maple",
)
_MAX_DEPTH = 8  # recursive schemas ($ref to itself) stop growing here
_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


class ToolConfigError(ValueError):
    """A ``toolConfig`` Bedrock would reject (the message is Bedrock's ValidationException text)."""


@dataclass(frozen=True)
class ToolCall:
    """One tool call an answer makes: Bedrock's ``toolUse`` block."""

    tool_use_id: str
    name: str
    input: Any

    def input_json(self) -> str:
        """The input as the compact JSON text that streams in ``toolUse`` input deltas."""
        return json.dumps(self.input, separators=(",", ":"), ensure_ascii=False)


def tool_use_id(rng: random.Random) -> str:
    """A Bedrock-style ``tooluse_`` id (22 random characters)."""
    return "tooluse_" + "".join(rng.choice(_ID_ALPHABET) for _ in range(22))


def json_tokens(text: str) -> int:
    """Tokens of a JSON text: one per 4 characters (the usual rule of thumb), at least 1."""
    return max(1, math.ceil(len(text) / 4))


def json_fragments(text: str, n: int) -> list[str]:
    """``text`` cut into ``n`` consecutive pieces (the last may be shorter; none empty)."""
    if not text:
        return [""]
    size = math.ceil(len(text) / max(1, min(n, len(text))))
    return [text[i : i + size] for i in range(0, len(text), size)]


# -- tool choice --------------------------------------------------------------------------------


def _tool_specs(tool_config: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    tools = tool_config.get("tools")
    if not isinstance(tools, list) or not tools:
        raise ToolConfigError(
            "The toolConfig field must be defined when using toolUse and toolResult content "
            "blocks, with at least one tool."
        )
    specs: list[Mapping[str, Any]] = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, Mapping):
            raise ToolConfigError(f"toolConfig.tools.{i} must be an object.")
        if "cachePoint" in tool or "systemTool" in tool:
            continue
        spec = tool.get("toolSpec")
        if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str):
            raise ToolConfigError(
                f"1 validation error detected: Value at 'toolConfig.tools.{i + 1}.member.toolSpec"
                ".name' failed to satisfy constraint: Member must not be null"
            )
        schema = (spec.get("inputSchema") or {}).get("json")
        if not isinstance(schema, Mapping):
            raise ToolConfigError(
                f"The json schema of tool {spec['name']} is missing (toolSpec.inputSchema.json)."
            )
        specs.append(spec)
    if not specs:
        raise ToolConfigError("The toolConfig field must define at least one toolSpec.")
    return specs


def choose_tool(
    tool_config: Mapping[str, Any] | None,
    *,
    tool_use_rate: float,
    answered_tool_results: bool,
    used_tools: Sequence[str],
    rng: random.Random,
) -> Mapping[str, Any] | None:
    """The ``toolSpec`` the answer calls, or None for a text answer.

    ``toolChoice`` ``tool`` calls that tool and ``any`` always calls one (preferring one the
    conversation has not used yet, so a function tool followed by an output tool both run).
    ``auto`` (the default) calls one with probability ``tool_use_rate``, except when the last
    user turn carries tool results (``answered_tool_results``): then the answer is text, so an
    agent loop ends. Raises :class:`ToolConfigError` for a config Bedrock rejects.
    """
    u = rng.random()  # drawn first, whatever the config, to keep later draws stable
    if tool_config is None:
        return None
    specs = _tool_specs(tool_config)
    choice = tool_config.get("toolChoice") or {"auto": {}}
    if not isinstance(choice, Mapping) or len(choice) != 1:
        raise ToolConfigError("toolChoice must have exactly one of auto, any or tool.")
    kind = next(iter(choice))
    if kind == "tool":
        name = (choice["tool"] or {}).get("name")
        for spec in specs:
            if spec["name"] == name:
                return spec
        raise ToolConfigError(
            f"The tool {name!r} named in toolChoice is not defined in toolConfig.tools."
        )
    if kind == "any":
        fresh = [s for s in specs if s["name"] not in used_tools]
        return rng.choice(fresh or specs)
    if kind != "auto":
        raise ToolConfigError(f"Unknown toolChoice {kind!r}; use auto, any or tool.")
    if answered_tool_results or u >= tool_use_rate:
        return None
    return rng.choice(specs)


# -- values valid against a JSON Schema ---------------------------------------------------------


def instance_for_schema(schema: Mapping[str, Any], rng: random.Random) -> Any:
    """A deterministic value valid against ``schema`` (see the module docstring for coverage)."""
    return _Generator(schema, rng).value(schema, 0)


class _Generator:
    def __init__(self, root: Mapping[str, Any], rng: random.Random) -> None:
        self.root = root
        self.rng = rng

    def resolve(self, ref: str) -> Mapping[str, Any]:
        if not ref.startswith("#"):
            return {}  # remote refs are unknowable offline; anything goes
        node: Any = self.root
        for part in ref.lstrip("#").strip("/").split("/"):
            if not part:
                continue
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(node, Mapping) or part not in node:
                return {}
            node = node[part]
        return node if isinstance(node, Mapping) else {}

    def merged(self, schema: Mapping[str, Any]) -> dict[str, Any]:
        """``schema`` with its ``$ref`` and ``allOf`` folded in (sibling keywords win)."""
        out: dict[str, Any] = {}
        ref = schema.get("$ref")
        if isinstance(ref, str):
            out.update(self.merged(self.resolve(ref)))
        for part in schema.get("allOf") or []:
            if isinstance(part, Mapping):
                sub = self.merged(part)
                props = {**out.get("properties", {}), **sub.get("properties", {})}
                required = [*out.get("required", []), *sub.get("required", [])]
                out.update(sub)
                if props:
                    out["properties"] = props
                if required:
                    out["required"] = list(dict.fromkeys(required))
        for key, value in schema.items():
            if key in ("$ref", "allOf"):
                continue
            if key == "properties" and "properties" in out:
                out["properties"] = {**out["properties"], **value}
            elif key == "required" and "required" in out:
                out["required"] = list(dict.fromkeys([*out["required"], *value]))
            else:
                out[key] = value
        return out

    def value(self, schema: Any, depth: int) -> Any:
        if schema is True or not isinstance(schema, Mapping):
            return self.rng.choice(_WORDS)
        s = self.merged(schema)
        if "const" in s:
            return copy.deepcopy(s["const"])
        if isinstance(s.get("enum"), list) and s["enum"]:
            return copy.deepcopy(self.rng.choice(s["enum"]))
        if s.get("default") is not None:  # a null default (pydantic's Optional) gets a value
            return copy.deepcopy(s["default"])
        for key in ("oneOf", "anyOf"):
            options = [o for o in s.get(key) or [] if isinstance(o, Mapping)]
            if options:
                # Optional[X] is anyOf [X, null]: prefer a real value over null.
                real = [o for o in options if self.merged(o).get("type") != "null"]
                rest = {k: v for k, v in s.items() if k != key}
                branch = self.merged(real[0] if real else options[0])
                return self.value({**rest, **branch}, depth)
        kind = s.get("type")
        if isinstance(kind, list):
            kinds = [k for k in kind if k != "null"] or ["null"]
            kind = kinds[0]
        if kind is None:
            if "properties" in s or "required" in s:
                kind = "object"
            elif "items" in s or "prefixItems" in s:
                kind = "array"
            else:
                kind = "string"
        if kind == "object":
            return self.object(s, depth)
        if kind == "array":
            return self.array(s, depth)
        if kind == "integer":
            return self.integer(s)
        if kind == "number":
            return self.number(s)
        if kind == "boolean":
            return self.rng.random() < 0.5
        if kind == "null":
            return None
        return self.string(s)

    def object(self, s: Mapping[str, Any], depth: int) -> dict[str, Any]:
        props = s.get("properties") or {}
        required = [r for r in s.get("required") or [] if isinstance(r, str)]
        # Deep inside a recursive schema only required members are filled, so it terminates.
        names = list(props) if depth < _MAX_DEPTH // 2 else [p for p in props if p in required]
        out: dict[str, Any] = {}
        for name in names:
            out[name] = self.value(props[name], depth + 1)
        for name in required:
            if name not in out:  # required but not described: any value will do
                out[name] = self.rng.choice(_WORDS)
        return out

    def array(self, s: Mapping[str, Any], depth: int) -> list[Any]:
        prefix = [p for p in s.get("prefixItems") or [] if isinstance(p, Mapping)]
        items = s.get("items")
        if isinstance(items, list):  # draft-04 tuple form
            prefix, items = [p for p in items if isinstance(p, Mapping)], None
        lo = max(int(s.get("minItems", 0)), len(prefix) if items is False else 0)
        hi = int(s.get("maxItems", max(lo, 3)))
        if items is False:  # no items beyond the prefix
            lo = hi = min(hi, len(prefix))
        if depth >= _MAX_DEPTH:
            n = lo
        else:
            n = self.rng.randint(max(lo, min(1, hi)), max(lo, min(hi, lo + 3)))
        out: list[Any] = []
        unique = bool(s.get("uniqueItems"))
        tries = 0
        while len(out) < n and tries < n * 10 + 10:
            tries += 1
            i = len(out)
            sub = prefix[i] if i < len(prefix) else (items if isinstance(items, Mapping) else {})
            value = self.value(sub, depth + 1)
            if unique and value in out:
                continue
            out.append(value)
        return out

    def integer(self, s: Mapping[str, Any]) -> int:
        lo, hi = _bounds(s, integer=True)
        step = s.get("multipleOf")
        if isinstance(step, int) and not isinstance(step, bool) and step > 0:
            first = math.ceil(lo / step) * step
            last = math.floor(hi / step) * step
            if first <= last:
                return int(first + step * self.rng.randint(0, int((last - first) // step)))
        return self.rng.randint(math.ceil(lo), math.floor(hi))

    def number(self, s: Mapping[str, Any]) -> float:
        lo, hi = _bounds(s, integer=False)
        step = s.get("multipleOf")
        if isinstance(step, (int, float)) and not isinstance(step, bool) and step > 0:
            first, last = math.ceil(lo / step), math.floor(hi / step)
            if first <= last:
                return float(step * self.rng.randint(first, last))
        value = round(self.rng.uniform(lo, hi), 2)
        return value if lo <= value <= hi else (lo + hi) / 2

    def string(self, s: Mapping[str, Any]) -> str:
        fmt = s.get("format")
        rng = self.rng
        if fmt == "date-time":
            text = f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00Z"
        elif fmt == "date":
            text = f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        elif fmt == "time":
            text = f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00"
        elif fmt == "email":
            text = f"{rng.choice(_WORDS)}@example.com"
        elif fmt in ("uri", "url", "iri"):
            text = f"https://example.com/{rng.choice(_WORDS)}"
        elif fmt == "uuid":
            text = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        elif fmt == "ipv4":
            text = f"192.0.2.{rng.randint(1, 254)}"
        elif fmt == "hostname":
            text = f"{rng.choice(_WORDS)}.example.com"
        else:
            text = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(1, 3)))
        lo = int(s.get("minLength", 0))
        hi = s.get("maxLength")
        while len(text) < lo:
            text += rng.choice("abcdefghijklmnopqrstuvwxyz")
        if isinstance(hi, int) and len(text) > hi:
            text = text[:hi]
        return text


def _bounds(s: Mapping[str, Any], integer: bool) -> tuple[float, float]:
    """The closed range a number must lie in (exclusive bounds nudged inwards)."""
    nudge = 1 if integer else 0.01

    def num(name: str) -> float | None:
        value = s.get(name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        return float(value)

    lo, hi = num("minimum"), num("maximum")
    ex_lo, ex_hi = num("exclusiveMinimum"), num("exclusiveMaximum")
    if s.get("exclusiveMinimum") is True and lo is not None:  # draft-04 boolean form
        lo += nudge
    elif ex_lo is not None:
        lo = max(lo if lo is not None else -math.inf, ex_lo + nudge)
    if s.get("exclusiveMaximum") is True and hi is not None:
        hi -= nudge
    elif ex_hi is not None:
        hi = min(hi if hi is not None else math.inf, ex_hi - nudge)
    if lo is None and hi is None:
        lo, hi = 1.0, 100.0
    elif lo is None:
        assert hi is not None
        lo = min(hi, 0.0) if hi >= 0 else hi - 100.0
    elif hi is None:
        hi = lo + 100.0
    if integer:
        lo, hi = float(math.ceil(lo)), float(math.floor(hi))
    return lo, max(lo, hi)
