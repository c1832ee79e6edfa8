"""moto's bedrock control plane on the emulator's port, and coexistence with mock_aws."""

from __future__ import annotations

import uuid
from typing import Any

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
