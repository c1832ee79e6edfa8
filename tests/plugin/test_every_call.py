"""Every Bedrock call a suite makes is measured, or named as unmeasured; offline stays offline.

Each test here is one of the failures found by running real clients' patterns against the
plugin: streams read to their last event but not to end-of-stream, clients created while
conftest.py loads, stream wrappers that were not transparent, calls the plugin cannot
see, non-streaming calls under latency bounds.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conftest import BedrockPytester

MODEL = "amazon.nova-lite-v1:0"  # 20 tokens, TTFT about 20 ms, about 1 ms per token
CLAUDE = "anthropic.claude-3-haiku-20240307-v1:0"

CLIENT = """
import json
import boto3
from botocore.config import Config

NO_RETRY = Config(retries={"total_max_attempts": 1}, connect_timeout=2, read_timeout=30)
MESSAGES = [{"role": "user", "content": [{"text": "How do I reset my password?"}]}]


def client():
    return boto3.client("bedrock-runtime", region_name="us-east-1", config=NO_RETRY)
"""


# -- 1. complete at the terminal event; abandoned calls are never silently dropped ----------------
def test_a_stream_read_to_its_terminal_event_but_not_to_eof_is_measured(
    bedrock_pytester: BedrockPytester,
) -> None:
    bedrock_pytester.makepyfile(
        helpers=CLIENT,
        test_terminal=f"""
        import json
        import pytest
        from helpers import MESSAGES, client

        @pytest.mark.bedrock_latency(max_ms_per_token=50)
        def test_invoke_stream_returns_on_message_stop(bedrock_calls):
            body = json.dumps({{"anthropic_version": "bedrock-2023-05-31", "max_tokens": 50,
                               "messages": [{{"role": "user", "content": "Hi"}}]}})
            stream = client().invoke_model_with_response_stream(modelId="{CLAUDE}", body=body)["body"]
            for event in stream:  # LangChain's ChatBedrock: return at message_stop, never ask for EOF
                if json.loads(event["chunk"]["bytes"])["type"] == "message_stop":
                    break
            assert len(bedrock_calls) == 1 and bedrock_calls[0].output_tokens == 20

        @pytest.mark.bedrock_latency(max_ms_per_token=50)
        def test_converse_stream_returns_on_metadata(bedrock_calls):
            for event in client().converse_stream(modelId="{MODEL}", messages=MESSAGES)["stream"]:
                if "metadata" in event:
                    break
            assert len(bedrock_calls) == 1 and bedrock_calls[0].output_tokens == 20
        """,
    )
    bedrock_pytester.run().assert_outcomes(passed=2)


def test_a_test_whose_calls_were_all_abandoned_fails_saying_so(
    bedrock_pytester: BedrockPytester,
) -> None:
    bedrock_pytester.makepyfile(
        helpers=CLIENT,
        test_abandoned=f"""
        import pytest
        from helpers import MESSAGES, client

        @pytest.mark.bedrock_latency(max_ttft_ms=500)
        def test_preview_only():
            stream = client().converse_stream(modelId="{MODEL}", messages=MESSAGES)["stream"]
            for index, _ in enumerate(stream):
                if index == 3:  # messageStart + 3 deltas
                    break
            stream.close()
        """,
    )
    result = bedrock_pytester.run()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*bedrock_latency: every Bedrock call of the test was abandoned before its answer ended "
            f"(read each stream to its last event): ConverseStream to {MODEL} abandoned after 3 tokens (closed)*",
            "not measured:",
            f"  test_preview_only: ConverseStream to {MODEL} abandoned after 3 tokens (closed)",
        ]
    )


def test_an_abandoned_call_beside_measured_ones_is_named_in_the_failure(
    bedrock_pytester: BedrockPytester,
) -> None:
    bedrock_pytester.makepyfile(
        helpers=CLIENT,
        test_mixed=f"""
        import pytest
        from helpers import MESSAGES, client

        @pytest.mark.bedrock_latency(max_ttft_ms=1)
        def test_one_whole_one_preview():
            c = client()
            for _ in c.converse_stream(modelId="{MODEL}", messages=MESSAGES)["stream"]:
                pass
            stream = c.converse_stream(modelId="{MODEL}", messages=MESSAGES)["stream"]
            next(iter(stream)); next(iter(stream))
            stream.close()
        """,
    )
    result = bedrock_pytester.run()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*bedrock_latency: TTFT ms p50 * > 1.0 allowed (model *, 1 call)",
            f"not measured: ConverseStream to {MODEL} abandoned after 1 tokens (closed)*",
        ]
    )


# -- 2. offline means offline ------------------------------------------------------------------
IMPORT_TIME_CONFTEST = """
import os
import boto3
from botocore.config import Config

# Real-looking credentials, as on a developer's machine; no endpoint anywhere.
os.environ["AWS_ACCESS_KEY_ID"] = "AKIAIOSFODNN7EXAMPLE"
os.environ["AWS_SECRET_ACCESS_KEY"] = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
NO_RETRY = Config(retries={"total_max_attempts": 1}, connect_timeout=2, read_timeout=30)

# The application's module-level client, created while conftest.py is imported.
IMPORTED = boto3.client("bedrock-runtime", region_name="us-east-1", config=NO_RETRY)
# One told the real endpoint outright.
EXPLICIT = boto3.client(
    "bedrock-runtime", region_name="us-east-1", config=NO_RETRY,
    endpoint_url="https://bedrock-runtime.us-east-1.amazonaws.com",
)
"""


def test_clients_created_at_conftest_import_are_answered_by_the_emulator(
    bedrock_pytester: BedrockPytester,
) -> None:
    bedrock_pytester.pytester.makeconftest(IMPORT_TIME_CONFTEST)
    bedrock_pytester.makepyfile(
        test_offline=f"""
        import os
        import pytest
        import conftest

        MESSAGES = [{{"role": "user", "content": [{{"text": "Hi"}}]}}]

        @pytest.mark.bedrock_length(max_tokens=100)
        def test_import_time_client(bedrock_emulator):
            assert conftest.IMPORTED.meta.endpoint_url == bedrock_emulator.url
            answer = conftest.IMPORTED.converse(modelId="{MODEL}", messages=MESSAGES)
            assert answer["usage"]["outputTokens"] == 20
            assert [r.operation for r in bedrock_emulator.requests] == ["Converse"]

        @pytest.mark.bedrock_length(max_tokens=100)
        def test_client_told_the_real_endpoint(bedrock_emulator):
            before = len(bedrock_emulator.requests)
            conftest.EXPLICIT.converse(modelId="{MODEL}", messages=MESSAGES)
            assert len(bedrock_emulator.requests) == before + 1

        def test_litellm_reads_its_own_variable(bedrock_emulator):
            assert os.environ["AWS_BEDROCK_RUNTIME_ENDPOINT"] == bedrock_emulator.url
        """
    )
    result = bedrock_pytester.run("-p", "no:randomly")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(
        [
            "bedrock: a bedrock-runtime client created at *conftest.py:1* was aimed at "
            "https://bedrock-runtime.us-east-1.amazonaws.com; its requests were sent to the "
            "emulator at http://127.0.0.1:* instead"
        ]
    )
    assert "AWS_BEDROCK_RUNTIME_ENDPOINT" not in os.environ  # restored after the session


#: An installed library that wraps boto3's client factories at import, as langchain-aws does
#: (to add its user agent to every client of the process).
UA_WRAPPER = """
import boto3

ORIGINAL = boto3.client

def client(*args, **kwargs):
    return ORIGINAL(*args, **kwargs)

boto3.client = client
"""

WRAPPED_CONFTEST = """
import sys, pathlib
sys.path.insert(0, str(pathlib.Path(__file__).parent / "site-packages"))
import ua_wrapper  # noqa: F401  (replaces boto3.client)
import boto3

REAL = "https://bedrock-runtime.us-east-1.amazonaws.com"
MADE_HERE = boto3.client("bedrock-runtime", region_name="us-east-1", endpoint_url=REAL)  # line 7
"""


def test_a_client_made_through_a_librarys_wrapper_is_named_by_the_users_line(
    bedrock_pytester: BedrockPytester,
) -> None:
    (bedrock_pytester.path / "site-packages").mkdir()
    (bedrock_pytester.path / "site-packages" / "ua_wrapper.py").write_text(UA_WRAPPER)
    bedrock_pytester.pytester.makeconftest(WRAPPED_CONFTEST)
    bedrock_pytester.makepyfile(
        test_wrapped=f"""
        import conftest

        def test_call(bedrock_emulator):
            conftest.MADE_HERE.converse(
                modelId="{MODEL}", messages=[{{"role": "user", "content": [{{"text": "Hi"}}]}}]
            )
        """
    )
    result = bedrock_pytester.run()
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        ["bedrock: a bedrock-runtime client created at *conftest.py:7 was aimed at *"]
    )
    result.stdout.no_fnmatch_line("*created at *ua_wrapper.py*")


def test_the_ini_setting_is_offline_before_conftest_import_too(
    bedrock_pytester: BedrockPytester,
) -> None:
    bedrock_pytester.pytester.makeini(
        "[pytest]\nbedrock_emulator = true\nbedrock_emulator_profiles = profiles.toml\n"
    )
    bedrock_pytester.pytester.makeconftest(IMPORT_TIME_CONFTEST)
    bedrock_pytester.makepyfile(
        test_ini="""
        import conftest

        def test_import_time_client(bedrock_emulator):
            assert conftest.IMPORTED.meta.endpoint_url == bedrock_emulator.url
        """
    )
    bedrock_pytester.run(emulator=False).assert_outcomes(passed=1)


# -- 4. transparent stream wrappers; cancelling is not a Bedrock error ----------------------------
SLOW_PROFILES = """\
[defaults]
jitter = 0.0
prompt_spread = 0.0
answer_tokens_spread = 0.0

[models."slow.model"]
family = "nova"
ttft_ms = 20000
"""


def test_the_stream_is_what_botocore_returns_and_cancelling_is_fast(
    bedrock_pytester: BedrockPytester,
) -> None:
    bedrock_pytester.profiles(SLOW_PROFILES)
    bedrock_pytester.makepyfile(
        helpers=CLIENT,
        test_cancel="""
        import socket
        import threading
        import time
        from botocore.eventstream import EventStream
        import pytest
        from helpers import MESSAGES, client

        @pytest.mark.bedrock_latency(max_ttft_ms=1000)
        def test_cancel_a_blocked_read():
            stream = client().converse_stream(modelId="slow.model", messages=MESSAGES)["stream"]
            assert isinstance(stream, EventStream)
            assert {"_raw_stream", "_output_shape", "_operation_name", "_parser",
                    "_event_generator"} <= set(vars(stream))
            errors = []

            def read():
                try:
                    for _ in stream:
                        pass
                except Exception as error:
                    errors.append(error)

            reader = threading.Thread(target=read)
            reader.start()
            time.sleep(0.3)  # the reader is blocked waiting for the first token
            started = time.perf_counter()
            # pydantic-ai's cancel: shut the socket under the blocked read.
            vars(stream)["_raw_stream"].connection.sock.shutdown(socket.SHUT_RDWR)
            reader.join(10)
            assert not reader.is_alive()
            assert time.perf_counter() - started < 2.0  # a 20 s answer, interrupted at once
        """,
    )
    result = bedrock_pytester.run()
    result.assert_outcomes(failed=1)
    # The test fails on its bound (its only call has no figures), naming the interrupted
    # call, and never blames Bedrock for the client's own cancel.
    result.stdout.fnmatch_lines(
        [
            "*every Bedrock call of the test was abandoned*slow.model abandoned after 0 tokens "
            "(interrupted by *)*"
        ]
    )
    result.stdout.no_fnmatch_line("*from Bedrock*")


# -- 7. calls the plugin cannot see are named ------------------------------------------------------
def test_requests_the_emulator_served_unmeasured_are_named(
    bedrock_pytester: BedrockPytester,
) -> None:
    bedrock_pytester.makepyfile(
        other_process=f"""
        import boto3

        client = boto3.client("bedrock-runtime", region_name="us-east-1")
        for _ in range(2):
            messages = [{{"role": "user", "content": [{{"text": "Hi"}}]}}]
            for _ in client.converse_stream(modelId="{MODEL}", messages=messages)["stream"]:
                pass
        """,
        test_other_process="""
        import subprocess
        import sys
        import pytest

        # Another process (the AWS CLI, a worker, a service under test): out of the plugin's reach.
        @pytest.mark.bedrock_latency(max_ttft_ms=1000)
        def test_only_unmeasured_calls():
            subprocess.run([sys.executable, "other_process.py"], check=True)
        """,
    )
    result = bedrock_pytester.run()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*bedrock_latency: the test made no measured Bedrock call, but 2 ConverseStream requests "
            "reached the emulator unmeasured (user agent: Boto3/*): the plugin measures "
            "boto3/botocore, aiobotocore (aioboto3) and httpx (litellm) clients in the test's own "
            "process*",
        ]
    )


def test_a_stream_left_open_when_the_test_ends_is_named(bedrock_pytester: BedrockPytester) -> None:
    bedrock_pytester.makepyfile(
        helpers=CLIENT,
        test_open=f"""
        import pytest
        from helpers import MESSAGES, client

        KEPT = []

        @pytest.mark.bedrock_length(max_tokens=100)
        def test_reads_two_events_and_keeps_the_stream():
            stream = iter(client().converse_stream(modelId="{MODEL}", messages=MESSAGES)["stream"])
            next(stream), next(stream)
            KEPT.append(stream)  # neither finished nor closed: an async for that broke off, say
        """,
    )
    result = bedrock_pytester.run()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*every Bedrock call of the test was abandoned*: ConverseStream to "
            f"{MODEL} abandoned after 1 tokens (unfinished when the test ended)*"
        ]
    )
