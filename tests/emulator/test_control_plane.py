"""moto's bedrock control plane on the emulator's port, and coexistence with mock_aws."""

from __future__ import annotations

import json
import uuid
from typing import Any

import botocore.exceptions
import pytest
from moto import mock_aws

from pytest_bedrock_latency.emulator import Emulator

from .conftest import MSGS, make_client

TITAN_ARN = "arn:aws:bedrock:us-east-1::foundation-model/amazon.titan-text-express-v1"
HAIKU_ARN = "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0"


def create_custom_model(url: str, base: str) -> str:
    control = make_client(url, service="bedrock")
    name = f"cm-{uuid.uuid4().hex[:8]}"
    control.create_model_customization_job(
        jobName=f"job-{name}",
        customModelName=name,
        roleArn="arn:aws:iam::123456789012:role/bedrock",
        baseModelIdentifier=base,
        trainingDataConfig={"s3Uri": "s3://bucket/train.jsonl"},
        outputDataConfig={"s3Uri": "s3://bucket/out/"},
        hyperParameters={"epochCount": "1"},
        customizationType="FINE_TUNING",
    )
    model = control.get_custom_model(modelIdentifier=name)
    assert model["baseModelArn"].endswith(base)
    listed = control.list_custom_models()["modelSummaries"]
    assert model["modelArn"] in [m["modelArn"] for m in listed]
    return str(model["modelArn"])


def test_control_plane_round_trip(emulator: Emulator, client: Any) -> None:
    arn = create_custom_model(emulator.url, "amazon.titan-text-express-v1")
    events = list(client.converse_stream(modelId=arn, messages=MSGS)["stream"])
    deltas = [e for e in events if "contentBlockDelta" in e]
    assert len(deltas) == 12 == events[-1]["metadata"]["usage"]["outputTokens"]
    assert emulator.requests[-1].profile_key == "arn:aws:bedrock:*:custom-model/*"


def test_custom_model_uses_its_base_models_profile() -> None:
    profiles = {
        "anthropic.claude-3-haiku-20240307-v1:0": {
            "ttft_ms": 5,
            "ms_per_token": 1,
            "answer_tokens": 9,
            "answer_tokens_spread": 0,
            "prompt_spread": 0,
        }
    }
    with Emulator(profiles=profiles) as emu:
        arn = create_custom_model(emu.url, "anthropic.claude-3-haiku-20240307-v1:0")
        client = make_client(emu.url)
        body = (
            '{"anthropic_version": "bedrock-2023-05-31", "max_tokens": 50, "messages": '
            '[{"role": "user", "content": "hi"}]}'
        )
        import json

        out = json.loads(client.invoke_model(modelId=arn, body=body)["body"].read())
        assert out["type"] == "message" and out["usage"]["output_tokens"] == 9
        assert emu.requests[-1].profile_key == "anthropic.claude-3-haiku-20240307-v1:0"


def test_works_while_mock_aws_is_active(emulator: Emulator) -> None:
    with mock_aws():
        client = make_client(emulator.url)
        resp = client.converse(modelId="test.fast", messages=MSGS)
        assert resp["usage"]["outputTokens"] == 20
        # moto's in-process mock still serves ordinary clients without an endpoint.
        import boto3

        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="still-mocked")
        assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["still-mocked"]


def test_foundation_models_come_from_the_profiles(emulator: Emulator) -> None:
    control = make_client(emulator.url, service="bedrock")
    models = control.list_foundation_models()["modelSummaries"]
    ids = [m["modelId"] for m in models]
    assert "amazon.nova-lite-v1:0" in ids and "test.fast" in ids
    assert not any("*" in i or i.startswith(("arn:", "us.")) for i in ids)
    anthropic = control.list_foundation_models(byProvider="Anthropic")["modelSummaries"]
    assert [m["modelId"] for m in anthropic] == ["anthropic.claude-3-haiku-20240307-v1:0"]
    details = control.get_foundation_model(modelIdentifier=HAIKU_ARN)["modelDetails"]
    assert details["providerName"] == "Anthropic" and details["responseStreamingSupported"]
    with pytest.raises(control.exceptions.ResourceNotFoundException, match="catalogue"):
        control.get_foundation_model(modelIdentifier="nope.model-v1")


def test_system_inference_profiles_and_their_runtime_use(emulator: Emulator, client: Any) -> None:
    control = make_client(emulator.url, service="bedrock")
    listed = control.list_inference_profiles()["inferenceProfileSummaries"]
    ids = {p["inferenceProfileId"] for p in listed}
    for geo in ("us", "eu", "apac", "global"):
        assert f"{geo}.amazon.nova-lite-v1:0" in ids
    profile = control.get_inference_profile(inferenceProfileIdentifier="eu.amazon.nova-lite-v1:0")
    assert profile["type"] == "SYSTEM_DEFINED" and profile["status"] == "ACTIVE"
    assert all("amazon.nova-lite-v1:0" in m["modelArn"] for m in profile["models"])
    by_arn = control.get_inference_profile(
        inferenceProfileIdentifier=profile["inferenceProfileArn"]
    )
    assert by_arn["inferenceProfileId"] == "eu.amazon.nova-lite-v1:0"
    page = control.list_inference_profiles(maxResults=3)
    assert len(page["inferenceProfileSummaries"]) == 3 and page["nextToken"]
    client.converse(modelId=profile["inferenceProfileArn"], messages=MSGS)
    assert emulator.requests[-1].profile_key == "amazon.nova-lite-v1:0"


def test_application_inference_profiles(emulator: Emulator, client: Any) -> None:
    control = make_client(emulator.url, service="bedrock")
    name = f"app-{uuid.uuid4().hex[:8]}"
    arn = control.create_inference_profile(
        inferenceProfileName=name, modelSource={"copyFrom": TITAN_ARN}
    )["inferenceProfileArn"]
    assert ":application-inference-profile/" in arn
    got = control.get_inference_profile(inferenceProfileIdentifier=arn)
    assert got["type"] == "APPLICATION" and got["inferenceProfileName"] == name
    apps = control.list_inference_profiles(typeEquals="APPLICATION")["inferenceProfileSummaries"]
    assert arn in [p["inferenceProfileArn"] for p in apps]
    # Served at runtime with the profile of the model it was made from (langchain-aws does
    # GetInferenceProfile first, then calls the runtime with the ARN).
    client.invoke_model(modelId=arn, body=json.dumps({"inputText": "hello"}))
    assert emulator.requests[-1].profile_key == "amazon.titan-text-express-v1"
    with pytest.raises(control.exceptions.ConflictException):
        control.create_inference_profile(
            inferenceProfileName=name, modelSource={"copyFrom": TITAN_ARN}
        )
    control.delete_inference_profile(inferenceProfileIdentifier=arn)
    with pytest.raises(control.exceptions.ResourceNotFoundException):
        control.get_inference_profile(inferenceProfileIdentifier=arn)


def test_operations_not_emulated_fail_at_once_and_say_so(emulator: Emulator) -> None:
    control = make_client(
        emulator.url, service="bedrock", retries={"total_max_attempts": 4, "mode": "standard"}
    )
    with pytest.raises(botocore.exceptions.ClientError) as info:
        control.list_provisioned_model_throughputs()
    error = info.value.response
    assert "ListProvisionedModelThroughputs" in error["Error"]["Message"]
    assert "not emulated" in error["Error"]["Message"]
    assert error["ResponseMetadata"]["RetryAttempts"] == 0  # not retried
    runtime = make_client(emulator.url, retries={"total_max_attempts": 4, "mode": "standard"})
    with pytest.raises(botocore.exceptions.ClientError, match=r"ListAsyncInvokes.*not emulated"):
        runtime.list_async_invokes()


def test_paths_that_are_not_bedrock_get_a_clear_404(emulator: Emulator) -> None:
    import urllib.error
    import urllib.request

    for path in ("/", "/some-bucket/key.txt", "/model/test.fast/unknown-operation"):
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(emulator.url + path, timeout=10)
        assert info.value.code == 404
        assert "No Bedrock API" in json.loads(info.value.read())["message"]
