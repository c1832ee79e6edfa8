"""Building the boto3 clients the plugin uses, and saying clearly what is missing.

boto3 is imported on first use, not with this module: sessions that never touch
Bedrock should not pay for it.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, cast, get_args

if TYPE_CHECKING:
    import boto3
    from botocore.config import Config

_REGION_SHAPE = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")
# botocore refuses any other region name when it builds a client (InvalidRegionError).
_REGION_NAME = re.compile(r"^[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$")


def session_problem(error: Exception, aws_profile: str | None) -> str:
    """One line, with the fix, for an error boto3 raised while reading the AWS config.

    boto3 reads the shared config and credentials files when a session is made, so a
    broken file stops every client of the process, the application's included.
    """
    from botocore.exceptions import ConfigParseError, ProfileNotFound

    if isinstance(error, ProfileNotFound):
        source = "--bedrock-aws-profile / AWS_PROFILE"
        return (
            f"AWS profile {aws_profile or error.kwargs.get('profile')!r} does not exist ({source}); "
            "name a profile of the AWS config file, or unset it"
        )
    if isinstance(error, ConfigParseError):
        path = error.kwargs.get("path", "?")
        return (
            f"AWS config file {path} cannot be parsed: fix it, or point AWS_CONFIG_FILE / "
            "AWS_SHARED_CREDENTIALS_FILE at a valid file"
        )
    return (
        f"the AWS configuration cannot be read ({type(error).__name__}: {error}); check "
        "AWS_CONFIG_FILE, AWS_SHARED_CREDENTIALS_FILE and AWS_PROFILE"
    )


def _region_source(region: str) -> str:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        if os.environ.get(name) == region:
            return f"environment variable {name}"
    return "--bedrock-region or the AWS profile's region"


@dataclass(frozen=True)
class Target:
    """Where Bedrock calls go and how: one value shared by every client the plugin makes."""

    region: str | None
    aws_profile: str | None
    endpoint_url: str | None
    emulator: bool
    timeout: float | None
    pool_size: int

    @property
    def kind(self) -> str:
        return "emulator" if self.emulator else ("custom endpoint" if self.endpoint_url else "AWS")

    def describe(self) -> str:
        where = (
            f"the embedded emulator at {self.endpoint_url}"
            if self.emulator
            else (f"endpoint {self.endpoint_url}" if self.endpoint_url else "Amazon Bedrock")
        )
        return f"{where}, region {self.region or '(none)'}"


class Clients:
    """Lazily built, thread-safe boto3 session and clients for one :class:`Target`."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self._lock = threading.Lock()
        self._session: boto3.Session | None = None
        self._runtime: Any = None
        self._control: Any = None

    def session(self) -> boto3.Session:
        import boto3

        with self._lock:
            if self._session is None:
                self._session = boto3.Session(
                    profile_name=self.target.aws_profile, region_name=self.target.region
                )
            return self._session

    def problems(self) -> list[str]:
        """What keeps Bedrock from being reached, each with its fix; empty when all is set."""
        from botocore.exceptions import BotoCoreError

        try:
            session = self.session()
        except BotoCoreError as error:
            return [session_problem(error, self.target.aws_profile)]
        problems: list[str] = []
        try:
            credentials = session.get_credentials()
        except BotoCoreError as error:
            credentials, problems = None, [f"AWS credentials could not be loaded: {error}"]
        except (ValueError, OSError) as error:  # e.g. a credential_process that cannot run
            credentials = None
            problems = [f"AWS credentials could not be loaded ({type(error).__name__}: {error})"]
        if credentials is None and not problems:
            problems.append(
                "no AWS credentials (set AWS_PROFILE or --bedrock-aws-profile, or AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY)"
            )
        region = session.region_name
        if not region:
            problems.append(
                "no AWS region (set --bedrock-region, bedrock_region in the ini file, or AWS_REGION)"
            )
        elif not _REGION_NAME.match(region):
            problems.append(
                f"region {region!r} (from {_region_source(region)}) is not an AWS region name; "
                "set e.g. us-east-1"
            )
        elif not self.target.endpoint_url and not _REGION_SHAPE.match(region):
            problems.append(f"{region!r} is not an AWS region name (e.g. us-east-1)")
        elif not self.target.endpoint_url:
            known = _bedrock_regions(session)
            if known and region not in known:
                problems.append(
                    f"Bedrock Runtime is not offered in region {region!r} (set --bedrock-region)"
                )
        return problems

    def _config(self, session: boto3.Session) -> Config:
        from botocore.config import Config

        timeout = self.target.timeout
        return Config(
            read_timeout=timeout if timeout is not None else 60,
            connect_timeout=min(timeout, 10) if timeout is not None else 10,
            retries={"mode": _retry_mode(session), "total_max_attempts": 5},
            max_pool_connections=self.target.pool_size,
        )

    def runtime(self) -> Any:
        """The ``bedrock-runtime`` client every handle of the session shares."""
        session = self.session()
        with self._lock:
            if self._runtime is None:
                self._runtime = session.client(
                    "bedrock-runtime",
                    endpoint_url=self.target.endpoint_url,
                    config=self._config(session),
                )
            return self._runtime

    def control(self) -> Any:
        """The ``bedrock`` control-plane client (custom models, provisioned throughput).

        Against the emulator the control plane shares the runtime's port.
        """
        session = self.session()
        with self._lock:
            if self._control is None:
                endpoint = self.target.endpoint_url if self.target.emulator else None
                self._control = session.client(
                    "bedrock", endpoint_url=endpoint, config=self._config(session)
                )
            return self._control


def _bedrock_regions(session: boto3.Session) -> set[str]:
    regions: set[str] = set()
    for partition in session.get_available_partitions():
        # botocore lists no regions for "bedrock-runtime"; the control plane's list is the same set.
        regions.update(session.get_available_regions("bedrock", partition_name=partition))
    return regions


RetryMode = Literal["standard", "adaptive", "legacy"]


def _retry_mode(session: boto3.Session) -> RetryMode:
    """botocore's ``standard`` retry mode, unless the user's AWS config names one.

    ``AWS_RETRY_MODE`` or the profile's ``retry_mode`` (boto3's own settings, which the
    application's clients follow too) win: ``adaptive`` for client-side rate limiting, or
    ``legacy``, whose backoff comes from a ``_retry.json`` on the AWS data path.
    """
    configured = session._session.get_config_variable("retry_mode", methods=("env", "config"))
    return cast(RetryMode, configured) if configured in get_args(RetryMode) else "standard"
