"""Record a session's timing into emulator profiles, then replay it offline (round trip)."""

from __future__ import annotations

import math
import statistics
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

if TYPE_CHECKING:
    from conftest import BedrockPytester

MODEL = "anthropic.claude-3-haiku-20240307-v1:0"

#: Profile A: generous timings (a busy runner adds milliseconds, not tens of percent),
#: a verbosity pattern that differs prompt by prompt, and failures to count.
PROFILE_A = f"""\
[models."{MODEL}"]
ttft_ms = 400
ms_per_token = 20
jitter = 0.03
answer_tokens = 14
prompt_spread = 0.5
answer_tokens_spread = 0.0
tokens_per_chunk = 1
throttle_rate = 0.15
stream_error_rate = 0.1
"""
A_TTFT, A_MS_PER_TOKEN, A_THROTTLE, A_STREAM_ERROR = 400.0, 20.0, 0.15, 0.1

#: 16 prompts of different lengths, each asked 5 times, 16 calls in flight (the 80 calls
#: take five answers' time: about 3.5 s). Shorter answers would save seconds, but the
#: client's own overhead (milliseconds, more with many threads in one process) then takes
#: up most of the 5 % the round trip is allowed on a quiet machine.
SUITE = f"""
import concurrent.futures
import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, EventStreamError

PROMPTS = [" ".join(["word"] * (3 + 5 * i)) for i in range(16)]
IN_FLIGHT = len(PROMPTS)

def ask(client, prompt):
    try:
        response = client.converse_stream(
            modelId="{MODEL}", messages=[{{"role": "user", "content": [{{"text": prompt}}]}}]
        )
        for _ in response["stream"]:
            pass
    except (ClientError, EventStreamError):
        pass  # throttled, or the stream broke: the plugin counts it

@pytest.mark.bedrock_latency(max_ttft_ms=60_000)
def test_suite():
    # No retries: each attempt is one call, as the emulator draws its faults.
    client = boto3.client(
        "bedrock-runtime",
        config=Config(retries={{"max_attempts": 1}}, max_pool_connections=IN_FLIGHT),
    )
    with concurrent.futures.ThreadPoolExecutor(IN_FLIGHT) as pool:
        list(pool.map(lambda p: ask(client, p), PROMPTS * 5))
"""


def _calls(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for t in report["tests"] for c in t["calls"]]


def _lengths(calls: list[dict[str, Any]]) -> dict[str, set[int]]:
    out: dict[str, set[int]] = {}
    for call in calls:
        out.setdefault(call["prompt_sha"], set()).add(call["output_tokens"])
    return out


@pytest.mark.long_running
def test_record_then_replay_keeps_timing_verbosity_and_rates(
    bedrock_pytester: BedrockPytester, machine_busy: Callable[[], bool]
) -> None:
    bedrock_pytester.profiles(PROFILE_A, name="profile_a")
    bedrock_pytester.makepyfile(test_suite=SUITE)
    base = ["-p", "no:cacheprovider", "-p", "no:hypothesispytest", "--bedrock-emulator"]
    recorded = bedrock_pytester.pytester.runpytest(
        *base,
        "--bedrock-emulator-profiles=profile_a.toml",
        "--bedrock-record-profiles=recorded.toml",
        "--bedrock-report=a.json",
    )
    recorded.assert_outcomes(passed=1)
    recorded.stdout.fnmatch_lines(
        [f"bedrock: emulator profiles recorded in *recorded.toml: {MODEL} (*"]
    )
    doc = tomllib.loads((bedrock_pytester.path / "recorded.toml").read_text())
    fitted = doc["models"][MODEL]
    provenance = doc["provenance"]["models"][MODEL]
    assert provenance["endpoint"] == "emulator" and provenance["plugin_version"]
    assert provenance["calls"] + provenance["failed_calls"] == 80
    # Rates within three standard errors of profile A's (80 attempts; 68 streams).
    assert abs(fitted["throttle_rate"] - A_THROTTLE) < 3 * math.sqrt(A_THROTTLE * 0.85 / 80)
    assert abs(fitted["stream_error_rate"] - A_STREAM_ERROR) < 3 * math.sqrt(0.1 * 0.9 / 68)
    assert fitted["tokens_per_chunk"] == 1 and fitted["answer_tokens_spread"] == 0.0
    # Prompts of 4 to 100 input tokens cannot resolve a prefill slope: left out, and said.
    assert "prefill_ms_per_1k_input_tokens" not in fitted
    assert any("prefill_ms_per_1k_input_tokens" in note for note in provenance["left_out"])
    assert len(fitted["prompts"]) == 16

    replayed = bedrock_pytester.pytester.runpytest(
        *base, "--bedrock-emulator-profiles=recorded.toml", "--bedrock-report=b.json"
    )
    replayed.assert_outcomes(passed=1)
    a_calls = _calls(bedrock_pytester.json("a.json"))
    b_calls = _calls(bedrock_pytester.json("b.json"))
    # TTFT and ms/token of the replay: within 5% of profile A's; 10% when the machine has no
    # core to spare (machine_busy, tests/conftest.py): both runs are timed in real time.
    tolerance = 0.10 if machine_busy() else 0.05
    ttft = statistics.median(c["ttft_ms"] for c in b_calls)
    speed = statistics.median(c["ms_per_token"] for c in b_calls if c["ms_per_token"])
    print(
        f"round trip: replay TTFT median {ttft:.1f} ms, ms/token {speed:.3f} "
        f"(tolerance {tolerance:.0%}); fitted {fitted}"
    )
    assert abs(ttft / A_TTFT - 1) < tolerance, ttft
    assert abs(speed / A_MS_PER_TOKEN - 1) < tolerance, speed
    # Prompt by prompt, the replay answers at the recorded lengths.
    a_lengths, b_lengths = _lengths(a_calls), _lengths(b_calls)
    assert set(b_lengths) <= set(a_lengths) and len(b_lengths) >= 14
    assert all(len(a_lengths[sha]) == 1 for sha in a_lengths)
    assert all(b_lengths[sha] == a_lengths[sha] for sha in b_lengths)
    assert len({n for v in a_lengths.values() for n in v}) >= 8  # the lengths do differ


RECORD_FEW = f"""
def test_two(bedrock_runtime):
    for _ in range(2):
        response = bedrock_runtime.converse_stream(
            modelId="{MODEL}", messages=[{{"role": "user", "content": [{{"text": "Hi"}}]}}]
        )
        for _ in response["stream"]:
            pass
"""


def test_too_few_calls_leave_fields_out_and_say_so(bedrock_pytester: BedrockPytester) -> None:
    bedrock_pytester.makepyfile(test_few=RECORD_FEW)
    result = bedrock_pytester.run("--bedrock-record-profiles=rec.toml")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            f"bedrock: {MODEL}: too few calls to fit ttft_ms, jitter, * (2 streamed calls *, 5 needed)*"
        ]
    )
    fitted = tomllib.loads((bedrock_pytester.path / "rec.toml").read_text())["models"][MODEL]
    assert "ttft_ms" not in fitted and "ms_per_token" not in fitted
    assert list(fitted["prompts"].values()) == [{"answer_tokens": 20, "stop_reason": "end_turn"}]


def test_an_existing_file_is_merged_per_model(bedrock_pytester: BedrockPytester) -> None:
    bedrock_pytester.makepyfile(test_few=RECORD_FEW)
    (bedrock_pytester.path / "rec.toml").write_text(
        '[defaults]\njitter = 0.2\n\n[models."other-model"]\nttft_ms = 5\n\n'
        f'[models."{MODEL}"]\nttft_ms = 77\n'
    )
    bedrock_pytester.run("--bedrock-record-profiles=rec.toml").assert_outcomes(passed=1)
    doc = tomllib.loads((bedrock_pytester.path / "rec.toml").read_text())
    assert doc["defaults"] == {"jitter": 0.2}
    assert doc["models"]["other-model"] == {"ttft_ms": 5}
    # Too few calls to fit ttft_ms: the old value stays; the prompt entry is new.
    assert doc["models"][MODEL]["ttft_ms"] == 77 and len(doc["models"][MODEL]["prompts"]) == 1


def test_a_malformed_existing_file_is_left_alone(bedrock_pytester: BedrockPytester) -> None:
    bedrock_pytester.makepyfile(test_few=RECORD_FEW)
    (bedrock_pytester.path / "rec.toml").write_text('[models."x"]\nttft_ms = "fast"\n')
    result = bedrock_pytester.run("--bedrock-record-profiles=rec.toml")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            'bedrock: profiles not recorded: *rec.toml exists but model "x": field "ttft_ms" must be*'
            "; fix or remove it and run again"
        ]
    )
    assert (bedrock_pytester.path / "rec.toml").read_text() == '[models."x"]\nttft_ms = "fast"\n'


ANSWERS = f"""
import os

def test_answer(bedrock_runtime):
    response = bedrock_runtime.converse(
        modelId="{MODEL}", messages=[{{"role": "user", "content": [{{"text": "Say hi"}}]}}]
    )
    text = response["output"]["message"]["content"][0]["text"]
    with open("answer.txt", "w") as out:
        out.write(text)
    assert response["usage"]["outputTokens"] == 20
    if os.environ.get("EXPECT"):  # a suite asserting on content, run offline
        assert text == os.environ["EXPECT"]
"""


def test_answers_are_stored_only_with_the_flag_and_replayed(
    bedrock_pytester: BedrockPytester, monkeypatch: Any
) -> None:
    bedrock_pytester.makepyfile(test_answers=ANSWERS)
    bedrock_pytester.run("--bedrock-record-profiles=plain.toml").assert_outcomes(passed=1)
    answer = (bedrock_pytester.path / "answer.txt").read_text()
    plain = (bedrock_pytester.path / "plain.toml").read_text()
    assert "answer_text" not in plain and answer.split(".")[0] not in plain
    bedrock_pytester.run(
        "--bedrock-record-profiles=answers.toml", "--bedrock-record-answers"
    ).assert_outcomes(passed=1)
    path = bedrock_pytester.path / "answers.toml"
    doc = tomllib.loads(path.read_text())
    (entry,) = doc["models"][MODEL]["prompts"].values()
    assert entry == {"answer_tokens": 20, "stop_reason": "end_turn", "answer_text": answer}
    # Replayed from the file: the recorded text comes back (here one the emulator would
    # never generate), with the recorded token count.
    path.write_text(path.read_text().replace(answer, "Recorded: hello, world!"))
    monkeypatch.setenv("EXPECT", "Recorded: hello, world!")
    bedrock_pytester.pytester.runpytest(
        "-p", "no:cacheprovider", "--bedrock-emulator", "--bedrock-emulator-profiles=answers.toml"
    ).assert_outcomes(passed=1)
