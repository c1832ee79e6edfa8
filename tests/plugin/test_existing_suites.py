"""Markers on a suite that calls Bedrock through its own application code.

The suites written here never import pytest-bedrock-latency: they use the support bot
(``support_bot``), whose boto3 clients the plugin did not create, and gain latency and
length gates by adding markers.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support_bot.testing import (
    BASE,
    CONCISE,
    FOUR_PAIRS,
    VERBOSE,
    isolate_environment,
    load_report,
    report_tests,
    write_suite,
)

from pytest_bedrock_latency.emulator import Emulator


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_environment(monkeypatch, tmp_path, SUPPORT_BOT_MODEL_ID=CONCISE)


APP_SUITE = """
    import pytest
    import support_bot

    QUESTION = "How do I reset my password?"


    @pytest.mark.bedrock_latency(max_ms_per_token=50, max_ttft_ms=1000)
    @pytest.mark.bedrock_length(max_tokens=200)
    def test_streamed_answer_is_fast_and_short():
        client = support_bot.make_client()
        answer = support_bot.stream_answer(client, QUESTION)
        assert answer.text and answer.stop_reason == "end_turn"


    @pytest.mark.bedrock_length(max_tokens=5)
    def test_wordy_answer_fails_the_length_gate():
        support_bot.answer(support_bot.make_session_client(), QUESTION)


    @pytest.mark.bedrock_length(min_tokens=1)
    def test_calls_are_listed(bedrock_calls):
        client = support_bot.make_client()
        support_bot.stream_answer(client, QUESTION)
        support_bot.answer(client, QUESTION)
        support_bot.invoke_answer(client, QUESTION)
        assert [(c.operation, c.model_id) for c in bedrock_calls] == [
            ("ConverseStream", support_bot.model_id()),
            ("Converse", support_bot.model_id()),
            ("InvokeModel", support_bot.model_id()),
        ]
        assert all(c.output_tokens for c in bedrock_calls)
        assert bedrock_calls[0].ttft_ms is not None and bedrock_calls[1].ttft_ms is None


    def test_unmarked_app_test_still_works():
        assert support_bot.stream_answer(support_bot.make_client(), QUESTION).text
"""


def test_markers_gate_a_suite_that_never_imports_the_plugin(pytester: pytest.Pytester) -> None:
    write_suite(pytester, APP_SUITE)
    assert "pytest_bedrock_latency" not in (pytester.path / "test_app.py").read_text()
    result = pytester.runpytest("--bedrock-report", "report.json")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(
        ["bedrock_length: output tokens max * > 5 allowed (model support-concise, 1 of 1 answers)"]
    )
    tests = report_tests(load_report(pytester.path / "report.json"))
    assert set(tests) == {
        "test_streamed_answer_is_fast_and_short",
        "test_wordy_answer_fails_the_length_gate",
        "test_calls_are_listed",
    }
    streamed = tests["test_streamed_answer_is_fast_and_short"]
    assert [c["operation"] for c in streamed["calls"]] == ["ConverseStream"]
    assert streamed["calls"][0]["model_id"] == CONCISE
    assert 10 < streamed["calls"][0]["ttft_ms"] < 1000
    assert tests["test_wordy_answer_fails_the_length_gate"]["outcome"] == "failed"
    assert [c["operation"] for c in tests["test_calls_are_listed"]["calls"]] == [
        "ConverseStream",
        "Converse",
        "InvokeModel",
    ]


# -- the application receives exactly what it would receive without the plugin ------------------
RECORDING_CONFTEST = """
    import json
    import os

    import pytest

    from pytest_bedrock_latency.emulator import Emulator

    _saved = {}


    def pytest_configure(config):
        # Without the plugin (-p no:bedrock_latency) the suite brings its own emulator, with the
        # same profiles, so both runs get the same answers.
        if config.pluginmanager.has_plugin("bedrock_latency"):
            return
        emulator = Emulator(profiles=os.path.join(str(config.rootpath), "profiles.toml")).start()
        config.stash[KEY] = emulator
        for name, value in {"AWS_ENDPOINT_URL_BEDROCK_RUNTIME": emulator.url, "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
                            "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
            _saved[name] = os.environ.get(name)
            os.environ[name] = value


    def pytest_unconfigure(config):
        emulator = config.stash.get(KEY, None)
        if emulator is not None:
            emulator.stop()
        for name, value in _saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


    KEY = pytest.StashKey()


    def _normal(event):
        # The only field that differs from run to run: the server's own latency figure.
        event = json.loads(json.dumps(event))
        event.get("metadata", {}).pop("metrics", None)
        return event


    @pytest.fixture
    def received(request):
        # What the application got back, written for the outer test to compare.
        out = {}
        yield out
        path = os.path.join(os.environ["RECEIVED_DIR"], request.node.name + ".json")
        for answer in out.values():
            answer["events"] = [_normal(e) for e in answer["events"]]
        with open(path, "w") as handle:
            json.dump(out, handle, sort_keys=True)
"""

TRANSPARENCY_SUITE = """
    import dataclasses
    from concurrent.futures import ThreadPoolExecutor

    import pytest
    import support_bot
    from botocore.eventstream import EventStream

    QUESTION = "My parcel has not arrived, what can I do?"


    def keep(answer):
        data = dataclasses.asdict(answer)
        del data["stream_type"]  # the class of the stream may differ; isinstance must not
        return data


    @pytest.mark.bedrock_latency(max_ms_per_token=50)
    def test_stream_with_client_made_in_test(received):
        answer = support_bot.stream_answer(support_bot.make_client(), QUESTION)
        assert answer.stream_is_event_stream
        received["stream"] = keep(answer)


    @pytest.mark.bedrock_length(max_tokens=200)
    def test_stream_with_session_client(received):
        received["stream"] = keep(support_bot.stream_answer(support_bot.make_session_client(), "Where is my refund?"))


    @pytest.mark.bedrock_length(max_tokens=200)
    def test_converse_and_invoke(received):
        client = support_bot.make_client()
        received["converse"] = keep(support_bot.answer(client, QUESTION))
        received["invoke"] = keep(support_bot.invoke_answer(client, QUESTION))


    @pytest.mark.bedrock_latency(max_ttft_ms=1000)
    def test_preview_breaks_early_and_closes(received):
        client = support_bot.make_client()
        preview = support_bot.first_words(client, QUESTION, 3)
        assert preview.text.count(" ") == 2
        received["preview"] = keep(preview)
        received["full"] = keep(support_bot.stream_answer(client, "And the preview was?"))


    @pytest.mark.bedrock_length(max_tokens=200)
    def test_stream_read_on_worker_threads(received, request):
        client = support_bot.make_client()
        with ThreadPoolExecutor(max_workers=2) as pool:
            hopped = support_bot.stream_in_background(pool, client, QUESTION)
            whole = pool.submit(support_bot.stream_answer, client, "Can I pay by invoice?")
            received["hopped"] = keep(hopped.result())
            received["whole"] = keep(whole.result())
        if "bedrock_calls" in request.fixturenames or request.config.pluginmanager.has_plugin("bedrock_latency"):
            calls = request.getfixturevalue("bedrock_calls")
            assert len(calls) == 2
            assert sorted(c.output_tokens for c in calls) == sorted(
                [received["hopped"]["output_tokens"], received["whole"]["output_tokens"]])
"""


def test_the_application_receives_exactly_what_it_would_without_the_plugin(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_suite(pytester, TRANSPARENCY_SUITE, conftest=RECORDING_CONFTEST)
    runs = {}
    for label, args in (
        ("plugin", ["--bedrock-report", "report.json", "--bedrock-report-text"]),
        ("no plugin", ["-p", "no:bedrock_latency"]),
    ):
        directory = pytester.path / label.replace(" ", "-")
        directory.mkdir()
        monkeypatch.setenv("RECEIVED_DIR", str(directory))
        pytester.runpytest(*args).assert_outcomes(passed=5)
        runs[label] = {path.stem: json.loads(path.read_text()) for path in directory.glob("*.json")}
    assert len(runs["plugin"]) == 5
    assert runs["plugin"] == runs["no plugin"]

    # And what the plugin measured is what the application read.
    tests = report_tests(load_report(pytester.path / "report.json"))
    received = runs["plugin"]
    stream = tests["test_stream_with_client_made_in_test"]["calls"]
    assert [(c["operation"], c["text"], c["output_tokens"]) for c in stream] == [
        (
            "ConverseStream",
            received["test_stream_with_client_made_in_test"]["stream"]["text"],
            received["test_stream_with_client_made_in_test"]["stream"]["output_tokens"],
        )
    ]
    both = tests["test_converse_and_invoke"]["calls"]
    assert [(c["operation"], c["text"]) for c in both] == [
        ("Converse", received["test_converse_and_invoke"]["converse"]["text"]),
        ("InvokeModel", received["test_converse_and_invoke"]["invoke"]["text"]),
    ]
    preview = tests["test_preview_breaks_early_and_closes"]
    # The preview was abandoned (closed after 3 deltas): not a complete answer, not a failure.
    assert [c["text"] for c in preview["calls"]] == [
        received["test_preview_breaks_early_and_closes"]["full"]["text"]
    ]
    assert preview["failed_calls"] == 0
    assert len(tests["test_stream_read_on_worker_threads"]["calls"]) == 2


# -- clients created before the plugin is configured; unmarked tests are untouched -----------------
EARLY_CONFTEST = """
    import botocore.client
    import pytest

    # conftest.py is imported before any plugin's pytest_configure: the application's
    # module-level client is created now, pointing wherever the environment says.
    ORIGINAL = botocore.client.BaseClient.__dict__["_make_api_call"]
    import support_bot.shared  # noqa: E402  (creates support_bot.shared.CLIENT)


    @pytest.fixture
    def original():
        return ORIGINAL
"""

EARLY_SUITE = """
    import pytest
    import support_bot
    import support_bot.shared
    from botocore.client import BaseClient
    from botocore.eventstream import EventStream

    QUESTION = "Can I change my delivery address?"


    def test_unmarked_before(original):
        assert BaseClient.__dict__["_make_api_call"] is original
        answer = support_bot.stream_answer(support_bot.shared.CLIENT, QUESTION)
        assert answer.stream_type == "EventStream" and answer.text


    @pytest.mark.bedrock_latency(max_ms_per_token=50)
    @pytest.mark.bedrock_length(max_tokens=200)
    def test_marked(bedrock_calls, original):
        early = support_bot.stream_answer(support_bot.shared.CLIENT, QUESTION)
        now = support_bot.make_client()
        during = support_bot.stream_answer(now, QUESTION)
        session = support_bot.answer(support_bot.make_session_client(), QUESTION)
        assert early.stream_is_event_stream and during.stream_is_event_stream
        assert [(c.operation, c.output_tokens) for c in bedrock_calls] == [
            ("ConverseStream", early.output_tokens), ("ConverseStream", during.output_tokens),
            ("Converse", session.output_tokens)]


    def test_unmarked_after(original):
        assert BaseClient.__dict__["_make_api_call"] is original
        answer = support_bot.stream_answer(support_bot.shared.CLIENT, QUESTION)
        assert answer.text and answer.stream_type == "EventStream"
"""


def test_clients_created_before_the_plugin_is_configured_are_measured(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Not offline: the application's own endpoint, known before pytest starts (as in a real
    # deployment). (Offline, every client goes to the plugin's emulator: test_offline.py.)
    write_suite(pytester, EARLY_SUITE, conftest=EARLY_CONFTEST, emulator=False)
    with Emulator(profiles=pytester.path / "profiles.toml") as outside:
        monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", outside.url)
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        result = pytester.runpytest_subprocess("--bedrock-report", "report.json")
        early_requests = [(r.model_id, r.operation, r.status) for r in outside.requests]
    result.assert_outcomes(passed=3)
    # The early client made three calls (one per test), the marked test two more with clients
    # made then; only the marked test's calls were measured.
    assert (
        sorted(early_requests)
        == [(CONCISE, "Converse", 200)] + [(CONCISE, "ConverseStream", 200)] * 4
    )
    tests = report_tests(load_report(pytester.path / "report.json"))
    assert list(tests) == ["test_marked"]
    assert [c["operation"] for c in tests["test_marked"]["calls"]] == [
        "ConverseStream",
        "ConverseStream",
        "Converse",
    ]


# -- bedrock_regression replays the application's requests on the base model --------------------
GATE_SUITE = f"""
    import pytest
    import support_bot

    QUESTIONS = ["How do I reset my password?", "Can I return an item after 30 days?"]


    @pytest.mark.bedrock_regression(budget=10, max_slowdown=2, max_ttft_slowdown=2)
    def test_release_gate():
        client = support_bot.make_client()
        for question in QUESTIONS:
            support_bot.stream_answer(client, question)


    def test_the_gate_replayed_the_app_requests_on_the_base(bedrock_emulator):
        requests = bedrock_emulator.requests
        candidate = [r for r in requests if r.model_id == support_bot.model_id()]
        base = [r for r in requests if r.model_id == "{BASE}"]
        assert {{r.model_id for r in requests}} == {{support_bot.model_id(), "{BASE}"}}
        # The same two prompts (system prompt and inference settings included), same operation.
        assert {{r.prompt_sha for r in base}} == {{r.prompt_sha for r in candidate}}
        assert len({{r.prompt_sha for r in base}}) == 2
        assert {{r.operation for r in base}} == {{"ConverseStream"}}
        # Every replay to the base has its twin to the candidate (plus the test's own 2 calls).
        assert len(candidate) == len(base) + 2
"""


@pytest.mark.parametrize(
    ("candidate", "passes"),
    [(CONCISE, True), (VERBOSE, False)],
    ids=["good-fine-tune", "verbose-fine-tune"],
)
def test_regression_gate_replays_the_app_requests_with_the_model_swapped(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, candidate: str, passes: bool
) -> None:
    monkeypatch.setenv("SUPPORT_BOT_MODEL_ID", candidate)
    write_suite(pytester, GATE_SUITE, ini=FOUR_PAIRS)
    result = pytester.runpytest("--bedrock-baseline", BASE, "--bedrock-report", "report.json")
    result.assert_outcomes(passed=2 if passes else 1, failed=0 if passes else 1)
    if not passes:
        result.stdout.fnmatch_lines(
            [
                "bedrock_regression: candidate support-verbose is more verbose*than "
                "amazon.titan-text-express-v1"
            ]
        )
    gate = report_tests(load_report(pytester.path / "report.json"))["test_release_gate"][
        "regression"
    ]
    assert (gate["candidate"], gate["base"], gate["base_source"]) == (
        candidate,
        BASE,
        "--bedrock-baseline",
    )
    assert len(gate["pairs"]) >= 5
    verbosity = next(m for m in gate["metrics"] if m["key"] == "output_tokens")
    assert verbosity["verdict"] == ("pass" if passes else "fail")
