"""Agent and structured-output rows of the client matrix: strands, pydantic-ai, LangChain.

Each runs an inner pytest session with ``--bedrock-emulator`` (the plugin's embedded
emulator), drives the library the way its users do, asserts that the object it returns is
valid against the requested schema, and that the plugin measured every Bedrock call.
A library that is not installed skips its row (``pip install -e '.[clients]'``).
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # the fixture's class, from tests/conftest.py
    from conftest import BedrockPytester

# Fast agent-capable profiles: every family glob the libraries' default ids resolve to.
PROFILES = """\
[defaults]
ttft_ms = 10
ms_per_token = 0.5
answer_tokens = 15
jitter = 0.0
prompt_spread = 0.0
answer_tokens_spread = 0.0
tool_use_rate = 1.0
reasoning_tokens = 20

[models."anthropic.*"]
family = "anthropic"
tokens_per_chunk = 3

[models."amazon.nova-*"]
family = "nova"
"""

MODELS = '''
from pydantic import BaseModel, Field


class Forecast(BaseModel):
    """A weather forecast."""

    city: str = Field(min_length=1)
    temperature_c: float = Field(ge=-60, le=60)
    conditions: list[str] = Field(min_length=1, max_length=3)
    windy: bool


def check_measured(calls, *operations):
    assert calls, "the plugin measured no Bedrock call"
    assert all(c.operation in operations for c in calls), [c.operation for c in calls]
    assert all(c.output_tokens and c.output_tokens > 0 for c in calls)
'''


#: The agent libraries the inner runs import. pytester's in-process runs unload what a run
#: imported; imported here first, each is loaded once per worker, not once per run.
LIBRARIES = (
    "strands",
    "strands.models",
    "pydantic_ai",
    "pydantic_ai.models.bedrock",
    "langchain_aws",
)


@pytest.fixture(scope="module", autouse=True)
def _libraries_loaded_once() -> None:
    for name in LIBRARIES:
        if importlib.util.find_spec(name.split(".")[0]) is not None:
            importlib.import_module(name)


def needs(*modules: str) -> pytest.MarkDecorator:
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    return pytest.mark.skipif(
        bool(missing), reason=f"{', '.join(missing)} not installed (pip install -e '.[clients]')"
    )


def run(bedrock_pytester: BedrockPytester, test: str) -> pytest.RunResult:
    bedrock_pytester.profiles(PROFILES)
    bedrock_pytester.makepyfile(agent_models=MODELS, test_agent=test)
    return bedrock_pytester.run(model=None)


@needs("strands")
def test_strands_agent_runs_its_tool_and_answers(bedrock_pytester: BedrockPytester) -> None:
    result = run(
        bedrock_pytester,
        """
        from strands import Agent, tool
        from strands.models import BedrockModel

        from agent_models import check_measured

        seen = []


        @tool
        def get_weather(city: str, days: int) -> str:
            \"\"\"The weather forecast for a city.\"\"\"
            seen.append((city, days))
            return "sunny, 21 C"


        def test_agent(bedrock_calls):
            # strands' own default model id: a global cross-region inference profile.
            model = BedrockModel(model_id="global.anthropic.claude-sonnet-4-6")
            agent = Agent(model=model, tools=[get_weather], callback_handler=None)
            answer = agent("What is the weather in Paris for the next three days?")
            assert seen and isinstance(seen[0][0], str) and isinstance(seen[0][1], int)
            assert answer.stop_reason == "end_turn" and str(answer).strip()
            check_measured(bedrock_calls, "ConverseStream")
            assert len(bedrock_calls) == 2  # the tool call, then the answer to its result
        """,
    )
    result.assert_outcomes(passed=1)


@needs("strands")
def test_strands_structured_output(bedrock_pytester: BedrockPytester) -> None:
    result = run(
        bedrock_pytester,
        """
        from strands import Agent
        from strands.models import BedrockModel

        from agent_models import Forecast, check_measured


        def test_structured(bedrock_calls):
            agent = Agent(model=BedrockModel(model_id="us.amazon.nova-pro-v1:0"), callback_handler=None)
            forecast = agent.structured_output(Forecast, "Forecast for Oslo tomorrow")
            assert isinstance(forecast, Forecast)
            Forecast.model_validate(forecast.model_dump())
            check_measured(bedrock_calls, "ConverseStream")
        """,
    )
    result.assert_outcomes(passed=1)


@needs("pydantic_ai", "boto3")
def test_pydantic_ai_output_type(bedrock_pytester: BedrockPytester) -> None:
    result = run(
        bedrock_pytester,
        """
        from pydantic_ai import Agent
        from pydantic_ai.models.bedrock import BedrockConverseModel

        from agent_models import Forecast, check_measured


        # pydantic-ai streams even in run_sync (ConverseStream); either operation is measured.
        def test_output_type(bedrock_calls):
            model = BedrockConverseModel("anthropic.claude-haiku-4-5-20251001-v1:0")
            agent = Agent(model, output_type=Forecast)
            result = agent.run_sync("Forecast for Lisbon tomorrow")
            assert isinstance(result.output, Forecast)
            check_measured(bedrock_calls, "Converse", "ConverseStream")


        def test_output_type_beside_a_function_tool(bedrock_calls):
            model = BedrockConverseModel("anthropic.claude-sonnet-4-5-20250929-v1:0")
            agent = Agent(model, output_type=Forecast)
            looked_up = []

            @agent.tool_plain
            def station_reading(city: str) -> str:
                \"\"\"The latest reading of the city's weather station.\"\"\"
                looked_up.append(city)
                return "14 C, light rain"

            result = agent.run_sync("Forecast for Bergen tomorrow")
            assert isinstance(result.output, Forecast)
            # The model may call the station tool first; the run ends with the output tool.
            assert len(bedrock_calls) == 1 + len(looked_up)
            check_measured(bedrock_calls, "Converse", "ConverseStream")
        """,
    )
    result.assert_outcomes(passed=2)


@needs("langchain_aws")
def test_langchain_structured_output_and_bind_tools(bedrock_pytester: BedrockPytester) -> None:
    result = run(
        bedrock_pytester,
        """
        from langchain_aws import ChatBedrockConverse

        from agent_models import Forecast, check_measured


        def chat():
            return ChatBedrockConverse(
                model="us.anthropic.claude-3-5-haiku-20241022-v1:0", region_name="us-east-1"
            )


        def test_with_structured_output(bedrock_calls):
            forecast = chat().with_structured_output(Forecast).invoke("Forecast for Rome")
            assert isinstance(forecast, Forecast)
            check_measured(bedrock_calls, "Converse")


        def test_bind_tools(bedrock_calls):
            message = chat().bind_tools([Forecast], tool_choice="Forecast").invoke("Rome?")
            (call,) = message.tool_calls
            assert call["name"] == "Forecast"
            Forecast.model_validate(call["args"])
            check_measured(bedrock_calls, "Converse")


        def test_stream_reasoning(bedrock_calls):
            model = ChatBedrockConverse(
                model="anthropic.claude-sonnet-4-6",
                region_name="us-east-1",
                max_tokens=4000,
                additional_model_request_fields={
                    "thinking": {"type": "enabled", "budget_tokens": 1024}
                },
            )
            chunks = list(model.stream("Think first: is 17 prime?"))
            kinds = {block.get("type") for c in chunks if isinstance(c.content, list) for block in c.content}
            assert "reasoning_content" in kinds and "text" in kinds
            check_measured(bedrock_calls, "ConverseStream")
        """,
    )
    result.assert_outcomes(passed=3)


@needs("langchain_aws")
def test_langchain_native_anthropic_tools(bedrock_pytester: BedrockPytester) -> None:
    """ChatBedrock speaks InvokeModel with Anthropic's native body: tool_use blocks."""
    result = run(
        bedrock_pytester,
        """
        from langchain_aws import ChatBedrock

        from agent_models import Forecast, check_measured


        def chat():
            return ChatBedrock(
                model_id="anthropic.claude-3-haiku-20240307-v1:0",
                region_name="us-east-1",
                model_kwargs={"max_tokens": 500},
            )


        def test_with_structured_output(bedrock_calls):
            forecast = chat().with_structured_output(Forecast).invoke("Forecast for Madrid")
            assert isinstance(forecast, Forecast)
            check_measured(bedrock_calls, "InvokeModel", "InvokeModelWithResponseStream")


        def test_bind_tools_stream(bedrock_calls):
            model = chat().bind_tools([Forecast], tool_choice="Forecast")
            merged = None
            for chunk in model.stream("Madrid?"):
                merged = chunk if merged is None else merged + chunk
            (call,) = merged.tool_calls
            Forecast.model_validate(call["args"])
            check_measured(bedrock_calls, "InvokeModelWithResponseStream")
        """,
    )
    result.assert_outcomes(passed=2)
