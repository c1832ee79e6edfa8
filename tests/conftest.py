"""Shared fixtures of the plugin tests.

``bedrock_pytester`` runs pytest in-process (``pytester``) against the plugin's embedded
emulator with tiny, deterministic profiles, in an environment without any AWS settings of
the machine the suite runs on (so the results do not depend on a developer's ~/.aws).
"""

from __future__ import annotations

import contextlib
import copy
import gc
import importlib
import json
import os
import pkgutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

#: The model every pytester run asks by default (a foundation-model id: no base model).
MODEL = "amazon.nova-lite-v1:0"

#: Small and deterministic: no jitter, no spread, 20 tokens in about 40 ms.
PROFILES_TOML = """\
[defaults]
ttft_ms = 20
ms_per_token = 1
answer_tokens = 20
jitter = 0.0
prompt_spread = 0.0
answer_tokens_spread = 0.0

[models."amazon.nova-lite-v1:0"]
family = "nova"

[models."amazon.titan-text-express-v1"]
family = "titan"

[models."anthropic.claude-3-haiku-20240307-v1:0"]
family = "anthropic"

[models."amazon.nova-micro-v1:0"]
family = "nova"
answer_tokens = 7

[models."amazon.nova-pro-v1:0"]
family = "nova"
answer_tokens = 9
"""


def _preload() -> None:
    """Import what an inner pytest run imports, once, in this process.

    ``pytester``'s in-process runs unload every module imported during the run, so without
    this each run would import (and assertion-rewrite) boto3, botocore and the plugin again:
    about a second per run instead of a few hundred milliseconds. (Hypothesis, which is not
    ours, is turned off in inner runs for the same reason.)
    """
    import boto3
    import botocore.eventstream  # noqa: F401

    import pytest_bedrock_latency

    for module in pkgutil.walk_packages(pytest_bedrock_latency.__path__, "pytest_bedrock_latency."):
        if not module.name.endswith("__main__"):
            # An optional extra (e.g. matplotlib) may not be installed.
            with contextlib.suppress(ImportError):
                importlib.import_module(module.name)

    # The plugin measures httpx clients too (pydantic-ai, litellm...): where httpx is
    # installed, every run patches it, so it is imported here once as well.
    with contextlib.suppress(ImportError):
        import httpx  # noqa: F401

    session = boto3.Session(
        aws_access_key_id="preload", aws_secret_access_key="preload", region_name="us-east-1"
    )
    for service in ("bedrock-runtime", "bedrock"):  # no request is sent
        session.client(service, endpoint_url="http://127.0.0.1:9")  # type: ignore[call-overload]
    session.get_available_regions("bedrock-runtime")


_preload()

#: Every variable that could point boto3 or the plugin somewhere on the host.
_AWS_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_BEDROCK_RUNTIME",
    "AWS_ENDPOINT_URL_BEDROCK",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "BEDROCK_MODEL_ID",
    "BEDROCK_BASELINE_MODEL_ID",
    "GITHUB_STEP_SUMMARY",
)


#: What every pytest a test starts (pytester's, a subprocess, an ``-n`` worker) reads from
#: ``PYTEST_ADDOPTS``, in place of the machine's: two third-party pytest plugins off that no
#: inner run uses. LangSmith's (the ``clients`` extra brings it in with LangChain) costs each
#: fresh interpreter about a second to import, anyio's (httpx brings it in) 0.15 s.
INNER_ADDOPTS = "-p no:langsmith_plugin -p no:anyio"


def pytest_collection_finish(session: pytest.Session) -> None:
    """What the collection loaded stays for the whole run: out of the garbage collector's way.

    Every full collection walks every object the process tracks, and a worker holds botocore,
    the client libraries and the collected suite: about 70 ms each, 4 s of the suite's CPU.
    """
    gc.freeze()


@pytest.hookimpl(trylast=True)  # after -k / -m deselection
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under ``pytest -n N``, start each worker on one of the suite's longest tests.

    xdist's ``worksteal`` scheduler hands each worker a contiguous share of the collection
    and lets an idle worker take the *end* of the longest remaining queue. Tests marked
    ``long_running`` (seconds of the emulator's real time each, the client matrix sessions
    up to 15 s) would otherwise sit in the first worker's share, one after the other, and
    finish the run alone. Here each share begins with every N-th of them; the rest keep
    their order, so a module's tests stay together with its module-scoped fixtures.
    Every worker computes the same order (xdist checks that the collections agree).
    """
    workers = int(getattr(config, "workerinput", {}).get("workercount", 1))
    long_running: list[pytest.Item] = []
    rest: list[pytest.Item] = []
    for item in items:
        (long_running if item.get_closest_marker("long_running") else rest).append(item)
    if workers < 2 or not long_running:
        return
    ordered: list[pytest.Item] = []
    remaining = len(items)
    for share in range(workers):  # worksteal's split: remaining // workers left, in turn
        size = remaining // (workers - share)
        remaining -= size
        head = long_running[share::workers]
        fill = max(size - len(head), 0)
        ordered += head + rest[:fill]
        del rest[:fill]
    items[:] = ordered + rest


@pytest.fixture(scope="session", autouse=True)
def _botocore_files_parsed_once() -> Iterator[None]:
    """Each of botocore's data files is parsed once in this process, not once per session.

    botocore gives every new session a loader of its own, which parses the bundled JSON
    files again: the endpoints file alone costs about 30 ms of CPU at the first client of
    each session. The plugin makes a session in every pytest run, and the suite makes
    hundreds of runs in-process: sharing the parsed files took the suite's CPU from about
    91 to 77 s. ``botocore.register_initializer`` is botocore's own hook on new sessions.
    Each session still gets its own loader, made when botocore would make it, on the same
    data path (``AWS_DATA_PATH``, e.g. a test's ``_retry.json``); only what loaders read is
    shared, as botocore shares it among the clients of one session: the parsed files, which
    files exist, and the listing of botocore's services on a search path (every new loader
    walks the directory of each of them).
    """
    import botocore
    from botocore.loaders import JSONFileLoader, Loader

    register = getattr(botocore, "register_initializer", None)  # not in old botocore
    if register is None:
        yield
        return
    parsed: dict[str, Any] = {}
    found: set[str] = set()

    class ParsedOnce(JSONFileLoader):
        def exists(self, file_path: str) -> bool:  # asked for every service of botocore's
            if file_path not in found and super().exists(file_path):
                found.add(file_path)
            return file_path in found

        def load_file(self, file_path: str) -> Any:
            if file_path not in parsed:
                data = super().load_file(file_path)
                if data is None:  # no such file (yet): look again next time
                    return None
                parsed[file_path] = data
            return parsed[file_path]

    files = ParsedOnce()
    listings: dict[tuple[tuple[str, ...], str], list[str]] = {}

    class ListedOnce(Loader):
        def list_available_services(self, type_name: str) -> list[str]:  # a directory walk
            key = (tuple(self.search_paths), type_name)
            if key not in listings:
                listings[key] = super().list_available_services(type_name)
            return listings[key]

    def share_parsed_files(session: Any) -> None:
        def make_loader() -> Loader:  # botocore.loaders.create_loader, with the shared files
            data_path = session.get_config_variable("data_path")
            paths = data_path.split(os.pathsep) if data_path is not None else []
            extra = [os.path.expanduser(os.path.expandvars(path)) for path in paths]
            return ListedOnce(extra_search_paths=extra, file_loader=files)

        session.lazy_register_component("data_loader", make_loader)

    register(share_parsed_files)
    yield
    botocore.unregister_initializer(share_parsed_files)


@pytest.fixture(scope="session", autouse=True)
def _inner_addopts_before_any_fixture() -> Iterator[None]:
    """:data:`INNER_ADDOPTS` for the pytest runs module-scoped fixtures start, too (they are
    set up before any function-scoped fixture; without it each run loaded LangSmith's plugin,
    0.7 s of CPU)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTEST_ADDOPTS", INNER_ADDOPTS)
        yield


@pytest.fixture(autouse=True)
def _inner_addopts(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """:data:`INNER_ADDOPTS` again for a test with ``pytester``, which clears it when it starts."""
    if "pytester" in request.fixturenames:
        request.getfixturevalue("pytester")
        monkeypatch.setenv("PYTEST_ADDOPTS", INNER_ADDOPTS)


@pytest.fixture
def clean_aws_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """No AWS credentials, region, profile or endpoint from the host; no instance metadata."""
    for name in _AWS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    missing = tmp_path_factory.mktemp("no-aws") / "missing"
    monkeypatch.setenv("AWS_CONFIG_FILE", str(missing / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(missing / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return


def _busy() -> bool:
    """More runnable processes than cores: now (/proc/loadavg) or over the last minute."""
    cores = os.cpu_count() or 1
    try:  # "0.52 0.58 0.59 3/512 4242": the fourth field counts the runnable ones now
        runnable = int(Path("/proc/loadavg").read_text().split()[3].split("/")[0])
    except (OSError, IndexError, ValueError):
        runnable = 0
    return runnable - 1 >= cores or os.getloadavg()[0] > cores  # - 1: this process


@pytest.fixture(scope="session")
def matplotlib_loaded() -> bool:
    """Whether matplotlib (the ``plot`` extra) is installed; if so, it is imported now.

    A test that draws pictures in this process, or whose in-process pytester run does,
    asks for this first: pytester unloads what a run imported, and numpy (under matplotlib)
    cannot be imported a second time in one process. Imported only by the workers that run
    such a test, not at every worker's collection (0.4 s of CPU each).
    """
    try:
        import matplotlib.backends.backend_agg
        import matplotlib.figure  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(scope="session")
def machine_busy() -> Callable[[], bool]:
    """``machine_busy()``: whether the machine has no core to spare, right now.

    Tests that check real-time figures against the emulator's schedule to a few percent
    allow more when it is busy (CI's run under background load): a thread that should read
    a token then waits for a core for milliseconds, or tens of them. The wider bound, said
    in the test's output, still tells a wrong definition (off by 50 % or more) from noise.
    """
    return _busy


@pytest.fixture(scope="session")
def fixed_retry_delay(tmp_path_factory: pytest.TempPathFactory) -> Callable[[float], Path]:
    """``fixed_retry_delay(seconds)``: a botocore data directory for retries without backoff.

    botocore's ``legacy`` retry mode takes its retry rules and delays from the data file
    ``_retry.json``, searched first on the AWS data path (``AWS_DATA_PATH``, a session's
    ``data_path``). The file here is botocore's own with a fixed delay instead of the random
    exponential backoff, so a retrying test neither waits seconds nor a random time. Plus one
    rule: ModelNotReadyException (429) is retried, as botocore's standard mode does from
    Bedrock's service model (legacy mode's shipped rules predate Bedrock).
    """
    import botocore.session

    made: dict[float, Path] = {}

    def directory(seconds: float) -> Path:
        if seconds not in made:
            rules = copy.deepcopy(botocore.session.get_session().get_data("_retry"))
            rules["retry"]["__default__"]["delay"] = {
                "type": "exponential",
                "base": seconds,
                "growth_factor": 1,
            }
            rules["retry"]["bedrock-runtime"] = {
                "__default__": {
                    "policies": {
                        "model_not_ready": {
                            "applies_when": {
                                "response": {
                                    "service_error_code": "ModelNotReadyException",
                                    "http_status_code": 429,
                                }
                            }
                        }
                    }
                }
            }
            made[seconds] = tmp_path_factory.mktemp("botocore-data")
            (made[seconds] / "_retry.json").write_text(json.dumps(rules), encoding="utf-8")
        return made[seconds]

    return directory


class BedrockPytester:
    """``pytester`` plus the plugin's options: profiles file, emulator, model."""

    def __init__(self, pytester: pytest.Pytester) -> None:
        self.pytester = pytester
        self.path = pytester.path
        self.profiles()

    def profiles(self, text: str = PROFILES_TOML, name: str = "profiles") -> Path:
        """Write the emulator profiles TOML into the pytester directory."""
        return self.pytester.makefile(".toml", **{name: text})

    def makepyfile(self, *args: Any, **kwargs: Any) -> Path:
        return self.pytester.makepyfile(*args, **kwargs)

    def run(self, *args: str, model: str | None = MODEL, emulator: bool = True) -> pytest.RunResult:
        """``pytest [--bedrock-emulator ...] [--bedrock-model MODEL] *args`` in-process (Hypothesis
        and the cache are off in the inner run: not ours, and slow to load per run)."""
        argv: list[str] = ["-p", "no:cacheprovider", "-p", "no:hypothesispytest"]
        if emulator:
            argv += ["--bedrock-emulator", "--bedrock-emulator-profiles", "profiles.toml"]
        if model is not None:
            argv += ["--bedrock-model", model]
        return self.pytester.runpytest(*argv, *args)

    def json(self, name: str) -> Any:
        return json.loads((self.path / name).read_text(encoding="utf-8"))


@pytest.fixture
def emulator_suite(pytester: pytest.Pytester) -> Callable[..., pytest.Pytester]:
    """A maker of pytester directories that run every test against the emulator:
    ``emulator_suite(PROFILES, baseline=BASE)`` writes ``profiles.toml`` and an ini with
    ``bedrock_emulator = true``, the profiles, and a ``bedrock_<name> = value`` line per keyword."""

    def make(profiles: str, **ini: object) -> pytest.Pytester:
        pytester.makefile(".toml", profiles=profiles)
        lines = ["[pytest]", "bedrock_emulator = true", "bedrock_emulator_profiles = profiles.toml"]
        lines += [f"bedrock_{name} = {value}" for name, value in ini.items()]
        pytester.makeini("\n".join(lines) + "\n")
        return pytester

    return make


@pytest.fixture
def bedrock_pytester(pytester: pytest.Pytester, clean_aws_env: None) -> BedrockPytester:
    """A pytester directory with ``profiles.toml`` (see :data:`PROFILES_TOML`) and a clean AWS env."""
    return BedrockPytester(pytester)
