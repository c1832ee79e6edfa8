"""Scaffolding for the plugin's tests that run the support bot inside ``pytester``.

Not part of the application: it writes a throw-away test suite (ini, emulator profiles,
conftest) around the bot. It does not import pytest-bedrock-latency either; the suites
it writes only use the plugin through markers, fixtures and command-line options.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The directory that holds the ``support_bot`` package (put it on sys.path / PYTHONPATH).
PACKAGE_PARENT = Path(__file__).resolve().parent.parent

BASE = "amazon.titan-text-express-v1"
CONCISE = "arn:aws:bedrock:us-east-1:123456789012:custom-model/support-concise"
VERBOSE = "arn:aws:bedrock:us-east-1:123456789012:custom-model/support-verbose"
SLOW = "arn:aws:bedrock:us-east-1:123456789012:custom-model/support-slow"

#: Tiny, steady emulator profiles: a base model and fine-tunes of it. The concise one is a
#: good fine-tune (same speed, same length); verbose answers 1.5x the tokens; slow takes
#: 1.5x the time per token. Gates on these profiles allow x2 in time (max_slowdown=2,
#: max_ttft_slowdown=2) unless time is what they test: on a machine whose cores are all busy
#: a 30-token stream's ms/token and TTFT move by tens of percent; token counts do not.
PROFILES = f"""
[defaults]
family = "titan"
ttft_ms = 20
ms_per_token = 2.0
jitter = 0.05
answer_tokens = 30
prompt_spread = 0.2
answer_tokens_spread = 0.05
seed = 11

[models."{BASE}"]

[models."{CONCISE}"]
like = "{BASE}"

[models."{VERBOSE}"]
like = "{BASE}"
answer_tokens = 45

[models."{SLOW}"]
like = "{BASE}"
ms_per_token = 3.0

[models."support.slow-service"]
like = "{BASE}"
ttft_ms = 150
ms_per_token = 12.0
answer_tokens = 40
"""

#: An ini line for gates whose subject is not how pairs are drawn: four pairs at a time (the
#: verdict does not depend on it; the gate takes a quarter of the time).
FOUR_PAIRS = "bedrock_concurrency = 4\n"

#: Environment variables that would point boto3 somewhere else than the test wants.
AWS_VARIABLES = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_BEDROCK_RUNTIME",
    "AWS_ENDPOINT_URL_BEDROCK",
    "BEDROCK_MODEL_ID",
    "BEDROCK_BASELINE_MODEL_ID",
    "GITHUB_STEP_SUMMARY",
    "GITHUB_ACTIONS",
)


def isolate_environment(monkeypatch: Any, tmp_path: Path, **extra: str) -> None:
    """No AWS settings of the machine leak in: no profile files, no instance metadata."""
    for name in AWS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    path = os.environ.get("PYTHONPATH")
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join([str(PACKAGE_PARENT), *([path] if path else [])])
    )
    for name, value in extra.items():
        monkeypatch.setenv(name, value)


#: The conftest of a suite whose clients retry without botocore's random backoff. The test
#: sets ``AWS_RETRY_MODE=legacy`` and ``AWS_DATA_PATH`` (see ``fixed_retry_delay`` in
#: tests/conftest.py); boto3's default session reads the data path once, so a default
#: session left by an earlier in-process run must not serve this one.
FRESH_DEFAULT_SESSION = """
import boto3
import pytest


@pytest.fixture(autouse=True)
def fresh_default_session():
    boto3.setup_default_session()
"""


def write_suite(
    pytester: Any,
    tests: str | dict[str, str],
    *,
    ini: str = "",
    conftest: str = "",
    emulator: bool = True,
) -> None:
    """A test suite that uses the support bot, with the emulator profiles above."""
    pytester.path.joinpath("profiles.toml").write_text(PROFILES)
    # ``pythonpath`` reaches xdist workers too (they do not inherit sys.path changes).
    lines = [
        "[pytest]",
        f"pythonpath = {PACKAGE_PARENT}",
        "bedrock_emulator_profiles = profiles.toml",
    ]
    if emulator:
        lines.append("bedrock_emulator = true")
    pytester.makeini("\n".join(lines) + "\n" + textwrap.dedent(ini))
    if conftest:
        pytester.makeconftest(textwrap.dedent(conftest))
    files = tests if isinstance(tests, dict) else {"test_app": tests}
    pytester.makepyfile(**{name: textwrap.dedent(source) for name, source in files.items()})
    pytester.syspathinsert(PACKAGE_PARENT)


def load_report(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def report_tests(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The JSON report's tests keyed by the test function's name (with parameters)."""
    return {test["nodeid"].split("::")[-1]: test for test in report["tests"]}


def isolated_environ(tmp_path: Path, **extra: str) -> dict[str, str]:
    """Like :func:`isolate_environment`, as a new environment for a subprocess."""
    environ = {
        k: v
        for k, v in os.environ.items()
        if k not in AWS_VARIABLES and not k.startswith("PYTEST_XDIST")
    }
    environ.update(
        AWS_CONFIG_FILE=str(tmp_path / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-aws-credentials"),
        AWS_EC2_METADATA_DISABLED="true",
        PYTHONPATH=os.pathsep.join(
            [
                str(PACKAGE_PARENT),
                *([os.environ["PYTHONPATH"]] if "PYTHONPATH" in os.environ else []),
            ]
        ),
    )
    environ.pop("PYTEST_CURRENT_TEST", None)
    environ.update(extra)
    return environ


@dataclass(frozen=True)
class Run:
    """A pytest run in a subprocess: its directory, exit status and output."""

    path: Path
    returncode: int
    stdout: str
    stderr: str

    @property
    def lines(self) -> list[str]:
        return self.stdout.splitlines()


def run_suite_in(
    directory: Path,
    tests: dict[str, str],
    args: list[str],
    environ: dict[str, str],
    *,
    timeout: float = 120,
) -> Run:
    """Write a support-bot suite into ``directory`` and run pytest on it in a new process.

    For module-scoped fixtures, where ``pytester`` (function-scoped) is not available: one
    run feeds several tests.
    """
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "profiles.toml").write_text(PROFILES)
    (directory / "pytest.ini").write_text(
        f"[pytest]\npythonpath = {PACKAGE_PARENT}\nbedrock_emulator = true\n"
        "bedrock_emulator_profiles = profiles.toml\naddopts = -p no:cacheprovider\n"
    )
    for name, source in tests.items():
        (directory / f"{name}.py").write_text(textwrap.dedent(source))
    done = subprocess.run(
        [sys.executable, "-m", "pytest", *args],
        cwd=directory,
        env=environ,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Run(directory, done.returncode, done.stdout, done.stderr)
