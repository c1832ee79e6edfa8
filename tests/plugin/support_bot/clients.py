"""The application's own boto3 client factory.

Endpoint, region and credentials come from boto3's usual sources (environment variables
such as ``AWS_ENDPOINT_URL_BEDROCK_RUNTIME`` and ``AWS_REGION``, profiles, ...), as in a
production service. Retries use botocore's standard mode, unless ``AWS_RETRY_MODE`` (boto3's
own setting) names another.
"""

from __future__ import annotations

import os
from typing import Any

import boto3
from botocore.config import Config


def client_config(max_attempts: int = 5) -> Config:
    return Config(
        retries={
            "mode": os.environ.get("AWS_RETRY_MODE", "standard"),
            "total_max_attempts": max_attempts,
        },
        read_timeout=30,
        connect_timeout=5,
        max_pool_connections=8,
    )


def make_client(max_attempts: int = 5) -> Any:
    """A ``bedrock-runtime`` client from boto3's default session."""
    return boto3.client("bedrock-runtime", config=client_config(max_attempts))


def make_session_client(max_attempts: int = 5) -> Any:
    """A ``bedrock-runtime`` client from a fresh ``boto3.Session`` (as libraries often do)."""
    return boto3.Session().client("bedrock-runtime", config=client_config(max_attempts))
