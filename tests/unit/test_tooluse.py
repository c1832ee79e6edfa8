"""Tool choice and schema-valid tool inputs (pure, deterministic)."""

from __future__ import annotations

import datetime
import random
import uuid
from typing import Any, Literal, Optional

import jsonschema
import pytest
from pydantic import BaseModel, Field

from pytest_bedrock_latency.emulator.tooluse import (
    ToolConfigError,
    choose_tool,
    instance_for_schema,
    json_fragments,
)


class Address(BaseModel):
    city: str
    postcode: str = Field(min_length=5, max_length=5)


class Node(BaseModel):
    name: str
    children: list[Node] = []


class Order(BaseModel):
    customer: str
    quantity: int = Field(ge=1, le=9)
    discount: float = Field(gt=0, lt=1)
    status: Literal["open", "shipped"]
    ship_to: Address
    alternates: list[Address] = Field(min_length=2, max_length=4)
    note: Optional[str] = None  # noqa: UP045 - the anyOf-with-null shape pydantic emits
    due: datetime.date
    placed_at: datetime.datetime
    order_id: uuid.UUID
    contact: str = Field(json_schema_extra={"format": "email"})
    tree: Node
    tags: set[str]
    batch: int = Field(multiple_of=5, ge=7, le=40)


FORMATS = jsonschema.FormatChecker()


@pytest.mark.parametrize("seed", range(25))
def test_pydantic_schema_instances_validate(seed: int) -> None:
    schema = Order.model_json_schema()
    value = instance_for_schema(schema, random.Random(seed))
    jsonschema.validate(value, schema, format_checker=FORMATS)
    Order.model_validate(value)


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "properties": {"a": {"const": 3}}, "required": ["a"]},
        {"type": "array", "items": {"enum": ["x", "y", "z"]}, "minItems": 3, "uniqueItems": True},
        {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}], "items": False},
        {"oneOf": [{"type": "null"}, {"type": "integer", "exclusiveMinimum": 10, "maximum": 11}]},
        {"type": ["string", "null"], "format": "uri"},
        {"allOf": [{"$ref": "#/definitions/A"}], "definitions": {"A": {"type": "boolean"}}},
        {"type": "number", "maximum": -5},
        {"type": "string", "minLength": 30},
        {"type": "object", "required": ["undeclared"]},
    ],
)
def test_keywords(schema: dict[str, Any]) -> None:
    for seed in range(10):
        jsonschema.validate(
            instance_for_schema(schema, random.Random(seed)), schema, format_checker=FORMATS
        )


def test_instances_are_deterministic() -> None:
    schema = Order.model_json_schema()
    assert instance_for_schema(schema, random.Random(7)) == instance_for_schema(
        schema, random.Random(7)
    )


TOOLS = {
    "tools": [
        {"toolSpec": {"name": "weather", "inputSchema": {"json": {"type": "object"}}}},
        {"toolSpec": {"name": "final_result", "inputSchema": {"json": {"type": "object"}}}},
    ]
}


def pick(config: Any, rate: float = 0.0, answered: bool = False, used: tuple[str, ...] = ()) -> Any:
    spec = choose_tool(
        config,
        tool_use_rate=rate,
        answered_tool_results=answered,
        used_tools=used,
        rng=random.Random(1),
    )
    return spec["name"] if spec else None


def test_tool_choice() -> None:
    assert pick(None) is None
    assert pick({**TOOLS, "toolChoice": {"tool": {"name": "final_result"}}}) == "final_result"
    assert pick({**TOOLS, "toolChoice": {"any": {}}}) in ("weather", "final_result")
    # "any" after a tool ran prefers the one not used yet (a function tool, then the output tool).
    assert pick({**TOOLS, "toolChoice": {"any": {}}}, used=("weather",)) == "final_result"
    assert pick(TOOLS, rate=1.0) in ("weather", "final_result")
    assert pick(TOOLS, rate=0.0) is None
    assert pick(TOOLS, rate=1.0, answered=True) is None  # tool results are answered with text


def test_tool_use_rate_is_a_rate() -> None:
    calls = sum(
        choose_tool(
            TOOLS,
            tool_use_rate=0.3,
            answered_tool_results=False,
            used_tools=(),
            rng=random.Random(seed),
        )
        is not None
        for seed in range(2000)
    )
    assert 500 < calls < 700


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"tools": []}, "at least one tool"),
        ({**TOOLS, "toolChoice": {"tool": {"name": "nope"}}}, "'nope'"),
        ({"tools": [{"toolSpec": {"name": "x"}}]}, "inputSchema"),
    ],
)
def test_bad_tool_config(config: Any, message: str) -> None:
    with pytest.raises(ToolConfigError, match=message):
        pick(config)


def test_json_fragments_reassemble() -> None:
    text = '{"city":"Paris","days":3}'
    for n in (1, 3, 7, 100):
        parts = json_fragments(text, n)
        assert "".join(parts) == text and all(parts) and len(parts) <= n
