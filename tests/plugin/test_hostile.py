"""A hostile user's inputs and faults: each one a clear line, never a traceback, a hang or a lost file.

Every test names the case it stands for, asserts the exit status and the one line that
explains it, and, where files are involved, that what the user stored is intact after.
In-process runs use ``bedrock_pytester`` (tests/conftest.py); the concurrent-writers and
Ctrl-C cases run pytest in subprocesses started with ``sys.executable``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from support_bot.testing import FOUR_PAIRS

if TYPE_CHECKING:  # the fixture's class, from tests/conftest.py
    from conftest import BedrockPytester

BASE = "amazon.titan-text-express-v1"
CANDIDATE = "arn:aws:bedrock:us-east-1:123456789012:custom-model/verbose"
SAME = "arn:aws:bedrock:us-east-1:123456789012:custom-model/same"  # passes its gate

#: A gate between a custom model and its base, quick and decided in a few pairs.
GATE_PROFILES = f"""\
[defaults]
family = "titan"
ttft_ms = 5
ms_per_token = 0.5
answer_tokens = 20
jitter = 0.0
prompt_spread = 0.0
answer_tokens_spread = 0.0

[models."{BASE}"]

[models."{CANDIDATE}"]
like = "{BASE}"
answer_tokens = 60

[models."{SAME}"]
like = "{BASE}"

[models."amazon.nova-lite-v1:0"]
family = "nova"
"""

GATED = """
import pytest

@pytest.mark.bedrock_regression(budget=5)
def test_gate{suffix}(bedrock_model):
    bedrock_model.converse("How do I reset my password{suffix}?")
"""

ONE_CALL = """
def test_one(bedrock_model):
    bedrock_model.converse("Hi")
"""


def usage_error(result: pytest.RunResult, line: str) -> None:
    """Exit 4 before the session starts, with ``line`` (fnmatch) on stderr, no traceback."""
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str() + result.stderr.str()
    assert "test session starts" not in result.stdout.str()
    result.stderr.fnmatch_lines([f"ERROR: {line}"])
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


def no_traceback(result: pytest.RunResult) -> None:
    output = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in output and "INTERNALERROR" not in output, output


def gate_suite(bedrock_pytester: BedrockPytester) -> None:
    bedrock_pytester.profiles(GATE_PROFILES)
    # The gates here are about files and messages, not the draw.
    bedrock_pytester.pytester.makeini(f"[pytest]\nbedrock_baseline = {BASE}\n{FOUR_PAIRS}")


# -- output paths that are knowably wrong: usage errors before any paid call ------------------------
def test_report_on_a_directory_is_a_usage_error(bedrock_pytester: BedrockPytester) -> None:
    bedrock_pytester.makepyfile(test_one=ONE_CALL)
    (bedrock_pytester.path / "out").mkdir()
    result = bedrock_pytester.run("--bedrock-report", "out")
    usage_error(result, "--bedrock-report */out is a directory; name a file")


def test_report_under_a_file_is_a_usage_error(bedrock_pytester: BedrockPytester) -> None:
    bedrock_pytester.makepyfile(test_one=ONE_CALL)
    (bedrock_pytester.path / "file").write_text("x")
    result = bedrock_pytester.run("--bedrock-report", "file/sub/report.json")
    usage_error(
        result,
        "--bedrock-report */file/sub/report.json cannot be written: its parent */file is a file, "
        "not a directory",
    )


def test_recorded_profiles_on_a_directory_or_over_the_replayed_ones_are_usage_errors(
    bedrock_pytester: BedrockPytester,
) -> None:
    # Checked before any test runs: a whole session of recorded calls would be lost at its end.
    bedrock_pytester.makepyfile(test_one=ONE_CALL)
    (bedrock_pytester.path / "recorded").mkdir()
    result = bedrock_pytester.run("--bedrock-record-profiles", "recorded")
    usage_error(result, "--bedrock-record-profiles */recorded is a directory; name a file")
    before = (bedrock_pytester.path / "profiles.toml").read_bytes()
    result = bedrock_pytester.run("--bedrock-record-profiles", "profiles.toml")
    usage_error(
        result,
        "--bedrock-record-profiles */profiles.toml would overwrite the --bedrock-emulator-profiles "
        "file; name another path",
    )
    assert (bedrock_pytester.path / "profiles.toml").read_bytes() == before


def test_plot_on_a_file_is_a_usage_error(bedrock_pytester: BedrockPytester) -> None:
    bedrock_pytester.makepyfile(test_one=ONE_CALL)
    (bedrock_pytester.path / "plots").write_text("x")
    result = bedrock_pytester.run("--bedrock-plot", "plots")
    usage_error(result, "--bedrock-plot */plots is a file; name a directory")


def test_report_on_the_baseline_file_is_a_usage_error_and_the_baseline_stays(
    bedrock_pytester: BedrockPytester,
) -> None:
    bedrock_pytester.makepyfile(test_one=ONE_CALL)
    baseline = bedrock_pytester.path / ".bedrock-baseline.json"
    baseline.write_text('{"plugin": "pytest-bedrock-latency", "schema_version": 1, "tests": {}}\n')
    before = baseline.read_bytes()
    result = bedrock_pytester.run("--bedrock-report", ".bedrock-baseline.json")
    usage_error(
        result,
        "--bedrock-report */.bedrock-baseline.json would overwrite the --bedrock-baseline-file "
        "file; name another path",
    )
    assert baseline.read_bytes() == before


def test_report_on_the_junit_file_is_a_usage_error(bedrock_pytester: BedrockPytester) -> None:
    bedrock_pytester.makepyfile(test_one=ONE_CALL)
    result = bedrock_pytester.run("--bedrock-report", "out.xml", "--junitxml", "out.xml")
    usage_error(
        result, "--bedrock-report and --junitxml are the same path (*out.xml); give each its own"
    )


def test_report_on_the_profiles_file_is_a_usage_error(bedrock_pytester: BedrockPytester) -> None:
    bedrock_pytester.makepyfile(test_one=ONE_CALL)
    before = (bedrock_pytester.path / "profiles.toml").read_bytes()
    result = bedrock_pytester.run("--bedrock-report", "profiles.toml")
    usage_error(result, "*would overwrite the --bedrock-emulator-profiles file; name another path")
    assert (bedrock_pytester.path / "profiles.toml").read_bytes() == before


@pytest.mark.skipif(
    sys.platform == "win32" or os.geteuid() == 0, reason="root writes read-only directories"
)
def test_read_only_baseline_directory_is_a_usage_error_before_recording(
    bedrock_pytester: BedrockPytester,
) -> None:
    gate_suite(bedrock_pytester)
    bedrock_pytester.makepyfile(test_gate=GATED.format(suffix=""))
    locked = bedrock_pytester.path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        result = bedrock_pytester.run(
            "--bedrock-update-baseline",
            "--bedrock-baseline-file",
            "locked/b.json",
            model=CANDIDATE,
        )
    finally:
        locked.chmod(0o755)
    usage_error(result, "*b.json cannot be written: the directory */locked is not writable")


# -- session end: each output on its own ---------------------------------------------------------------
BREAKS_OUTPUTS = """
import os
from pathlib import Path

import pytest

@pytest.mark.bedrock_regression(budget=5, max_slowdown=5, max_ttft_slowdown=5)
def test_gate(bedrock_model):
    bedrock_model.converse("How do I reset my password?")
    # The run's outputs turn unwritable while it runs: a directory where a file goes.
    os.mkdir("report.json")
    os.mkdir(os.environ["GITHUB_STEP_SUMMARY"])
    Path("plots").write_text("a file where the plots directory goes")
"""


@pytest.mark.usefixtures("matplotlib_loaded")  # the inner run imports it to draw
def test_an_unwritable_output_is_one_line_and_the_others_are_written(
    bedrock_pytester: BedrockPytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate_suite(bedrock_pytester)
    summary = bedrock_pytester.path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    bedrock_pytester.makepyfile(test_gate=BREAKS_OUTPUTS)
    result = bedrock_pytester.run(
        "--bedrock-update-baseline",
        "--bedrock-report",
        "report.json",
        "--junitxml",
        "junit.xml",
        "--bedrock-plot",
        "plots",
        model=SAME,
    )
    no_traceback(result)
    result.assert_outcomes(passed=1)
    if importlib.util.find_spec("matplotlib") is not None:
        result.stdout.fnmatch_lines(["bedrock: the plots in */plots cannot be written: *"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # the test passed; an output did not
    result.stdout.fnmatch_lines(
        [
            "bedrock: the JSON report */report.json (--bedrock-report) cannot be written: Is a "
            "directory; the other outputs were written",
            "bedrock: the step summary */summary.md (GITHUB_STEP_SUMMARY) cannot be written: Is a "
            "directory*",
        ]
    )
    result.stdout.fnmatch_lines(["bedrock: base samples recorded in */.bedrock-baseline.json"])
    result.stdout.fnmatch_lines(["*generated xml file: *junit.xml*", "*1 passed*"])
    stored = json.loads((bedrock_pytester.path / ".bedrock-baseline.json").read_text())
    assert list(stored["tests"]) == ["test_gate.py::test_gate"]
    assert (bedrock_pytester.path / "junit.xml").is_file()


BREAKS_BASELINE = """
import os

import pytest

@pytest.mark.bedrock_regression(budget=5, max_slowdown=5, max_ttft_slowdown=5)
def test_gate(bedrock_model):
    bedrock_model.converse("How do I reset my password?")
    os.mkdir(".bedrock-baseline.json")  # the baseline cannot be written at the end
"""


def test_a_baseline_that_cannot_be_written_fails_the_run_and_the_report_is_written(
    bedrock_pytester: BedrockPytester,
) -> None:
    gate_suite(bedrock_pytester)
    bedrock_pytester.makepyfile(test_gate=BREAKS_BASELINE)
    result = bedrock_pytester.run(
        "--bedrock-update-baseline", "--bedrock-report", "report.json", model=SAME
    )
    no_traceback(result)
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # a recording job must not go green
    result.stdout.fnmatch_lines(
        ["bedrock: Baseline file '*.bedrock-baseline.json': cannot be written (Is a directory); *"]
    )
    report = bedrock_pytester.json("report.json")
    assert [t["nodeid"] for t in report["tests"]] == ["test_gate.py::test_gate"]


# -- the baseline file: concurrent writers, killed writes, pruning, hostile content -----------------
def test_deeply_nested_baseline_is_a_usage_error_and_stays(
    bedrock_pytester: BedrockPytester,
) -> None:
    bedrock_pytester.makepyfile(test_one=ONE_CALL)
    baseline = bedrock_pytester.path / ".bedrock-baseline.json"
    baseline.write_text('{"tests": ' + "[" * 50_000 + "]" * 50_000 + "}")
    before = baseline.read_bytes()
    result = bedrock_pytester.run("--bedrock-update-baseline")
    usage_error(result, "Baseline file '*.bedrock-baseline.json': is nested too deeply*")
    assert baseline.read_bytes() == before


def test_a_killed_writes_temporary_file_is_removed_by_the_next_recording(
    bedrock_pytester: BedrockPytester,
) -> None:
    gate_suite(bedrock_pytester)
    bedrock_pytester.makepyfile(test_gate=GATED.format(suffix=""))
    stale = bedrock_pytester.path / ".bedrock-baseline.json.k1ll3d.tmp"
    stale.write_text('{"half": ')  # what a SIGKILL between write and rename leaves
    result = bedrock_pytester.run("--bedrock-update-baseline", model=CANDIDATE)
    result.stdout.fnmatch_lines(["bedrock: base samples recorded in *"])
    assert not stale.exists()
    assert [p.name for p in bedrock_pytester.path.glob(".bedrock-baseline.json*.tmp")] == []


def test_a_killed_report_writes_temporary_file_is_removed_by_the_next_report(
    bedrock_pytester: BedrockPytester,
) -> None:
    bedrock_pytester.makepyfile(test_one=ONE_CALL)
    stale = bedrock_pytester.path / ".report.json.k1ll3d.tmp"
    stale.write_text('{"half": ')  # what a SIGKILL between write and rename leaves
    an_hour_ago = time.time() - 3600  # a live writer's temporary file is milliseconds old
    os.utime(stale, (an_hour_ago, an_hour_ago))
    result = bedrock_pytester.run("--bedrock-report", "report.json")
    result.assert_outcomes(passed=1)
    assert not stale.exists()
    assert len(bedrock_pytester.json("report.json")["tests"]) == 1
    assert [p.name for p in bedrock_pytester.path.glob(".report.json*.tmp")] == []


PARAMETRISED_GATE = """
import pytest

@pytest.mark.bedrock_regression(budget=5)
@pytest.mark.parametrize("question", {questions!r})
def test_gate(bedrock_model, question):
    bedrock_model.converse(question)
"""


def test_re_recording_prunes_what_the_message_says(bedrock_pytester: BedrockPytester) -> None:
    gate_suite(bedrock_pytester)
    path = bedrock_pytester.path / ".bedrock-baseline.json"
    # One test, its prompt then edited: the old prompt's entry is stale.
    bedrock_pytester.makepyfile(test_gate=GATED.format(suffix=""))
    bedrock_pytester.run("--bedrock-update-baseline", model=CANDIDATE).assert_outcomes(failed=1)
    bedrock_pytester.makepyfile(test_other=GATED.format(suffix="_other"))
    bedrock_pytester.run(
        "--bedrock-update-baseline", "test_other.py", model=CANDIDATE
    ).assert_outcomes(failed=1)
    (bedrock_pytester.path / "test_gate.py").write_text(
        GATED.format(suffix="").replace("my password", "my e-mail")
    )
    result = bedrock_pytester.run("--bedrock-update-baseline", "test_gate.py", model=CANDIDATE)
    result.stdout.fnmatch_lines(
        [
            "bedrock: base samples recorded in * (1 stale entry of re-recorded tests pruned)",
            "bedrock: 1 stored baseline entry in .bedrock-baseline.json belong to tests this run "
            "did not record (e.g. test_other.py::test_gate_other); they are kept: delete them from "
            "the "
            "file by hand if those tests are gone",
        ]
    )
    tests = json.loads(path.read_text())["tests"]
    assert sorted(tests) == ["test_gate.py::test_gate", "test_other.py::test_gate_other"]
    assert len(tests["test_gate.py::test_gate"]) == 1  # the edited prompt's entry only
    # Without --bedrock-update-baseline the message says what prunes and what does not.
    result = bedrock_pytester.run("test_gate.py", model=CANDIDATE)
    result.stdout.fnmatch_lines(
        [
            "bedrock: 1 stored baseline entry in .bedrock-baseline.json no test used (e.g. "
            "test_other.py::test_gate_other); --bedrock-update-baseline prunes the stale entries "
            "of the tests it re-records; entries of tests that no longer exist are deleted by hand"
        ]
    )


def _subprocess_environ(directory: Path) -> dict[str, str]:
    """This environment without the host's AWS settings, for a pytest subprocess."""
    environ = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "BEDROCK_", "PYTEST_XDIST", "GITHUB_"))
        and k != "PYTEST_CURRENT_TEST"
    }
    environ.update(
        AWS_CONFIG_FILE=str(directory / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(directory / "no-aws-credentials"),
        AWS_EC2_METADATA_DISABLED="true",
        PYTHONUNBUFFERED="1",
    )
    return environ


def _default_sigint() -> None:
    # A job started in the background by a non-interactive shell (a CI script's `cmd &`, nohup)
    # inherits SIGINT ignored, and Python then never installs its KeyboardInterrupt handler:
    # give the child the disposition a terminal's Ctrl-C meets.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _pytest(directory: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=directory,
        env=_subprocess_environ(directory),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=_default_sigint if sys.platform != "win32" else None,
    )


# Both runs wait for each other just before the session's files are written, so their
# read-merge-replace of the baseline overlaps; a big file makes the window wide.
MEET_AT_THE_END = """
import os
import time
from pathlib import Path

import pytest

@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_sessionfinish(session):
    me = os.environ["WRITER"]
    Path(f"ready-{me}").touch()
    deadline = time.monotonic() + 60
    while len(list(Path().glob("ready-*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    return (yield)
"""


def test_two_recording_runs_at_once_keep_both_entries(tmp_path: Path) -> None:
    (tmp_path / "profiles.toml").write_text(GATE_PROFILES)
    (tmp_path / "pytest.ini").write_text(
        f"[pytest]\nbedrock_emulator = true\nbedrock_emulator_profiles = profiles.toml\n"
        f"bedrock_baseline = {BASE}\n{FOUR_PAIRS}"
    )
    (tmp_path / "conftest.py").write_text(MEET_AT_THE_END)
    (tmp_path / "test_a.py").write_text(GATED.format(suffix="_a"))
    (tmp_path / "test_b.py").write_text(GATED.format(suffix="_b"))
    # A big reviewed file already (thousands of entries): each write takes a while.
    entry = {
        "model_id": BASE,
        "operation": "ConverseStream",
        "performance_latency": None,
        "plugin_version": "0.1.0",
        "recorded_at": 1.0,
        "region": "us-east-1",
        "samples": [
            {
                "ms_per_token": 1.0,
                "output_tokens": 20,
                "recorded_at": 1.0,
                "stop_reason": "end_turn",
                "ttft_ms": 5.0,
            }
        ]
        * 5,
    }
    old = {f"tests/test_old.py::test_{i}": {f"{i:016x}": entry} for i in range(4000)}
    baseline = tmp_path / ".bedrock-baseline.json"
    baseline.write_text(
        json.dumps({"plugin": "pytest-bedrock-latency", "schema_version": 1, "tests": old})
    )
    runs = []
    for writer, test in (("a", "test_a.py"), ("b", "test_b.py")):
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pytest",
                "-p",
                "no:cacheprovider",
                "--bedrock-update-baseline",
                "--bedrock-model",
                CANDIDATE,
                test,
            ],
            cwd=tmp_path,
            env={**_subprocess_environ(tmp_path), "WRITER": writer},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        runs.append(process)
    outputs = [process.communicate(timeout=180)[0] for process in runs]
    for output in outputs:
        assert "bedrock: base samples recorded in" in output, output
    tests = json.loads(baseline.read_text())["tests"]
    assert {"test_a.py::test_gate_a", "test_b.py::test_gate_b"} <= set(tests)
    assert len(tests) == 4002  # and every entry that was there
    assert [p.name for p in tmp_path.glob(".bedrock-baseline.json*.tmp")] == []


# -- Ctrl-C ---------------------------------------------------------------------------------------------
# The slow gate never decides (identical models, a huge budget) and is interrupted. Each call
# takes about 1.2 s, so pairs queued up front (as a pool would) would hold the exit for many
# seconds after Ctrl-C; pairs drawn lazily in daemon threads do not. (The model of the test
# that finishes first answers at once: its result only has to be there.)
SLOW_PROFILES = f"""\
[defaults]
family = "titan"
ttft_ms = 30
ms_per_token = 12
answer_tokens = 100
jitter = 0.3
prompt_spread = 0.0
answer_tokens_spread = 0.3

[models."{BASE}"]

[models."{CANDIDATE}"]
like = "{BASE}"

[models."amazon.nova-lite-v1:0"]
family = "nova"
ttft_ms = 5
ms_per_token = 0.5
answer_tokens = 10
"""

# The gate's test touches "gate-started" when its body is done, and "warmed-up" as soon as
# the emulator has answered the gate's warm-up pair (the base's first call and the
# candidate's second): the run is then inside the first look's pairs.
INTERRUPTED = f"""
import threading
import time
from pathlib import Path

import pytest

def test_first(bedrock_model):
    bedrock_model.with_model("amazon.nova-lite-v1:0").converse("Hello")

def warmed_up(emulator):
    models = [r.model_id for r in emulator.requests]
    return models.count("{BASE}") >= 1 and models.count("{CANDIDATE}") >= 2

@pytest.mark.bedrock_regression(budget=1000, max_slowdown=1.001, max_verbosity=1.001, max_ttft_slowdown=1.001)
def test_gate(bedrock_model, bedrock_emulator):
    bedrock_model.converse("How do I reset my password?")

    def watch():
        while not warmed_up(bedrock_emulator):
            time.sleep(0.01)
        Path("warmed-up").touch()

    threading.Thread(target=watch, daemon=True).start()
    Path("gate-started").touch()
"""


def _interrupt_when(process: subprocess.Popen[str], flag: Path, after: float = 0.0) -> float:
    deadline = time.monotonic() + 60
    while not flag.exists():
        assert process.poll() is None, process.communicate()[0]
        assert time.monotonic() < deadline, f"no {flag.name} within 60 s"
        time.sleep(0.01)
    time.sleep(after)
    process.send_signal(signal.SIGINT)
    return time.monotonic()


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process")
@pytest.mark.long_running
def test_ctrl_c_ends_a_gate_at_once_and_the_session_writes_what_it_has(tmp_path: Path) -> None:
    (tmp_path / "profiles.toml").write_text(SLOW_PROFILES)
    (tmp_path / "pytest.ini").write_text(
        f"[pytest]\nbedrock_emulator = true\nbedrock_emulator_profiles = profiles.toml\n"
        f"bedrock_baseline = {BASE}\nbedrock_concurrency = 1\n"
    )
    (tmp_path / "test_interrupted.py").write_text(INTERRUPTED)
    process = _pytest(
        tmp_path,
        "--bedrock-model",
        CANDIDATE,
        "--bedrock-report",
        "report.json",
        "--junitxml",
        "junit.xml",
    )
    # Past the warm-up pair (about 2.4 s), inside the first look's six pairs, one at a time:
    # a pool would finish the pairs queued for the look (about 12 s more) before the run ends.
    sent = _interrupt_when(process, tmp_path / "warmed-up")
    output = process.communicate(timeout=60)[0]
    took = time.monotonic() - sent
    assert process.returncode == pytest.ExitCode.INTERRUPTED, output
    # About a second (benchmarks/interrupt.py); wide margin for a loaded machine.
    assert took < 7, f"{took:.1f}s after Ctrl-C\n{output}"
    assert "KeyboardInterrupt" in output and "INTERNALERROR" not in output
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["interrupted"] is True
    assert [t["nodeid"] for t in report["tests"]] == ["test_interrupted.py::test_first"]
    assert "bedrock: JSON report written to" in output and "(interrupted: partial)" in output
    assert (tmp_path / "junit.xml").is_file()


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process")
def test_ctrl_c_before_any_result_does_not_leave_the_previous_report(tmp_path: Path) -> None:
    (tmp_path / "profiles.toml").write_text(SLOW_PROFILES)
    (tmp_path / "pytest.ini").write_text(
        f"[pytest]\nbedrock_emulator = true\nbedrock_emulator_profiles = profiles.toml\n"
        f"bedrock_baseline = {BASE}\n"
    )
    (tmp_path / "test_interrupted.py").write_text(INTERRUPTED)
    (tmp_path / "report.json").write_text('{"previous": "run"}')
    baseline = tmp_path / ".bedrock-baseline.json"
    baseline.write_text('{"plugin": "pytest-bedrock-latency", "schema_version": 1, "tests": {}}\n')
    before = baseline.read_bytes()
    process = _pytest(
        tmp_path,
        "--bedrock-model",
        CANDIDATE,
        "--bedrock-report",
        "report.json",
        "--bedrock-update-baseline",
        "test_interrupted.py::test_gate",
    )
    # In the gate's warm-up pair, before any test has a result.
    _interrupt_when(process, tmp_path / "gate-started", after=0.2)
    output = process.communicate(timeout=60)[0]
    assert process.returncode == pytest.ExitCode.INTERRUPTED, output
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["interrupted"] is True and report["tests"] == []
    assert baseline.read_bytes() == before  # nothing finished: nothing recorded, nothing lost


# -- markers: the closest wins, duplicates are errors, None is an error ---------------------------
def test_a_param_marker_beats_the_functions(bedrock_pytester: BedrockPytester) -> None:
    bedrock_pytester.makepyfile(
        test_param="""
        import pytest

        @pytest.mark.bedrock_length(max_tokens=1000)
        @pytest.mark.parametrize(
            "question",
            ["Hi", pytest.param("Hello", marks=pytest.mark.bedrock_length(max_tokens=1), id="tight")],
        )
        def test_answer(bedrock_model, question):
            bedrock_model.converse(question)
        """
    )
    result = bedrock_pytester.run()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["FAILED test_param.py::test_answer[[]tight[]]*"])


def test_the_functions_marker_beats_the_class_and_the_modules(
    bedrock_pytester: BedrockPytester,
) -> None:
    bedrock_pytester.makepyfile(
        test_levels="""
        import pytest

        pytestmark = pytest.mark.bedrock_length(max_tokens=1)

        class TestLevels:
            pytestmark = pytest.mark.bedrock_length(max_tokens=2)

            @pytest.mark.bedrock_length(max_tokens=1000)
            def test_function_wins(self, bedrock_model):
                bedrock_model.converse("Hi")

            def test_class_wins(self, bedrock_model):
                bedrock_model.converse("Hi")

        def test_module_applies(bedrock_model):
            bedrock_model.converse("Hi")
        """
    )
    result = bedrock_pytester.run("--bedrock-report", "report.json")
    result.assert_outcomes(passed=1, failed=2)
    bounds = {
        t["nodeid"].rsplit("::", 1)[1]: t["bounds"]["bedrock_length"]["max_tokens"]
        for t in bedrock_pytester.json("report.json")["tests"]
    }
    assert bounds == {"test_function_wins": 1000, "test_class_wins": 2, "test_module_applies": 1}


def test_a_subclass_marker_beats_its_base_class_marker(bedrock_pytester: BedrockPytester) -> None:
    bedrock_pytester.makepyfile(
        test_inherit="""
        import pytest

        class Base:
            pytestmark = pytest.mark.bedrock_length(max_tokens=1)

        class TestChild(Base):
            pytestmark = [pytest.mark.bedrock_length(max_tokens=1000)]

            def test_child(self, bedrock_model):
                bedrock_model.converse("Hi")

        class TestPlain(Base):
            def test_inherited(self, bedrock_model):
                bedrock_model.converse("Hi")
        """
    )
    result = bedrock_pytester.run()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["FAILED test_inherit.py::TestPlain::test_inherited*"])


@pytest.mark.parametrize(
    ("source", "where"),
    [
        (
            """
            @pytest.mark.bedrock_length(max_tokens=5)
            @pytest.mark.bedrock_length(max_words=3)
            def test_twice(bedrock_model):
                pass
            """,
            "on the function",
        ),
        (
            """
            pytestmark = [pytest.mark.bedrock_length(max_tokens=5), pytest.mark.bedrock_length(max_words=3)]

            def test_twice(bedrock_model):
                pass
            """,
            "on module test_twice.py",
        ),
        (
            """
            @pytest.mark.parametrize("q", [
                pytest.param(1, marks=[pytest.mark.bedrock_length(max_tokens=5), pytest.mark.bedrock_length(max_words=3)]),
            ])
            def test_twice(bedrock_model, q):
                pass
            """,
            "on pytest.param",
        ),
    ],
    ids=["function", "module", "param"],
)
def test_two_markers_of_one_name_at_one_level_are_a_usage_error(
    bedrock_pytester: BedrockPytester, source: str, where: str
) -> None:
    bedrock_pytester.makepyfile(test_twice="import pytest\n" + textwrap.dedent(source))
    result = bedrock_pytester.run()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            f"*test_twice*: @pytest.mark.bedrock_length is given twice {where} "
            "(bedrock_length(*) and bedrock_length(*)); give it once with all its bounds"
        ]
    )
    no_traceback(result)


NONE_TOLERANCE = """
import pytest

@pytest.mark.bedrock_regression({name}=None)
def test_gate(bedrock_model):
    bedrock_model.converse("Hi")
"""


@pytest.mark.parametrize("name", ["max_slowdown", "max_verbosity", "max_ttft_slowdown"])
def test_a_none_tolerance_is_a_usage_error_not_internalerror(
    bedrock_pytester: BedrockPytester, name: str
) -> None:
    bedrock_pytester.makepyfile(test_none=NONE_TOLERANCE.format(name=name))
    result = bedrock_pytester.run()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [f"*@pytest.mark.bedrock_regression: {name} must be a ratio of at least 1.0, got None*"]
    )
    no_traceback(result)


def test_a_none_tolerance_under_xdist_fails_the_test_not_the_controller(
    bedrock_pytester: BedrockPytester,
) -> None:
    pytest.importorskip("xdist")
    bedrock_pytester.makepyfile(test_none=NONE_TOLERANCE.format(name="max_slowdown"))
    result = bedrock_pytester.run("-n", "1")  # one worker is xdist enough: a fresh interpreter less
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*max_slowdown must be a ratio of at least 1.0, got None*"])
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()


# -- numbers outside a sane range --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ("--bedrock-regression-budget", "1000000"),
            "--bedrock-regression-budget: must be at most 1000 pairs, got 1000000",
        ),
        (
            ("--bedrock-timeout", "1e308"),
            "--bedrock-timeout: must be at most 3600 seconds, got 1e308",
        ),
        (
            ("--bedrock-concurrency", "100000"),
            "--bedrock-concurrency: must be at most 1024, got 100000",
        ),
        (
            ("--bedrock-timeout", "inf"),
            "--bedrock-timeout: must be a finite number greater than 0, got inf",
        ),
    ],
    ids=["budget", "timeout", "concurrency", "timeout-inf"],
)
def test_numbers_out_of_range_are_usage_errors(
    bedrock_pytester: BedrockPytester, args: tuple[str, ...], line: str
) -> None:
    bedrock_pytester.makepyfile(test_one=ONE_CALL)
    usage_error(bedrock_pytester.run(*args), line)


def test_a_marker_budget_above_the_bound_is_a_usage_error(
    bedrock_pytester: BedrockPytester,
) -> None:
    bedrock_pytester.makepyfile(
        test_budget=GATED.format(suffix="").replace("budget=5", "budget=1_000_000")
    )
    result = bedrock_pytester.run()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*budget must be at most 1000 pairs, got 1000000*"])


# -- a bad environment ------------------------------------------------------------------------------
def test_a_region_that_is_no_region_is_a_usage_error(
    bedrock_pytester: BedrockPytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_REGION", "not a region")
    bedrock_pytester.makepyfile(test_one=ONE_CALL)
    usage_error(
        bedrock_pytester.run(),
        "environment variable AWS_REGION: 'not a region' is not an AWS region name (e.g. us-east-1)",
    )


def test_a_default_region_that_is_no_region_skips_naming_the_variable(
    bedrock_pytester: BedrockPytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "not a region")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    bedrock_pytester.makepyfile(test_one=ONE_CALL)
    result = bedrock_pytester.run("-rs", emulator=False)
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(
        [
            "SKIPPED*region 'not a region' (from environment variable AWS_DEFAULT_REGION) is not "
            "an AWS region name; set e.g. us-east-1*"
        ]
    )
    no_traceback(result)


def test_an_endpoint_that_is_no_url_is_a_usage_error(
    bedrock_pytester: BedrockPytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "not a url")
    bedrock_pytester.makepyfile(test_one=ONE_CALL)
    usage_error(
        bedrock_pytester.run(emulator=False),
        "environment variable AWS_ENDPOINT_URL_BEDROCK_RUNTIME: 'not a url' is not an http(s) URL*",
    )


@pytest.mark.parametrize("variable", ["AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"])
def test_a_broken_aws_file_with_the_emulator_is_a_usage_error(
    bedrock_pytester: BedrockPytester, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    broken = bedrock_pytester.path / "aws-file"
    broken.write_text("[default\nregion = us-east-1\n")
    monkeypatch.setenv(variable, str(broken))
    bedrock_pytester.makepyfile(test_one=ONE_CALL)
    usage_error(
        bedrock_pytester.run(),
        f"--bedrock-emulator: AWS config file {broken} cannot be parsed: fix it, or point "
        "AWS_CONFIG_FILE / AWS_SHARED_CREDENTIALS_FILE at a valid file",
    )


def test_a_broken_aws_file_without_the_emulator_skips_naming_the_file(
    bedrock_pytester: BedrockPytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = bedrock_pytester.path / "aws-config"
    broken.write_text("not ini at all\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(broken))
    bedrock_pytester.makepyfile(test_one=ONE_CALL)
    result = bedrock_pytester.run("-rs", emulator=False)
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines([f"SKIPPED*AWS config file {broken} cannot be parsed*"])
    no_traceback(result)


def test_an_unknown_profile_with_the_emulator_names_the_profile(
    bedrock_pytester: BedrockPytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_PROFILE", "nope")
    bedrock_pytester.makepyfile(test_one=ONE_CALL)
    result = bedrock_pytester.run()
    usage_error(
        result,
        "--bedrock-emulator: AWS profile 'nope' does not exist (--bedrock-aws-profile / "
        "AWS_PROFILE); name a profile of the AWS config file, or unset it",
    )
    assert "or try --bedrock-emulator" not in result.stderr.str()


def test_a_non_utf8_profile_file_with_the_emulator_is_a_usage_error(
    bedrock_pytester: BedrockPytester,
) -> None:
    (bedrock_pytester.path / "profiles.toml").write_bytes(b'[models."\xff\xfe"]\nfamily = "nova"\n')
    bedrock_pytester.makepyfile(test_one=ONE_CALL)
    result = bedrock_pytester.run()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --bedrock-emulator: *profiles.toml*"])
    no_traceback(result)


def test_a_bad_profile_reached_through_the_fixture_fails_the_test_in_one_line(
    bedrock_pytester: BedrockPytester,
) -> None:
    bedrock_pytester.profiles('[models."m"]\nttft_ms = "fast"\n')
    bedrock_pytester.makepyfile(
        test_fixture="""
        def test_emulator(bedrock_emulator):
            pass
        """
    )
    result = bedrock_pytester.run("--bedrock-emulator-profiles", "profiles.toml", emulator=False)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(['bedrock_emulator: *profiles.toml: model "m": field "ttft_ms"*'])
    no_traceback(result)


def test_the_endpoint_url_ignored_under_the_emulator_is_said(
    bedrock_pytester: BedrockPytester,
) -> None:
    bedrock_pytester.makepyfile(test_one=ONE_CALL)
    result = bedrock_pytester.run("--bedrock-endpoint-url", "https://example.invalid")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "bedrock: the endpoint URL https://example.invalid (--bedrock-endpoint-url / "
            "AWS_ENDPOINT_URL_BEDROCK_RUNTIME) is ignored: --bedrock-emulator sends all Bedrock "
            "traffic to the embedded emulator"
        ]
    )


def test_an_unreachable_emulator_is_not_explained_as_a_missing_profile(
    bedrock_pytester: BedrockPytester,
    monkeypatch: pytest.MonkeyPatch,
    fixed_retry_delay: Callable[[float], Path],
) -> None:
    # The plugin's client retries the refused connection without botocore's random backoff.
    monkeypatch.setenv("AWS_RETRY_MODE", "legacy")
    monkeypatch.setenv("AWS_DATA_PATH", str(fixed_retry_delay(0.001)))
    bedrock_pytester.makepyfile(
        test_gone="""
        def test_gone(bedrock_emulator, bedrock_model):
            bedrock_emulator.stop()
            bedrock_model.converse("Hi")
        """
    )
    result = bedrock_pytester.run()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*Nothing answers at the emulator's address http://*"])
    assert "has no profile for this model" not in result.stdout.str()


FILE_BODY = """
import io
import json

import boto3
import pytest

@pytest.mark.bedrock_regression(budget=5)
def test_file_body():
    body = io.BytesIO(json.dumps({"inputText": "Hi"}).encode())
    boto3.client("bedrock-runtime").invoke_model(modelId="%s", body=body)["body"].read()
"""


def test_a_file_like_invoke_body_in_a_gate_is_a_failed_test_in_one_line(
    bedrock_pytester: BedrockPytester,
) -> None:
    gate_suite(bedrock_pytester)
    bedrock_pytester.makepyfile(test_file_body=FILE_BODY % CANDIDATE)
    result = bedrock_pytester.run(model=CANDIDATE)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "bedrock_regression: the test's request to verbose cannot be replayed: body "
            "is a BytesIO, which cannot be stored or sent again (a file object is read once); *"
            "(body=f.read())"
        ]
    )
    no_traceback(result)


# -- limits hold ------------------------------------------------------------------------------------
def test_the_timeout_holds_for_a_test_that_only_uses_the_fixture(
    bedrock_pytester: BedrockPytester,
) -> None:
    bedrock_pytester.profiles(
        # Each token is quick (no read times out), the whole answer is not: 12 ms x 40.
        "[defaults]\nttft_ms = 10\nms_per_token = 12\nanswer_tokens = 40\njitter = 0.0\n"
        'answer_tokens_spread = 0.0\n[models."amazon.nova-lite-v1:0"]\nfamily = "nova"\n'
    )
    bedrock_pytester.makepyfile(
        test_slow="""
        def test_slow(bedrock_runtime):
            response = bedrock_runtime.converse_stream(
                modelId="amazon.nova-lite-v1:0",
                messages=[{"role": "user", "content": [{"text": "Hi"}]}],
            )
            for _ in response["stream"]:
                pass
        """
    )
    result = bedrock_pytester.run("--bedrock-timeout", "0.3")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["bedrock timeout: 1 call(s) took longer than --bedrock-timeout 0.3s*"]
    )


def test_max_calls_stops_the_plugins_calls_and_reports_the_applications(
    bedrock_pytester: BedrockPytester,
) -> None:
    bedrock_pytester.makepyfile(
        test_calls="""
        import boto3

        def test_handle(bedrock_model):
            bedrock_model.converse("one")
            bedrock_model.converse("two")

        def test_application(bedrock_calls):
            client = boto3.client("bedrock-runtime")
            for _ in range(3):
                client.converse(
                    modelId="amazon.nova-lite-v1:0",
                    messages=[{"role": "user", "content": [{"text": "Hi"}]}],
                )
        """
    )
    result = bedrock_pytester.run("--bedrock-max-calls", "1")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "E   *CallCapReached: --bedrock-max-calls 1 reached: the plugin makes no more Bedrock "
            "calls this session (this was ConverseStream to amazon.nova-lite-v1:0); *",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "bedrock: the session completed 4 Bedrock calls, more than --bedrock-max-calls 1: the "
            "plugin's own calls stop at the cap, calls the tests' code makes with its own clients "
            "are counted but cannot be refused"
        ]
    )


def test_a_capped_gate_reports_no_warm_up_it_did_not_draw(
    bedrock_pytester: BedrockPytester,
) -> None:
    gate_suite(bedrock_pytester)
    bedrock_pytester.makepyfile(test_gate=GATED.format(suffix=""))
    result = bedrock_pytester.run(
        "--bedrock-max-calls", "1", "--bedrock-report", "report.json", model=CANDIDATE
    )
    result.assert_outcomes(failed=1)
    (test,) = bedrock_pytester.json("report.json")["tests"]
    assert test["regression"]["warmup_pairs"] == 0
    assert test["regression"]["pairs"] == []
    assert "0 pairs + 0 warm-up" in result.stdout.str()


# -- messages say what is true ----------------------------------------------------------------------
def test_xfailed_shows_as_xfailed(bedrock_pytester: BedrockPytester) -> None:
    bedrock_pytester.makepyfile(
        test_x="""
        import pytest

        @pytest.mark.xfail(reason="known", strict=True)
        @pytest.mark.bedrock_length(max_tokens=1)
        def test_expected_to_fail(bedrock_model):
            bedrock_model.converse("Hi")
        """
    )
    result = bedrock_pytester.run("--bedrock-report", "report.json")
    result.assert_outcomes(xfailed=1)
    result.stdout.fnmatch_lines(["test_expected_to_fail *xfailed*"])
    (test,) = bedrock_pytester.json("report.json")["tests"]
    assert test["outcome"] == "xfailed"


def test_github_annotation_properties_are_escaped(
    bedrock_pytester: BedrockPytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(bedrock_pytester.path / "summary.md"))
    bedrock_pytester.makepyfile(
        test_escape="""
        import pytest

        @pytest.mark.bedrock_length(max_tokens=1)
        @pytest.mark.parametrize("q", ["a,b:c|d"])
        def test_escape(bedrock_model, q):
            bedrock_model.converse(q)
        """
    )
    result = bedrock_pytester.run()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["::error file=test_escape.py,title=test_escape[[]a%2Cb%3Ac|d[]]::bedrock_length: *"]
    )
    assert "\\|" in (bedrock_pytester.path / "summary.md").read_text()


# -- privacy -----------------------------------------------------------------------------------------
LEAKY = """
def test_leak(bedrock_model):
    answer = bedrock_model.converse("Tell me the secret")
    assert answer.output_tokens < 3
"""


def test_a_failing_assert_on_a_generation_does_not_print_the_answer(
    bedrock_pytester: BedrockPytester,
) -> None:
    bedrock_pytester.makepyfile(test_leak=LEAKY)
    result = bedrock_pytester.run("--junitxml", "junit.xml", "--bedrock-report", "report.json")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*Generation(model_id='amazon.nova-lite-v1:0'*text=<* chars>*"])
    report = bedrock_pytester.json("report.json")
    (call,) = report["tests"][0]["calls"]
    assert "text" not in call
    # The emulator's answers are generated words; none of them reach the terminal or XML.
    junit = (bedrock_pytester.path / "junit.xml").read_text()
    assert "text='" not in result.stdout.str() and "text='" not in junit
    assert "text=&apos;" not in junit


def test_the_answer_shows_with_report_text(bedrock_pytester: BedrockPytester) -> None:
    bedrock_pytester.makepyfile(test_leak=LEAKY)
    result = bedrock_pytester.run("--bedrock-report-text")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*Generation(*text='*"])
