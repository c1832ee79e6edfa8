"""Every run-wide setting of the plugin, and the one place that resolves them.

Precedence is marker > command line > environment > ini > default (like pytest-timeout).
The run-wide part is :func:`resolve`; a test's markers go on top in :meth:`TestSettings.of`,
built once per test, which is all code downstream reads.
An invalid value is a :class:`SettingsError` whose message names where the value came
from, so the user knows which file, variable or flag to fix.
"""

from __future__ import annotations

import math
import os
import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:  # markers.py imports this module
    from .markers import TestBounds

T = TypeVar("T")
N = TypeVar("N", int, float)

POLICIES = ("strict", "lenient")

# Upper bounds: a value above one of these is a typo or a misunderstanding, never a plan, and
# would otherwise mean hours of paid calls, thousands of threads or a timeout that overflows
# the socket layer. Markers share them (markers.py imports these).
MAX_BUDGET = 1000  # pairs per gate: 2000 paid calls per request; the default is 40
MAX_CONCURRENCY = 1024  # pairs in flight; each is a thread and two pooled connections
MAX_TIMEOUT_S = 3600.0  # one Bedrock call; the longest answers take minutes
MAX_LATENCY_SCALE = 1000.0
MAX_MAX_TOKENS = 1_000_000  # above every model's output limit

# botocore's own check of a region name (a DNS label); anything else fails inside boto3.
_REGION_NAME = re.compile(r"^[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$")


class SettingsError(ValueError):
    """A setting has an invalid value; the message names its source and the fix."""


class ConfigLike(Protocol):
    """What :func:`resolve` needs of ``pytest.Config`` (kept small so it is testable)."""

    def getoption(self, name: str) -> Any: ...

    def getini(self, name: str) -> Any: ...


class EarlyOptions:
    """A :class:`ConfigLike` over the command line as pytest parsed it before the conftests
    load (``pytest_load_initial_conftests``), when ``config.getoption`` does not work yet."""

    def __init__(self, config: Any) -> None:
        self._config = config

    def getoption(self, name: str) -> Any:
        return getattr(self._config.known_args_namespace, name, None)

    def getini(self, name: str) -> Any:
        return self._config.getini(name)


class OptionParser(Protocol):
    """What :func:`add_options` needs of pytest's ``Parser``."""

    def getgroup(self, name: str, description: str = "") -> Any: ...

    def addini(self, name: str, help: str, type: Any = None, default: Any = None) -> None: ...


# -- value parsers: each takes the raw text and returns the value or raises ValueError ----
def _text(raw: str) -> str:
    if not raw.strip():
        raise ValueError("must not be empty")
    return raw.strip()


def _positive_int(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"must be a whole number, got {raw!r}") from None
    if value <= 0:
        raise ValueError(f"must be greater than 0, got {value}")
    return value


def _positive_float(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"must be a number, got {raw!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"must be a finite number greater than 0, got {raw}")
    return value


def _usd(raw: str) -> float:
    text = raw.strip().removeprefix("$").strip()
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"must be an amount of US dollars such as 2.50, got {raw!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"must be an amount of US dollars greater than 0, got {raw}")
    return value


def _at_most(parse: Callable[[str], N], limit: float, unit: str = "") -> Callable[[str], N]:
    """``parse``, then refuse values above ``limit`` (the message says the limit)."""

    def parse_bounded(raw: str) -> N:
        value = parse(raw)
        if value > limit:
            raise ValueError(f"must be at most {limit:g}{unit}, got {raw.strip()}")
        return value

    return parse_bounded


def _budget(raw: str) -> int:
    value = _at_most(_positive_int, MAX_BUDGET, " pairs")(raw)
    if value < 5:
        raise ValueError(
            f"must be at least 5 pairs (the first look of the sequential rule), got {value}"
        )
    return value


def _region(raw: str) -> str:
    value = _text(raw)
    if not _REGION_NAME.match(value):
        raise ValueError(f"{value!r} is not an AWS region name (e.g. us-east-1)")
    return value


def _url(raw: str) -> str:
    value = _text(raw)
    try:
        parts = urllib.parse.urlsplit(value)
        parts.port  # noqa: B018  (raises ValueError on a port that is not a number)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"{value!r} is not an http(s) URL (e.g. https://bedrock-runtime.us-east-1.amazonaws.com)"
        )
    return value


def _proxy_upstream(raw: str) -> str:
    value = raw.strip()
    if value == "aws":
        return value
    try:
        return _url(value)
    except ValueError:
        raise ValueError(f"must be 'aws' or an http(s) URL, got {raw!r}") from None


def _policy(raw: str) -> str:
    value = raw.strip().lower()
    if value not in POLICIES:
        raise ValueError(f"must be one of {', '.join(POLICIES)}, got {raw!r}")
    return value


def _confidence(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"expected a probability such as 0.99, got {raw!r}") from None
    if not 0.5 <= value <= 0.9999:
        raise ValueError(f"must be between 0.5 and 0.9999 (e.g. 0.99), got {raw!r}")
    return value


def _group(raw: str) -> str:
    name = raw.strip()
    if not name or any(c in name for c in "[]\n"):
        raise ValueError(f"a group name is non-empty text without brackets, got {raw!r}")
    return name


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"must be true or false, got {raw!r}")


@dataclass(frozen=True)
class Option:
    """One setting: its command-line flag, ini key, environment variable and parser."""

    name: str
    help: str
    parse: Callable[[str], Any] = _text
    env: str | None = None
    default: Any = None
    flag_only: bool = False  # a switch on the command line (store_true); "true"/"false" in ini
    is_path: bool = False
    metavar: str | None = None

    @property
    def flag(self) -> str:
        return "--bedrock-" + self.name.replace("_", "-")

    @property
    def ini(self) -> str:
        return "bedrock_" + self.name

    @property
    def dest(self) -> str:
        return "bedrock_" + self.name


OPTIONS: tuple[Option, ...] = (
    Option(
        "model",
        "the candidate: a model id, inference profile, custom-model or provisioned-throughput ARN",
        env="BEDROCK_MODEL_ID",
        metavar="MODEL_ID",
    ),
    Option(
        "baseline",
        "the base model to compare the candidate against",
        env="BEDROCK_BASELINE_MODEL_ID",
        metavar="MODEL_ID",
    ),
    Option("region", "AWS region of Bedrock", parse=_region, env="AWS_REGION", metavar="REGION"),
    Option("aws_profile", "AWS named profile for credentials", env="AWS_PROFILE", metavar="NAME"),
    Option(
        "endpoint_url",
        "Bedrock Runtime endpoint URL",
        parse=_url,
        env="AWS_ENDPOINT_URL_BEDROCK_RUNTIME",
        metavar="URL",
    ),
    Option(
        "emulator",
        "start the embedded Bedrock emulator and send all Bedrock traffic of the process to it",
        parse=_bool,
        default=False,
        flag_only=True,
    ),
    Option(
        "emulator_profiles",
        "the emulator's TOML model profiles (ini: relative to the ini file)",
        is_path=True,
        metavar="FILE",
    ),
    Option(
        "max_tokens",
        "default maxTokens for calls through the model handle",
        parse=_at_most(_positive_int, MAX_MAX_TOKENS),
        metavar="N",
    ),
    Option("report", "write the JSON report to this path", is_path=True, metavar="PATH"),
    Option(
        "report_text",
        "include prompts and answers in the JSON report",
        parse=_bool,
        default=False,
        flag_only=True,
    ),
    Option(
        "latency_scale",
        "multiply every latency bound by this factor (slower regions, shared runners)",
        parse=_at_most(_positive_float, MAX_LATENCY_SCALE),
        default=1.0,
        metavar="FACTOR",
    ),
    Option(
        "regression_budget",
        f"most pairs a bedrock_regression gate may draw (5 to {MAX_BUDGET})",
        parse=_budget,
        default=40,
        metavar="PAIRS",
    ),
    Option(
        "regression_policy",
        "strict: a marginal verdict stands; lenient: a marginal fail passes with a warning",
        parse=_policy,
        default="strict",
        metavar="strict|lenient",
    ),
    Option(
        "concurrency",
        "pairs in flight at once in a regression gate (default 1: more pairs in flight load "
        f"the endpoints the gate measures; at most {MAX_CONCURRENCY})",
        parse=_at_most(_positive_int, MAX_CONCURRENCY),
        default=1,
        metavar="N",
    ),
    Option(
        "confidence",
        "the session's chance of no false FAIL of a regression gate, shared by all its gates "
        "(0.5 to 0.9999)",
        parse=_confidence,
        default=0.99,
        metavar="P",
    ),
    Option(
        "regression_group",
        "pool every bedrock_regression test without a group of its own into this group: one "
        "verdict over all their requests",
        parse=_group,
        metavar="NAME",
    ),
    Option(
        "update_baseline",
        "record the base model's samples into the baseline file",
        parse=_bool,
        default=False,
        flag_only=True,
    ),
    Option(
        "baseline_file",
        "stored baselines (default: .bedrock-baseline.json next to the ini file)",
        is_path=True,
        metavar="PATH",
    ),
    Option(
        "max_calls",
        "cap on Bedrock invocations of the whole session",
        parse=_positive_int,
        metavar="N",
    ),
    Option(
        "prices",
        'TOML price table over the shipped one: [models."MODEL_ID"] input_per_1k, output_per_1k, ... '
        "in USD (ini: relative to the ini file)",
        is_path=True,
        metavar="FILE",
    ),
    Option(
        "max_cost",
        "cap in US dollars on the session's Bedrock spend; a regression gate stops drawing pairs "
        "before it would pass the cap",
        parse=_usd,
        metavar="USD",
    ),
    Option(
        "timeout",
        f"fail a Bedrock call that takes longer than this (at most {MAX_TIMEOUT_S:g})",
        parse=_at_most(_positive_float, MAX_TIMEOUT_S, " seconds"),
        metavar="SECONDS",
    ),
    Option(
        "require",
        "fail Bedrock tests instead of skipping them when Bedrock is not configured",
        parse=_bool,
        default=False,
        flag_only=True,
    ),
    Option(
        "plot",
        "draw candidate-versus-base distributions of each gated test into this directory",
        is_path=True,
        metavar="DIR",
    ),
    Option(
        "record_profiles",
        "at the end, write emulator profiles fitted from the session's calls to this TOML file "
        "(an existing file is merged per model)",
        is_path=True,
        metavar="PATH",
    ),
    Option(
        "record_answers",
        "with --bedrock-record-profiles: store each prompt's answer text in the file too",
        parse=_bool,
        default=False,
        flag_only=True,
    ),
    Option(
        "proxy",
        "start the measuring proxy to UPSTREAM ('aws' or a URL) and point subprocesses at it "
        "(AWS_ENDPOINT_URL_BEDROCK_RUNTIME, AWS_ENDPOINT_URL_BEDROCK)",
        parse=_proxy_upstream,
        metavar="UPSTREAM",
    ),
)


@dataclass(frozen=True)
class Settings:
    """The resolved run-wide settings (see :data:`OPTIONS` for each one's meaning)."""

    model: str | None = None
    baseline: str | None = None
    region: str | None = None
    aws_profile: str | None = None
    endpoint_url: str | None = None
    emulator: bool = False
    emulator_profiles: Path | None = None
    max_tokens: int | None = None
    report: Path | None = None
    report_text: bool = False
    latency_scale: float = 1.0
    regression_budget: int = 40
    regression_policy: str = "strict"
    concurrency: int = 1
    confidence: float = 0.99
    regression_group: str | None = None
    update_baseline: bool = False
    baseline_file: Path | None = None
    max_calls: int | None = None
    prices: Path | None = None
    max_cost: float | None = None
    timeout: float | None = None
    require: bool = False
    plot: Path | None = None
    record_profiles: Path | None = None
    record_answers: bool = False
    proxy: str | None = None


def add_options(parser: OptionParser) -> None:
    """Register every option's flag and ini key with pytest."""
    group = parser.getgroup("bedrock-latency", "Bedrock latency and verbosity gates")
    for option in OPTIONS:
        source = f" [env {option.env}]" if option.env else ""
        help_text = f"{option.help}{source} (ini: {option.ini})"
        if option.flag_only:
            group.addoption(
                option.flag, action="store_true", default=None, dest=option.dest, help=help_text
            )
        else:
            group.addoption(
                option.flag, default=None, dest=option.dest, metavar=option.metavar, help=help_text
            )
        parser.addini(option.ini, help=option.help, default="")


def resolve(
    config: ConfigLike,
    *,
    environ: Mapping[str, str],
    invocation_dir: Path,
    ini_dir: Path | None,
    ini_path: Path | None = None,
) -> Settings:
    """Resolve every option: command line > environment > ini > default."""
    values: dict[str, Any] = {}
    ini_name = str(ini_path) if ini_path else "the ini file"
    for option in OPTIONS:
        cli = config.getoption(option.dest)
        env = environ.get(option.env, "") if option.env else ""
        ini = str(config.getini(option.ini) or "").strip()
        if cli is not None:
            raw, where, base = cli, f"{option.flag}", invocation_dir
        elif env.strip():
            raw, where, base = env, f"environment variable {option.env}", invocation_dir
        elif ini:
            raw, where, base = ini, f"{option.ini} = {ini} in {ini_name}", ini_dir or invocation_dir
        else:
            values[option.name] = option.default
            continue
        if isinstance(raw, bool):
            values[option.name] = raw
            continue
        try:
            value = option.parse(str(raw))
        except ValueError as error:
            raise SettingsError(f"{where}: {error}") from None
        if option.is_path:
            value = (base / Path(value)).resolve()
        values[option.name] = value
    if values["baseline_file"] is None:
        values["baseline_file"] = (ini_dir or invocation_dir) / ".bedrock-baseline.json"
    names = {field.name for field in fields(Settings)}
    return Settings(**{name: value for name, value in values.items() if name in names})


def effective(marker_value: T | None, run_value: T) -> T:
    """A marker argument beats the run-wide setting (the top of the precedence order)."""
    return run_value if marker_value is None else marker_value


@dataclass(frozen=True)
class TestSettings:
    """What one test runs with: its markers' arguments over the run-wide settings.

    Built once when the test starts (as pytest-timeout resolves an item's settings once)
    and read by everything downstream, so "marker beats run setting" lives only here.
    """

    latency_scale: float
    timeout: float | None
    max_tokens: int | None
    regression_budget: int
    regression_policy: str
    concurrency: int
    confidence: float = 0.99

    __test__ = False  # not a pytest test class, despite the name

    @classmethod
    def of(cls, settings: Settings, bounds: TestBounds) -> TestSettings:
        """The test's settings from the run's and the test's markers."""
        gate = bounds.regression
        return cls(
            latency_scale=settings.latency_scale,
            timeout=settings.timeout,
            max_tokens=settings.max_tokens,
            regression_budget=effective(gate.budget if gate else None, settings.regression_budget),
            regression_policy=effective(gate.policy if gate else None, settings.regression_policy),
            concurrency=settings.concurrency,
            confidence=settings.confidence,
        )


def _creatable(path: Path) -> str | None:
    """Why a file cannot be made at ``path`` (its nearest existing ancestor), or None."""
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        return f"its parent {ancestor} is a file, not a directory"
    if not os.access(ancestor, os.W_OK | os.X_OK):
        return f"the directory {ancestor} is not writable"
    return None


def check_outputs(
    settings: Settings,
    *,
    step_summary: str | None = None,
    others: Mapping[str, Path] | None = None,
) -> None:
    """Refuse output paths that are knowably wrong, before any test (or paid call) runs.

    A directory where a file is needed (or a file where a directory is), a parent that
    cannot be created or written, two outputs on one path, and an output on one of the
    run's inputs (the baseline file, the emulator's profiles, the price file) would each
    lose the run's results at its end. ``others`` are pytest's own outputs (``--junitxml``) by flag: only
    checked for a clash with the plugin's.

    Raises:
        SettingsError: every problem found, one per line, each naming the flag and the fix.
    """
    problems: list[str] = []
    files: dict[str, Path] = {}
    if settings.report is not None:
        files["--bedrock-report"] = settings.report
    if settings.update_baseline and settings.baseline_file is not None:
        files["--bedrock-baseline-file"] = settings.baseline_file
    if settings.record_profiles is not None:
        files["--bedrock-record-profiles"] = settings.record_profiles
    if step_summary:
        files["GITHUB_STEP_SUMMARY"] = Path(step_summary)
    for flag, path in files.items():
        if path.is_dir():
            problems.append(f"{flag} {path} is a directory; name a file")
        elif (why := _creatable(path)) is not None:
            problems.append(f"{flag} {path} cannot be written: {why}")
    if settings.plot is not None:
        if settings.plot.exists() and not settings.plot.is_dir():
            problems.append(f"--bedrock-plot {settings.plot} is a file; name a directory")
        elif not settings.plot.exists() and (why := _creatable(settings.plot)) is not None:
            problems.append(f"--bedrock-plot {settings.plot} cannot be created: {why}")
    # Two outputs on one path, or an output over an input of the run.
    claimed: dict[Path, str] = {}
    inputs = {
        "--bedrock-baseline-file": settings.baseline_file,
        "--bedrock-emulator-profiles": settings.emulator_profiles,
        "--bedrock-prices": settings.prices,
    }
    # pytest's own outputs are pytest's to check; here they only must not clash with ours.
    outputs = {**(others or {}), **files}
    if settings.plot is not None:
        outputs["--bedrock-plot"] = settings.plot
    for flag, path in outputs.items():
        key = Path(os.path.realpath(path))
        if key in claimed:
            problems.append(
                f"{flag} and {claimed[key]} are the same path ({path}); give each its own"
            )
        else:
            claimed[key] = flag
    for input_flag, input_path in inputs.items():
        if input_path is None:
            continue
        key = Path(os.path.realpath(input_path))
        writer = claimed.get(key)
        if writer is not None and writer != input_flag:
            problems.append(
                f"{writer} {input_path} would overwrite the {input_flag} file; name another path"
            )
    if problems:
        raise SettingsError("\n".join(problems))
