"""One row per client: a marked test that calls Bedrock the way that client's users do.

Nothing here imports pytest-bedrock-latency: the plugin must find every call on its own.
Each row builds its client once and asks four times, as an application would. Every call
is counted; the median figures of the calls after the first are compared (the first call
of a client in a fresh process also pays one-off set-up: lazy imports, parsers,
connection pools; the median keeps one call delayed by a busy machine from deciding).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from conftest import QUESTION, REGION, need

NOVA = "amazon.nova-lite-v1:0"
CLAUDE = "anthropic.claude-3-haiku-20240307-v1:0"
LLAMA = "meta.llama3-1-8b-instruct-v1:0"
MISTRAL = "mistral.mistral-7b-instruct-v0:2"
MESSAGES = [{"role": "user", "content": [{"text": QUESTION}]}]
CLAUDE_BODY = json.dumps(
    {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 200,
        "messages": [{"role": "user", "content": QUESTION}],
    }
)

STREAMED = pytest.mark.bedrock_latency(max_ttft_ms=5000, max_ms_per_token=500)
WHOLE = pytest.mark.bedrock_latency(max_total_ms=10000)
Check = Callable[..., None]
CALLS = 4  # the first is a warm-up; the median of the other three is compared


def repeat(ask: Callable[[], object]) -> None:
    """Ask ``CALLS`` times (the name stays: one warm-up call, then the measured ones)."""
    for _ in range(CALLS):
        assert ask()


# -- boto3: the four operations ------------------------------------------------------------
@STREAMED
def test_boto3_converse_stream(measured: Check) -> None:
    client = boto3.client("bedrock-runtime", region_name=REGION)
    repeat(lambda: list(client.converse_stream(modelId=NOVA, messages=MESSAGES)["stream"]))
    measured(skip_first=1)


@WHOLE
def test_boto3_converse(measured: Check) -> None:
    client = boto3.client("bedrock-runtime", region_name=REGION)
    repeat(lambda: client.converse(modelId=NOVA, messages=MESSAGES))
    measured(skip_first=1)


@STREAMED
def test_boto3_invoke_model_with_response_stream(measured: Check) -> None:
    client = boto3.client("bedrock-runtime", region_name=REGION)
    repeat(
        lambda: list(
            client.invoke_model_with_response_stream(modelId=CLAUDE, body=CLAUDE_BODY)["body"]
        )
    )
    measured(skip_first=1)


@WHOLE
def test_boto3_invoke_model(measured: Check) -> None:
    client = boto3.client("bedrock-runtime", region_name=REGION)
    repeat(lambda: client.invoke_model(modelId=CLAUDE, body=CLAUDE_BODY)["body"].read())
    measured(skip_first=1)


# -- LangChain ---------------------------------------------------------------------------------
@WHOLE
def test_langchain_chat_bedrock_converse_invoke(measured: Check) -> None:
    need("langchain_aws")
    from langchain_aws import ChatBedrockConverse

    llm = ChatBedrockConverse(model=NOVA, region_name=REGION)
    repeat(lambda: llm.invoke(QUESTION).content)
    measured(skip_first=1)


@STREAMED
def test_langchain_chat_bedrock_converse_stream(measured: Check) -> None:
    need("langchain_aws")
    from langchain_aws import ChatBedrockConverse

    llm = ChatBedrockConverse(model=NOVA, region_name=REGION)
    repeat(lambda: list(llm.stream(QUESTION)))
    measured(skip_first=1)


@STREAMED
@pytest.mark.parametrize("model", [CLAUDE, LLAMA, MISTRAL], ids=["anthropic", "meta", "mistral"])
def test_langchain_chat_bedrock_stream(measured: Check, model: str) -> None:
    """ChatBedrock's parser returns right after the terminal event, before end-of-stream."""
    need("langchain_aws")
    from langchain_aws import ChatBedrock

    llm = ChatBedrock(model_id=model, region_name=REGION, model_kwargs={"max_tokens": 200})
    repeat(lambda: "".join(str(chunk.content) for chunk in llm.stream(QUESTION)))
    measured(skip_first=1)


# -- agents and frameworks ---------------------------------------------------------------------
@STREAMED
def test_strands_bedrock_model(measured: Check) -> None:
    need("strands")
    from strands import Agent
    from strands.models import BedrockModel

    model = BedrockModel(model_id=NOVA, region_name=REGION)
    repeat(lambda: str(Agent(model=model, callback_handler=None)(QUESTION)))
    measured(skip_first=1)


def _pydantic_agent() -> object:
    need("pydantic_ai")
    from pydantic_ai import Agent
    from pydantic_ai.models.bedrock import BedrockConverseModel
    from pydantic_ai.providers.bedrock import BedrockProvider

    return Agent(BedrockConverseModel(NOVA, provider=BedrockProvider(region_name=REGION)))


@STREAMED
def test_pydantic_ai_run_stream(measured: Check) -> None:
    agent: Any = _pydantic_agent()

    async def ask() -> str:
        async with agent.run_stream(QUESTION) as result:
            return "".join([text async for text in result.stream_text(delta=True)])

    repeat(lambda: asyncio.run(ask()))
    measured(skip_first=1)


@WHOLE
def test_pydantic_ai_run_sync(measured: Check) -> None:
    agent: Any = _pydantic_agent()
    repeat(lambda: agent.run_sync(QUESTION).output)
    measured(skip_first=1)


@STREAMED
def test_llama_index_stream(measured: Check) -> None:
    need("llama_index.llms.bedrock_converse")
    from llama_index.llms.bedrock_converse import BedrockConverse

    llm = BedrockConverse(model=NOVA, region_name=REGION)
    repeat(lambda: [r.delta for r in llm.stream_complete(QUESTION)])
    measured(skip_first=1)


@STREAMED
def test_llama_index_astream(measured: Check) -> None:
    """With aioboto3 installed llama-index streams through aiobotocore, otherwise a thread."""
    need("llama_index.llms.bedrock_converse")
    from llama_index.llms.bedrock_converse import BedrockConverse

    llm = BedrockConverse(model=NOVA, region_name=REGION)

    async def ask() -> list[str]:
        return [r.delta or "" async for r in await llm.astream_complete(QUESTION)]

    repeat(lambda: asyncio.run(ask()))
    measured(skip_first=1)


@STREAMED
def test_litellm_stream(measured: Check) -> None:
    litellm: Any = need("litellm")
    messages = [{"role": "user", "content": QUESTION}]
    repeat(
        lambda: list(litellm.completion(model=f"bedrock/{NOVA}", messages=messages, stream=True))
    )
    measured(skip_first=1)


@STREAMED
def test_aioboto3_converse_stream(measured: Check) -> None:
    aioboto3: Any = need("aioboto3")

    async def ask() -> None:
        async with aioboto3.Session().client("bedrock-runtime", region_name=REGION) as client:
            for _ in range(CALLS):  # one client: its first call also sets up its aiohttp session
                response = await client.converse_stream(modelId=NOVA, messages=MESSAGES)
                async for _ in response["stream"]:
                    pass

    asyncio.run(ask())
    measured(skip_first=1)
