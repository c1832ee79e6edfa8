"""The content blocks of a planned answer, in family-neutral terms."""

from __future__ import annotations

from dataclasses import dataclass

from .tooluse import ToolCall

__all__ = ["Block"]


@dataclass(frozen=True)
class Block:
    """One content block of an answer, in the order it is generated.

    ``kind`` is ``reasoning`` (text, then ``signature``), ``text`` or ``tool_use``
    (``tool``; ``text`` is its input JSON). ``pieces`` are the stream deltas' payloads.
    """

    kind: str
    text: str
    pieces: tuple[str, ...]
    tool: ToolCall | None = None
    signature: str | None = None
