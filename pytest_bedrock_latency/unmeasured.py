"""Which Bedrock requests the emulator served that the plugin did not measure.

Pure code. In emulator mode the emulator logs every request it answered, with its
operation and the client's user agent; the plugin knows every attempt it measured. The
difference names the client that is not wired (one the instrumentation cannot see, such
as a client in another process or an HTTP library it does not patch).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

INVOCATIONS = frozenset(
    {"Converse", "ConverseStream", "InvokeModel", "InvokeModelWithResponseStream"}
)


@dataclass(frozen=True)
class Unmeasured:
    """``count`` requests of one operation from one user agent that were not measured."""

    operation: str
    user_agent: str
    count: int

    @property
    def line(self) -> str:
        requests = "request" if self.count == 1 else "requests"
        agent = self.user_agent or "(none)"
        return (
            f"{self.count} {self.operation} {requests} reached the emulator unmeasured "
            f"(user agent: {agent})"
        )


def unmeasured(
    served: Iterable[tuple[str, str]],
    measured: Iterable[tuple[str, str | None, int]],
) -> list[Unmeasured]:
    """Served ``(operation, user agent)`` requests left over once the measured attempts are taken.

    ``measured`` holds ``(operation, user agent or None, attempts)``; a measured call without
    a known user agent (a regression-gate replay) stands for any request of its operation.
    """
    budget: Counter[tuple[str, str]] = Counter()
    wildcard: Counter[str] = Counter()
    for operation, agent, attempts in measured:
        if agent is None:
            wildcard[operation] += attempts
        else:
            budget[(operation, agent)] += attempts
    left: Counter[tuple[str, str]] = Counter()
    for operation, agent in served:
        if operation not in INVOCATIONS:
            continue
        if budget[(operation, agent)] > 0:
            budget[(operation, agent)] -= 1
        elif wildcard[operation] > 0:
            wildcard[operation] -= 1
        else:
            left[(operation, agent)] += 1
    return [Unmeasured(op, agent, n) for (op, agent), n in sorted(left.items())]


WIRING_HINT = (
    "the plugin measures boto3/botocore, aiobotocore (aioboto3) and httpx (litellm) clients in "
    "the test's own process: call Bedrock through one of them (or the bedrock_model fixture) "
    "during the test"
)
