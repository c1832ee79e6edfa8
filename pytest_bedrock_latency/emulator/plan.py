"""Pure answer planning: what one request is answered with and when each delta is due.

Everything is decided up front and is deterministic from the profile's seed, the model id,
the prompt and the sample number, so a rerun of a suite sees the same answers and timings.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from .content import Block
from .guardrails import DEFAULT_BLOCKED_MESSAGE
from .profiles import Profile
from .reasoning import reasoning_token_count, signature
from .request_features import NO_FEATURES, Features
from .schedule import chunk_boundaries, chunk_offsets, prefill_ttft_ms, token_offsets
from .textgen import derive_rng, generate_words, lognormal_factor, prompt_sha
from .tooluse import (
    ToolCall,
    choose_tool,
    instance_for_schema,
    json_fragments,
    json_tokens,
    tool_use_id,
)

__all__ = ["AnswerPlan", "ParsedRequest", "plan_answer"]


@dataclass(frozen=True)
class ParsedRequest:
    """The parts of a runtime request that shape its answer."""

    prompt: str
    max_tokens: int | None
    stop_sequences: tuple[str, ...]
    performance_latency: str | None
    service_tier: str | None
    features: Features = NO_FEATURES


@dataclass(frozen=True)
class AnswerPlan:
    """Everything decided up front about one answer (deterministic from seed/model/prompt/sample)."""

    throttled: bool
    not_ready: bool
    outlier: bool
    words: tuple[str, ...]
    stop_reason: str
    stop_sequence: str | None
    deltas: tuple[str, ...]
    delta_tokens: tuple[int, ...]  # cumulative token count after each delta
    delta_offsets_ms: tuple[float, ...]
    done_ms: float
    stream_error_after: int | None  # number of deltas sent before a mid-stream error
    blocks: tuple[Block, ...] = ()  # reasoning, text, tool use: in generation order
    delta_blocks: tuple[int, ...] = ()  # the block index of each delta
    output_tokens: int = 0  # every generated token: reasoning, text and tool input
    guardrail: str | None = None  # "input" or "output" when a guardrail intervened


@dataclass(frozen=True)
class _Part:
    """One block while planning: its tokens, its delta pieces and where each piece ends."""

    kind: str
    tokens: int
    pieces: list[str]
    ends: list[int]  # token count within the block after each piece
    text: str


def _words_part(kind: str, words: list[str], per_chunk: int, joiner: str = " ") -> _Part:
    bounds = chunk_boundaries(len(words), per_chunk)
    lead = joiner  # a delta after the first starts with the separator
    pieces = [(lead if a else "") + joiner.join(words[a:b]) for a, b in bounds]
    return _Part(kind, len(words), pieces, [b for _, b in bounds], joiner.join(words))


def plan_answer(
    profile: Profile,
    model_id: str,
    req: ParsedRequest,
    sample: int,
    streaming: bool,
    *,
    input_tokens: int = 0,
    cached_tokens: int = 0,
    guardrail_hit: bool = False,
    guardrail_messages: tuple[str, str] = (DEFAULT_BLOCKED_MESSAGE, DEFAULT_BLOCKED_MESSAGE),
) -> AnswerPlan:
    """Plan the answer to ``req`` from ``profile`` (the ``sample``-th time this prompt is asked).

    ``input_tokens`` (the whole prompt) and ``cached_tokens`` (its prompt-cache hit) set the
    prefill part of the TTFT. ``guardrail_hit`` says the request's guardrail matched the
    input; ``guardrail_messages`` are its blocked input and output messages.
    """
    # The prompt factor depends on the prompt only (not the model), so a prompt that makes
    # one model verbose makes its candidate verbose too - like real prompts do.
    prompt_rng = derive_rng("prompt", profile.seed, req.prompt)
    prompt_factor = lognormal_factor(prompt_rng, profile.prompt_spread)
    # Verbosity concentrated in a few prompts: a share long_answer_rate of the prompts,
    # chosen from the prompt text and the seed alone (the same prompts every run), answer
    # long_answer_factor times longer.
    if profile.long_answer_rate > 0.0:
        long_rng = derive_rng("long-answer", profile.seed, req.prompt)
        if long_rng.random() < profile.long_answer_rate:
            prompt_factor *= profile.long_answer_factor
    rng = derive_rng("request", profile.seed, model_id, req.prompt, sample)
    # Fixed draw order keeps every decision repeatable whatever the rates are.
    u_throttle, u_not_ready, u_outlier, u_stream, u_pos = (rng.random() for _ in range(5))
    sample_factor = lognormal_factor(rng, profile.answer_tokens_spread)
    n = max(1, round(profile.answer_tokens * prompt_factor * sample_factor))
    # A recorded prompt is answered as it was when recorded: its length, its stop reason,
    # and (recorded with answers) its text, cut into that many tokens.
    entry = profile.prompt(prompt_sha(req.prompt)) if profile.prompts else None
    if entry is not None:
        n = entry.answer_tokens
    cap = profile.max_output_tokens
    if req.max_tokens is not None:
        cap = min(cap, req.max_tokens)
    # Words past the cap are never sent, so they are never generated (a huge answer_tokens
    # costs nothing); the look-ahead still finds a stop sequence that starts before the cap.
    lookahead = max((len(s.split()) for s in req.stop_sequences), default=0) + 1
    recorded_text = entry.answer_text if entry is not None else None
    if recorded_text is not None:
        words = _pieces(recorded_text, n)
    else:
        words = generate_words(model_id, req.prompt, sample, min(n, cap + lookahead))

    stop_reason, stop_sequence = "end_turn", None
    if entry is not None and entry.stop_reason in ("max_tokens", "stop_sequence") and n <= cap:
        stop_reason = entry.stop_reason
        if stop_reason == "stop_sequence":
            stop_sequence = req.stop_sequences[0] if req.stop_sequences else None
            stop_reason = "stop_sequence" if stop_sequence is not None else "end_turn"
    stop_words: list[str] | None = None
    if req.stop_sequences and entry is None:
        full = " ".join(words)
        hits = [(full.find(s), s) for s in req.stop_sequences if s in full]
        if hits:
            at, stop_sequence = min(hits)
            prefix = full[:at].rstrip()
            stop_words = prefix.split(" ") if prefix else []
    limit = len(stop_words) if stop_words is not None else len(words)
    if cap < limit:
        words, stop_reason, stop_sequence = words[:cap], "max_tokens", None
    elif stop_words is not None:
        words, stop_reason = stop_words, "stop_sequence"

    # Agent features draw from their own stream, so plain text answers stay as they were.
    agent = derive_rng("agent", profile.seed, model_id, req.prompt, sample)
    u_guard, u_side = agent.random(), agent.random()
    features = req.features
    guardrail: str | None = None
    call: ToolCall | None = None
    n_reasoning = 0
    if features.guardrail is not None and (
        guardrail_hit or u_guard < profile.guardrail_intervention_rate
    ):
        guardrail = "input" if guardrail_hit or u_side < 0.5 else "output"
        message = guardrail_messages[0 if guardrail == "input" else 1]
        words, stop_reason, stop_sequence = message.split(), "guardrail_intervened", None
    else:
        spec = None
        if features.tool_config is not None:
            spec = choose_tool(
                features.tool_config,
                tool_use_rate=profile.tool_use_rate,
                answered_tool_results=features.answered_tool_results,
                used_tools=features.used_tools,
                rng=agent,
            )
        if spec is not None:
            schema = spec["inputSchema"]["json"]
            call = ToolCall(
                tool_use_id(agent), str(spec["name"]), instance_for_schema(schema, agent)
            )
            words, stop_reason, stop_sequence = [], "tool_use", None
        if features.reasoning is not None:
            spread = lognormal_factor(agent, profile.answer_tokens_spread)
            n_reasoning = reasoning_token_count(
                features.reasoning, profile.reasoning_tokens, spread
            )
            # maxTokens bounds reasoning and answer together, as Bedrock counts them.
            if req.max_tokens is not None and n_reasoning + len(words) > req.max_tokens:
                n_reasoning = min(n_reasoning, req.max_tokens)
                words = words[: req.max_tokens - n_reasoning]
                stop_reason, stop_sequence = "max_tokens", None

    outlier = u_outlier < profile.outlier_rate
    factor = 1.0
    if req.performance_latency == "optimized":
        factor /= profile.optimized_speedup
    if outlier:
        factor *= profile.outlier_factor
    ttft = prefill_ttft_ms(
        profile.ttft_ms,
        profile.prefill_ms_per_1k_input_tokens,
        input_tokens,
        cached_tokens,
        profile.cached_prefill_factor,
    )
    per_chunk = profile.tokens_per_chunk
    parts: list[_Part] = []
    if n_reasoning:
        thought = generate_words(model_id + "#reasoning", req.prompt, sample, n_reasoning)
        parts.append(_words_part("reasoning", thought, per_chunk))
    if words or (call is None and not n_reasoning):
        # Recorded pieces carry their own spacing; generated words are joined by spaces.
        joiner = "" if recorded_text is not None and guardrail is None else " "
        parts.append(_words_part("text", words, per_chunk, joiner))
    if call is not None:
        text = call.input_json()
        n_tool = json_tokens(text)
        pieces = json_fragments(text, math.ceil(n_tool / per_chunk))
        ends = [round(n_tool * (i + 1) / len(pieces)) for i in range(len(pieces))]
        parts.append(_Part("tool_use", n_tool, pieces, ends, text))
    total = sum(p.tokens for p in parts)
    tokens = token_offsets(ttft * factor, profile.ms_per_token * factor, total, profile.jitter, rng)
    bounds: list[tuple[int, int]] = []
    delta_blocks: list[int] = []
    all_pieces: list[str] = []
    blocks: list[Block] = []
    start = 0
    for index, part in enumerate(parts):
        kind, n_block, pieces, text = part.kind, part.tokens, part.pieces, part.text
        previous = start
        for piece, end in zip(pieces, part.ends, strict=True):
            bounds.append((previous, start + end))
            previous = start + end
            delta_blocks.append(index)
            all_pieces.append(piece)
        start += n_block
        blocks.append(
            Block(
                kind,
                text,
                tuple(pieces),
                tool=call if kind == "tool_use" else None,
                signature=signature(model_id, req.prompt, sample) if kind == "reasoning" else None,
            )
        )
    offsets = chunk_offsets(tokens, bounds)
    deltas = tuple(all_pieces)
    done = offsets[-1] if offsets else ttft * factor
    error_after: int | None = None
    if streaming and u_stream < profile.stream_error_rate:
        # "After some deltas": at least one when there are two or more, never all of them.
        error_after = (
            min(max(1, int(u_pos * len(deltas))), len(deltas) - 1) if len(deltas) > 1 else 0
        )
    return AnswerPlan(
        throttled=u_throttle < profile.throttle_rate,
        not_ready=u_not_ready < profile.not_ready_rate,
        outlier=outlier,
        words=tuple(words),
        stop_reason=stop_reason,
        stop_sequence=stop_sequence,
        deltas=deltas,
        delta_tokens=tuple(end for _, end in bounds),
        delta_offsets_ms=tuple(offsets),
        done_ms=done,
        stream_error_after=error_after,
        blocks=tuple(blocks),
        delta_blocks=tuple(delta_blocks),
        output_tokens=total,
        guardrail=guardrail,
    )


def _pieces(text: str, n: int) -> list[str]:
    """``text`` cut into ``n`` consecutive, nearly equal pieces (its tokens, for replay);
    joined they give ``text`` back."""
    if n <= 1 or len(text) <= 1:
        return [text] + [""] * max(0, n - 1)
    cuts = [0]
    for i in range(1, n):
        cuts.append(max(cuts[-1], round(i * len(text) / n)))
    cuts.append(len(text))
    return [text[a:b] for a, b in itertools.pairwise(cuts)]
