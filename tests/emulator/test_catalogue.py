"""The shipped catalogue, cross-region inference-profile ids and the new profile fields."""

from __future__ import annotations

import math

import pytest

from pytest_bedrock_latency.emulator import Emulator
from pytest_bedrock_latency.emulator.profiles import ProfileError, load_profiles

CATALOGUE = [
    "anthropic.claude-3-haiku-20240307-v1:0",
    "anthropic.claude-3-5-haiku-20241022-v1:0",
    "anthropic.claude-3-7-sonnet-20250219-v1:0",
    "anthropic.claude-sonnet-4-20250514-v1:0",
    "anthropic.claude-sonnet-4-5-20250929-v1:0",
    "anthropic.claude-sonnet-4-6",
    "anthropic.claude-haiku-4-5-20251001-v1:0",
    "anthropic.claude-opus-4-1-20250805-v1:0",
    "amazon.nova-micro-v1:0",
    "amazon.nova-lite-v1:0",
    "amazon.nova-pro-v1:0",
    "amazon.nova-premier-v1:0",
    "amazon.titan-text-express-v1",
    "meta.llama3-1-70b-instruct-v1:0",
    "meta.llama3-3-70b-instruct-v1:0",
    "meta.llama4-maverick-17b-instruct-v1:0",
    "mistral.mistral-large-2407-v1:0",
    "cohere.command-r-plus-v1:0",
    "deepseek.r1-v1:0",
    "openai.gpt-oss-120b-1:0",
    "qwen.qwen3-32b-v1:0",
]


@pytest.mark.parametrize("model_id", CATALOGUE)
def test_catalogue_has_an_exact_profile(model_id: str) -> None:
    profile = load_profiles().get(model_id)
    assert profile is not None and profile.ttft_ms > 0 and profile.ms_per_token > 0


def test_published_speeds() -> None:
    profiles = load_profiles()
    haiku = profiles.get("anthropic.claude-3-5-haiku-20241022-v1:0")
    assert haiku is not None
    assert (haiku.ttft_ms, round(1000 / haiku.ms_per_token), haiku.optimized_speedup) == (
        920,
        28,
        1.25,
    )
    nova_pro = profiles.get("amazon.nova-pro-v1:0")
    assert nova_pro is not None and round(1000 / nova_pro.ms_per_token) == 41


@pytest.mark.parametrize(
    ("model_id", "key"),
    [
        ("global.anthropic.claude-sonnet-4-6", "anthropic.claude-sonnet-4-6"),
        ("us.anthropic.claude-3-5-haiku-20241022-v1:0", "anthropic.claude-3-5-haiku-20241022-v1:0"),
        ("eu.amazon.nova-pro-v1:0", "amazon.nova-pro-v1:0"),
        ("apac.meta.llama4-scout-17b-instruct-v1:0", "meta.llama4-scout-17b-instruct-v1:0"),
        (
            "arn:aws:bedrock:eu-west-1:123456789012:inference-profile/eu.amazon.nova-lite-v1:0",
            "amazon.nova-lite-v1:0",
        ),
        ("anthropic.claude-some-future-model-v1:0", "anthropic.*"),
    ],
)
def test_inference_profile_ids_use_their_model(model_id: str, key: str) -> None:
    profile = Emulator().profile_for(model_id)
    assert profile is not None and profile.key == key


def test_unknown_vendor_has_no_profile() -> None:
    assert Emulator().profile_for("xai.grok-9") is None


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("tool_use_rate", 1.5, 'field "tool_use_rate" must be a number between 0 and 1 (got 1.5)'),
        ("cache_ttl_s", 0, 'field "cache_ttl_s" must be a number > 0 (got 0)'),
        ("ttft_ms", math.inf, 'field "ttft_ms" must be a finite number >= 0 (got inf)'),
        ("reasoning_tokens", math.nan, 'field "reasoning_tokens" must be a finite number >= 0'),
        ("cached_prefill_factor", -0.1, "between 0 and 1"),
        ("guardrail_intervention_rate", "often", "between 0 and 1"),
        ("prefill_ms_per_1k_input_tokens", -1, "a number >= 0"),
    ],
)
def test_new_fields_are_validated(field: str, value: object, message: str) -> None:
    with pytest.raises(ProfileError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_profiles({"m": {field: value}})


def test_new_field_defaults() -> None:
    profile = load_profiles({"m": {}}).get("m")
    assert profile is not None
    assert (
        profile.tool_use_rate,
        profile.cache_ttl_s,
        profile.cached_prefill_factor,
        profile.prefill_ms_per_1k_input_tokens,
        profile.guardrail_intervention_rate,
    ) == (0.8, 300.0, 0.3, 0.0, 0.0)
