"""Guardrails offline: a control-plane store (CreateGuardrail, GetGuardrail, ...), the decision
whether a guardrail intervenes, and the trace and ApplyGuardrail shapes Bedrock returns.

moto has no guardrails, so the emulator keeps its own store. A guardrail intervenes on a text
when the text contains one of its configured words (``wordPolicyConfig.wordsConfig``) or
denied topic names (``topicPolicyConfig.topicsConfig[].name``), case-insensitively, or else
with the model profile's ``guardrail_intervention_rate`` (deterministic by the caller's
draw). A ``guardrailIdentifier`` the store does not know is accepted with Bedrock's default
messaging, so a suite configured with a real guardrail id also runs offline.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .control_plane import ControlCall, ControlPlane, ControlPlaneError

__all__ = [
    "DEFAULT_BLOCKED_MESSAGE",
    "Guardrail",
    "GuardrailError",
    "GuardrailStore",
    "apply_response",
    "assessment",
    "converse_trace",
    "triggered",
]

#: What Bedrock answers when a guardrail without custom messaging blocks.
DEFAULT_BLOCKED_MESSAGE = "Sorry, the model cannot answer this question."
_POLICIES = {
    "topicPolicyConfig": ("topicPolicy", {"topicsConfig": "topics", "tierConfig": "tier"}),
    "contentPolicyConfig": ("contentPolicy", {"filtersConfig": "filters", "tierConfig": "tier"}),
    "wordPolicyConfig": (
        "wordPolicy",
        {"wordsConfig": "words", "managedWordListsConfig": "managedWordLists"},
    ),
    "sensitiveInformationPolicyConfig": (
        "sensitiveInformationPolicy",
        {"piiEntitiesConfig": "piiEntities", "regexesConfig": "regexes"},
    ),
    "contextualGroundingPolicyConfig": ("contextualGroundingPolicy", {"filtersConfig": "filters"}),
}
_ID = re.compile(r"^(arn:aws[\w-]*:bedrock:[^:]*:\d*:guardrail/)?(?P<id>[a-z0-9]+)$")


class GuardrailError(Exception):
    """A control-plane error: ``code`` is the Bedrock error code, ``message`` its text."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Guardrail:
    """One guardrail as the control plane holds it (the DRAFT and its numbered versions)."""

    guardrail_id: str
    arn: str
    config: dict[str, Any]
    created_at: str
    updated_at: str
    versions: list[dict[str, Any]] = field(default_factory=list)

    @property
    def blocked_input(self) -> str:
        return str(self.config.get("blockedInputMessaging") or DEFAULT_BLOCKED_MESSAGE)

    @property
    def blocked_output(self) -> str:
        return str(self.config.get("blockedOutputsMessaging") or DEFAULT_BLOCKED_MESSAGE)

    def triggers(self) -> list[str]:
        """Configured words and denied topic names: texts containing one are blocked."""
        words = (self.config.get("wordPolicyConfig") or {}).get("wordsConfig") or []
        topics = (self.config.get("topicPolicyConfig") or {}).get("topicsConfig") or []
        out = [str(w.get("text")) for w in words if isinstance(w, Mapping) and w.get("text")]
        out += [str(t.get("name")) for t in topics if isinstance(t, Mapping) and t.get("name")]
        return out

    def describe(self, version: str) -> dict[str, Any]:
        """The GetGuardrail response."""
        out: dict[str, Any] = {
            "name": self.config["name"],
            "guardrailId": self.guardrail_id,
            "guardrailArn": self.arn,
            "version": version,
            "status": "READY",
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
            "blockedInputMessaging": self.blocked_input,
            "blockedOutputsMessaging": self.blocked_output,
        }
        if self.config.get("description"):
            out["description"] = self.config["description"]
        for config_key, (out_key, members) in _POLICIES.items():
            policy = self.config.get(config_key)
            if isinstance(policy, Mapping):
                out[out_key] = {members.get(k, k): v for k, v in policy.items()}
        return out


class GuardrailStore:
    """Thread-safe guardrails of one emulator, served on the control-plane routes."""

    def __init__(self, region: str = "us-east-1", account: str = "123456789012") -> None:
        self._region = region
        self._account = account
        self._lock = threading.Lock()
        self._items: dict[str, Guardrail] = {}

    def _find(self, identifier: str) -> Guardrail:
        match = _ID.match(identifier)
        item = self._items.get(match.group("id")) if match else None
        if item is None:
            raise GuardrailError(
                "ResourceNotFoundException", f"The guardrail {identifier} was not found."
            )
        return item

    def lookup(self, identifier: str) -> Guardrail | None:
        """The guardrail ``identifier`` (id or ARN) names, or None."""
        with self._lock:
            try:
                return self._find(identifier)
            except GuardrailError:
                return None

    def install(self, control_plane: ControlPlane) -> None:
        """Register the guardrail operations with ``control_plane``."""

        def op(method: str, with_id: bool) -> Callable[[ControlCall], Mapping[str, Any]]:
            def handler(call: ControlCall) -> Mapping[str, Any]:
                parts = [call.params.get("guardrailIdentifier", "")] if with_id else []
                try:
                    return self.handle(method, parts, call.body) or {}
                except GuardrailError as error:
                    raise ControlPlaneError(error.code, error.message) from None

            return handler

        for operation, method, with_id in (
            ("CreateGuardrail", "POST", False),
            ("ListGuardrails", "GET", False),
            ("GetGuardrail", "GET", True),
            ("CreateGuardrailVersion", "POST", True),
            ("UpdateGuardrail", "PUT", True),
            ("DeleteGuardrail", "DELETE", True),
        ):
            control_plane.register(operation, op(method, with_id))

    def handle(
        self, method: str, parts: Sequence[str], body: bytes | Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """Serve a guardrail control-plane request; None when the path is not ours.

        ``parts`` are the unquoted path segments after ``guardrails``. Returns the response
        payload; raises :class:`GuardrailError` for Bedrock errors.
        """
        if isinstance(body, Mapping):
            doc: Any = dict(body)
        else:
            try:
                doc = json.loads(body.decode("utf-8") or "{}") if body else {}
            except (UnicodeDecodeError, json.JSONDecodeError):
                raise GuardrailError(
                    "ValidationException", "The request body is not JSON."
                ) from None
        if not isinstance(doc, dict):
            raise GuardrailError("ValidationException", "The request body must be an object.")
        with self._lock:
            if not parts and method == "POST":
                return self._create(doc)
            if not parts and method == "GET":
                return {"guardrails": [self._summary(g) for g in self._items.values()]}
            if len(parts) != 1:
                return None
            item = self._find(parts[0])
            if method == "GET":
                return item.describe("DRAFT")
            if method == "POST":  # CreateGuardrailVersion
                version = str(len(item.versions) + 1)
                item.versions.append({"version": version, "description": doc.get("description")})
                return {"guardrailId": item.guardrail_id, "version": version}
            if method == "PUT":
                self._validate(doc)
                item.config = {k: v for k, v in doc.items() if k != "guardrailIdentifier"}
                item.updated_at = _now()
                return {
                    "guardrailId": item.guardrail_id,
                    "guardrailArn": item.arn,
                    "version": "DRAFT",
                    "updatedAt": item.updated_at,
                }
            if method == "DELETE":
                del self._items[item.guardrail_id]
                return {}
        return None

    @staticmethod
    def _validate(doc: Mapping[str, Any]) -> None:
        for key in ("name", "blockedInputMessaging", "blockedOutputsMessaging"):
            if not isinstance(doc.get(key), str) or not doc[key]:
                raise GuardrailError(
                    "ValidationException",
                    f"1 validation error detected: Value at '{key}' failed to satisfy "
                    "constraint: Member must not be null",
                )

    def _create(self, doc: dict[str, Any]) -> dict[str, Any]:
        self._validate(doc)
        if any(g.config["name"] == doc["name"] for g in self._items.values()):
            raise GuardrailError(
                "ConflictException", f"A guardrail named {doc['name']} already exists."
            )
        gid = hashlib.sha256(f"{doc['name']}:{len(self._items)}".encode()).hexdigest()[:12]
        arn = f"arn:aws:bedrock:{self._region}:{self._account}:guardrail/{gid}"
        now = _now()
        config = {k: v for k, v in doc.items() if k not in ("tags", "clientRequestToken")}
        self._items[gid] = Guardrail(gid, arn, config, now, now)
        return {"guardrailId": gid, "guardrailArn": arn, "version": "DRAFT", "createdAt": now}

    @staticmethod
    def _summary(g: Guardrail) -> dict[str, Any]:
        return {
            "id": g.guardrail_id,
            "arn": g.arn,
            "status": "READY",
            "name": g.config["name"],
            "version": "DRAFT",
            "createdAt": g.created_at,
            "updatedAt": g.updated_at,
        }


def triggered(guardrail: Guardrail | None, text: str) -> bool:
    """True when ``text`` contains one of the guardrail's words or denied topic names."""
    if guardrail is None:
        return False
    lowered = text.lower()
    return any(t.lower() in lowered for t in guardrail.triggers())


def _units(chars: int) -> int:
    return max(1, math.ceil(chars / 1000)) if chars else 0


def assessment(
    guardrail: Guardrail | None, text: str, intervened: bool, latency_ms: int
) -> dict[str, Any]:
    """One ``GuardrailAssessment``: the blocking policy when ``intervened``, and metrics."""
    chars = len(text)
    out: dict[str, Any] = {}
    if intervened:
        config = guardrail.config if guardrail else {}
        topics = (config.get("topicPolicyConfig") or {}).get("topicsConfig") or []
        words = (config.get("wordPolicyConfig") or {}).get("wordsConfig") or []
        lowered = text.lower()
        hit_words = [
            str(w["text"])
            for w in words
            if isinstance(w, Mapping) and w.get("text") and str(w["text"]).lower() in lowered
        ]
        if hit_words:
            out["wordPolicy"] = {
                "customWords": [
                    {"match": w, "action": "BLOCKED", "detected": True} for w in hit_words
                ]
            }
        elif topics:
            out["topicPolicy"] = {
                "topics": [
                    {
                        "name": topics[0].get("name"),
                        "type": "DENY",
                        "action": "BLOCKED",
                        "detected": True,
                    }
                ]
            }
        else:
            filters = (config.get("contentPolicyConfig") or {}).get("filtersConfig") or []
            kind = filters[0].get("type", "MISCONDUCT") if filters else "MISCONDUCT"
            out["contentPolicy"] = {
                "filters": [
                    {
                        "type": kind,
                        "confidence": "HIGH",
                        "filterStrength": "HIGH",
                        "action": "BLOCKED",
                        "detected": True,
                    }
                ]
            }
    units = _units(chars)
    out["invocationMetrics"] = {
        "guardrailProcessingLatency": latency_ms,
        "usage": {
            "topicPolicyUnits": units,
            "contentPolicyUnits": units,
            "wordPolicyUnits": units,
            "sensitiveInformationPolicyUnits": 0,
            "sensitiveInformationPolicyFreeUnits": 0,
            "contextualGroundingPolicyUnits": 0,
        },
        "guardrailCoverage": {"textCharacters": {"guarded": chars, "total": chars}},
    }
    return out


def converse_trace(
    guardrail_id: str,
    input_assessment: Mapping[str, Any],
    output_assessment: Mapping[str, Any] | None,
    intervened: bool,
) -> dict[str, Any]:
    """The Converse ``trace`` member for one guardrail (``trace.guardrail``)."""
    trace: dict[str, Any] = {"inputAssessment": {guardrail_id: dict(input_assessment)}}
    if output_assessment is not None:
        trace["outputAssessments"] = {guardrail_id: [dict(output_assessment)]}
    trace["actionReason"] = "Guardrail blocked." if intervened else "No action."
    return {"guardrail": trace}


def apply_response(
    guardrail: Guardrail | None, source: str, text: str, intervened: bool, latency_ms: int
) -> dict[str, Any]:
    """The ApplyGuardrail response for ``text`` checked as ``source`` (INPUT or OUTPUT)."""
    message = DEFAULT_BLOCKED_MESSAGE
    if guardrail is not None:
        message = guardrail.blocked_input if source == "INPUT" else guardrail.blocked_output
    found = assessment(guardrail, text, intervened, latency_ms)
    chars = len(text)
    return {
        "usage": found["invocationMetrics"]["usage"],
        "action": "GUARDRAIL_INTERVENED" if intervened else "NONE",
        "actionReason": "Guardrail blocked." if intervened else "No action.",
        "outputs": [{"text": message}] if intervened else [],
        "assessments": [found],
        "guardrailCoverage": {"textCharacters": {"guarded": chars, "total": chars}},
    }
