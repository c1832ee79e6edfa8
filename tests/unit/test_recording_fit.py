"""The profile fitter (recording.py), its TOML, and per-prompt profile entries."""

from __future__ import annotations

import random
import sys
from typing import Any

import pytest

from pytest_bedrock_latency.emulator.profiles import ProfileError, load_profiles
from pytest_bedrock_latency.measurement import Generation
from pytest_bedrock_latency.promptkey import body_prompt_sha, request_prompt_sha
from pytest_bedrock_latency.recording import (
    Failure,
    dump_profiles,
    fit_model,
    merge_document,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

MODEL = "anthropic.claude-3-haiku-20240307-v1:0"


def gen(ttft: float, mpt: float, tokens: int, *, sha: str = "a" * 16, **kw: Any) -> Generation:
    values: dict[str, Any] = {
        "model_id": MODEL,
        "operation": "ConverseStream",
        "text": "",
        "input_tokens": 100,
        "output_tokens": tokens,
        "stop_reason": "end_turn",
        "ttft_ms": ttft,
        "total_ms": ttft + mpt * (tokens - 1),
        "ms_per_token": mpt,
        "tokens_per_second": None,
        "server_latency_ms": None,
        "words": tokens,
        "chars": 0,
        "attempts": 1,
        "retry_wait_ms": 0.0,
        "started_at": 0.0,
        "prompt_sha": sha,
        "chunks": tokens,
    }
    values.update(kw)
    return Generation(**values)


def test_fit_recovers_prefill_slope_outliers_and_speed() -> None:
    rng = random.Random(1)
    calls = []
    for i in range(200):
        inputs = 200 + 40 * (i % 50)  # 200 .. 2160 input tokens
        ttft = (150 + 50 * inputs / 1000) * rng.lognormvariate(0, 0.05)
        outlier = i % 25 == 0
        calls.append(
            gen(
                ttft * (4 if outlier else 1),
                10 * rng.lognormvariate(0, 0.02),
                30,
                input_tokens=inputs,
            )
        )
    fit = fit_model(MODEL, calls)
    assert fit.fields["prefill_ms_per_1k_input_tokens"] == pytest.approx(50, rel=0.15)
    assert fit.fields["outlier_rate"] == pytest.approx(8 / 200)
    assert fit.fields["outlier_factor"] == pytest.approx(4, rel=0.15)
    assert fit.fields["ms_per_token"] == pytest.approx(10, rel=0.02)
    assert fit.fields["jitter"] == pytest.approx(0.05, abs=0.02)
    assert fit.fields["ttft_ms"] == pytest.approx(150, rel=0.1)


def test_lengths_per_prompt_and_spreads() -> None:
    calls = []
    for p in range(8):
        sha = f"{p:016x}"
        for n in (20 + 10 * p, 22 + 10 * p, 24 + 10 * p):
            calls.append(gen(100, 10, n, sha=sha))
    fit = fit_model(MODEL, calls)
    assert fit.prompts["0000000000000003"] == {"answer_tokens": 52, "stop_reason": "end_turn"}
    assert fit.fields["answer_tokens"] == pytest.approx(57)
    assert 0.02 < fit.fields["answer_tokens_spread"] < 0.15
    assert 0.3 < fit.fields["prompt_spread"] < 0.5


def test_rates_count_attempts_and_mid_stream_breaks() -> None:
    calls = [gen(100, 10, 10, attempts=2 if i < 5 else 1) for i in range(40)]
    failures = [Failure(MODEL, "ThrottlingException", 3)] + [
        Failure(MODEL, "modelStreamErrorException", mid_stream=True) for _ in range(4)
    ]
    fit = fit_model(MODEL, calls, failures)
    attempts = 45 + 3 + 4
    assert fit.fields["throttle_rate"] == round(8 / attempts, 4)
    assert fit.fields["not_ready_rate"] == 0.0
    assert fit.fields["stream_error_rate"] == round(4 / 44, 4)


def test_too_few_calls_leave_fields_out_with_reasons() -> None:
    fit = fit_model(MODEL, [gen(100, 10, 10), gen(100, 10, 12, stop_reason="max_tokens")])
    assert "ttft_ms" not in fit.fields and "throttle_rate" not in fit.fields
    assert "ttft_ms" in fit.left_out and "answer_tokens" in fit.left_out
    assert any("2 streamed calls with a first token, 5 needed" in n for n in fit.notes())
    assert fit.stop_reasons == {"end_turn": 1, "max_tokens": 1}


def test_document_round_trips_through_toml_and_the_loader() -> None:
    calls = [
        gen(100 + i, 10, 10 + i % 3, sha=f"{i % 4:016x}", text='a "quoted"\nanswer')
        for i in range(30)
    ]
    fit = fit_model(MODEL, calls, answers=True)
    doc = merge_document({"models": {"keep-me": {"ttft_ms": 5.0}}}, [fit], {"region": "us-east-1"})
    text = dump_profiles(doc, ["header"])
    assert text.startswith("# header\n")
    parsed = tomllib.loads(text)
    assert parsed["models"]["keep-me"] == {"ttft_ms": 5.0}
    assert parsed["provenance"]["models"][MODEL]["calls"] == 30
    profiles = load_profiles(parsed)
    profile = profiles.get(MODEL)
    assert profile is not None and len(profile.prompts) == 4
    entry = profile.prompt("0000000000000001")
    assert entry is not None and entry.answer_text == 'a "quoted"\nanswer'


@pytest.mark.parametrize(
    ("prompts", "message"),
    [
        ({"XYZ": {"answer_tokens": 3}}, "a prompt key must be 16 lowercase hex digits"),
        ({"a" * 16: {"answer_tokens": 0}}, 'field "answer_tokens" must be an integer from 1'),
        ({"a" * 16: {"answer_tokens": 3, "stop_reason": "done"}}, 'field "stop_reason" must be'),
        ({"a" * 16: {"answer_tokens": 3, "words": 3}}, 'unknown field "words"'),
        ("many", 'field "prompts" must be a table of prompt hashes'),
    ],
)
def test_bad_prompt_entries_are_refused(prompts: Any, message: str) -> None:
    with pytest.raises(ProfileError, match=message):
        load_profiles({"models": {"m": {"prompts": prompts}}})


def test_the_plugin_and_the_wire_compute_the_emulators_prompt_key() -> None:
    from pytest_bedrock_latency.emulator.textgen import prompt_sha

    messages = [{"role": "user", "content": [{"text": "Hello"}]}]
    system = [{"text": "Be brief."}]
    expected = prompt_sha("Be brief.\nHello")
    assert (
        request_prompt_sha(MODEL, "Converse", {"messages": messages, "system": system}) == expected
    )
    body = b'{"messages": [{"role": "user", "content": [{"text": "Hello"}]}], "system": [{"text": "Be brief."}]}'
    assert body_prompt_sha(MODEL, "ConverseStream", body) == expected
    native = b'{"anthropic_version": "bedrock-2023-05-31", "max_tokens": 5, "system": "Be brief.", "messages": [{"role": "user", "content": "Hello"}]}'
    assert request_prompt_sha(MODEL, "InvokeModel", {"body": native}) == expected
    assert request_prompt_sha(MODEL, "Converse", {"messages": "oops"}) is None
