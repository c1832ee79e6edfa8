"""Input tokens of images, documents, tools and tool results; cache prefixes; the prompt cache."""

from __future__ import annotations

import base64
import struct
import zlib

import pytest

from pytest_bedrock_latency.emulator.content_tokens import (
    IMAGE_MAX_TOKENS,
    block_tokens,
    image_size,
    image_tokens,
    prompt_tokens,
)
from pytest_bedrock_latency.emulator.prompt_cache import PromptCache
from pytest_bedrock_latency.emulator.schedule import (
    chunk_boundaries,
    chunk_offsets,
    ms_per_token_of,
    prefill_ttft_ms,
    token_offsets,
)


def png(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", len(ihdr))
        + chunk
        + struct.pack(">I", zlib.crc32(chunk))
    )


def jpeg(width: int, height: int) -> bytes:
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + app0 + sof + b"\xff\xd9"


def gif(width: int, height: int) -> bytes:
    return b"GIF89a" + struct.pack("<HH", width, height) + b"\x00\x00\x00"


def webp_vp8x(width: int, height: int) -> bytes:
    body = b"VP8X" + struct.pack("<I", 10) + b"\x00\x00\x00\x00"
    body += (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    return b"RIFF" + struct.pack("<I", len(body) + 4) + b"WEBP" + body


def webp_lossless(width: int, height: int) -> bytes:
    bits = (width - 1) | (height - 1) << 14
    body = b"VP8L" + struct.pack("<I", 5) + b"\x2f" + bits.to_bytes(4, "little")
    return b"RIFF" + struct.pack("<I", len(body) + 4) + b"WEBP" + body


@pytest.mark.parametrize("make", [png, jpeg, gif, webp_vp8x, webp_lossless])
def test_image_headers(make: object) -> None:
    assert make(640, 480) == make(640, 480)  # type: ignore[operator]
    assert image_size(make(640, 480)) == (640, 480)  # type: ignore[operator]


def test_image_tokens_follow_the_documented_formula() -> None:
    assert image_tokens(200, 200) == 54  # 40,000 / 750, rounded up
    assert image_tokens(1000, 1000) == 1334
    # Oversize images are scaled down first: never more than ~1,600 tokens.
    assert image_tokens(4000, 3000) <= IMAGE_MAX_TOKENS
    assert image_size(b"not an image") is None


def test_blocks_count_images_documents_and_tools() -> None:
    image = {
        "image": {"format": "png", "source": {"bytes": base64.b64encode(png(200, 200)).decode()}}
    }
    assert block_tokens(image) == 54
    unreadable = {"image": {"format": "png", "source": {"s3Location": {"uri": "s3://b/k"}}}}
    assert block_tokens(unreadable) == IMAGE_MAX_TOKENS
    native = {
        "type": "image",
        "source": {"type": "base64", "data": base64.b64encode(gif(300, 150)).decode()},
    }
    assert block_tokens(native) == image_tokens(300, 150)
    pdf = b"%PDF-1.4 1 0 obj << /Type /Pages >> 2 0 obj << /Type /Page >> 3 0 obj << /Type /Page >>"
    doc = {
        "document": {
            "format": "pdf",
            "name": "d",
            "source": {"bytes": base64.b64encode(pdf).decode()},
        }
    }
    assert block_tokens(doc) == 3000
    text_doc = {
        "document": {
            "format": "txt",
            "name": "t",
            "source": {
                "bytes": base64.b64encode(
                    b"one two three four five six seven eight nine ten"
                ).decode()
            },
        }
    }
    assert block_tokens(text_doc) == 13
    use = {"toolUse": {"toolUseId": "t1", "name": "weather", "input": {"city": "Paris"}}}
    assert block_tokens(use) > 0
    result = {
        "toolResult": {
            "toolUseId": "t1",
            "content": [{"json": {"temp": 21}}, {"text": "sunny and warm"}],
        }
    }
    assert block_tokens(result) == 3 + 4  # 11 JSON characters, then 3 words


def test_an_image_only_turn_is_not_one_token() -> None:
    image = {
        "image": {"format": "png", "source": {"bytes": base64.b64encode(png(800, 600)).decode()}}
    }
    assert prompt_tokens(None, None, [{"role": "user", "content": [image]}]).total == 640


def test_tool_specs_count() -> None:
    tools = [
        {
            "toolSpec": {
                "name": "weather",
                "description": "Weather for a city",
                "inputSchema": {
                    "json": {"type": "object", "properties": {"city": {"type": "string"}}}
                },
            }
        }
    ]
    msgs = [{"role": "user", "content": [{"text": "hi"}]}]
    assert prompt_tokens(tools, None, msgs).total > prompt_tokens(None, None, msgs).total + 10


def test_cache_points_mark_prefixes_in_tools_system_messages_order() -> None:
    system = [{"text": "You are a careful assistant " * 50}, {"cachePoint": {"type": "default"}}]
    msgs = [
        {
            "role": "user",
            "content": [
                {"text": "question one"},
                {"cachePoint": {"type": "default"}},
                {"text": "tail"},
            ],
        }
    ]
    counted = prompt_tokens(None, system, msgs)
    assert [p.tokens for p in counted.prefixes] == [325, 328]
    assert counted.total == 329
    other = prompt_tokens(None, system, [{"role": "user", "content": [{"text": "question two"}]}])
    assert other.prefixes[0] == counted.prefixes[0]  # same system prompt, same cache key


def test_prompt_cache_writes_then_reads_within_ttl() -> None:
    now = [0.0]
    cache = PromptCache(clock=lambda: now[0])
    system = [{"text": "policy " * 200}, {"cachePoint": {"type": "default"}}]
    prefixes = prompt_tokens(None, system, [{"role": "user", "content": [{"text": "q"}]}]).prefixes
    first = cache.use("m", prefixes, ttl_s=300)
    assert (first.read_tokens, first.write_tokens) == (0, 260)
    now[0] = 299.0
    again = cache.use("m", prefixes, ttl_s=300)
    assert (again.read_tokens, again.write_tokens) == (260, 0)
    assert cache.use("other-model", prefixes, ttl_s=300).read_tokens == 0
    now[0] = 299.0 + 301  # the hit refreshed the entry; now it has expired
    assert cache.use("m", prefixes, ttl_s=300).write_tokens == 260


def test_prefill_and_cached_prefill() -> None:
    assert prefill_ttft_ms(200, 40, 5000) == 400
    assert prefill_ttft_ms(200, 40, 5000, cached_tokens=5000, cached_prefill_factor=0.25) == 100
    assert prefill_ttft_ms(200, 0, 1000, cached_tokens=500, cached_prefill_factor=0.5) == 150


@pytest.mark.parametrize("per_chunk", [1, 3, 5, 20])
def test_clients_observe_the_profile_whatever_the_chunking(per_chunk: int) -> None:
    import random

    tokens = token_offsets(200, 20, 20, 0.0, random.Random(0))
    offsets = chunk_offsets(tokens, chunk_boundaries(20, per_chunk))
    assert offsets[0] == pytest.approx(200)
    if per_chunk < 20:
        assert ms_per_token_of(offsets, 20) == pytest.approx(20)
    assert offsets == sorted(offsets)
