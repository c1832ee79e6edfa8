"""Settings in real pytest runs: sources, precedence, usage errors naming the source, paths."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # the fixture's class, from tests/conftest.py
    from conftest import BedrockPytester

WHICH_MODEL = """
def test_which(bedrock_model, bedrock_calls):
    bedrock_model.converse("Hi")
    with open("called.txt", "w") as out:
        out.write(bedrock_calls[0].model_id)
"""


def called_model(bedrock_pytester: BedrockPytester, result: pytest.RunResult) -> str:
    result.assert_outcomes(passed=1)
    return (bedrock_pytester.path / "called.txt").read_text()


def assert_no_session(result: pytest.RunResult) -> None:
    """A configuration error: pytest stopped before the session started."""
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "test session starts" not in result.stdout.str()


def test_model_precedence_command_line_over_environment_over_ini(
    bedrock_pytester: BedrockPytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    bedrock_pytester.pytester.makeini("[pytest]\nbedrock_model = amazon.nova-micro-v1:0\n")
    bedrock_pytester.makepyfile(test_which=WHICH_MODEL)
    result = bedrock_pytester.run(model=None)
    assert called_model(bedrock_pytester, result) == "amazon.nova-micro-v1:0"
    result.stdout.fnmatch_lines(["test_which  amazon.nova-micro-v1:0  1 *passed"])
    monkeypatch.setenv("BEDROCK_MODEL_ID", "amazon.nova-pro-v1:0")
    assert (
        called_model(bedrock_pytester, bedrock_pytester.run(model=None)) == "amazon.nova-pro-v1:0"
    )
    result = bedrock_pytester.run(model="amazon.nova-lite-v1:0")
    assert called_model(bedrock_pytester, result) == "amazon.nova-lite-v1:0"
    result.stdout.fnmatch_lines(["test_which  amazon.nova-lite-v1:0  1 *passed"])


def test_an_empty_environment_variable_is_unset(
    bedrock_pytester: BedrockPytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BEDROCK_MODEL_ID", "")
    bedrock_pytester.makepyfile(test_which=WHICH_MODEL)
    result = bedrock_pytester.run("-rs", model=None)
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["SKIPPED [[]1[]] test_which.py:*: --bedrock-model is not set"])


def test_bad_command_line_value_is_a_usage_error_naming_the_flag(
    bedrock_pytester: BedrockPytester,
) -> None:
    bedrock_pytester.makepyfile(test_which=WHICH_MODEL)
    result = bedrock_pytester.run("--bedrock-max-tokens=abc")
    assert_no_session(result)
    result.stderr.fnmatch_lines(["ERROR: --bedrock-max-tokens: must be a whole number, got 'abc'"])


def test_bad_ini_value_is_a_usage_error_naming_the_ini_file(
    bedrock_pytester: BedrockPytester,
) -> None:
    ini = bedrock_pytester.pytester.makeini("[pytest]\nbedrock_latency_scale = -1\n")
    bedrock_pytester.makepyfile(test_which=WHICH_MODEL)
    result = bedrock_pytester.run()
    assert_no_session(result)
    result.stderr.fnmatch_lines(
        [
            f"ERROR: bedrock_latency_scale = -1 in {ini}: must be a finite number greater than 0, got -1",
        ]
    )


def test_bad_ini_switch_is_a_usage_error(bedrock_pytester: BedrockPytester) -> None:
    ini = bedrock_pytester.pytester.makeini("[pytest]\nbedrock_emulator = sometimes\n")
    bedrock_pytester.makepyfile(test_which=WHICH_MODEL)
    result = bedrock_pytester.run(emulator=False)
    assert_no_session(result)
    result.stderr.fnmatch_lines(
        [f"ERROR: bedrock_emulator = sometimes in {ini}: must be true or false, got 'sometimes'"]
    )


def test_missing_emulator_profiles_file_is_a_usage_error(bedrock_pytester: BedrockPytester) -> None:
    bedrock_pytester.makepyfile(test_which=WHICH_MODEL)
    result = bedrock_pytester.pytester.runpytest(
        "-p",
        "no:cacheprovider",
        "--bedrock-emulator",
        "--bedrock-emulator-profiles",
        "nowhere.toml",
        "--bedrock-model",
        "m",
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            f"ERROR: --bedrock-emulator: {bedrock_pytester.path / 'nowhere.toml'}: no such profile file"
        ]
    )
    assert (
        "passed" not in result.stdout.str() and not (bedrock_pytester.path / "called.txt").exists()
    )


def test_ini_settings_with_paths_relative_to_the_ini_file(
    bedrock_pytester: BedrockPytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run from a subdirectory: ini paths still resolve next to the ini file."""
    pytester = bedrock_pytester.pytester
    pytester.makeini(
        "[pytest]\n"
        "bedrock_emulator = true\n"
        "bedrock_emulator_profiles = profiles.toml\n"
        "bedrock_model = amazon.nova-micro-v1:0\n"
        "bedrock_max_tokens = 5\n"
        "bedrock_report = reports/bedrock.json\n"
    )
    sub = pytester.mkpydir("suite")
    (sub / "test_sub.py").write_text(
        "def test_sub(bedrock_model):\n"
        "    g = bedrock_model.converse('Hi')\n"
        "    assert (g.model_id, g.output_tokens) == ('amazon.nova-micro-v1:0', 5)\n",
        encoding="utf-8",
    )
    monkeypatch.chdir(sub)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    report = bedrock_pytester.path / "reports" / "bedrock.json"
    result.stdout.fnmatch_lines([f"bedrock: JSON report written to {report}"])
    assert report.is_file() and not (sub / "reports").exists()


def test_command_line_paths_are_relative_to_the_invocation_directory(
    bedrock_pytester: BedrockPytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester = bedrock_pytester.pytester
    pytester.makeini("[pytest]\n")
    sub = pytester.mkdir("elsewhere")
    (sub / "mine.toml").write_text(
        '[models."my.model-v1"]\nfamily = "nova"\nanswer_tokens = 2\nprompt_spread = 0\nanswer_tokens_spread = 0\n',
        encoding="utf-8",
    )
    pytester.makepyfile(
        test_cli="def test_cli(bedrock_model):\n    assert bedrock_model.converse('Hi').output_tokens == 2\n"
    )
    monkeypatch.chdir(sub)
    result = pytester.runpytest(
        "-p",
        "no:cacheprovider",
        "--bedrock-emulator",
        "--bedrock-emulator-profiles",
        "mine.toml",
        "--bedrock-model",
        "my.model-v1",
        "--bedrock-report",
        "out.json",
        str(pytester.path),
    )
    result.assert_outcomes(passed=1)
    assert (sub / "out.json").is_file()


def test_region_setting_reaches_the_clients(bedrock_pytester: BedrockPytester) -> None:
    bedrock_pytester.makepyfile(
        test_region="""
        def test_region(bedrock_runtime):
            assert bedrock_runtime.meta.region_name == "eu-west-3"
        """
    )
    bedrock_pytester.run("--bedrock-region", "eu-west-3").assert_outcomes(passed=1)
