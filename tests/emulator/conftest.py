"""Shared fixtures for the emulator tests: one session-wide Emulator and boto3 client factories.

Profiles here are fast (FAST: 10 ms to the first token, then 1 ms per token) so the suite
stays quick; the timing tests use the slower ``timing.model`` profile.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.session
import pytest
from botocore.config import Config

from pytest_bedrock_latency.emulator import Emulator

FAST = {"ttft_ms": 10, "ms_per_token": 1, "answer_tokens": 20}
#: How long a FAST answer takes at least: the first token, then 19 more.
FAST_DONE_MS = FAST["ttft_ms"] + 19 * FAST["ms_per_token"]

TEST_PROFILES: dict[str, Any] = {
    "defaults": {"prompt_spread": 0.0, "answer_tokens_spread": 0.0, "jitter": 0.0, **FAST},
    "models": {
        "anthropic.claude-3-haiku-20240307-v1:0": {},
        "us.anthropic.claude-3-5-haiku-20241022-v1:0": {
            "ttft_ms": 120,
            "ms_per_token": 6,
            "optimized_speedup": 2.0,
        },
        "amazon.nova-lite-v1:0": {},
        "amazon.titan-text-express-v1": {},
        "meta.llama3-1-8b-instruct-v1:0": {},
        "mistral.mistral-7b-instruct-v0:2": {},
        "test.fast": {"family": "nova"},
        "timing.model": {"family": "nova", "ttft_ms": 200, "ms_per_token": 20, "answer_tokens": 25},
        "arn:aws:bedrock:*:custom-model/*": {"family": "titan", "answer_tokens": 12},
    },
}

MSGS = [{"role": "user", "content": [{"text": "Summarise the release notes please"}]}]


def make_client(
    url: str, service: str = "bedrock-runtime", session: Any = boto3, **config: Any
) -> Any:
    """A real boto3 client against ``url`` with dummy credentials."""
    return session.client(
        service,
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(**({"retries": {"total_max_attempts": 1}} | config)),
    )


@pytest.fixture(scope="session")
def emulator() -> Iterator[Emulator]:
    with Emulator(profiles=TEST_PROFILES) as emu:
        yield emu


@pytest.fixture(autouse=True)
def _clean_emulator(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "emulator" in request.fixturenames:
        emu = request.getfixturevalue("emulator")
        emu.reset_overrides()
        emu.clear_requests()


@pytest.fixture
def client(emulator: Emulator) -> Any:
    return make_client(emulator.url)


@pytest.fixture
def client_factory(emulator: Emulator) -> Callable[..., Any]:
    return lambda **config: make_client(emulator.url, **config)


#: How long botocore waits between retries in these tests: fixed and short. Its own backoff
#: waits up to ``2**n`` random seconds, which would make a test slow and its time random.
RETRY_DELAY_S = 0.001


@pytest.fixture(scope="session")
def no_backoff_session(fixed_retry_delay: Callable[[float], Path]) -> boto3.Session:
    """A boto3 session whose clients, in botocore's ``legacy`` retry mode, wait RETRY_DELAY_S
    (``fixed_retry_delay``, tests/conftest.py: botocore's own retry rules on the data path)."""
    core = botocore.session.get_session()
    core.set_config_variable("data_path", str(fixed_retry_delay(RETRY_DELAY_S)))
    return boto3.Session(botocore_session=core)


@pytest.fixture
def retrying_client(emulator: Emulator, no_backoff_session: boto3.Session) -> Callable[[int], Any]:
    """``retrying_client(attempts)``: a client that retries like botocore, without its backoff."""
    return lambda attempts: make_client(
        emulator.url,
        session=no_backoff_session,
        retries={"mode": "legacy", "total_max_attempts": attempts},
    )
