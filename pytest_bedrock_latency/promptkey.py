"""The key of a request's prompt, the same one the emulator logs and replays by.

Pure code (no pytest, no boto3). A recorded profile's per-prompt entries are keyed by
this hash, never by the prompt text; the plugin computes it from the parameters a client
passed (or, in the measuring proxy, from the request body on the wire), and the emulator
computes it from the body it receives, with the same prompt extraction, so the keys meet.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

__all__ = ["body_prompt_sha", "request_prompt_sha"]

_CONVERSE = frozenset({"Converse", "ConverseStream"})
_INVOKE = frozenset({"InvokeModel", "InvokeModelWithResponseStream"})


def _body_bytes(body: Any) -> bytes | None:
    if isinstance(body, (bytes, bytearray)):
        return bytes(body)
    if isinstance(body, str):
        return body.encode("utf-8")
    return None  # a file-like body is the client's to read; it stays unkeyed


def request_prompt_sha(model_id: str, operation: str, request: Mapping[str, Any]) -> str | None:
    """The prompt hash of a call made with these API parameters; ``None`` when unknown.

    Converse calls take the prompt from ``messages`` and ``system``; InvokeModel calls
    from the native body of the model id's family. A request whose prompt cannot be read
    (an unknown family, a streamed file body, a malformed body) has no key.
    """
    # The emulator's own prompt rules, imported late: measuring a call must not load them.
    from .emulator import families
    from .emulator.textgen import prompt_sha

    try:
        if operation in _CONVERSE:
            return prompt_sha(
                families.converse_prompt(request.get("messages"), request.get("system"))
            )
        if operation in _INVOKE:
            body = _body_bytes(request.get("body"))
            family = families.family_from_model_id(families.served_model_id(model_id))
            if body is None or family is None:
                return None
            return prompt_sha(families.parse_native_request(family, body).prompt)
    except (families.RequestValidationError, TypeError, ValueError, AttributeError):
        return None
    return None


def body_prompt_sha(model_id: str, operation: str, body: bytes) -> str | None:
    """The prompt hash of a request as it crossed the wire (the measuring proxy's view)."""
    if operation in _INVOKE:
        return request_prompt_sha(model_id, operation, {"body": body})
    try:
        doc = json.loads(body.decode("utf-8") or "null")
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(doc, Mapping):
        return None
    return request_prompt_sha(model_id, operation, doc)
