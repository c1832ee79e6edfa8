"""Errors of Bedrock calls made through the plugin (no botocore import: cheap to load)."""

from __future__ import annotations

import threading

from .measurement import failure_text

# Errors that will not go away by asking again in the next test: remembered per model so
# a misconfigured run says it once, clearly, instead of a botocore traceback per test.
FATAL_CODES = frozenset(
    {
        "AccessDeniedException",
        "ResourceNotFoundException",
        "UnrecognizedClientException",
        "ExpiredTokenException",
        "InvalidSignatureException",
        "NoCredentialsError",
        "PartialCredentialsError",
        "NoRegionError",
        "EndpointConnectionError",
    }
)


class BedrockCallError(Exception):
    """A Bedrock call made through the plugin failed.

    The message says which model, which operation, how many attempts, Bedrock's own words
    and, where there is one, the fix.
    """

    def __init__(
        self, model_id: str, operation: str, code: str, message: str, attempts: int, hint: str = ""
    ) -> None:
        self.model_id = model_id
        self.operation = operation
        self.code = code
        self.attempts = attempts
        text = failure_text(code, model_id, operation, attempts, message)
        super().__init__(f"{text}\n{hint}" if hint else text)


# Nothing answered at the endpoint: a missing profile or credentials are not the cause.
UNREACHABLE_CODES = frozenset({"EndpointConnectionError", "ConnectTimeoutError"})


class CallFailures:
    """Remembers, per model, an error that later calls would only repeat (thread-safe).

    ``hint`` ends the message of a fatal error; ``unreachable`` replaces it when nothing
    answered at the endpoint at all.
    """

    def __init__(self, hint: str, unreachable: str = "") -> None:
        self.hint = hint
        self.unreachable = unreachable or hint
        self._lock = threading.Lock()
        self._by_model: dict[str, BedrockCallError] = {}

    def hint_for(self, code: str) -> str:
        """The fix to print with an error of ``code`` ("" when it needs none)."""
        if code in UNREACHABLE_CODES:
            return self.unreachable
        return self.hint if code in FATAL_CODES else ""

    def check(self, model_id: str) -> None:
        """Raise the remembered error of ``model_id``, if any."""
        __tracebackhide__ = True
        with self._lock:
            error = self._by_model.get(model_id)
        if error is not None:
            # The same instance is raised in every later test: drop the frames it collected
            # when first raised, or each test would show the previous tests' stacks.
            raise error.with_traceback(None) from None

    def remember(self, error: BedrockCallError) -> None:
        if error.code in FATAL_CODES:
            with self._lock:
                self._by_model.setdefault(error.model_id, error)


class CallCapReached(Exception):
    """``--bedrock-max-calls`` is reached: the plugin makes no more Bedrock calls."""

    def __init__(self, limit: int | None, model_id: str, operation: str) -> None:
        super().__init__(
            f"--bedrock-max-calls {limit} reached: the plugin makes no more Bedrock calls this "
            f"session (this was {operation} to {model_id}); raise the cap or run fewer tests"
        )
