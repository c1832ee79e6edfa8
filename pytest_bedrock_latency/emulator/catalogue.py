"""The emulated control-plane catalogue: foundation models and inference profiles.

Foundation models are the exact model ids of the emulator's profiles (``ListFoundationModels``,
``GetFoundationModel``). Every catalogue model has a system-defined cross-region inference
profile per geography (``us.``, ``eu.``, ``apac.``, ``global.``); application inference
profiles are made with ``CreateInferenceProfile`` from a foundation model or a system profile,
and their ARN (or id) is served at runtime with the profile of the model they copy.
"""

from __future__ import annotations

import re
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from . import families
from .control_plane import ControlCall, ControlPlane, ControlPlaneError
from .profiles import ProfileSet

__all__ = ["GEOGRAPHIES", "Catalogue"]

#: System-defined cross-region inference profiles: geography prefix -> its regions.
GEOGRAPHIES: Mapping[str, tuple[str, ...]] = {
    "us": ("us-east-1", "us-east-2", "us-west-2"),
    "eu": ("eu-central-1", "eu-west-1", "eu-west-3"),
    "apac": ("ap-northeast-1", "ap-southeast-1", "ap-southeast-2"),
    "global": ("us-east-1", "eu-west-1", "ap-northeast-1"),
}
_ACCOUNT = "123456789012"
_PROVIDERS = {
    "anthropic": "Anthropic",
    "amazon": "Amazon",
    "meta": "Meta",
    "mistral": "Mistral AI",
    "cohere": "Cohere",
    "deepseek": "DeepSeek",
    "openai": "OpenAI",
    "qwen": "Qwen",
    "ai21": "AI21 Labs",
}
_APP_ARN = re.compile(
    r"^arn:aws[\w-]*:bedrock:(?P<region>[^:]+):(?P<account>\d*):application-inference-profile/"
    r"(?P<id>[a-z0-9]+)$"
)
_SYSTEM_ARN = re.compile(r"^arn:aws[\w-]*:bedrock:[^:]*:\d*:inference-profile/(?P<id>.+)$")
_FM_ARN = re.compile(r"^arn:aws[\w-]*:bedrock:[^:]*::foundation-model/(?P<id>.+)$")
_NAME = re.compile(r"^[0-9a-zA-Z]([0-9a-zA-Z_ -]{0,62}[0-9a-zA-Z])?$")
_EPOCH = "2024-01-01T00:00:00Z"


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class _AppProfile:
    profile_id: str
    name: str
    description: str
    model_id: str  # the foundation model it runs
    region: str
    created_at: str

    @property
    def arn(self) -> str:
        return (
            f"arn:aws:bedrock:{self.region}:{_ACCOUNT}:application-inference-profile/"
            f"{self.profile_id}"
        )


class Catalogue:
    """Foundation models and inference profiles of one emulator (thread-safe)."""

    def __init__(self, profiles: ProfileSet) -> None:
        self._profiles = profiles
        self._lock = threading.Lock()
        self._apps: dict[str, _AppProfile] = {}

    # -- what runtime resolution needs ------------------------------------------------------

    def model_ids(self) -> list[str]:
        """The catalogue: exact profile keys that are plain model ids, in file order."""
        keys: list[str] = self._profiles.keys()
        return [
            key
            for key in keys
            if not any(ch in key for ch in "*?[")
            and not key.startswith("arn:")
            and families.served_model_id(key) == key
        ]

    def application_profile_model(self, identifier: str) -> str | None:
        """The model id an application inference profile (ARN or id) runs, or None."""
        match = _APP_ARN.match(identifier)
        key = match.group("id") if match else identifier
        with self._lock:
            app = self._apps.get(key)
        return app.model_id if app is not None else None

    # -- operations -------------------------------------------------------------------------

    def install(self, control_plane: ControlPlane) -> None:
        """Register the catalogue's operations with ``control_plane``."""
        handlers: dict[str, Callable[[ControlCall], Mapping[str, Any]]] = {
            "ListFoundationModels": self._list_models,
            "GetFoundationModel": self._get_model,
            "ListInferenceProfiles": self._list_profiles,
            "GetInferenceProfile": self._get_profile,
            "CreateInferenceProfile": self._create_profile,
            "DeleteInferenceProfile": self._delete_profile,
        }
        for operation, handler in handlers.items():
            control_plane.register(operation, handler)

    def _model_summary(self, model_id: str, region: str) -> dict[str, Any]:
        provider = model_id.split(".", 1)[0]
        profile = self._profiles.match(model_id)
        family = (profile.family if profile else None) or families.family_from_model_id(model_id)
        return {
            "modelArn": f"arn:aws:bedrock:{region}::foundation-model/{model_id}",
            "modelId": model_id,
            "modelName": model_id.split(".", 1)[-1].split(":", 1)[0],
            "providerName": _PROVIDERS.get(provider, provider.capitalize()),
            "inputModalities": ["TEXT"],
            "outputModalities": ["TEXT"],
            "responseStreamingSupported": True,
            "customizationsSupported": ["FINE_TUNING"] if family == "titan" else [],
            "inferenceTypesSupported": ["ON_DEMAND", "INFERENCE_PROFILE"],
            "modelLifecycle": {"status": "ACTIVE"},
        }

    def _list_models(self, call: ControlCall) -> Mapping[str, Any]:
        summaries = [self._model_summary(m, call.region) for m in self.model_ids()]
        q = call.query
        if q.get("byProvider"):
            wanted = q["byProvider"].lower()
            summaries = [
                s
                for s in summaries
                if wanted in (s["providerName"].lower(), s["modelId"].split(".", 1)[0])
            ]
        if q.get("byOutputModality"):
            summaries = [s for s in summaries if q["byOutputModality"] in s["outputModalities"]]
        if q.get("byInferenceType"):
            summaries = [
                s for s in summaries if q["byInferenceType"] in s["inferenceTypesSupported"]
            ]
        if q.get("byCustomizationType"):
            summaries = [
                s for s in summaries if q["byCustomizationType"] in s["customizationsSupported"]
            ]
        return {"modelSummaries": summaries}

    def _get_model(self, call: ControlCall) -> Mapping[str, Any]:
        ident = call.params["modelIdentifier"]
        match = _FM_ARN.match(ident)
        model_id = match.group("id") if match else ident
        if model_id not in self.model_ids():
            raise ControlPlaneError(
                "ResourceNotFoundException",
                f"The model {ident} is not in the emulator's catalogue (its profiles' model ids).",
            )
        return {"modelDetails": self._model_summary(model_id, call.region)}

    def _system_profile(self, geo: str, model_id: str, region: str) -> dict[str, Any]:
        profile_id = f"{geo}.{model_id}"
        return {
            "inferenceProfileName": f"{geo.upper()} {model_id}",
            "description": f"Routes requests to {model_id} in {geo} regions.",
            "createdAt": _EPOCH,
            "updatedAt": _EPOCH,
            "inferenceProfileArn": (
                f"arn:aws:bedrock:{region}:{_ACCOUNT}:inference-profile/{profile_id}"
            ),
            "models": [
                {"modelArn": f"arn:aws:bedrock:{r}::foundation-model/{model_id}"}
                for r in GEOGRAPHIES[geo]
            ],
            "inferenceProfileId": profile_id,
            "status": "ACTIVE",
            "type": "SYSTEM_DEFINED",
        }

    @staticmethod
    def _app_summary(app: _AppProfile) -> dict[str, Any]:
        return {
            "inferenceProfileName": app.name,
            "description": app.description,
            "createdAt": app.created_at,
            "updatedAt": app.created_at,
            "inferenceProfileArn": app.arn,
            "models": [
                {"modelArn": f"arn:aws:bedrock:{app.region}::foundation-model/{app.model_id}"}
            ],
            "inferenceProfileId": app.profile_id,
            "status": "ACTIVE",
            "type": "APPLICATION",
        }

    def _list_profiles(self, call: ControlCall) -> Mapping[str, Any]:
        kind = call.query.get("type", "SYSTEM_DEFINED")
        if kind not in ("SYSTEM_DEFINED", "APPLICATION"):
            raise ControlPlaneError(
                "ValidationException",
                f"1 validation error detected: Value '{kind[:40]}' at 'typeEquals' failed to "
                "satisfy constraint: Member must satisfy enum value set: "
                "[SYSTEM_DEFINED, APPLICATION]",
            )
        if kind == "APPLICATION":
            with self._lock:
                items = [self._app_summary(a) for a in self._apps.values()]
        else:
            items = [
                self._system_profile(geo, model_id, call.region)
                for model_id in self.model_ids()
                for geo in GEOGRAPHIES
            ]
        try:
            start = int(call.query.get("nextToken") or 0)
            size = int(call.query.get("maxResults") or 1000)
        except ValueError:
            raise ControlPlaneError(
                "ValidationException", "nextToken and maxResults must be integers."
            ) from None
        if start < 0 or not 1 <= size <= 1000:
            raise ControlPlaneError(
                "ValidationException", "maxResults must be from 1 to 1000; nextToken >= 0."
            )
        page: dict[str, Any] = {"inferenceProfileSummaries": items[start : start + size]}
        if start + size < len(items):
            page["nextToken"] = str(start + size)
        return page

    def _find_system(self, ident: str, region: str) -> dict[str, Any] | None:
        match = _SYSTEM_ARN.match(ident)
        profile_id = match.group("id") if match else ident
        geo, _, model_id = profile_id.partition(".")
        if geo in GEOGRAPHIES and model_id in self.model_ids():
            return self._system_profile(geo, model_id, region)
        return None

    def _get_profile(self, call: ControlCall) -> Mapping[str, Any]:
        ident = call.params["inferenceProfileIdentifier"]
        system = self._find_system(ident, call.region)
        if system is not None:
            return system
        match = _APP_ARN.match(ident)
        with self._lock:
            app = self._apps.get(match.group("id") if match else ident)
        if app is None:
            raise ControlPlaneError(
                "ResourceNotFoundException", f"Inference profile {ident} not found."
            )
        return self._app_summary(app)

    def _create_profile(self, call: ControlCall) -> Mapping[str, Any]:
        doc = call.body if isinstance(call.body, dict) else {}
        name = doc.get("inferenceProfileName")
        if not isinstance(name, str) or not _NAME.match(name):
            raise ControlPlaneError(
                "ValidationException",
                "inferenceProfileName must be 1-64 letters, digits, spaces, _ or -.",
            )
        source = doc.get("modelSource")
        copy_from = source.get("copyFrom") if isinstance(source, dict) else None
        if not isinstance(copy_from, str):
            raise ControlPlaneError(
                "ValidationException", "modelSource.copyFrom must be a model or profile ARN."
            )
        fm = _FM_ARN.match(copy_from)
        system = self._find_system(copy_from, call.region)
        if fm is not None and fm.group("id") in self.model_ids():
            model_id = fm.group("id")
        elif system is not None:
            model_id = system["inferenceProfileId"].split(".", 1)[1]
        else:
            raise ControlPlaneError(
                "ValidationException",
                f"modelSource.copyFrom {copy_from} is neither a foundation-model ARN nor a "
                "system inference-profile ARN of the emulator's catalogue.",
            )
        with self._lock:
            if any(a.name == name for a in self._apps.values()):
                raise ControlPlaneError(
                    "ConflictException", f"An inference profile named {name} already exists."
                )
            app = _AppProfile(
                profile_id=secrets.token_hex(6),
                name=name,
                description=str(doc.get("description") or ""),
                model_id=model_id,
                region=call.region,
                created_at=_now(),
            )
            self._apps[app.profile_id] = app
        return {"inferenceProfileArn": app.arn, "status": "ACTIVE"}

    def _delete_profile(self, call: ControlCall) -> Mapping[str, Any]:
        ident = call.params["inferenceProfileIdentifier"]
        match = _APP_ARN.match(ident)
        with self._lock:
            app = self._apps.pop(match.group("id") if match else ident, None)
        if app is None:
            raise ControlPlaneError(
                "ResourceNotFoundException", f"Inference profile {ident} not found."
            )
        return {}
