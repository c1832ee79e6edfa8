"""Native InvokeModel request parsing and response/stream-chunk bodies, per model family.

Formats follow the Bedrock user guide for Anthropic Claude (messages API), Amazon Nova,
Amazon Titan Text, Meta Llama and Mistral (text completion). The emulator's own notion of a
stop reason is the Converse one (``end_turn``, ``max_tokens``, ``stop_sequence``); each family
maps it to its native vocabulary.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .content import Block
from .profiles import FAMILIES

__all__ = [
    "Answer",
    "NativeRequest",
    "RequestValidationError",
    "converse_prompt",
    "family_from_model_id",
    "native_response",
    "native_stream_delta",
    "native_stream_end",
    "native_stream_start",
    "parse_native_request",
    "served_model_id",
]


class RequestValidationError(Exception):
    """A request body Bedrock would reject with a 400 ValidationException."""


@dataclass(frozen=True)
class NativeRequest:
    """What the emulator needs from any request body."""

    prompt: str
    max_tokens: int | None
    stop_sequences: tuple[str, ...]


@dataclass(frozen=True)
class Answer:
    """A generated answer, in family-neutral terms."""

    model_id: str
    text: str
    input_tokens: int
    output_tokens: int
    stop_reason: str  # Converse vocabulary: end_turn | max_tokens | stop_sequence | tool_use
    stop_sequence: str | None
    request_id: str
    blocks: tuple[Block, ...] = ()  # reasoning / text / tool use; empty means text only
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0  # input_tokens excludes both, as Bedrock reports it

    def content_blocks(self) -> tuple[Block, ...]:
        """The answer's blocks (a single text block when none were planned)."""
        return self.blocks or (Block("text", self.text, (self.text,)),)


_REGION_PREFIX = re.compile(r"^(us|eu|apac|us-gov|ca|jp|au|global)\.")


_INFERENCE_PROFILE_ARN = re.compile(
    r"^arn:aws[\w-]*:bedrock:[^:]*:\d*:inference-profile/(?P<id>.+)$"
)


def served_model_id(model_id: str) -> str:
    """The model a system-defined cross-region inference profile runs, else ``model_id``.

    ``us.anthropic.claude-3-haiku-20240307-v1:0``, ``global.anthropic.claude-sonnet-4-6`` and
    their ``arn:aws:bedrock:<region>:<account>:inference-profile/...`` ARNs name the model
    after the geography prefix.
    """
    match = _INFERENCE_PROFILE_ARN.match(model_id)
    ident = match.group("id") if match else model_id
    return _REGION_PREFIX.sub("", ident)


def family_from_model_id(model_id: str) -> str | None:
    """Guess the native family from a model id, a foundation-model ARN or an inference-profile ARN."""
    ident = model_id
    if ident.startswith("arn:"):
        ident = ident.rsplit("/", 1)[-1]
    ident = _REGION_PREFIX.sub("", ident)
    if ident.startswith("anthropic."):
        return "anthropic"
    if ident.startswith("amazon.nova"):
        return "nova"
    if ident.startswith(("amazon.titan-text", "amazon.titan-tg1")):
        return "titan"
    if ident.startswith("meta.llama"):
        return "llama"
    if ident.startswith(("mistral.", "mixtral")):
        return "mistral"
    return None


def _malformed(detail: str) -> RequestValidationError:
    # The wording real Bedrock uses for schema violations of native bodies.
    return RequestValidationError(
        f"Malformed input request: {detail}, please reformat your input and try again."
    )


def _block_text(content: Any, where: str) -> list[str]:
    if isinstance(content, str):
        return [content]
    if not isinstance(content, list):
        raise _malformed(f"#/{where}: expected type: JSONArray, found: {type(content).__name__}")
    out: list[str] = []
    for block in content:
        if isinstance(block, Mapping) and isinstance(block.get("text"), str):
            out.append(block["text"])
    return out


def converse_prompt(messages: Any, system: Any) -> str:
    """The prompt text of a Converse-style (or Anthropic/Nova native) message list."""
    if messages is None:
        raise _malformed("#: required key [messages] not found")
    if not isinstance(messages, list) or not messages:
        raise RequestValidationError(
            "A conversation must start with a user message. Try again with a conversation "
            "that starts with a user message."
        )
    parts: list[str] = []
    if system is not None:
        parts += _block_text(system, "system")
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping) or message.get("role") not in ("user", "assistant"):
            raise _malformed(f"#/messages/{i}: required key [role] not found or invalid")
        if "content" not in message:
            raise _malformed(f"#/messages/{i}: required key [content] not found")
        parts += _block_text(message["content"], f"messages/{i}/content")
    return "\n".join(parts)


def _int_field(cfg: Mapping[str, Any], name: str, where: str) -> int | None:
    value = cfg.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise _malformed(f"#/{where}{name}: {value!r} is not a valid integer >= 1")
    return value


def _stops(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(s, str) and s for s in value):
        raise _malformed(f"#/{where}: expected a list of non-empty strings")
    return tuple(value)


def parse_native_request(family: str, body: bytes) -> NativeRequest:
    """Parse an InvokeModel body in ``family``'s native format."""
    if family not in FAMILIES:
        raise RequestValidationError(f"Unsupported model family {family!r}.")
    try:
        doc = json.loads(body.decode("utf-8") or "null")
    except (
        UnicodeDecodeError,
        ValueError,
        RecursionError,
    ):  # ValueError: JSONDecodeError, huge ints
        raise _malformed("#: body is not valid JSON") from None
    if not isinstance(doc, Mapping):
        raise _malformed("#: expected type: JSONObject")
    if family == "anthropic":
        prompt = converse_prompt(doc.get("messages"), doc.get("system"))
        if "max_tokens" not in doc:
            raise _malformed("#: required key [max_tokens] not found")
        return NativeRequest(
            prompt,
            _int_field(doc, "max_tokens", ""),
            _stops(doc.get("stop_sequences"), "stop_sequences"),
        )
    if family == "nova":
        prompt = converse_prompt(doc.get("messages"), doc.get("system"))
        cfg = doc.get("inferenceConfig") or {}
        if not isinstance(cfg, Mapping):
            raise _malformed("#/inferenceConfig: expected type: JSONObject")
        max_tokens = _int_field(cfg, "maxTokens", "inferenceConfig/")
        if max_tokens is None:  # the name in Nova's own docs
            max_tokens = _int_field(cfg, "max_new_tokens", "inferenceConfig/")
        return NativeRequest(
            prompt, max_tokens, _stops(cfg.get("stopSequences"), "inferenceConfig/stopSequences")
        )
    if family == "titan":
        text = doc.get("inputText")
        if not isinstance(text, str):
            raise _malformed("#: required key [inputText] not found")
        cfg = doc.get("textGenerationConfig") or {}
        if not isinstance(cfg, Mapping):
            raise _malformed("#/textGenerationConfig: expected type: JSONObject")
        return NativeRequest(
            text,
            _int_field(cfg, "maxTokenCount", "textGenerationConfig/"),
            _stops(cfg.get("stopSequences"), "textGenerationConfig/stopSequences"),
        )
    if family == "llama":
        text = doc.get("prompt")
        if not isinstance(text, str):
            raise _malformed("#: required key [prompt] not found")
        return NativeRequest(text, _int_field(doc, "max_gen_len", ""), ())
    # mistral: text completion, or the chat format of Mistral Large 2407+.
    if "messages" in doc:
        text = converse_prompt(doc.get("messages"), None)
    else:
        text = doc.get("prompt")
        if not isinstance(text, str):
            raise _malformed("#: required key [prompt] not found")
    return NativeRequest(text, _int_field(doc, "max_tokens", ""), _stops(doc.get("stop"), "stop"))


# -- responses --------------------------------------------------------------------------------

_TITAN_REASON = {"end_turn": "FINISH", "max_tokens": "LENGTH", "stop_sequence": "STOP_CRITERIA_MET"}
_SIMPLE_REASON = {"end_turn": "stop", "max_tokens": "length", "stop_sequence": "stop"}


def _anthropic_id(answer: Answer) -> str:
    return "msg_bdrk_" + answer.request_id.replace("-", "")[:24]


def converse_content(block: Block) -> dict[str, Any]:
    """A block as a Converse (and Nova native) content block."""
    if block.kind == "reasoning":
        return {
            "reasoningContent": {
                "reasoningText": {"text": block.text, "signature": block.signature}
            }
        }
    if block.kind == "tool_use" and block.tool is not None:
        return {
            "toolUse": {
                "toolUseId": block.tool.tool_use_id,
                "name": block.tool.name,
                "input": block.tool.input,
            }
        }
    return {"text": block.text}


def _anthropic_content(block: Block) -> dict[str, Any]:
    if block.kind == "reasoning":
        return {"type": "thinking", "thinking": block.text, "signature": block.signature}
    if block.kind == "tool_use" and block.tool is not None:
        return {
            "type": "tool_use",
            "id": "toolu_bdrk_" + block.tool.tool_use_id.removeprefix("tooluse_"),
            "name": block.tool.name,
            "input": block.tool.input,
        }
    return {"type": "text", "text": block.text}


def _anthropic_usage(answer: Answer, output_tokens: int) -> dict[str, int]:
    usage = {"input_tokens": answer.input_tokens, "output_tokens": output_tokens}
    if answer.cache_read_tokens or answer.cache_write_tokens:
        usage["cache_creation_input_tokens"] = answer.cache_write_tokens
        usage["cache_read_input_tokens"] = answer.cache_read_tokens
    return usage


def _nova_usage(answer: Answer) -> dict[str, int]:
    usage = {
        "inputTokens": answer.input_tokens,
        "outputTokens": answer.output_tokens,
        "totalTokens": answer.input_tokens
        + answer.output_tokens
        + answer.cache_read_tokens
        + answer.cache_write_tokens,
    }
    if answer.cache_read_tokens or answer.cache_write_tokens:
        usage["cacheReadInputTokenCount"] = answer.cache_read_tokens
        usage["cacheWriteInputTokenCount"] = answer.cache_write_tokens
    return usage


def native_response(family: str, answer: Answer) -> dict[str, Any]:
    """The InvokeModel response body for ``family``."""
    if family == "anthropic":
        return {
            "id": _anthropic_id(answer),
            "type": "message",
            "role": "assistant",
            "model": answer.model_id,
            "content": [_anthropic_content(b) for b in answer.content_blocks()],
            "stop_reason": answer.stop_reason,
            "stop_sequence": answer.stop_sequence,
            "usage": _anthropic_usage(answer, answer.output_tokens),
        }
    if family == "nova":
        return {
            "output": {
                "message": {
                    "role": "assistant",
                    "content": [converse_content(b) for b in answer.content_blocks()],
                }
            },
            "stopReason": answer.stop_reason,
            "usage": _nova_usage(answer),
        }
    if family == "titan":
        return {
            "inputTextTokenCount": answer.input_tokens,
            "results": [
                {
                    "tokenCount": answer.output_tokens,
                    "outputText": answer.text,
                    "completionReason": _TITAN_REASON[answer.stop_reason],
                }
            ],
        }
    if family == "llama":
        return {
            "generation": answer.text,
            "prompt_token_count": answer.input_tokens,
            "generation_token_count": answer.output_tokens,
            "stop_reason": _SIMPLE_REASON[answer.stop_reason],
        }
    # mistral text completion carries no token counts (they are in the headers).
    return {"outputs": [{"text": answer.text, "stop_reason": _SIMPLE_REASON[answer.stop_reason]}]}


#: Families whose native streams carry content blocks (start / delta / stop per block).
BLOCK_STREAM_FAMILIES = ("anthropic", "nova")


def native_block_start(family: str, index: int, block: Block) -> list[dict[str, Any]]:
    """Chunks that open content block ``index`` (block-stream families)."""
    if family == "anthropic":
        start = _anthropic_content(block)
        if block.kind == "reasoning":
            start.update(thinking="", signature="")
        elif block.kind == "tool_use":
            start["input"] = {}
        else:
            start["text"] = ""
        return [{"type": "content_block_start", "index": index, "content_block": start}]
    if block.kind == "tool_use" and block.tool is not None:
        tool = {"toolUseId": block.tool.tool_use_id, "name": block.tool.name}
        return [{"contentBlockStart": {"start": {"toolUse": tool}, "contentBlockIndex": index}}]
    return []


def native_block_delta(family: str, index: int, block: Block, piece: str) -> dict[str, Any]:
    """One delta chunk of content block ``index`` (block-stream families)."""
    if family == "anthropic":
        if block.kind == "reasoning":
            delta = {"type": "thinking_delta", "thinking": piece}
        elif block.kind == "tool_use":
            delta = {"type": "input_json_delta", "partial_json": piece}
        else:
            delta = {"type": "text_delta", "text": piece}
        return {"type": "content_block_delta", "index": index, "delta": delta}
    return {
        "contentBlockDelta": {"delta": converse_delta(block, piece), "contentBlockIndex": index}
    }


def converse_delta(block: Block, piece: str) -> dict[str, Any]:
    """The Converse ``delta`` member for one piece of ``block``."""
    if block.kind == "reasoning":
        return {"reasoningContent": {"text": piece}}
    if block.kind == "tool_use":
        return {"toolUse": {"input": piece}}
    return {"text": piece}


def native_block_stop(family: str, index: int, block: Block) -> list[dict[str, Any]]:
    """Chunks that close content block ``index``: a reasoning block's signature, then stop."""
    out: list[dict[str, Any]] = []
    if family == "anthropic":
        if block.kind == "reasoning":
            delta = {"type": "signature_delta", "signature": block.signature}
            out.append({"type": "content_block_delta", "index": index, "delta": delta})
        out.append({"type": "content_block_stop", "index": index})
        return out
    if block.kind == "reasoning":
        signed: dict[str, Any] = {"reasoningContent": {"signature": block.signature}}
        out.append({"contentBlockDelta": {"delta": signed, "contentBlockIndex": index}})
    out.append({"contentBlockStop": {"contentBlockIndex": index}})
    return out


def native_stream_start(family: str, answer: Answer) -> list[dict[str, Any]]:
    """Chunks sent before the first delta (block-stream families open blocks separately)."""
    if family == "anthropic":
        return [
            {
                "type": "message_start",
                "message": {
                    "id": _anthropic_id(answer),
                    "type": "message",
                    "role": "assistant",
                    "model": answer.model_id,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": _anthropic_usage(answer, 1),
                },
            },
        ]
    if family == "nova":
        return [{"messageStart": {"role": "assistant"}}]
    return []


def native_stream_delta(
    family: str, answer: Answer, text: str, tokens_so_far: int, first: bool
) -> dict[str, Any]:
    """One text delta chunk of a text-only family (the block-stream families use
    :func:`native_block_delta`); ``tokens_so_far`` includes the tokens of this delta."""
    if family == "titan":
        return {
            "outputText": text,
            "index": 0,
            "totalOutputTextTokenCount": tokens_so_far,
            "completionReason": None,
            "inputTextTokenCount": answer.input_tokens if first else None,
        }
    if family == "llama":
        return {
            "generation": text,
            "prompt_token_count": answer.input_tokens if first else None,
            "generation_token_count": tokens_so_far,
            "stop_reason": None,
        }
    return {"outputs": [{"text": text, "stop_reason": None}]}


def native_stream_end(
    family: str, answer: Answer, metrics: Mapping[str, int]
) -> list[dict[str, Any]]:
    """Closing chunks; the last one carries ``amazon-bedrock-invocationMetrics``."""
    m = {"amazon-bedrock-invocationMetrics": dict(metrics)}
    if family == "anthropic":
        return [
            {
                "type": "message_delta",
                "delta": {"stop_reason": answer.stop_reason, "stop_sequence": answer.stop_sequence},
                "usage": {"output_tokens": answer.output_tokens},
            },
            {"type": "message_stop", **m},
        ]
    if family == "nova":
        return [
            {"messageStop": {"stopReason": answer.stop_reason}},
            {
                "metadata": {
                    "usage": _nova_usage(answer),
                    "metrics": {},
                    "trace": {},
                },
                **m,
            },
        ]
    if family == "titan":
        return [
            {
                "outputText": "",
                "index": 0,
                "totalOutputTextTokenCount": answer.output_tokens,
                "completionReason": _TITAN_REASON[answer.stop_reason],
                "inputTextTokenCount": None,
                **m,
            }
        ]
    if family == "llama":
        return [
            {
                "generation": "",
                "prompt_token_count": None,
                "generation_token_count": answer.output_tokens,
                "stop_reason": _SIMPLE_REASON[answer.stop_reason],
                **m,
            }
        ]
    return [{"outputs": [{"text": "", "stop_reason": _SIMPLE_REASON[answer.stop_reason]}], **m}]


def stop_reason_native(family: str, stop_reason: str) -> str:
    """The native spelling of a Converse stop reason."""
    if family == "titan":
        return _TITAN_REASON[stop_reason]
    if family in ("llama", "mistral"):
        return _SIMPLE_REASON[stop_reason]
    return stop_reason


def joined(parts: Sequence[str]) -> str:
    """Concatenate delta texts (they already carry their leading spaces)."""
    return "".join(parts)
