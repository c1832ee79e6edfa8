"""Tests for pytest_bedrock_latency.base_model.

moto 5.2.1 implements the custom-model half of the Bedrock control plane
(CreateModelCustomizationJob, GetCustomModel) but not GetProvisionedModelThroughput,
GetCustomModelDeployment or GetImportedModel; those paths are tested with botocore's
Stubber on a real client, which validates our parameters and the canned responses
against the service model.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import NoCredentialsError
from botocore.stub import Stubber
from moto import mock_aws
from moto.server import ThreadedMotoServer

from pytest_bedrock_latency.base_model import (
    MODEL_KINDS,
    BaseModelError,
    BaseModelResolution,
    classify_model_id,
    resolve_base_model,
)

REGION = "us-east-1"
ACCOUNT = "123456789012"
TITAN = "amazon.titan-text-express-v1"
TITAN_ARN = f"arn:aws:bedrock:{REGION}::foundation-model/{TITAN}"
PT_ARN = f"arn:aws:bedrock:{REGION}:{ACCOUNT}:provisioned-model/abcdefghijkl"
# Real custom-model ARNs look like this (moto's are custom-model/<name>).
REAL_CUSTOM_ARN = f"arn:aws:bedrock:{REGION}:{ACCOUNT}:custom-model/{TITAN}:0:8k/abc123def456"


@pytest.fixture(autouse=True)
def _isolated_aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """Never pick up a developer's real profile or credentials."""
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))


def _create_custom_model(client: Any, name: str, **extra: Any) -> None:
    client.create_model_customization_job(
        jobName=f"{name}-job",
        customModelName=name,
        roleArn=f"arn:aws:iam::{ACCOUNT}:role/x",
        baseModelIdentifier=TITAN,
        trainingDataConfig={"s3Uri": "s3://b/train.jsonl"},
        outputDataConfig={"s3Uri": "s3://b/out"},
        hyperParameters={"epochCount": "1"},
        **extra,
    )


@pytest.fixture
def moto_bedrock() -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("bedrock", region_name=REGION)


def _stubbed_client() -> Any:
    return boto3.client(
        "bedrock",
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


# ------------------------------------------------------------------ classify_model_id


@pytest.mark.parametrize(
    ("model_id", "kind"),
    [
        (TITAN, "foundation"),
        ("anthropic.claude-3-haiku-20240307-v1:0", "foundation"),
        (TITAN_ARN, "foundation-arn"),
        ("us.anthropic.claude-3-5-sonnet-20240620-v1:0", "inference-profile"),
        ("global.anthropic.claude-sonnet-4-20250514-v1:0", "inference-profile"),
        (
            f"arn:aws:bedrock:{REGION}:{ACCOUNT}:inference-profile/us.meta.llama3-2-1b-instruct-v1:0",
            "inference-profile",
        ),
        (
            f"arn:aws:bedrock:{REGION}:{ACCOUNT}:application-inference-profile/a1b2c3d4e5f6",
            "inference-profile",
        ),
        (f"arn:aws:bedrock:{REGION}:{ACCOUNT}:custom-model/support-v3", "custom-model"),
        (REAL_CUSTOM_ARN, "custom-model"),
        (f"arn:aws:bedrock:{REGION}:{ACCOUNT}:custom-model/imported/abc123def456", "imported"),
        (f"arn:aws:bedrock:{REGION}:{ACCOUNT}:imported-model/abc123def456", "imported"),
        (PT_ARN, "provisioned"),
        (
            f"arn:aws:bedrock:{REGION}:{ACCOUNT}:custom-model-deployment/abc123def456",
            "custom-model-deployment",
        ),
        ("support-v3", "custom-name"),
        ("my_model-2", "custom-name"),
        (f"arn:aws:bedrock:{REGION}:{ACCOUNT}:default-prompt-router/x", "other-arn"),
        ("arn:aws:sagemaker:us-east-1:123456789012:endpoint/x", "other-arn"),
        ("arn:aws:bedrock", "other-arn"),
        ("arn:aws-us-gov:bedrock:us-gov-west-1::foundation-model/x.y", "foundation-arn"),
    ],
)
def test_classify_model_id(model_id: str, kind: str) -> None:
    assert classify_model_id(model_id) == kind
    assert kind in MODEL_KINDS


# ------------------------------------------------------------------ moto, in process


def test_resolve_custom_model_by_name(moto_bedrock: Any) -> None:
    _create_custom_model(moto_bedrock, "support-v3")
    resolution = resolve_base_model("support-v3", moto_bedrock)
    assert resolution == BaseModelResolution(
        candidate="support-v3",
        base_model_id=TITAN,
        source="GetCustomModel baseModelArn",
        chain=(
            "support-v3",
            f"arn:aws:bedrock:{REGION}:{ACCOUNT}:custom-model/support-v3",
            TITAN_ARN,
        ),
    )


def test_resolve_custom_model_by_arn(moto_bedrock: Any) -> None:
    _create_custom_model(moto_bedrock, "support-v3")
    arn = moto_bedrock.get_custom_model(modelIdentifier="support-v3")["modelArn"]
    resolution = resolve_base_model(arn, moto_bedrock)
    assert resolution.base_model_id == TITAN
    assert resolution.chain == (arn, TITAN_ARN)


@pytest.mark.parametrize(
    "candidate",
    [TITAN, TITAN_ARN, "us.anthropic.claude-3-5-sonnet-20240620-v1:0"],
)
def test_foundation_or_profile_candidate_has_no_base(moto_bedrock: Any, candidate: str) -> None:
    with pytest.raises(BaseModelError, match="is not a custom model") as info:
        resolve_base_model(candidate, moto_bedrock)
    message = str(info.value)
    assert candidate in message
    assert "--bedrock-baseline" in message
    assert "BEDROCK_BASELINE_MODEL_ID" in message
    assert info.value.candidate == candidate


def test_imported_arn_needs_explicit_baseline(moto_bedrock: Any) -> None:
    arn = f"arn:aws:bedrock:{REGION}:{ACCOUNT}:imported-model/abc123def456"
    with pytest.raises(BaseModelError, match="imported model") as info:
        resolve_base_model(arn, moto_bedrock)
    assert "--bedrock-baseline" in str(info.value)


def test_custom_model_of_type_imported_needs_explicit_baseline(moto_bedrock: Any) -> None:
    # moto keeps customizationType as given; real imported models report IMPORTED.
    _create_custom_model(moto_bedrock, "weights-import", customizationType="IMPORTED")
    with pytest.raises(BaseModelError, match="customizationType is IMPORTED") as info:
        resolve_base_model("weights-import", moto_bedrock)
    assert "--bedrock-baseline" in str(info.value)


def test_unknown_custom_model_is_named(moto_bedrock: Any) -> None:
    # GetImportedModel is not implemented by moto: the lookup degrades to "not found".
    with pytest.raises(BaseModelError) as info:
        resolve_base_model("no-such-model", moto_bedrock)
    message = str(info.value)
    assert "'no-such-model'" in message
    assert "ResourceNotFoundException" in message
    assert "Custom model no-such-model not found" in message  # the AWS message
    assert REGION in message and "--bedrock-baseline" in message


def test_unknown_custom_model_arn(moto_bedrock: Any) -> None:
    arn = f"arn:aws:bedrock:{REGION}:{ACCOUNT}:custom-model/gone"
    with pytest.raises(BaseModelError, match="ResourceNotFoundException"):
        resolve_base_model(arn, moto_bedrock)


def test_provisioned_throughput_not_implemented_by_moto(moto_bedrock: Any) -> None:
    with pytest.raises(BaseModelError, match="not implemented") as info:
        resolve_base_model(PT_ARN, moto_bedrock)
    assert "GetProvisionedModelThroughput" in str(info.value)
    assert "--bedrock-baseline" in str(info.value)


# ------------------------------------------------------------------ Stubber (not in moto)


def _throughput(model_arn: str) -> dict[str, Any]:
    now = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
    return {
        "modelUnits": 1,
        "desiredModelUnits": 1,
        "provisionedModelName": "support-pt",
        "provisionedModelArn": PT_ARN,
        "modelArn": model_arn,
        "desiredModelArn": model_arn,
        "foundationModelArn": TITAN_ARN,
        "status": "InService",
        "creationTime": now,
        "lastModifiedTime": now,
    }


def test_provisioned_throughput_of_custom_model() -> None:
    client = _stubbed_client()
    with Stubber(client) as stubber:
        stubber.add_response(
            "get_provisioned_model_throughput",
            _throughput(REAL_CUSTOM_ARN),
            {"provisionedModelId": PT_ARN},
        )
        stubber.add_response(
            "get_custom_model",
            {
                "modelArn": REAL_CUSTOM_ARN,
                "modelName": "support-v3",
                "creationTime": dt.datetime(2025, 1, 1),
                "baseModelArn": f"{TITAN_ARN}:0:8k",
                "customizationType": "FINE_TUNING",
            },
            {"modelIdentifier": REAL_CUSTOM_ARN},
        )
        resolution = resolve_base_model(PT_ARN, client)
        stubber.assert_no_pending_responses()
    # The customization variant id is returned verbatim (see the module docstring).
    assert resolution.base_model_id == f"{TITAN}:0:8k"
    assert resolution.source == "GetProvisionedModelThroughput -> GetCustomModel baseModelArn"
    assert resolution.chain == (PT_ARN, REAL_CUSTOM_ARN, f"{TITAN_ARN}:0:8k")


def test_provisioned_throughput_of_foundation_model() -> None:
    client = _stubbed_client()
    with Stubber(client) as stubber:
        stubber.add_response(
            "get_provisioned_model_throughput",
            _throughput(TITAN_ARN),
            {"provisionedModelId": PT_ARN},
        )
        resolution = resolve_base_model(PT_ARN, client)
    assert resolution.base_model_id == TITAN
    assert "provisioned throughput of a foundation model" in resolution.source
    assert "provisioned vs on-demand" in resolution.source
    assert resolution.chain == (PT_ARN, TITAN_ARN)


def test_custom_model_deployment() -> None:
    deployment_arn = f"arn:aws:bedrock:{REGION}:{ACCOUNT}:custom-model-deployment/abc123def456"
    client = _stubbed_client()
    with Stubber(client) as stubber:
        stubber.add_response(
            "get_custom_model_deployment",
            {
                "customModelDeploymentArn": deployment_arn,
                "modelDeploymentName": "support-od",
                "modelArn": REAL_CUSTOM_ARN,
                "createdAt": dt.datetime(2025, 1, 1),
                "status": "Active",
            },
            {"customModelDeploymentIdentifier": deployment_arn},
        )
        stubber.add_response(
            "get_custom_model",
            {
                "modelArn": REAL_CUSTOM_ARN,
                "modelName": "support-v3",
                "creationTime": dt.datetime(2025, 1, 1),
                "baseModelArn": TITAN_ARN,
            },
            {"modelIdentifier": REAL_CUSTOM_ARN},
        )
        resolution = resolve_base_model(deployment_arn, client)
    assert resolution.base_model_id == TITAN
    assert resolution.source.startswith("GetCustomModelDeployment -> GetCustomModel")


def test_custom_model_based_on_custom_model_keeps_arn() -> None:
    parent = f"arn:aws:bedrock:{REGION}:{ACCOUNT}:custom-model/{TITAN}:0:8k/parent000001"
    client = _stubbed_client()
    with Stubber(client) as stubber:
        stubber.add_response(
            "get_custom_model",
            {
                "modelArn": REAL_CUSTOM_ARN,
                "modelName": "support-v4",
                "creationTime": dt.datetime(2025, 1, 1),
                "baseModelArn": parent,
            },
        )
        resolution = resolve_base_model("support-v4", client)
    assert resolution.base_model_id == parent


def test_name_that_is_an_imported_model() -> None:
    client = _stubbed_client()
    with Stubber(client) as stubber:
        stubber.add_client_error(
            "get_custom_model",
            service_error_code="ResourceNotFoundException",
            service_message="Could not find model",
            http_status_code=404,
        )
        stubber.add_response(
            "get_imported_model",
            {
                "modelName": "my-llama",
                "modelArn": f"arn:aws:bedrock:{REGION}:{ACCOUNT}:imported-model/abc123def456",
            },
            {"modelIdentifier": "my-llama"},
        )
        with pytest.raises(BaseModelError, match="imported model") as info:
            resolve_base_model("my-llama", client)
    assert "--bedrock-baseline" in str(info.value)


def test_access_denied_names_permission_and_fix() -> None:
    client = _stubbed_client()
    with Stubber(client) as stubber:
        stubber.add_client_error(
            "get_custom_model",
            service_error_code="AccessDeniedException",
            service_message="User: arn:aws:iam::123456789012:user/ci is not authorized",
            http_status_code=403,
        )
        with pytest.raises(BaseModelError) as info:
            resolve_base_model("support-v3", client)
    message = str(info.value)
    assert "AccessDeniedException" in message
    assert "is not authorized" in message
    assert "bedrock:GetCustomModel" in message
    assert "--bedrock-baseline" in message


def test_missing_base_field() -> None:
    client = _stubbed_client()
    with Stubber(client) as stubber:
        stubber.add_response(
            "get_custom_model",
            {
                "modelArn": REAL_CUSTOM_ARN,
                "modelName": "x",
                "creationTime": dt.datetime(2025, 1, 1),
            },
        )
        with pytest.raises(BaseModelError, match="no baseModelArn"):
            resolve_base_model("x", client)


def test_no_credentials() -> None:
    class NoCredsClient:
        def get_custom_model(self, **kwargs: str) -> dict[str, Any]:
            raise NoCredentialsError()

    with pytest.raises(BaseModelError, match="configure AWS credentials") as info:
        resolve_base_model("support-v3", NoCredsClient())
    assert "Unable to locate credentials" in str(info.value)
    assert "--bedrock-baseline" in str(info.value)


def test_endpoint_connection_error_names_region_and_endpoint() -> None:
    # Port 9 (discard) on loopback: connection refused, immediately.
    client = boto3.client(
        "bedrock",
        region_name="eu-west-3",
        endpoint_url="http://127.0.0.1:9",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"max_attempts": 1}, connect_timeout=2),
    )
    with pytest.raises(BaseModelError) as info:
        resolve_base_model("support-v3", client)
    message = str(info.value)
    assert "eu-west-3" in message and "http://127.0.0.1:9" in message
    assert "--bedrock-baseline" in message


def test_other_arn_is_rejected_without_calls() -> None:
    with pytest.raises(BaseModelError, match="not a Bedrock model identifier"):
        resolve_base_model("arn:aws:sagemaker:us-east-1:123456789012:endpoint/x", object())


def test_empty_candidate() -> None:
    with pytest.raises(BaseModelError, match="No candidate"):
        resolve_base_model("", object())


# ------------------------------------------------------------------ moto server over HTTP


@pytest.fixture(scope="module")
def moto_server() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def test_resolve_over_http_against_moto_server(moto_server: str) -> None:
    client = boto3.client(
        "bedrock",
        region_name=REGION,
        endpoint_url=moto_server,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        # moto answers unimplemented operations with HTTP 500, which botocore retries.
        config=Config(retries={"max_attempts": 1}),
    )
    _create_custom_model(client, "support-http")
    arn = f"arn:aws:bedrock:{REGION}:{ACCOUNT}:custom-model/support-http"
    assert resolve_base_model("support-http", client).base_model_id == TITAN
    assert resolve_base_model(arn, client).base_model_id == TITAN

    # Unknown name: GetCustomModel 404, GetImportedModel HTTP 500 (not implemented) is
    # treated as "can't tell", so the user sees the not-found error.
    with pytest.raises(BaseModelError, match="Custom model nope-http not found"):
        resolve_base_model("nope-http", client)


def test_unimplemented_operation_over_http_is_readable(moto_server: str) -> None:
    client = boto3.client(
        "bedrock",
        region_name=REGION,
        endpoint_url=moto_server,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"max_attempts": 1}),
    )
    with pytest.raises(BaseModelError) as info:
        resolve_base_model(PT_ARN, client)
    message = str(info.value)
    assert "GetProvisionedModelThroughput" in message
    assert f"HTTP 500 from {moto_server}" in message
    assert "<html" not in message and "--bedrock-baseline" in message
