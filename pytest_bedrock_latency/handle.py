"""``ModelHandle``: ask a Bedrock model something and get back a measured Generation."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError
from urllib3.exceptions import (
    HTTPError as TransportError,  # raised while a stream is read, e.g. a read timeout
)

from .errors import BedrockCallError, CallCapReached, CallFailures
from .instrument import Instrumentation, error_details
from .measurement import CallRecord, Generation

if TYPE_CHECKING:
    from .regression import CallBudget

Prompt = str | Sequence[Mapping[str, Any]]


class ModelHandle:
    """A Bedrock model as a test sees it: every call returns a measured :class:`Generation`.

    Calls go through the real boto3 ``bedrock-runtime`` client; streaming calls are
    consumed to the end so the figures are complete. ``publish`` hands each measured call
    to the current test (``bedrock_calls`` and the markers); the regression gate's own
    replays are not published.
    """

    def __init__(
        self,
        model_id: str,
        client: Any,
        instrumentation: Instrumentation,
        *,
        max_tokens: int | None = None,
        failures: CallFailures | None = None,
        publish: Callable[[CallRecord], None] | None = None,
        text_in_repr: bool = False,
        calls: CallBudget | None = None,
    ) -> None:
        self.model_id = model_id
        self._calls = calls  # --bedrock-max-calls, taken before each call the handle makes
        self._text_in_repr = text_in_repr  # --bedrock-report-text: answers may be shown
        self.client = client
        self._instrumentation = instrumentation
        self._max_tokens = max_tokens
        self._failures = failures or CallFailures("")
        self._publish = publish

    def __repr__(self) -> str:
        return f"ModelHandle({self.model_id!r})"

    def with_model(self, model_id: str, *, publish: bool = True) -> ModelHandle:
        """The same client settings for another model (the two halves of a pair share them)."""
        return ModelHandle(
            model_id,
            self.client,
            self._instrumentation,
            max_tokens=self._max_tokens,
            failures=self._failures,
            publish=self._publish if publish else None,
            text_in_repr=self._text_in_repr,
            # The gate's unpublished handles are reserved for by the gate itself.
            calls=self._calls if publish else None,
        )

    # -- public calls --------------------------------------------------------------------
    def converse(
        self,
        prompt: Prompt,
        *,
        system: str | Sequence[Mapping[str, Any]] | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        stop_sequences: Sequence[str] | None = None,
        stream: bool = True,
        **request_fields: Any,
    ) -> Generation:
        """Ask with the Converse API (ConverseStream when ``stream``).

        ``prompt`` is one user turn as a string, or a Converse ``messages`` list;
        ``request_fields`` go into the request as they are (``performanceConfig``,
        ``additionalModelRequestFields``, ``serviceTier``, ...).
        """
        __tracebackhide__ = True
        params: dict[str, Any] = {"modelId": self.model_id, "messages": _messages(prompt)}
        if system is not None:
            params["system"] = [{"text": system}] if isinstance(system, str) else list(system)
        inference = dict(request_fields.pop("inferenceConfig", {}) or {})
        for key, value in (
            ("maxTokens", max_tokens if max_tokens is not None else self._max_tokens),
            ("temperature", temperature),
            ("topP", top_p),
            ("stopSequences", list(stop_sequences) if stop_sequences is not None else None),
        ):
            if value is not None:
                inference[key] = value
        if inference:
            params["inferenceConfig"] = inference
        params.update(request_fields)
        return self.replay("ConverseStream" if stream else "Converse", params)

    def invoke(
        self, body: Mapping[str, Any] | str | bytes, *, stream: bool = True, **request_fields: Any
    ) -> Generation:
        """Send a native InvokeModel body (InvokeModelWithResponseStream when ``stream``).

        Text and token counts are parsed per model family (Anthropic, Nova, Titan, Llama,
        Mistral, Cohere); token counts prefer Bedrock's own headers and invocation metrics.
        """
        __tracebackhide__ = True
        raw = json.dumps(body) if isinstance(body, Mapping) else body
        params: dict[str, Any] = {
            "modelId": self.model_id,
            "body": raw,
            "contentType": "application/json",
            "accept": "application/json",
        }
        params.update(request_fields)
        return self.replay("InvokeModelWithResponseStream" if stream else "InvokeModel", params)

    def count_tokens(self, prompt: Prompt) -> int:
        """Input tokens of ``prompt`` as the model counts them (CountTokens, free of charge)."""
        __tracebackhide__ = True
        try:
            response = self.client.count_tokens(
                modelId=self.model_id, input={"converse": {"messages": _messages(prompt)}}
            )
        except (ClientError, BotoCoreError) as error:
            raise self._error("CountTokens", error, attempts=1) from None
        return int(response["inputTokens"])

    # -- the one path every call takes ----------------------------------------------------
    def replay(self, operation: str, params: Mapping[str, Any]) -> Generation:
        """Send a request as given, with this handle's model id, and measure it.

        The regression gate uses this to send a test's captured requests to the base model.
        """
        __tracebackhide__ = True
        self._failures.check(self.model_id)
        if self._calls is not None and not self._calls.take(1):
            raise CallCapReached(self._calls.limit, self.model_id, operation)
        request = dict(params)
        request["modelId"] = self.model_id
        with self._instrumentation.capture() as records:
            try:
                self._send(operation, request)
            except (ClientError, BotoCoreError, TransportError) as error:
                attempts = records[0].attempts if records else 1
                raised = self._error(operation, error, attempts)
                self._failures.remember(raised)
                raise raised from None
        record = records[0]
        if self._publish is not None:
            self._publish(record)
        return record.generation(text_in_repr=self._text_in_repr)

    def _send(self, operation: str, request: dict[str, Any]) -> None:
        if operation == "ConverseStream":
            for _ in self.client.converse_stream(**request)["stream"]:
                pass
        elif operation == "Converse":
            self.client.converse(**request)
        elif operation == "InvokeModelWithResponseStream":
            for _ in self.client.invoke_model_with_response_stream(**request)["body"]:
                pass
        elif operation == "InvokeModel":
            self.client.invoke_model(**request)["body"].read()
        else:
            raise ValueError(f"cannot send Bedrock operation {operation!r}")

    def _error(self, operation: str, error: Exception, attempts: int) -> BedrockCallError:
        code, message, retries = error_details(error)
        if retries is not None:
            attempts = max(attempts, retries + 1)
        hint = self._failures.hint_for(code)
        return BedrockCallError(self.model_id, operation, code, message, attempts, hint)


def _messages(prompt: Prompt) -> list[Any]:
    if isinstance(prompt, str):
        return [{"role": "user", "content": [{"text": prompt}]}]
    messages = (
        list(prompt)
        if isinstance(prompt, Iterable) and not isinstance(prompt, (bytes, bytearray))
        else []
    )
    if not messages or not all(isinstance(m, Mapping) and "role" in m for m in messages):
        raise TypeError(
            "prompt must be a string (one user turn) or a Converse messages list such as "
            "[{'role': 'user', 'content': [{'text': '...'}]}]"
        )
    return messages
