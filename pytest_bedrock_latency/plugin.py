"""pytest hooks and fixtures of pytest-bedrock-latency.

Each hook hands off to the :class:`~.session.BedrockSession` kept in ``config.stash``;
the logic lives in the modules it coordinates.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pytest

from . import settings as settings_module
from .markers import MARKERS
from .run import CallLog
from .session import BedrockSession
from .settings import Settings
from .target import BedrockTarget

if TYPE_CHECKING:
    from .emulator import Emulator
    from .handle import ModelHandle
    from .instrument import Instrumentation
    from .measurement import Generation

SESSION_KEY = pytest.StashKey[BedrockSession]()
OFFLINE_KEY = pytest.StashKey[tuple[BedrockTarget, "Instrumentation"]]()
MESSAGES_KEY = pytest.StashKey[list[str]]()
HOOKS_NAME = "bedrock_latency_test_hooks"


def _session(config: pytest.Config) -> BedrockSession:
    return config.stash[SESSION_KEY]


# -- configuration ------------------------------------------------------------------------
def pytest_addoption(parser: pytest.Parser) -> None:
    settings_module.add_options(parser)


def _resolve(config: pytest.Config, options: settings_module.ConfigLike) -> Settings:
    return settings_module.resolve(
        options,
        environ=os.environ,
        invocation_dir=config.invocation_params.dir,
        ini_dir=config.inipath.parent if config.inipath else None,
        ini_path=config.inipath,
    )


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config) -> None:
    # Offline before the first conftest loads: a client that a conftest, a plugin or the
    # application creates at import time must get the emulator's endpoint too.
    try:
        resolved = _resolve(early_config, settings_module.EarlyOptions(early_config))
    except settings_module.SettingsError:
        return  # pytest_configure reports it, with the rest of the settings
    if not resolved.emulator:
        return
    from .instrument import Instrumentation

    target = BedrockTarget(resolved)
    target.start_emulator()
    instrumentation = Instrumentation()
    BedrockSession.go_offline(target, instrumentation)
    early_config.stash[OFFLINE_KEY] = (target, instrumentation)
    # Also when the run ends before pytest_configure (--help, --version, a usage error).
    early_config.add_cleanup(instrumentation.stop_redirect)
    early_config.add_cleanup(target.stop)


@pytest.hookimpl
def pytest_configure(config: pytest.Config) -> None:
    for marker in MARKERS:
        config.addinivalue_line("markers", marker.HELP)
    offline = config.stash.get(OFFLINE_KEY, None)
    try:
        resolved = _resolve(config, config)
    except settings_module.SettingsError as error:
        raise pytest.UsageError(str(error)) from None
    worker = hasattr(config, "workerinput")  # pytest-xdist's documented marker of a worker
    if not worker:  # the process that writes the outputs checks where they go
        junit = getattr(config.option, "xmlpath", None)
        try:
            settings_module.check_outputs(
                resolved,
                step_summary=os.environ.get("GITHUB_STEP_SUMMARY"),
                others={"--junitxml": Path(os.path.abspath(junit))} if junit else None,
            )
        except settings_module.SettingsError as error:
            raise pytest.UsageError(str(error)) from None
    bedrock = BedrockSession(
        resolved, worker=worker, verbosity=config.get_verbosity(), offline=offline
    )
    config.stash[SESSION_KEY] = bedrock
    if worker:
        bedrock.join_caps(config.workerinput)  # type: ignore[attr-defined]
    elif config.getoption("dist", "no") != "no":  # an xdist controller never collects
        bedrock.share_caps()  # before any worker starts: they count in the same ledger
        _register_test_hooks(config)


class _WorkerNode(Protocol):
    """What ``pytest_configure_node`` is given (pytest-xdist's WorkerController)."""

    config: pytest.Config
    workerinput: dict[str, Any]


@pytest.hookimpl(optionalhook=True)  # pytest-xdist's hook: absent without it
def pytest_configure_node(node: _WorkerNode) -> None:
    if SESSION_KEY in node.config.stash:
        _session(node.config).caps_for_worker(node.workerinput)


def pytest_sessionstart(session: pytest.Session) -> None:
    _session(session.config).start()


def pytest_report_header(config: pytest.Config) -> list[str]:
    return _session(config).target.header_lines() if SESSION_KEY in config.stash else []


def pytest_unconfigure(config: pytest.Config) -> None:
    if SESSION_KEY in config.stash:
        _session(config).stop()
    if config.pluginmanager.has_plugin(HOOKS_NAME):
        config.pluginmanager.unregister(name=HOOKS_NAME)


# -- collection ---------------------------------------------------------------------------
@pytest.hookimpl(trylast=True)  # after -k / -m: a group's verdict pools the selected tests
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _session(config).validate(
        items, deselect=lambda chosen: config.hook.pytest_deselected(items=chosen)
    ):
        _register_test_hooks(config)


# -- running a test -------------------------------------------------------------------------
class MeasuredTestHooks:
    """The per-test hooks, as an object registered only when needed.

    It is registered after collection when some test has a bedrock marker or fixture (or
    in an xdist controller, which receives the workers' reports), so a run of unmarked
    tests pays nothing per test. ``pytest_runtest_logreport`` is not given the config
    either, so the object carries the session.
    """

    def __init__(self, bedrock: BedrockSession) -> None:
        self.bedrock = bedrock

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        self.bedrock.begin(item)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, None, None]:
        result = yield  # re-raises when the test body failed: its bounds are not checked then
        self.bedrock.check(item)
        return result

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        if report.when == "call":
            self.bedrock.surface_faults(item, report)
        self.bedrock.payload(item, report)
        return report

    @pytest.hookimpl(tryfirst=True)  # takes a pooled group's calls off before others see them
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.bedrock.collect(report)

    def pytest_runtest_logfinish(self, nodeid: str) -> None:
        # After teardown, whatever happened in it: measurement is switched off here.
        self.bedrock.end(nodeid)


def _register_test_hooks(config: pytest.Config) -> None:
    if not config.pluginmanager.has_plugin(HOOKS_NAME):
        config.pluginmanager.register(MeasuredTestHooks(_session(config)), HOOKS_NAME)


@pytest.hookimpl(wrapper=True)
def pytest_runtestloop(session: pytest.Session) -> Generator[None, object, object]:
    result = yield  # an xdist controller: the workers have run every test
    # Then the pooled groups whose members ran on the workers (none without xdist: their
    # verdicts are items of the collection).
    if SESSION_KEY in session.config.stash:
        _session(session.config).run_received_groups(session)
    return result


# -- reports -------------------------------------------------------------------------------
@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> Generator[None, None, None]:
    # The outermost wrapper: the files are written, and the series handed to
    # pytest-benchmark, before pytest-benchmark's own wrapper saves.
    interrupted = exitstatus == pytest.ExitCode.INTERRUPTED
    finished = _session(session.config).finish(session.config, interrupted=interrupted)
    session.config.stash[MESSAGES_KEY] = finished.messages
    if finished.failed and session.exitstatus == pytest.ExitCode.OK:
        # An output that was not written (the baseline, above all) must not go green.
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    return (yield)


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    messages = config.stash.get(MESSAGES_KEY, [])
    _session(config).summarize(terminalreporter, config.get_verbosity(), messages)


# -- fixtures --------------------------------------------------------------------------------
@pytest.fixture
def bedrock_model(request: pytest.FixtureRequest) -> ModelHandle:
    """The candidate model (``--bedrock-model``) as a :class:`ModelHandle`."""
    bedrock = _session(request.config)
    bedrock.require_bedrock(need_model=True)
    assert bedrock.settings.model is not None
    return bedrock.handle(bedrock.settings.model)


@pytest.fixture
def bedrock_baseline(request: pytest.FixtureRequest) -> ModelHandle:
    """The base model: ``--bedrock-baseline``, or the candidate custom model's base."""
    bedrock = _session(request.config)
    bedrock.require_bedrock(need_model=True)
    assert bedrock.settings.model is not None
    choice = bedrock.base_for(bedrock.settings.model)
    if choice.model_id is None:
        pytest.skip(f"no base model configured: {choice.problem}")
    return bedrock.handle(choice.model_id)


@pytest.fixture
def bedrock_runtime(request: pytest.FixtureRequest) -> object:
    """The configured boto3 ``bedrock-runtime`` client (its calls are measured too)."""
    bedrock = _session(request.config)
    bedrock.require_bedrock(need_model=False)
    return bedrock.runtime_client()


@pytest.fixture
def bedrock_calls(request: pytest.FixtureRequest) -> Sequence[Generation]:
    """The :class:`Generation` of every Bedrock call the test has completed so far."""
    bedrock = _session(request.config)
    run = bedrock.run_for(request.node)
    assert run is not None  # the fixture's name makes the session measure this test
    return CallLog(run, text_in_repr=bedrock.settings.report_text)


@pytest.fixture
def bedrock_emulator(request: pytest.FixtureRequest) -> Generator[Emulator, None, None]:
    """The session's embedded Bedrock emulator; per-test profile overrides are reset after."""
    emulator = _session(request.config).emulator_for_fixture()
    yield emulator
    emulator.reset_overrides()
