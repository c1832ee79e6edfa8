"""Where the session's Bedrock calls go, and what is missing to make them.

:class:`BedrockTarget` owns the embedded emulator (when asked for), the environment it
points the process at, the plugin's clients, and the one-line hint a failed call ends
with. It also answers "can a Bedrock test run here?" for :meth:`BedrockTarget.require`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, MutableMapping
from typing import TYPE_CHECKING, Any

import pytest

from .errors import CallFailures
from .settings import Settings

#: What the emulator's 404 for a model without a profile tells a plugin user to do.
NOT_FOUND_HINT = (
    'add a profile for it to the file given with --bedrock-emulator-profiles (a glob or a "*" '
    "profile covers many)"
)

# boto3, botocore and moto cost a few hundred milliseconds to import; a run whose tests
# never touch Bedrock must not pay that, so they are imported where used.
if TYPE_CHECKING:
    import boto3

    from .clients import Clients, Target
    from .emulator import Emulator
    from .emulator.proxy import Proxy
    from .handle import ModelHandle
    from .instrument import Instrumentation
    from .measurement import CallRecord
    from .regression import CallBudget


class EnvironmentPatch:
    """Environment variables set for the session and restored exactly afterwards."""

    def __init__(self, environ: MutableMapping[str, str]) -> None:
        self._environ = environ
        self._saved: dict[str, str | None] = {}

    def set(self, name: str, value: str) -> None:
        self._saved.setdefault(name, self._environ.get(name))
        self._environ[name] = value

    def restore(self) -> None:
        for name, value in self._saved.items():
            if value is None:
                self._environ.pop(name, None)
            else:
                self._environ[name] = value
        self._saved.clear()


def aws_config_problem(aws_profile: str | None) -> tuple[str | None, boto3.Session | None]:
    """Why boto3 cannot make a session from the AWS config files and profile (or None), and
    the session when it could."""
    import boto3
    from botocore.exceptions import BotoCoreError

    from .clients import session_problem

    try:
        return None, boto3.Session(profile_name=aws_profile)
    except BotoCoreError as error:
        return session_problem(error, aws_profile), None


def has_credentials(session: boto3.Session | None = None) -> bool:
    """Whether boto3 finds credentials of its own (then the emulator's dummy keys are not set).

    ``session``: one of the default profile to ask (each new session costs milliseconds).
    """
    import boto3

    try:
        return (session or boto3.Session()).get_credentials() is not None
    except Exception:  # a broken profile: our dummy keys would not be used anyway
        return True


class BedrockTarget:
    """The emulator, the environment, the clients and the failure hint of one session."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.environment = EnvironmentPatch(os.environ)
        self.emulator: Emulator | None = None
        self._own_emulator = False
        self.clients: Clients | None = None
        self._failures: CallFailures | None = None
        self._problems: list[str] | None = None
        self._emulator_problem = ""
        self._lock = threading.Lock()
        self.proxy: Proxy | None = None
        #: Receives each call the proxy measures, when its request arrives.
        self.on_proxy_call: Callable[[CallRecord], None] | None = None
        #: Clients that were aimed elsewhere and sent to the emulator instead (offline runs).
        self.redirected: list[str] = []

    @property
    def target(self) -> Target | None:
        """Where the clients send, once :meth:`start` ran."""
        return self.clients.target if self.clients else None

    def start_emulator(self) -> Emulator | None:
        """With ``--bedrock-emulator``: start it and point every client of the process at it.

        Runs before the first conftest loads (``pytest_load_initial_conftests``), so clients
        that conftest files, plugins and the application create at import time read the
        emulator's endpoint too. Calling it again does nothing.
        """
        settings = self.settings
        if not settings.emulator or self._own_emulator:
            return self.emulator if self._own_emulator else None
        # boto3 reads the AWS config files for every client, the application's too: a
        # broken file or unknown profile would fail each test with a botocore traceback.
        problem, session = aws_config_problem(settings.aws_profile)
        if problem is not None:
            raise pytest.UsageError(f"--bedrock-emulator: {problem}")
        self.emulator = self._start_emulator()
        if self.emulator is None:
            raise pytest.UsageError(f"--bedrock-emulator: {self._emulator_problem}")
        self._own_emulator = True
        url = self.emulator.url
        # Every client of the process, the application's included, follows these: boto3 and
        # aiobotocore read the first two, litellm the third.
        self.environment.set("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", url)
        self.environment.set("AWS_ENDPOINT_URL_BEDROCK", url)
        self.environment.set("AWS_BEDROCK_RUNTIME_ENDPOINT", url)
        # The application's clients take the default profile: that session only if it is one.
        if not has_credentials(session if settings.aws_profile is None else None):
            self.environment.set("AWS_ACCESS_KEY_ID", "testing")
            self.environment.set("AWS_SECRET_ACCESS_KEY", "testing")
        if not (
            os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or settings.region
        ):
            self.environment.set("AWS_REGION", "us-east-1")
            self.environment.set("AWS_DEFAULT_REGION", "us-east-1")
        return self.emulator

    def start(self) -> None:
        """Start the embedded emulator when asked for and point the process at it."""
        from .clients import Clients, Target

        settings = self.settings
        self.start_emulator()
        if settings.proxy is not None:
            self._start_proxy(settings.proxy)
        endpoint = self.emulator.url if self.emulator else settings.endpoint_url
        region = (
            settings.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        )
        target = Target(
            region,
            settings.aws_profile,
            endpoint,
            self.emulator is not None,
            settings.timeout,
            pool_size=max(10, 2 * settings.concurrency + 2),
        )
        self.clients = Clients(target)
        # Against the emulator the 404 itself says what to add (NOT_FOUND_HINT), for the
        # application's calls as much as for the handle's: no second hint here.
        self._failures = CallFailures(
            ""
            if self.emulator is not None
            else f"Check credentials, region and model access for {target.describe()}; "
            "or run offline with --bedrock-emulator.",
            unreachable=(
                f"Nothing answers at the emulator's address {endpoint}: it stopped during the "
                "run (a test or fixture called its stop()?)."
                if self.emulator is not None
                else f"Nothing answers at {target.describe()}: check the endpoint URL "
                "(--bedrock-endpoint-url / AWS_ENDPOINT_URL_BEDROCK_RUNTIME) and the network."
            ),
        )

    def header_lines(self) -> list[str]:
        """What the run should know before it starts (pytest's report header)."""
        if self.settings.emulator and self.settings.endpoint_url:
            return [
                f"bedrock: the endpoint URL {self.settings.endpoint_url} (--bedrock-endpoint-url / "
                "AWS_ENDPOINT_URL_BEDROCK_RUNTIME) is ignored: --bedrock-emulator sends all "
                "Bedrock traffic to the embedded emulator"
            ]
        return []

    def _start_emulator(self) -> Emulator | None:
        """A started emulator, or None with :attr:`_emulator_problem` saying why."""
        from .emulator import Emulator, ProfileError

        try:
            return Emulator(
                profiles=self.settings.emulator_profiles, not_found_hint=NOT_FOUND_HINT
            ).start()
        except (ProfileError, OSError, UnicodeDecodeError, ValueError) as error:
            # The emulator's messages name the profile file and field already.
            self._emulator_problem = str(error)
            return None

    def _start_proxy(self, upstream: str) -> None:
        """Start the measuring proxy and point the environment (subprocesses) at it."""
        from .emulator.proxy import Proxy, ProxyError

        try:
            proxy = Proxy(upstream, on_call=self.on_proxy_call, region=self.settings.region)
            proxy.check_upstream()
            self.proxy = proxy.start()
        except ProxyError as error:
            raise pytest.UsageError(f"--bedrock-proxy: {error}") from None
        # Set after the emulator's: a service the suite starts goes through the proxy.
        self.environment.set("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", self.proxy.url)
        self.environment.set("AWS_ENDPOINT_URL_BEDROCK", self.proxy.url)

    def stop(self) -> None:
        """Restore the environment and stop an emulator this session started."""
        self.environment.restore()
        if self.proxy is not None:
            self.proxy.stop()
            self.proxy = None
        if self.emulator is not None and self._own_emulator:
            self.emulator.stop()
        self.emulator = None

    def emulator_for_fixture(self) -> Emulator:
        """The session's emulator; started on first use when ``--bedrock-emulator`` is off."""

        __tracebackhide__ = True
        with self._lock:
            if self.emulator is None:
                emulator = self._start_emulator()
                if emulator is None:
                    pytest.fail(f"bedrock_emulator: {self._emulator_problem}", pytrace=False)
                self.emulator = emulator
                self._own_emulator = True
            return self.emulator

    def require(self, *, need_model: bool) -> None:
        """Skip (or fail with ``--bedrock-require``) when Bedrock cannot be reached."""
        __tracebackhide__ = True
        problems: list[str] = []
        if need_model and not self.settings.model:
            problems.append("--bedrock-model is not set")
        if self._problems is None:
            assert self.clients is not None
            self._problems = self.clients.problems()
        problems.extend(self._problems)
        if not problems:
            return
        message = "; ".join(problems)
        if self.settings.require:
            pytest.fail(f"Bedrock is not configured (--bedrock-require): {message}", pytrace=False)
        if self._problems and not self.settings.emulator:
            message += " (or try --bedrock-emulator)"
        # Point the skip at the test, as pytest does for a skip raised by a fixture.
        raise pytest.skip.Exception(message, allow_module_level=False, _use_item_location=True)

    def handle(
        self,
        model_id: str,
        instrumentation: Instrumentation,
        *,
        max_tokens: int | None,
        publish: Callable[[CallRecord], None] | None,
        calls: CallBudget | None = None,
    ) -> ModelHandle:
        """A handle on ``model_id`` through the session's runtime client."""
        from .handle import ModelHandle

        assert self.clients is not None and self._failures is not None
        return ModelHandle(
            model_id,
            self.clients.runtime(),
            instrumentation,
            max_tokens=max_tokens,
            failures=self._failures,
            publish=publish,
            text_in_repr=self.settings.report_text,
            calls=calls,
        )

    def runtime_client(self) -> Any:
        """The plugin's shared ``bedrock-runtime`` client."""
        assert self.clients is not None
        return self.clients.runtime()

    def control_client(self) -> Any:
        """The plugin's shared ``bedrock`` (control plane) client."""
        assert self.clients is not None
        return self.clients.control()

    def reset(self) -> None:
        """After a test: the emulator forgets that test's profile overrides."""
        if self.emulator is not None:
            self.emulator.reset_overrides()
