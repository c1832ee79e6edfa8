"""Input tokens of a request's content blocks, and the prompt-cache prefixes it marks.

The emulator has no tokenizer; it estimates, the same way for Converse, InvokeModel and
CountTokens, so CountTokens predicts the usage the other operations report:

* text (messages, system prompts, tool results, reasoning in history): 1.3 tokens per
  whitespace-separated word (``textgen.count_input_tokens``);
* images: width × height / 750, after scaling the image down to a long edge of 1568 px and at
  most 1.15 megapixels, as Anthropic documents for Claude (about 1,600 tokens at most). The
  size is read from the PNG, JPEG, GIF or WebP header; an image whose size cannot be read
  (an S3 location, an unknown format) counts as the 1,600-token maximum;
* documents: text formats (txt, md, csv, html) as text; a PDF as 1,500 tokens per page (pages
  counted from its ``/Type /Page`` objects; the low end of Anthropic's 1,500-3,000 per page);
  other binary formats (doc, docx, xls, xlsx) one token per 8 bytes;
* tool specs, tool uses and JSON tool results: one token per 4 characters of their compact
  JSON; video and audio blocks count nothing.

Blocks come in the Converse shape (``{"text": ...}``, ``{"image": ...}``, ``{"toolUse": ...}``)
or Anthropic's native shape (``{"type": "text", ...}``, ``{"type": "image", ...}``).
A Converse ``cachePoint`` block, or a native block with ``cache_control``, ends a cacheable
prefix: everything before it, in Bedrock's order tools, system, messages.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import re
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .textgen import count_input_tokens
from .tooluse import json_tokens

__all__ = [
    "IMAGE_MAX_TOKENS",
    "CachePrefix",
    "PromptTokens",
    "block_tokens",
    "image_size",
    "image_tokens",
    "prompt_tokens",
]

#: Tokens of the largest image Claude accepts without scaling (1.15 MP / 750).
IMAGE_MAX_TOKENS = 1600
_LONG_EDGE = 1568
_MAX_PIXELS = 1_150_000
_PDF_PAGE_TOKENS = 1500
_PDF_PAGE = re.compile(rb"/Type\s*/Page(?![a-zA-Z])")
_TEXT_DOCUMENTS = ("txt", "md", "csv", "html")


@dataclass(frozen=True)
class CachePrefix:
    """A cacheable prompt prefix: its tokens and a digest of its content (the cache key)."""

    tokens: int
    digest: str


@dataclass(frozen=True)
class PromptTokens:
    """A request's input tokens and the prefixes its cache points mark, shortest first."""

    total: int
    prefixes: tuple[CachePrefix, ...]


def _text_tokens(text: str) -> int:
    return count_input_tokens(text) if text.split() else 0


def image_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` from a PNG, GIF, JPEG or WebP header; None when unreadable."""
    try:
        if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
            w, h = struct.unpack(">II", data[16:24])
            return int(w), int(h)
        if data[:6] in (b"GIF87a", b"GIF89a"):
            w, h = struct.unpack("<HH", data[6:10])
            return int(w), int(h)
        if data[:2] == b"\xff\xd8":
            return _jpeg_size(data)
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return _webp_size(data)
    except struct.error:
        return None
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        # SOF0..SOF15 carry the frame size, except DHT (C4), JPG (C8) and DAC (CC).
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h, w = struct.unpack(">HH", data[i + 5 : i + 9])
            return int(w), int(h)
        i += 2 + length
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8 ":
        w, h = struct.unpack("<HH", data[26:30])
        return int(w & 0x3FFF), int(h & 0x3FFF)
    if chunk == b"VP8L":
        b0, b1, b2, b3 = data[21:25]
        return 1 + (b0 | (b1 & 0x3F) << 8), 1 + (b1 >> 6 | b2 << 2 | (b3 & 0x0F) << 10)
    if chunk == b"VP8X":
        w = int.from_bytes(data[24:27], "little") + 1
        h = int.from_bytes(data[27:30], "little") + 1
        return w, h
    return None


def image_tokens(width: int, height: int) -> int:
    """Claude's documented estimate: (width × height) / 750 after scaling down oversize images."""
    if width <= 0 or height <= 0:
        return IMAGE_MAX_TOKENS
    scale = min(1.0, _LONG_EDGE / max(width, height), math.sqrt(_MAX_PIXELS / (width * height)))
    w, h = max(1, int(width * scale)), max(1, int(height * scale))
    return min(IMAGE_MAX_TOKENS, max(1, math.ceil(w * h / 750)))


def _decode(data: Any) -> bytes | None:
    """Blob bytes as they arrive in JSON: base64 text (botocore encodes blobs so)."""
    if isinstance(data, (bytes, bytearray)):
        return bytes(data)
    if not isinstance(data, str):
        return None
    try:
        return base64.b64decode(data, validate=False)
    except (binascii.Error, ValueError):
        return None


def _image_block_tokens(source: Any) -> int:
    if not isinstance(source, Mapping):
        return IMAGE_MAX_TOKENS
    data = _decode(source.get("bytes", source.get("data")))
    size = image_size(data) if data else None
    return image_tokens(*size) if size else IMAGE_MAX_TOKENS


def _document_tokens(doc: Mapping[str, Any]) -> int:
    source = doc.get("source")
    if not isinstance(source, Mapping):
        return 0
    fmt = str(doc.get("format") or "").lower()
    if isinstance(source.get("text"), str):
        return _text_tokens(source["text"])
    if isinstance(source.get("content"), list):
        return sum(block_tokens(b) for b in source["content"] if isinstance(b, Mapping))
    data = _decode(source.get("bytes", source.get("data")))
    if not data:
        return 0
    if fmt in _TEXT_DOCUMENTS or source.get("media_type", "").startswith("text/"):
        return _text_tokens(data.decode("utf-8", "replace"))
    if fmt == "pdf" or data[:5] == b"%PDF-":
        return _PDF_PAGE_TOKENS * max(1, len(_PDF_PAGE.findall(data)))
    return math.ceil(len(data) / 8)


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)


def _result_tokens(content: Any) -> int:
    if isinstance(content, str):
        return _text_tokens(content)
    if not isinstance(content, list):
        return 0
    total = 0
    for item in content:
        if not isinstance(item, Mapping):
            continue
        if "json" in item:
            total += json_tokens(_json(item["json"]))
        else:
            total += block_tokens(item)
    return total


def block_tokens(block: Mapping[str, Any]) -> int:
    """Input tokens of one content block (Converse or Anthropic-native shape)."""
    kind = block.get("type")
    if isinstance(kind, str):  # Anthropic native
        if kind == "text":
            return _text_tokens(str(block.get("text", "")))
        if kind == "image":
            return _image_block_tokens(block.get("source"))
        if kind == "document":
            return _document_tokens({"format": "", "source": block.get("source")})
        if kind == "tool_use":
            return json_tokens(str(block.get("name", "")) + _json(block.get("input")))
        if kind == "tool_result":
            return _result_tokens(block.get("content"))
        if kind in ("thinking", "redacted_thinking"):
            return _text_tokens(str(block.get("thinking", "")))
        return 0
    if isinstance(block.get("text"), str):
        return _text_tokens(block["text"])
    if isinstance(block.get("image"), Mapping):
        return _image_block_tokens(block["image"].get("source"))
    if isinstance(block.get("document"), Mapping):
        return _document_tokens(block["document"])
    if isinstance(block.get("toolUse"), Mapping):
        use = block["toolUse"]
        return json_tokens(str(use.get("name", "")) + _json(use.get("input")))
    if isinstance(block.get("toolResult"), Mapping):
        return _result_tokens(block["toolResult"].get("content"))
    if isinstance(block.get("guardContent"), Mapping):
        text = (block["guardContent"].get("text") or {}).get("text", "")
        return _text_tokens(str(text))
    if isinstance(block.get("reasoningContent"), Mapping):
        text = (block["reasoningContent"].get("reasoningText") or {}).get("text", "")
        return _text_tokens(str(text))
    return 0


def _tool_tokens(tool: Mapping[str, Any]) -> int:
    spec = tool.get("toolSpec", tool)  # Converse wraps it; Anthropic native does not
    return json_tokens(_json(spec)) if isinstance(spec, Mapping) else 0


def _blocks(value: Any) -> Iterable[Mapping[str, Any]]:
    if isinstance(value, str):
        yield {"text": value}
    elif isinstance(value, list):
        yield from (b for b in value if isinstance(b, Mapping))


def prompt_tokens(tools: Any, system: Any, messages: Any) -> PromptTokens:
    """Input tokens of a whole request and its cache-point prefixes (at least 1 token)."""
    digest = hashlib.sha256()
    total = 0
    prefixes: list[CachePrefix] = []

    def mark() -> None:
        if total and (not prefixes or prefixes[-1].tokens != total):
            prefixes.append(CachePrefix(total, digest.hexdigest()))

    sections: list[tuple[str, Iterable[Mapping[str, Any]]]] = [
        ("tools", _blocks(tools)),
        ("system", _blocks(system)),
    ]
    for message in messages if isinstance(messages, list) else []:
        if isinstance(message, Mapping):
            sections.append((str(message.get("role")), _blocks(message.get("content"))))
    for section, blocks in sections:
        digest.update(section.encode() + b"\x1e")
        for block in blocks:
            if "cachePoint" in block:
                mark()
                continue
            total += _tool_tokens(block) if section == "tools" else block_tokens(block)
            digest.update(_json(block).encode() + b"\x1f")
            if "cache_control" in block:
                mark()
    return PromptTokens(max(1, total), tuple(prefixes))
