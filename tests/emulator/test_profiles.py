"""Profile loading, inheritance, lookup precedence and validation errors."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from pytest_bedrock_latency.emulator import Emulator, ProfileError, ProfileSet, load_profiles

from .conftest import FAST


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "profiles.toml"
    path.write_text(text)
    return path


def test_toml_defaults_like_and_globs(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[defaults]
jitter = 0.1

[models."base-v1"]
ttft_ms = 300
family = "anthropic"

[models."support-v3"]
like = "base-v1"
answer_tokens = 120

[models."arn:aws:bedrock:*:custom-model/*"]
family = "titan"

[models."arn:aws:bedrock:us-east-1:*:custom-model/*"]
family = "llama"

[models."*"]
ms_per_token = 1
""",
    )
    ps = load_profiles(path)
    assert isinstance(ps, ProfileSet)
    support = ps.match("support-v3")
    assert support is not None
    assert (support.ttft_ms, support.answer_tokens, support.jitter, support.family) == (
        300.0,
        120.0,
        0.1,
        "anthropic",
    )
    assert support.ms_per_token == 20.0  # built-in default
    longest = ps.match("arn:aws:bedrock:us-east-1:1:custom-model/x")
    assert longest is not None and longest.family == "llama"
    other = ps.match("arn:aws:bedrock:eu-west-1:1:custom-model/x")
    assert other is not None and other.family == "titan"
    star = ps.match("anything")
    assert star is not None and star.key == "*"


def test_default_profile_file_is_valid() -> None:
    ps = load_profiles(None)
    for key in (
        "anthropic.claude-3-haiku-20240307-v1:0",
        "amazon.titan-text-express-v1",
        "anthropic.claude-3-5-haiku-20241022-v1:0",
        "amazon.nova-lite-v1:0",
        "meta.llama3-1-8b-instruct-v1:0",
        "mistral.mistral-7b-instruct-v0:2",
    ):
        profile = ps.match(key)
        # Published speeds: every catalogue model streams between 2 and 50 ms per token.
        assert profile is not None and 2 <= profile.ms_per_token <= 50
    custom = ps.match("arn:aws:bedrock:us-east-1:123456789012:custom-model/m")
    assert custom is not None and custom.family == "titan"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "ttft = 3",
            'profiles.toml: model "support-v3": unknown field "ttft" (allowed: like, family, '
            "ttft_ms,",
        ),
        (
            'jitter = "high"',
            'profiles.toml: model "support-v3": field "jitter" must be a number >= 0 (got "high")',
        ),
        ("ttft_ms = true", 'field "ttft_ms" must be a number >= 0 (got True)'),
        ("ms_per_token = -1", 'field "ms_per_token" must be a number >= 0 (got -1)'),
        ("throttle_rate = 1.5", 'field "throttle_rate" must be a number between 0 and 1 (got 1.5)'),
        ("tokens_per_chunk = 0", 'field "tokens_per_chunk" must be an integer >= 1 (got 0)'),
        ('family = "gpt"', 'field "family" must be one of anthropic, nova, titan, llama, mistral'),
        ('like = "missing"', 'field "like" names unknown model "missing"'),
    ],
)
def test_bad_fields_give_one_clear_error(tmp_path: Path, body: str, message: str) -> None:
    path = write(tmp_path, f'[models."support-v3"]\n{body}\n')
    with pytest.raises(ProfileError) as info:
        Emulator(profiles=path)
    assert message in str(info.value)
    assert str(info.value).startswith(str(path))
    assert "\n" not in str(info.value)
    assert isinstance(info.value, ValueError)


def test_like_cycle(tmp_path: Path) -> None:
    path = write(tmp_path, '[models.a]\nlike = "b"\n[models.b]\nlike = "a"\n')
    with pytest.raises(ProfileError, match=r'"like" cycle \(a -> b -> a\)'):
        load_profiles(path)


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="invalid TOML"):
        load_profiles(write(tmp_path, "[models\n"))
    with pytest.raises(ProfileError, match="no such profile file"):
        load_profiles(tmp_path / "nope.toml")


def test_server_never_starts_half_configured(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import pytest_bedrock_latency.emulator.server as server

    bound: list[Any] = []
    monkeypatch.setattr(
        server._Server, "__init__", lambda *a, **k: bound.append(a)
    )  # would record a bind
    with pytest.raises(ProfileError):
        Emulator(profiles={"m": {"jitter": -1}}).start()
    assert bound == []


def test_set_profile_validates(emulator: Emulator) -> None:
    with pytest.raises(
        ProfileError, match=re.escape('set_profile: model "test.fast": unknown field "speed"')
    ):
        emulator.set_profile("test.fast", speed=3)
    with pytest.raises(ProfileError, match='field "jitter" must be a number >= 0'):
        emulator.set_profile("test.fast", jitter=-0.1)
    profile = emulator.set_profile("test.fast", ttft_ms=1)
    assert profile.ttft_ms == 1.0 and profile.family == "nova" and profile.answer_tokens == 20
    assert emulator.profile_for("test.fast") == profile
    emulator.reset_overrides()
    again = emulator.profile_for("test.fast")
    assert again is not None and again.ttft_ms == FAST["ttft_ms"]


def test_flat_dict_form() -> None:
    ps = load_profiles({"defaults": {"ttft_ms": 5}, "m1": {"answer_tokens": 2}})
    m1 = ps.match("m1")
    assert m1 is not None and (m1.ttft_ms, m1.answer_tokens) == (5.0, 2.0)
    with pytest.raises(ProfileError, match=r"<dict>: \[defaults\]: unknown field \"like\""):
        load_profiles({"defaults": {"like": "x"}, "models": {}})


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("ttft_ms", float("inf"), 'field "ttft_ms" must be a finite number >= 0'),
        ("answer_tokens", float("inf"), 'field "answer_tokens" must be a finite number >= 1'),
        ("jitter", float("inf"), 'field "jitter" must be a finite number >= 0'),
        ("outlier_factor", 1e300, 'field "outlier_factor" must be a number from 0.01 to 1000'),
        (
            "optimized_speedup",
            1e-300,
            'field "optimized_speedup" must be a number from 0.01 to 100',
        ),
        ("ttft_ms", 1e9, 'field "ttft_ms" must be a number from 0 to 600000'),
        ("tokens_per_chunk", 10**6, 'field "tokens_per_chunk" must be a number from 1 to 10000'),
        ("max_output_tokens", 0, 'field "max_output_tokens" must be an integer >= 1'),
    ],
)
def test_numeric_fields_are_finite_and_bounded(field: str, value: Any, expected: str) -> None:
    with pytest.raises(ProfileError, match=re.escape(expected)):
        load_profiles({"m": {field: value}})


def test_a_profile_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes('[models."m"]\nttft_ms = 1 # caf\xe9\n'.encode("latin-1"))
    with pytest.raises(ProfileError, match=r"latin1\.toml: not UTF-8 text \(byte \d+\)"):
        load_profiles(path)


def test_a_huge_answer_tokens_is_cut_at_the_output_limit_at_once(emulator: Emulator) -> None:
    import time

    from .conftest import MSGS, make_client

    emulator.set_profile(
        "test.fast", answer_tokens=1e9, ttft_ms=0, ms_per_token=0, max_output_tokens=500
    )
    client = make_client(emulator.url)
    started = time.monotonic()
    out = client.converse(modelId="test.fast", messages=MSGS)
    assert out["usage"]["outputTokens"] == 500 and out["stopReason"] == "max_tokens"
    limited = client.converse(modelId="test.fast", messages=MSGS, inferenceConfig={"maxTokens": 7})
    assert limited["usage"]["outputTokens"] == 7
    assert time.monotonic() - started < 5  # generating 1e9 words would take minutes


def test_long_answers_concentrate_in_a_fixed_share_of_prompts() -> None:
    from pytest_bedrock_latency.emulator.plan import ParsedRequest, plan_answer

    profiles = load_profiles(
        {
            "defaults": {"prompt_spread": 0.0, "answer_tokens_spread": 0.0, "answer_tokens": 20},
            "models": {"base": {}, "long": {"long_answer_rate": 0.25, "long_answer_factor": 4}},
        }
    )
    base, long = profiles.get("base"), profiles.get("long")
    assert base is not None and long is not None

    def length(profile: Any, prompt: str, sample: int = 0) -> int:
        req = ParsedRequest(prompt, None, (), None, None)
        return len(plan_answer(profile, profile.key, req, sample, True).words)

    prompts = [f"question {i}" for i in range(200)]
    ratios = [length(long, p) / length(base, p) for p in prompts]
    assert set(ratios) == {1.0, 4.0}  # a prompt is either long or not
    assert 0.15 <= ratios.count(4.0) / len(prompts) <= 0.35
    # the same prompts every time they are asked
    assert [length(long, p, 1) / length(base, p, 1) for p in prompts] == ratios
