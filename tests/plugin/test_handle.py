"""ModelHandle against the real emulator through a real boto3 client, and its errors as users see them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.config import Config

from pytest_bedrock_latency.emulator import Emulator
from pytest_bedrock_latency.errors import CallFailures
from pytest_bedrock_latency.handle import BedrockCallError, ModelHandle
from pytest_bedrock_latency.instrument import Instrumentation
from pytest_bedrock_latency.measurement import CallRecord

if TYPE_CHECKING:  # the fixture's class, from tests/conftest.py
    from conftest import BedrockPytester

NOVA = "amazon.nova-lite-v1:0"
TITAN = "amazon.titan-text-express-v1"
HINT = "Check model access; or run offline with --bedrock-emulator."
PROFILES = {
    "defaults": {
        "ttft_ms": 5,
        "ms_per_token": 0.5,
        "answer_tokens": 12,
        "jitter": 0.0,
        "prompt_spread": 0.0,
        "answer_tokens_spread": 0.0,
    },
    "models": {NOVA: {"family": "nova"}, TITAN: {"family": "titan"}},
}


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with Emulator(profiles=PROFILES) as emu:
        yield emu


@pytest.fixture
def client(emulator: Emulator) -> Any:
    return boto3.client(
        "bedrock-runtime",
        endpoint_url=emulator.url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"mode": "standard", "total_max_attempts": 1}),
    )


class Handles:
    """Handles sharing one client, instrumentation, failure memory and published list."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.instrumentation = Instrumentation()
        self.failures = CallFailures(HINT)
        self.published: list[CallRecord] = []

    def __call__(self, model_id: str = NOVA, **kwargs: Any) -> ModelHandle:
        return ModelHandle(
            model_id,
            self.client,
            self.instrumentation,
            failures=self.failures,
            publish=self.published.append,
            **kwargs,
        )


@pytest.fixture
def handles(client: Any, emulator: Emulator) -> Iterator[Handles]:
    emulator.clear_requests()
    yield Handles(client)
    emulator.reset_overrides()


# -- requests --------------------------------------------------------------------------------------
def test_converse_sends_the_request_fields(handles: Handles, emulator: Emulator) -> None:
    model = handles()
    assert repr(model) == "ModelHandle('amazon.nova-lite-v1:0')"
    g = model.converse(
        "Hello",
        system="Be brief.",
        temperature=0.2,
        top_p=0.9,
        performanceConfig={"latency": "optimized"},
        stream=False,
    )
    assert (g.model_id, g.operation, g.output_tokens, g.stop_reason) == (
        NOVA,
        "Converse",
        12,
        "end_turn",
    )
    (request,) = emulator.requests
    assert (request.model_id, request.operation, request.performance_latency) == (
        NOVA,
        "Converse",
        "optimized",
    )


def test_stop_sequences_and_max_tokens(handles: Handles) -> None:
    model = handles(max_tokens=5)
    first = model.converse("Tell me about parcels")
    assert (first.output_tokens, first.stop_reason) == (5, "max_tokens")
    full = model.converse("Tell me about parcels", max_tokens=100)
    assert (full.output_tokens, full.stop_reason) == (12, "end_turn")
    # Each answer to the same prompt differs, so stop at any of the previous answer's words.
    cut = model.converse(
        "Tell me about parcels", max_tokens=100, stop_sequences=full.text.split()[1:]
    )
    assert cut.stop_reason == "stop_sequence"
    assert cut.output_tokens < 12


def test_inference_config_passed_through_is_merged(handles: Handles) -> None:
    g = handles().converse("Hi", inferenceConfig={"maxTokens": 3}, temperature=0.5)
    assert (g.output_tokens, g.stop_reason) == (3, "max_tokens")


def test_invoke_accepts_a_mapping_a_string_or_bytes(handles: Handles) -> None:
    model = handles(TITAN)
    body = {"inputText": "Where is my parcel?", "textGenerationConfig": {"maxTokenCount": 50}}
    as_dict = model.invoke(body, stream=False)
    as_text = model.invoke(json.dumps(body), stream=False)
    as_bytes = model.invoke(json.dumps(body).encode())
    assert [g.output_tokens for g in (as_dict, as_text, as_bytes)] == [12, 12, 12]
    assert [g.operation for g in (as_dict, as_text, as_bytes)] == [
        "InvokeModel",
        "InvokeModel",
        "InvokeModelWithResponseStream",
    ]


def test_count_tokens_for_text_and_messages(handles: Handles) -> None:
    model = handles()
    text = "Why was my card charged twice?"
    messages = [{"role": "user", "content": [{"text": text}]}]
    assert (
        model.count_tokens(text)
        == model.count_tokens(messages)
        == model.converse(text).input_tokens
        > 0
    )


def test_each_call_is_published_once_and_not_sent_to_the_test_sink(handles: Handles) -> None:
    sink: list[CallRecord] = []
    handles.instrumentation.sink = sink.append
    handles.instrumentation.install()
    try:
        model = handles()
        g = model.converse("Hi")
    finally:
        handles.instrumentation.uninstall()
        handles.instrumentation.sink = None
    assert sink == []  # the handle captures its own calls: no double counting
    (record,) = handles.published
    assert record.generation() == g


def test_with_model_shares_settings_and_may_stay_unpublished(
    handles: Handles, emulator: Emulator
) -> None:
    model = handles(max_tokens=4)
    other = model.with_model(TITAN, publish=False)
    assert other.model_id == TITAN and other.client is model.client
    g = other.converse("Hi")
    assert (g.model_id, g.output_tokens) == (TITAN, 4)
    assert handles.published == []
    assert (
        model.replay(
            "Converse",
            {"modelId": "ignored", "messages": [{"role": "user", "content": [{"text": "x"}]}]},
        ).model_id
        == NOVA
    )
    assert [r.model_id for r in emulator.requests] == [TITAN, NOVA]


@pytest.mark.parametrize(
    "prompt",
    [[], [{"content": [{"text": "no role"}]}], ["just text"], 42, b"bytes", {"role": "user"}],
)
def test_a_prompt_that_is_neither_text_nor_messages(handles: Handles, prompt: Any) -> None:
    with pytest.raises(TypeError) as info:
        handles().converse(prompt)
    assert str(info.value) == (
        "prompt must be a string (one user turn) or a Converse messages list such as "
        "[{'role': 'user', 'content': [{'text': '...'}]}]"
    )


# -- errors ----------------------------------------------------------------------------------------
def test_unknown_model_is_one_clear_error_remembered_for_the_model(
    handles: Handles, emulator: Emulator
) -> None:
    model = handles("amazon.unknown-v1")
    with pytest.raises(BedrockCallError) as info:
        model.converse("Hi")
    error = info.value
    assert str(error) == (
        "ResourceNotFoundException from Bedrock for model amazon.unknown-v1 (ConverseStream): "
        "The provided model identifier is invalid. (Bedrock emulator: no profile matches "
        "'amazon.unknown-v1'; add [models.\"amazon.unknown-v1\"] to the profiles given to "
        'Emulator(profiles=...), or a glob or "*" profile that covers it, or call '
        "emulator.set_profile('amazon.unknown-v1', ...).)\n" + HINT
    )
    assert (error.model_id, error.operation, error.code, error.attempts) == (
        "amazon.unknown-v1",
        "ConverseStream",
        "ResourceNotFoundException",
        1,
    )
    assert error.__cause__ is None and error.__suppress_context__  # no botocore chain
    with pytest.raises(BedrockCallError) as again:
        handles("amazon.unknown-v1").invoke({"inputText": "x"}, stream=False)
    assert again.value is error  # said once: not asked again
    assert len(emulator.requests) == 1
    assert handles().converse("Hi").output_tokens == 12  # other models are unaffected


def test_a_bad_request_is_not_remembered_and_has_no_hint(
    handles: Handles, emulator: Emulator
) -> None:
    model = handles()  # a Nova model: a Titan body is malformed for it
    for _ in range(2):
        with pytest.raises(BedrockCallError) as info:
            model.invoke({"inputText": "Hi"}, stream=False)
        assert str(info.value) == (
            "ValidationException from Bedrock for model amazon.nova-lite-v1:0 (InvokeModel): Malformed input "
            "request: #: required key [messages] not found, please reformat your input and try again."
        )
    assert len(emulator.requests) == 2
    assert handles.published == []


def test_count_tokens_error(handles: Handles) -> None:
    with pytest.raises(
        BedrockCallError,
        match=r"^ResourceNotFoundException from Bedrock for model amazon.unknown-v2 \(CountTokens\): ",
    ):
        handles("amazon.unknown-v2").count_tokens("Hi")


def test_custom_model_arn_is_shown_by_its_name(handles: Handles) -> None:
    arn = "arn:aws:bedrock:us-east-1:123456789012:custom-model/support-v3"
    with pytest.raises(
        BedrockCallError,
        match=r"^ResourceNotFoundException from Bedrock for model support-v3 \(Converse\)",
    ):
        handles(arn).converse("Hi", stream=False)


def test_unknown_model_in_a_run_is_one_clear_message_per_test(
    bedrock_pytester: BedrockPytester,
) -> None:
    bedrock_pytester.makepyfile(
        test_unknown="""
        def test_first(bedrock_model):
            bedrock_model.converse("Hi")

        def test_second(bedrock_model):
            bedrock_model.converse("Hi again")
        """
    )
    result = bedrock_pytester.run("--tb=short", model="amazon.unknown-v1")
    result.assert_outcomes(failed=2)
    # The emulator's 404 names the plugin's option (the same words reach application calls).
    message = (
        "E   pytest_bedrock_latency.*BedrockCallError: ResourceNotFoundException from Bedrock for model "
        "amazon.unknown-v1 (ConverseStream): The provided model identifier is invalid. (Bedrock "
        "emulator: no profile matches 'amazon.unknown-v1'; add a profile for it to the file given "
        'with --bedrock-emulator-profiles (a glob or a "*" profile covers many).)'
    )
    for line, call in (
        (2, 'bedrock_model.converse("Hi")'),
        (5, 'bedrock_model.converse("Hi again")'),
    ):
        # The remembered error of the second test carries no frames from the first one.
        result.stdout.fnmatch_lines(
            [f"test_unknown.py:{line}: in test_*", f"    {call}", message], consecutive=True
        )
    output = result.stdout.str()
    assert "botocore" not in output and "ClientError" not in output
    assert "pytest_bedrock_latency/" not in output and "pluggy/" not in output  # no internal frames
