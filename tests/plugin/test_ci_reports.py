"""Reports where CI looks: GitHub step summary and annotations, JUnit XML properties,
pytest-benchmark's storage and ``compare``, ``--bedrock-plot`` pictures, gate progress.

A few pytest runs in subprocesses (module-scoped, so each feeds several tests): ``ci``
with every report switched on as in GitHub Actions, ``plain`` with none, and ``defaults``
relying on the plugin's own wiring, with a regular pytest-benchmark benchmark next to the
Bedrock tests.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from support_bot.testing import (
    BASE,
    CONCISE,
    VERBOSE,
    Run,
    isolated_environ,
    load_report,
    run_suite_in,
)

from pytest_bedrock_latency import plot
from pytest_bedrock_latency.benchmark_bridge import benchmark_entries, series
from pytest_bedrock_latency.results import TestResult

needs_matplotlib = pytest.mark.skipif(
    importlib.util.find_spec("matplotlib") is None,
    reason="matplotlib is not installed (pip install 'pytest-bedrock-latency[plot]')",
)

SUITE = f"""
    import pytest
    import support_bot

    QUESTION = "How do I reset my password?"


    @pytest.mark.bedrock_latency(max_ms_per_token=50, max_ttft_ms=1000)
    def test_fast_enough():
        support_bot.stream_answer(support_bot.make_client(), QUESTION)


    @pytest.mark.bedrock_length(max_tokens=5)
    def test_too_long():
        support_bot.stream_answer(support_bot.make_client(), QUESTION)


    @pytest.mark.bedrock_regression(budget=10, max_slowdown=2, max_ttft_slowdown=2)
    def test_release_gate():
        support_bot.stream_answer(support_bot.make_client(), QUESTION, model="{VERBOSE}")


    def test_fixture_only(bedrock_calls):
        support_bot.answer(support_bot.make_client(), QUESTION)
        assert len(bedrock_calls) == 1


    @pytest.mark.bedrock_length(max_tokens=500)
    def test_app_assertion_fails():
        answer = support_bot.answer(support_bot.make_client(), QUESTION)
        assert "refund" in answer.text, "the answer should mention the refund"


    def test_no_bedrock():
        pass
"""

REGULAR_BENCHMARK = """
    def test_parsing_speed(benchmark):
        benchmark(sum, range(100))
"""

BRIDGE = ["-p", "pytest_bedrock_latency.benchmark_bridge"]
COUNTS = "bedrock output tokens (counts, not seconds)"


def _run(
    factory: pytest.TempPathFactory,
    name: str,
    args: list[str],
    tests: dict[str, str] | None = None,
    **environ: str,
) -> Run:
    directory = factory.mktemp(name)
    env = isolated_environ(directory, SUPPORT_BOT_MODEL_ID=CONCISE, **environ)
    return run_suite_in(
        directory, tests or {"test_app": SUITE}, ["--bedrock-baseline", BASE, *args], env
    )


@pytest.fixture(scope="module")
def ci(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """Everything on, as in a GitHub Actions job; no regular benchmark in the session."""
    summary = tmp_path_factory.mktemp("github") / "step-summary.md"
    summary.write_text("## Unit tests\n\nall green\n")  # what earlier steps wrote stays
    run = _run(
        tmp_path_factory,
        "ci",
        [
            "-v",
            *BRIDGE,
            "--benchmark-autosave",
            "--benchmark-storage=file://bench-storage",
            "--benchmark-json",
            "bench.json",
            "--bedrock-report",
            "report.json",
            "--junitxml",
            "junit.xml",
        ],
        GITHUB_ACTIONS="true",
        GITHUB_STEP_SUMMARY=str(summary),
    )
    assert run.returncode == 1, run.stdout + run.stderr
    assert re.search(r"3 failed, 3 passed", run.stdout), run.stdout
    (run.path / "summary.md").write_text(summary.read_text())
    return run


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Run:
    run = _run(tmp_path_factory, "plain", [*BRIDGE])
    assert re.search(r"3 failed, 3 passed", run.stdout), run.stdout + run.stderr
    return run


# -- GitHub Actions ------------------------------------------------------------------------------
def test_github_step_summary_is_appended(ci: Run) -> None:
    text = (ci.path / "summary.md").read_text()
    assert text.startswith("## Unit tests\n\nall green\n")
    assert "## Bedrock latency" in text
    rows = {
        line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| `")
    }
    assert set(rows) == {
        "`test_fast_enough`",
        "`test_too_long`",
        "`test_release_gate`",
        "`test_fixture_only`",
        "`test_app_assertion_fails`",
    }
    assert (
        "✅ passed" in rows["`test_fast_enough`"]
        and "support-concise" in rows["`test_fast_enough`"]
    )
    assert "❌ failed" in rows["`test_too_long`"]
    assert "### Regression gates" in text
    (gate_row,) = [line for line in text.splitlines() if line.startswith("| test_release_gate ")]
    assert "amazon.titan-text-express-v1" in gate_row and "| FAIL" in gate_row
    assert "<details><summary>test_release_gate</summary>" in text
    assert re.search(
        r"candidate support-verbose is more verbose\b.* than amazon\.titan-text-express-v1", text
    )
    assert "Bedrock spend:" in text


def test_failed_gates_become_error_annotations(ci: Run) -> None:
    annotations = [line for line in ci.lines if line.startswith("::")]
    assert len(annotations) == 2, annotations
    assert any(
        a.startswith(
            "::error file=test_app.py,title=test_too_long::bedrock_length: output tokens max"
        )
        for a in annotations
    )
    assert any(
        a.startswith(
            "::error file=test_app.py,title=test_release_gate::bedrock_regression: candidate "
            "support-verbose is more verbose"
        )
        for a in annotations
    )


def test_no_annotations_outside_github(plain: Run) -> None:
    assert not [line for line in plain.lines if line.startswith("::")]


# -- JUnit XML -------------------------------------------------------------------------------------
def _junit(run: Run) -> dict[str, dict[str, str]]:
    root = ET.parse(run.path / "junit.xml").getroot()
    return {
        case.get("name", ""): {p.get("name", ""): p.get("value", "") for p in case.iter("property")}
        for case in root.iter("testcase")
    }


def test_junit_xml_has_the_figures_of_every_marked_test(ci: Run) -> None:
    cases = _junit(ci)
    fast = cases["test_fast_enough"]
    assert float(fast["bedrock_calls"]) == 1
    assert 10 < float(fast["bedrock_ttft_ms_p50"]) < 1000
    assert 0 < float(fast["bedrock_ms_per_token_p50"]) < 50
    assert float(fast["bedrock_output_tokens_p50"]) > 5
    assert (
        float(cases["test_too_long"]["bedrock_output_tokens_max"]) > 5
    )  # a failed bound still charts
    assert float(cases["test_release_gate"]["bedrock_calls"]) == 1
    assert (
        float(cases["test_fixture_only"]["bedrock_calls"]) == 1
    )  # measured through the fixture alone
    assert cases["test_no_bedrock"] == {}


def test_junit_xml_properties_for_a_measured_test_whose_body_failed(ci: Run) -> None:
    assert float(_junit(ci)["test_app_assertion_fails"]["bedrock_calls"]) == 1


# -- pytest-benchmark ------------------------------------------------------------------------------
def _benchmark_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """pytest-benchmark's console script (next to this Python), as a user would run it."""
    script = Path(sys.executable).with_name("pytest-benchmark")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "pytest_benchmark"]
    return subprocess.run(
        [*command, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def _entries(run: Run) -> dict[tuple[str, str], dict]:  # type: ignore[type-arg]
    document = json.loads((run.path / "bench.json").read_text())
    return {(b["group"], b["name"]): b for b in document["benchmarks"]}


def test_benchmark_json_holds_the_bedrock_series_without_any_regular_benchmark(ci: Run) -> None:
    assert "Not saving anything" not in ci.stdout + ci.stderr
    document = json.loads((ci.path / "bench.json").read_text())
    assert {"machine_info", "commit_info", "benchmarks", "datetime", "version"} <= set(document)
    entries = _entries(ci)
    for group in ("bedrock ms/token", "bedrock TTFT", COUNTS):
        assert (group, "test_fast_enough[support-concise]") in entries
    # A gate: the candidate's and the base's halves of the pairs, each its own row.
    gate = entries[("bedrock ms/token", "test_release_gate[support-verbose]")]
    base = entries[("bedrock ms/token", "test_release_gate[amazon.titan-text-express-v1]")]
    assert gate["extra_info"]["role"] == "candidate" and base["extra_info"]["role"] == "base"
    assert gate["stats"]["rounds"] >= 6  # the test's own call plus one per pair
    assert base["stats"]["rounds"] >= 5
    assert gate["fullname"] == f"test_app.py::test_release_gate::ms_per_token[{VERBOSE}]"
    # The values are the measured ones, in seconds; the statistics are pytest-benchmark's.
    fast = next(
        t
        for t in load_report(ci.path / "report.json")["tests"]
        if t["nodeid"].endswith("test_fast_enough")
    )
    ttft = entries[("bedrock TTFT", "test_fast_enough[support-concise]")]["stats"]
    assert ttft["data"] == [pytest.approx(fast["calls"][0]["ttft_ms"] / 1000)]
    assert ttft["rounds"] == 1 and ttft["min"] == ttft["max"] == ttft["median"]
    tokens = entries[(COUNTS, "test_release_gate[support-verbose]")]["stats"]
    assert tokens["median"] > 30 and all(float(v).is_integer() for v in tokens["data"])
    tokens_base = entries[(COUNTS, "test_release_gate[amazon.titan-text-express-v1]")]["stats"]
    assert (
        tokens["median"] > 1.3 * tokens_base["median"]
    )  # the verbose fine-tune shows in the numbers


def test_benchmark_autosave_storage_and_the_compare_command(ci: Run) -> None:
    saved = list((ci.path / "bench-storage").rglob("0001_*.json"))
    assert len(saved) == 1
    listing = _benchmark_cli("--storage", "file://bench-storage", "list", cwd=ci.path)
    assert saved[0].name in listing.stdout, listing.stdout + listing.stderr
    compared = _benchmark_cli(
        "--storage",
        "file://bench-storage",
        "compare",
        "0001",
        "--group-by",
        "group",
        "--columns",
        "min,median,max,rounds",
        cwd=ci.path,
    )
    assert compared.returncode == 0, compared.stderr
    for text in (
        "benchmark 'bedrock ms/token'",
        "benchmark 'bedrock TTFT'",
        f"benchmark '{COUNTS}'",
        "test_release_gate[support-verbose]",
        "test_release_gate[amazon.titan-text-express-v1]",
        "test_fast_enough[support-concise]",
        "Name (time in ms)",
    ):
        assert text in compared.stdout, text


def test_nothing_is_added_when_pytest_benchmark_is_not_asked_to_save(plain: Run) -> None:
    assert "benchmark 'bedrock" not in plain.stdout


def test_bedrock_entries_join_regular_benchmarks(defaults: Run) -> None:
    names = [
        b["name"] for b in json.loads((defaults.path / "bench.json").read_text())["benchmarks"]
    ]
    assert "test_parsing_speed" in names and "test_fast_enough[support-concise]" in names
    assert (
        "benchmark 'bedrock ms/token'" in defaults.stdout
    )  # pytest-benchmark's own table shows them too


def test_series_and_entries_from_results() -> None:
    assert benchmark_entries([TestResult.from_json({"nodeid": "t.py::test_x", "calls": []})]) == []
    call = {
        "model_id": "m",
        "operation": "ConverseStream",
        "text": "",
        "input_tokens": 3,
        "output_tokens": 11,
        "stop_reason": "end_turn",
        "ttft_ms": 100.0,
        "total_ms": 300.0,
        "ms_per_token": 20.0,
        "tokens_per_second": 55.0,
        "server_latency_ms": None,
        "words": 11,
        "chars": 60,
        "attempts": 1,
        "retry_wait_ms": 0.0,
        "started_at": 0.0,
    }
    result = TestResult.from_json(
        {"nodeid": "t.py::test_x", "calls": [call, {**call, "ms_per_token": 30.0}]}
    )
    assert [(s.metric.key, s.values) for s in series([result])] == [
        ("ms_per_token", (20.0, 30.0)),
        ("ttft_ms", (100.0, 100.0)),
        ("output_tokens", (11.0, 11.0)),
    ]
    (ms_per_token, _, tokens) = benchmark_entries([result])
    assert (
        ms_per_token["stats"]["mean"] == pytest.approx(0.025)
        and ms_per_token["stats"]["rounds"] == 2
    )
    assert tokens["stats"]["data"] == [11.0, 11.0] and tokens["extra_info"]["role"] == "called"


# -- --bedrock-plot ----------------------------------------------------------------------------------
def _results(run: Run) -> list[TestResult]:
    return [TestResult.from_json(t) for t in load_report(run.path / "report.json")["tests"]]


@needs_matplotlib
@pytest.mark.usefixtures("matplotlib_loaded")
def test_plot_draws_one_picture_per_gated_test(ci: Run, tmp_path: Path) -> None:
    results = _results(ci)
    paths = plot.plot_gates(results, tmp_path / "plots")
    assert [p.name for p in paths] == [plot.filename("test_app.py::test_release_gate")]
    data = paths[0].read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 20_000
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1200, 480)
    assert plot.plot_gates([r for r in results if r.regression is None], tmp_path / "none") == []


def test_plot_without_matplotlib_says_how_to_install_it(
    ci: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in (
        "matplotlib",
        "matplotlib.figure",
        "matplotlib.backends",
        "matplotlib.backends.backend_agg",
    ):
        monkeypatch.setitem(sys.modules, name, None)  # import fails as if not installed
    assert not plot.available()
    with pytest.raises(plot.PlotUnavailable) as raised:
        plot.plot_gates(_results(ci), tmp_path / "plots")
    assert str(raised.value) == (
        "bedrock: --bedrock-plot needs matplotlib, which is not installed: "
        "pip install 'pytest-bedrock-latency[plot]'"
    )
    assert not (tmp_path / "plots").exists()


def test_plot_file_names_are_safe_and_distinct() -> None:
    names = {plot.filename(n) for n in ("a.py::test[x/y]", "a.py::test[x:y]", "a.py::test[x y]")}
    assert len(names) == 3 and all(re.fullmatch(r"[A-Za-z0-9._-]+\.png", n) for n in names)


# -- the plugin's own wiring (bridge registered by default, --bedrock-plot) -----------------------------
@pytest.fixture(scope="module")
def defaults(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """The plugin's own wiring, with a regular pytest-benchmark benchmark beside the Bedrock tests."""
    run = _run(
        tmp_path_factory,
        "defaults",
        [
            "--benchmark-json",
            "bench.json",
            "--benchmark-min-rounds",
            "1",
            "--benchmark-max-time",
            "0.01",
            "--bedrock-plot",
            "plots",
        ],
        {"test_app": SUITE, "test_bench": REGULAR_BENCHMARK},
    )
    assert re.search(r"3 failed, 4 passed", run.stdout), run.stdout + run.stderr
    return run


def test_the_benchmark_bridge_is_on_by_default(defaults: Run) -> None:
    assert "Not saving anything" not in defaults.stdout + defaults.stderr
    assert ("bedrock TTFT", "test_fast_enough[support-concise]") in _entries(defaults)


@needs_matplotlib
def test_bedrock_plot_option_writes_the_pictures(defaults: Run) -> None:
    pictures = [p.name for p in (defaults.path / "plots").glob("*.png")]
    assert pictures == [plot.filename("test_app.py::test_release_gate")]
    assert f"bedrock: 1 plot written to {defaults.path / 'plots'}" in defaults.stdout


# -- progress of a long gate -----------------------------------------------------------------------------
def test_a_gate_shows_its_progress_with_verbose(ci: Run, plain: Run) -> None:
    assert "bedrock_regression test_app.py::test_release_gate: 6/10 pairs drawn" in ci.stdout
    assert "pairs drawn" not in plain.stdout  # without -v a gate is silent until its verdict


# -- examples/ci: the release-gate workflow and the pre-deploy script -------------------------------------
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CANDIDATE = "arn:aws:bedrock:us-east-1:123456789012:custom-model/support-{}"

#: The examples' base model and three fine-tunes, in less time and with every effect far
#: from examples/test_release_gate.py's tolerances (x1.10 per token, x1.15 in tokens): the
#: verbose one answers twice the tokens, the slow one takes twice the time per token, so
#: each gate decides at its first look. What these tests check is the workflow and the
#: script around the gate, not the demo's own (more realistic, slower) figures.
FAST_EXAMPLE_PROFILES = f"""
[defaults]
family = "titan"
ttft_ms = 60
ms_per_token = 2.0
jitter = 0.1
answer_tokens = 50
prompt_spread = 0.2
answer_tokens_spread = 0.05
seed = 7

[models."amazon.titan-text-express-v1"]

[models."{CANDIDATE.format("concise")}"]
like = "amazon.titan-text-express-v1"
answer_tokens = 25

[models."{CANDIDATE.format("verbose")}"]
like = "amazon.titan-text-express-v1"
answer_tokens = 100

[models."{CANDIDATE.format("slow")}"]
like = "amazon.titan-text-express-v1"
ms_per_token = 4.0
"""


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkout-like directory with a copy of examples/ (reports land here, not in the repo)."""
    root = tmp_path_factory.mktemp("checkout")
    shutil.copytree(
        EXAMPLES, root / "examples", ignore=shutil.ignore_patterns("__pycache__", ".bedrock*")
    )
    # The workflow says `python`: make it this interpreter. A wrapper that execs it, not a
    # symlink: started through a symlink outside the venv, Python finds no pyvenv.cfg beside
    # it and runs as the base interpreter, without this project installed.
    bin_dir = root / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "python"
    wrapper.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} "$@"\n', encoding="utf-8")
    wrapper.chmod(0o755)
    (root / "fast-profiles.toml").write_text(FAST_EXAMPLE_PROFILES, encoding="utf-8")
    return root


def _environ(workspace: Path, **extra: str) -> dict[str, str]:
    environ = isolated_environ(workspace, **extra)
    environ["PATH"] = f"{workspace / 'bin'}{os.pathsep}{environ.get('PATH', '')}"
    return environ


def _fast_profiles(workspace: Path) -> str:
    return f"--bedrock-emulator-profiles {shlex.quote(str(workspace / 'fast-profiles.toml'))}"


@pytest.mark.long_running
def test_the_release_gate_workflow_runs_against_the_emulator(workspace: Path) -> None:
    yaml = pytest.importorskip("yaml")
    workflow = yaml.safe_load((EXAMPLES / "ci" / "release-gate.yml").read_text())
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as true
    inputs = {
        name: spec.get("default") for name, spec in triggers["workflow_dispatch"]["inputs"].items()
    }
    assert inputs["emulator"] is True and set(triggers["workflow_call"]["inputs"]) == set(inputs)
    steps = workflow["jobs"]["gate"]["steps"]
    assert "pip install -e" in next(
        s["run"] for s in steps if s.get("name") == "Install pytest-bedrock-latency"
    )
    gate = next(s for s in steps if s.get("name") == "Release gate")
    assert (
        "--bedrock-require" in gate["run"] and "--bedrock-report bedrock-report.json" in gate["run"]
    )
    assert (
        "-m bedrock_regression" in gate["run"] and "${{" not in gate["run"]
    )  # inputs only through env

    def expand(value: str, given: dict[str, object]) -> str:
        return re.sub(
            r"\$\{\{\s*inputs\.(\w+)\s*\}\}",
            lambda m: (
                str(given[m.group(1)]).lower()
                if isinstance(given[m.group(1)], bool)
                else str(given[m.group(1)] or "")
            ),
            value,
        )

    # Run the step's script as Actions would, once for a good and once for a verbose fine-tune.
    jobs = {}
    for label, model in (
        ("good", CANDIDATE.format("concise")),
        ("verbose", CANDIDATE.format("verbose")),
    ):
        directory = workspace / f"job-{label}"
        shutil.copytree(workspace / "examples", directory / "examples")
        summary = directory / "step-summary.md"
        env = {
            name: expand(str(value), {**inputs, "model_id": model})
            for name, value in gate["env"].items()
        }
        jobs[label] = (
            directory,
            summary,
            subprocess.Popen(
                ["bash", "-e", "-c", gate["run"]],
                cwd=directory,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env=_environ(
                    workspace,
                    GITHUB_ACTIONS="true",
                    GITHUB_STEP_SUMMARY=str(summary),
                    # pytest's own way to add options to a command it does not write.
                    PYTEST_ADDOPTS=f"{os.environ.get('PYTEST_ADDOPTS', '')} {_fast_profiles(workspace)}",
                    **env,
                ),
            ),
        )
    outputs = {
        label: (directory, summary, process.communicate(timeout=120)[0], process.returncode)
        for label, (directory, summary, process) in jobs.items()
    }

    directory, summary, output, status = outputs["good"]
    assert status == 0, output
    report = load_report(directory / "bedrock-report.json")
    (test,) = report["tests"]
    assert test["regression"]["candidate"] == CANDIDATE.format("concise")
    assert test["regression"]["base"] == "amazon.titan-text-express-v1"
    assert "test_fine_tune_is_no_slower_and_no_wordier" in summary.read_text()
    assert (directory / "junit.xml").exists()

    directory, summary, output, status = outputs["verbose"]
    assert status == 1, output
    assert (
        "::error file=test_release_gate.py,title=test_fine_tune_is_no_slower_and_no_wordier::bedrock_regression: "
        "candidate support-verbose is more verbose" in output
    )
    assert "FAIL" in summary.read_text()


@pytest.mark.long_running
def test_the_predeploy_script_gates_the_three_fine_tunes(workspace: Path, tmp_path: Path) -> None:
    script = workspace / "examples" / "ci" / "predeploy.sh"
    done = subprocess.run(
        ["bash", str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=_environ(
            workspace,
            JOBS="3",
            PYTHON=sys.executable,
            REPORT_DIR=str(tmp_path / "out"),
            PYTEST_ARGS=_fast_profiles(workspace),
        ),
        check=False,
    )
    assert done.returncode == 1, (
        done.stdout + done.stderr
    )  # two of the three fine-tunes must not ship
    lines = done.stdout.splitlines()
    verdicts = {
        line.split()[1]: line.split()[0]
        for line in lines
        if line.startswith("  ")
        and len(line.split()) > 1
        and line.split()[0] in ("PASS", "FAIL", "ERROR")
    }
    assert verdicts == {
        "support-concise": "PASS",
        "support-verbose": "FAIL",
        "support-slow": "FAIL",
    }
    assert any(
        re.search(
            r"candidate support-verbose is more verbose\b.* than amazon\.titan-text-express-v1",
            line,
        )
        for line in lines
    )
    assert any(
        "candidate support-slow is slower per token than amazon.titan-text-express-v1" in line
        for line in lines
    )
    for name in verdicts:
        assert load_report(tmp_path / "out" / f"{name}.json")["tests"][0]["regression"]
