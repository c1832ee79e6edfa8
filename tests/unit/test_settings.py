"""Unit tests of settings resolution with a tiny stand-in for ``pytest.Config``."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from pytest_bedrock_latency.markers import RegressionGate, TestBounds
from pytest_bedrock_latency.settings import (
    OPTIONS,
    Settings,
    SettingsError,
    TestSettings,
    check_outputs,
    effective,
    resolve,
)

INVOCATION = Path("/work/run")
INI_DIR = Path("/repo")
INI_PATH = INI_DIR / "pytest.ini"


class FakeConfig:
    """What ``resolve`` needs of pytest.Config: options by dest, ini values by name."""

    def __init__(
        self, options: dict[str, Any] | None = None, ini: dict[str, str] | None = None
    ) -> None:
        self.options = options or {}
        self.ini = ini or {}

    def getoption(self, name: str) -> Any:
        return self.options.get(name)

    def getini(self, name: str) -> Any:
        return self.ini.get(name, "")  # pytest's default for these keys is ""


def settings(
    options: dict[str, Any] | None = None,
    ini: dict[str, str] | None = None,
    environ: dict[str, str] | None = None,
    *,
    ini_dir: Path | None = INI_DIR,
) -> Settings:
    return resolve(
        FakeConfig(options, ini),
        environ=environ or {},
        invocation_dir=INVOCATION,
        ini_dir=ini_dir,
        ini_path=INI_PATH if ini_dir else None,
    )


def failure(
    options: dict[str, Any] | None = None,
    ini: dict[str, str] | None = None,
    environ: dict[str, str] | None = None,
) -> str:
    with pytest.raises(SettingsError) as info:
        settings(options, ini, environ)
    return str(info.value)


def test_defaults() -> None:
    s = settings()
    assert s == Settings(baseline_file=INI_DIR / ".bedrock-baseline.json")
    assert (
        s.model,
        s.emulator,
        s.latency_scale,
        s.regression_budget,
        s.regression_policy,
        s.concurrency,
    ) == (None, False, 1.0, 40, "strict", 1)


def test_every_option_has_flag_ini_and_dest_named_alike() -> None:
    names = {o.name for o in OPTIONS}
    assert {
        "model",
        "baseline",
        "region",
        "aws_profile",
        "endpoint_url",
        "emulator",
        "emulator_profiles",
        "max_tokens",
        "report",
        "report_text",
        "latency_scale",
    } <= names
    model = next(o for o in OPTIONS if o.name == "model")
    assert (model.flag, model.ini, model.env, model.dest) == (
        "--bedrock-model",
        "bedrock_model",
        "BEDROCK_MODEL_ID",
        "bedrock_model",
    )
    envs = {o.name: o.env for o in OPTIONS if o.env}
    assert envs == {
        "model": "BEDROCK_MODEL_ID",
        "baseline": "BEDROCK_BASELINE_MODEL_ID",
        "region": "AWS_REGION",
        "aws_profile": "AWS_PROFILE",
        "endpoint_url": "AWS_ENDPOINT_URL_BEDROCK_RUNTIME",
    }


# -- precedence: command line > environment > ini > default --------------------------------------
def test_ini_beats_default() -> None:
    assert settings(ini={"bedrock_model": "ini-model"}).model == "ini-model"


def test_environment_beats_ini() -> None:
    assert (
        settings(
            ini={"bedrock_model": "ini-model"}, environ={"BEDROCK_MODEL_ID": "env-model"}
        ).model
        == "env-model"
    )


def test_command_line_beats_environment_and_ini() -> None:
    s = settings(
        {"bedrock_model": "cli-model"},
        {"bedrock_model": "ini-model"},
        {"BEDROCK_MODEL_ID": "env-model"},
    )
    assert s.model == "cli-model"


def test_empty_environment_variable_is_unset() -> None:
    assert (
        settings(ini={"bedrock_model": "ini-model"}, environ={"BEDROCK_MODEL_ID": "  "}).model
        == "ini-model"
    )
    assert settings(environ={"BEDROCK_MODEL_ID": ""}).model is None


def test_values_are_stripped() -> None:
    assert settings(ini={"bedrock_region": "  eu-west-1 "}).region == "eu-west-1"
    assert settings(environ={"AWS_REGION": " us-west-2\n"}).region == "us-west-2"


def test_marker_beats_run_setting() -> None:
    assert effective(20, 40) == 20
    assert effective(None, 40) == 40
    assert effective("lenient", "strict") == "lenient"


# -- switches ------------------------------------------------------------------------------------
def test_switch_on_command_line_and_in_ini() -> None:
    assert settings({"bedrock_emulator": True}).emulator is True
    assert settings(ini={"bedrock_emulator": "true"}).emulator is True
    assert settings(ini={"bedrock_emulator": "off"}).emulator is False
    assert settings(ini={"bedrock_report_text": "yes"}).report_text is True


def test_bad_switch_in_ini_names_the_file() -> None:
    assert failure(ini={"bedrock_emulator": "maybe"}) == (
        f"bedrock_emulator = maybe in {INI_PATH}: must be true or false, got 'maybe'"
    )


# -- parsed values and errors naming their source ------------------------------------------------
def test_numbers_are_parsed() -> None:
    s = settings(
        {"bedrock_max_tokens": "300", "bedrock_latency_scale": "1.5"},
        {
            "bedrock_regression_budget": "12",
            "bedrock_timeout": "2.5",
            "bedrock_regression_policy": " Lenient ",
        },
    )
    assert (s.max_tokens, s.latency_scale, s.regression_budget, s.timeout, s.regression_policy) == (
        300,
        1.5,
        12,
        2.5,
        "lenient",
    )


def test_bad_flag_names_the_flag() -> None:
    assert (
        failure({"bedrock_max_tokens": "abc"})
        == "--bedrock-max-tokens: must be a whole number, got 'abc'"
    )
    assert (
        failure({"bedrock_max_tokens": "0"})
        == "--bedrock-max-tokens: must be greater than 0, got 0"
    )


def test_environment_values_are_free_text_and_blank_means_unset() -> None:
    # Every environment-backed setting is text (model ids, region, profile, URL): Bedrock
    # and botocore judge them; only a blank value is special, and it means "not set".
    s = settings(
        environ={
            "AWS_PROFILE": "dev",
            "AWS_REGION": "eu-central-1",
            "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": "http://localhost:1234",
            "BEDROCK_BASELINE_MODEL_ID": "amazon.titan-text-express-v1",
        }
    )
    assert (s.aws_profile, s.region, s.endpoint_url, s.baseline) == (
        "dev",
        "eu-central-1",
        "http://localhost:1234",
        "amazon.titan-text-express-v1",
    )
    assert settings(environ={"AWS_PROFILE": " "}).aws_profile is None


def test_blank_flag_names_the_flag() -> None:
    assert failure({"bedrock_model": "  "}) == "--bedrock-model: must not be empty"


def test_bad_ini_value_names_the_ini_file_and_key() -> None:
    assert failure(ini={"bedrock_latency_scale": "-1"}) == (
        f"bedrock_latency_scale = -1 in {INI_PATH}: must be a finite number greater than 0, got -1"
    )
    assert failure(ini={"bedrock_latency_scale": "nan"}) == (
        f"bedrock_latency_scale = nan in {INI_PATH}: must be a finite number greater than 0, got nan"
    )
    assert failure(ini={"bedrock_regression_budget": "3"}) == (
        f"bedrock_regression_budget = 3 in {INI_PATH}: must be at least 5 pairs (the first look of the "
        "sequential rule), got 3"
    )
    assert failure(ini={"bedrock_regression_policy": "loose"}) == (
        f"bedrock_regression_policy = loose in {INI_PATH}: must be one of strict, lenient, got 'loose'"
    )


def test_bad_value_without_an_ini_file_says_the_ini_file() -> None:
    with pytest.raises(SettingsError) as info:
        resolve(
            FakeConfig(ini={"bedrock_concurrency": "x"}),
            environ={},
            invocation_dir=INVOCATION,
            ini_dir=None,
        )
    assert (
        str(info.value)
        == "bedrock_concurrency = x in the ini file: must be a whole number, got 'x'"
    )


def test_an_invalid_lower_layer_is_not_reached_when_a_higher_one_is_set() -> None:
    assert (
        settings({"bedrock_latency_scale": "2"}, {"bedrock_latency_scale": "-1"}).latency_scale
        == 2.0
    )


# -- paths ---------------------------------------------------------------------------------------
def test_ini_paths_are_relative_to_the_ini_file() -> None:
    s = settings(
        ini={"bedrock_emulator_profiles": "profiles.toml", "bedrock_report": "out/report.json"}
    )
    assert s.emulator_profiles == (INI_DIR / "profiles.toml").resolve()
    assert s.report == (INI_DIR / "out/report.json").resolve()


def test_command_line_paths_are_relative_to_the_invocation_directory() -> None:
    s = settings({"bedrock_emulator_profiles": "profiles.toml", "bedrock_report": "report.json"})
    assert s.emulator_profiles == (INVOCATION / "profiles.toml").resolve()
    assert s.report == (INVOCATION / "report.json").resolve()


def test_absolute_paths_stay(tmp_path: Path) -> None:
    target = tmp_path / "r.json"
    assert settings({"bedrock_report": str(target)}).report == target.resolve()
    assert settings(ini={"bedrock_report": str(target)}).report == target.resolve()


def test_ini_paths_without_an_ini_file_are_relative_to_the_invocation_directory() -> None:
    s = settings(ini={"bedrock_report": "r.json"}, ini_dir=None)
    assert s.report == (INVOCATION / "r.json").resolve()


def test_default_baseline_file_sits_next_to_the_ini_file_or_in_the_invocation_directory() -> None:
    assert settings().baseline_file == INI_DIR / ".bedrock-baseline.json"
    assert settings(ini_dir=None).baseline_file == INVOCATION / ".bedrock-baseline.json"
    assert (
        settings({"bedrock_baseline_file": "b.json"}).baseline_file
        == (INVOCATION / "b.json").resolve()
    )


# -- cost ------------------------------------------------------------------------------------------
def test_max_cost_is_an_amount_of_dollars() -> None:
    assert settings({"bedrock_max_cost": "2.50"}).max_cost == 2.5
    assert settings({"bedrock_max_cost": "$0.10"}).max_cost == 0.1
    assert settings(ini={"bedrock_max_cost": "1"}).max_cost == 1.0
    assert settings().max_cost is None
    assert failure({"bedrock_max_cost": "ten"}) == (
        "--bedrock-max-cost: must be an amount of US dollars such as 2.50, got 'ten'"
    )
    assert failure({"bedrock_max_cost": "0"}) == (
        "--bedrock-max-cost: must be an amount of US dollars greater than 0, got 0"
    )
    assert failure(ini={"bedrock_max_cost": "inf"}) == (
        f"bedrock_max_cost = inf in {INI_PATH}: must be an amount of US dollars greater than 0, got inf"
    )


def test_price_file_is_a_path_relative_to_the_ini_file() -> None:
    assert settings(ini={"bedrock_prices": "prices.toml"}).prices == INI_DIR / "prices.toml"
    assert settings({"bedrock_prices": "p.toml"}).prices == INVOCATION / "p.toml"


def test_a_tests_settings_take_its_marker_over_the_run() -> None:
    run = Settings(regression_budget=40, regression_policy="strict", timeout=3.0, max_tokens=64)
    gated = TestSettings.of(run, TestBounds(regression=RegressionGate(budget=10, policy="lenient")))
    assert (gated.regression_budget, gated.regression_policy) == (10, "lenient")
    assert (gated.timeout, gated.max_tokens, gated.concurrency) == (3.0, 64, 1)
    plain = TestSettings.of(run, TestBounds(regression=RegressionGate()))
    assert (plain.regression_budget, plain.regression_policy) == (40, "strict")
    assert TestSettings.of(run, TestBounds()).regression_budget == 40


@pytest.mark.parametrize(
    ("flag", "value", "expected"),
    [
        ("bedrock_timeout", "1e308", "--bedrock-timeout: must be at most 3600 seconds, got 1e308"),
        (
            "bedrock_regression_budget",
            "1000000",
            "--bedrock-regression-budget: must be at most 1000 pairs, got 1000000",
        ),
        (
            "bedrock_concurrency",
            "100000",
            "--bedrock-concurrency: must be at most 1024, got 100000",
        ),
        (
            "bedrock_max_tokens",
            "99999999999",
            "--bedrock-max-tokens: must be at most 1e+06, got 99999999999",
        ),
        (
            "bedrock_latency_scale",
            "1e300",
            "--bedrock-latency-scale: must be at most 1000, got 1e300",
        ),
    ],
)
def test_numbers_above_their_documented_bound_are_errors(
    flag: str, value: str, expected: str
) -> None:
    assert failure({flag: value}) == expected


def test_the_bounds_themselves_are_accepted() -> None:
    s = settings(
        {
            "bedrock_timeout": "3600",
            "bedrock_regression_budget": "1000",
            "bedrock_concurrency": "1024",
        }
    )
    assert (s.timeout, s.regression_budget, s.concurrency) == (3600.0, 1000, 1024)


def test_a_region_that_is_no_region_name_names_the_variable() -> None:
    assert failure(environ={"AWS_REGION": "not a region"}) == (
        "environment variable AWS_REGION: 'not a region' is not an AWS region name (e.g. us-east-1)"
    )
    assert settings(environ={"AWS_REGION": "eu-central-1"}).region == "eu-central-1"


@pytest.mark.parametrize("url", ["not a url", "ftp://host", "http://", "http://host:port"])
def test_an_endpoint_that_is_no_url_names_the_variable(url: str) -> None:
    message = failure(environ={"AWS_ENDPOINT_URL_BEDROCK_RUNTIME": url})
    assert message.startswith(
        f"environment variable AWS_ENDPOINT_URL_BEDROCK_RUNTIME: {url!r} is not an http(s) URL"
    )


def test_endpoint_urls_with_ports_and_paths_are_accepted() -> None:
    url = "http://127.0.0.1:8080/bedrock"
    assert settings({"bedrock_endpoint_url": url}).endpoint_url == url


# -- output paths, checked before the session -------------------------------------------------
def _outputs(tmp_path: Path, **values: Any) -> Settings:
    return Settings(baseline_file=tmp_path / ".bedrock-baseline.json", **values)


def test_check_outputs_accepts_new_files_in_new_directories(tmp_path: Path) -> None:
    check_outputs(
        _outputs(tmp_path, report=tmp_path / "a" / "r.json", plot=tmp_path / "plots"),
        step_summary=str(tmp_path / "summary.md"),
    )


def test_check_outputs_reports_every_problem_one_per_line(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("x")
    with pytest.raises(SettingsError) as info:
        check_outputs(
            _outputs(tmp_path, report=tmp_path / "dir", plot=tmp_path / "file"),
            step_summary=str(tmp_path / "file" / "summary.md"),
        )
    assert str(info.value).splitlines() == [
        f"--bedrock-report {tmp_path / 'dir'} is a directory; name a file",
        f"GITHUB_STEP_SUMMARY {tmp_path / 'file' / 'summary.md'} cannot be written: its parent "
        f"{tmp_path / 'file'} is a file, not a directory",
        f"--bedrock-plot {tmp_path / 'file'} is a file; name a directory",
    ]


def test_check_outputs_refuses_an_output_over_an_input_or_another_output(tmp_path: Path) -> None:
    baseline = tmp_path / ".bedrock-baseline.json"
    with pytest.raises(SettingsError, match="would overwrite the --bedrock-baseline-file file"):
        check_outputs(_outputs(tmp_path, report=baseline))
    with pytest.raises(SettingsError, match="--bedrock-report and --junitxml are the same path"):
        check_outputs(
            _outputs(tmp_path, report=tmp_path / "x.xml"), others={"--junitxml": tmp_path / "x.xml"}
        )
    prices = tmp_path / "prices.toml"
    with pytest.raises(SettingsError, match="would overwrite the --bedrock-prices file"):
        check_outputs(replace(_outputs(tmp_path, report=prices), prices=prices))
    # Recording writes the baseline itself: that is not a clash.
    check_outputs(_outputs(tmp_path, update_baseline=True))
