"""Find the base model a Bedrock candidate was derived from, via the control plane.

The gate compares a candidate (typically a fine-tuned custom model) with the model it
was trained from. Bedrock records that link in the control plane:

* ``GetCustomModel`` returns ``baseModelArn`` (and ``customizationType``);
* ``GetProvisionedModelThroughput`` returns the ``modelArn`` the throughput serves
  (a custom model or a foundation model);
* ``GetCustomModelDeployment`` (on-demand custom models) returns the custom ``modelArn``;
* imported models have no base field at all, so the user must name the base.

Everything goes through a boto3 ``bedrock`` client the caller passes in (real AWS, moto,
or the emulator's control plane), so this module never creates clients or reads
credentials itself.

Note on ids: fine-tuning bases are sometimes customization variants such as
``amazon.titan-text-express-v1:0:8k``; the id is returned verbatim because rewriting it
would be a guess. If invoking it on demand fails, name the base with ``--bedrock-baseline``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
)

__all__ = [
    "MODEL_KINDS",
    "BaseChoice",
    "BaseModelError",
    "BaseModelResolution",
    "BaseModels",
    "classify_model_id",
    "resolve_base_model",
]

#: How to get past any resolution failure; repeated in every error message.
BASELINE_FIX = (
    "name the base model explicitly with --bedrock-baseline MODEL_ID "
    "(or the BEDROCK_BASELINE_MODEL_ID environment variable)"
)

#: Every value :func:`classify_model_id` can return.
MODEL_KINDS: tuple[str, ...] = (
    "foundation",
    "foundation-arn",
    "inference-profile",
    "custom-model",
    "custom-model-deployment",
    "provisioned",
    "imported",
    "custom-name",
    "other-arn",
)

# First segment of cross-region (system-defined) inference profile ids such as
# "us.anthropic.claude-3-haiku-20240307-v1:0". Foundation model ids start with a vendor.
_GEO_PREFIXES = frozenset({"us", "eu", "apac", "us-gov", "global", "jp", "au", "ca"})

_ARN_KINDS = {
    "foundation-model": "foundation-arn",
    "inference-profile": "inference-profile",
    "application-inference-profile": "inference-profile",
    "custom-model": "custom-model",
    "custom-model-deployment": "custom-model-deployment",
    "provisioned-model": "provisioned",
    "imported-model": "imported",
}


class BaseModelError(Exception):
    """The base model of a candidate could not be determined.

    The message says what happened (with the AWS error, if any), names the candidate
    and says how to fix it; ``--bedrock-baseline`` always works as a way out.
    """

    def __init__(self, message: str, *, candidate: str = "") -> None:
        super().__init__(message)
        self.candidate = candidate


@dataclass(frozen=True)
class BaseModelResolution:
    """Where a candidate came from.

    Attributes:
        candidate: the identifier the user gave.
        base_model_id: what to invoke as the base: a foundation model id such as
            ``amazon.titan-text-express-v1`` (foundation-model ARN prefix stripped),
            or the full ARN when the base is not a foundation model (e.g. a custom
            model fine-tuned from another custom model).
        source: human-readable provenance for reports, e.g. ``"GetCustomModel baseModelArn"``.
        chain: the identifiers walked through, candidate first, base ARN last.
    """

    candidate: str
    base_model_id: str
    source: str
    chain: tuple[str, ...]


def _arn_resource(model_id: str) -> tuple[str, str] | None:
    """``(service, resource)`` of an ARN, or None if ``model_id`` is not an ARN."""
    if not model_id.startswith("arn:"):
        return None
    parts = model_id.split(":", 5)
    if len(parts) < 6:
        return ("", "")
    return (parts[2], parts[5])


def classify_model_id(model_id: str) -> str:
    """Classify a Bedrock model identifier by its shape alone (no AWS calls).

    Returns one of :data:`MODEL_KINDS`:

    * ``"foundation"``: ``amazon.titan-text-express-v1`` (vendor-dot-model);
    * ``"foundation-arn"``: ``arn:aws:bedrock:us-east-1::foundation-model/...``;
    * ``"inference-profile"``: ``us.anthropic.claude-...`` or an
      (application-)inference-profile ARN;
    * ``"custom-model"``: ``arn:...:custom-model/...`` (but ``custom-model/imported/...``
      is ``"imported"``);
    * ``"custom-model-deployment"``: ``arn:...:custom-model-deployment/...``
      (on-demand deployment of a custom model);
    * ``"provisioned"``: ``arn:...:provisioned-model/...``;
    * ``"imported"``: ``arn:...:imported-model/...``;
    * ``"custom-name"``: a bare name without a ``.`` vendor prefix (custom or imported
      model name; only the control plane can tell which);
    * ``"other-arn"``: any other ARN (other services, prompt routers, ...).
    """
    arn = _arn_resource(model_id)
    if arn is not None:
        service, resource = arn
        if service != "bedrock":
            return "other-arn"
        resource_type, _, rest = resource.partition("/")
        if resource_type == "custom-model" and rest.startswith("imported/"):
            # Custom Model Import creates ARNs like custom-model/imported/<id>.
            return "imported"
        return _ARN_KINDS.get(resource_type, "other-arn")
    segments = model_id.split(".")
    if len(segments) == 1:
        return "custom-name"
    if len(segments) >= 3 and segments[0] in _GEO_PREFIXES:
        return "inference-profile"
    return "foundation"


def _foundation_id(arn: str) -> str:
    """``amazon.titan-text-express-v1`` from a foundation-model ARN."""
    return arn.split(":", 5)[5].partition("/")[2]


def _region_of(client: Any) -> str:
    meta = getattr(client, "meta", None)
    region = getattr(meta, "region_name", None)
    return region if isinstance(region, str) and region else "(no region)"


def _endpoint_of(client: Any) -> str:
    meta = getattr(client, "meta", None)
    endpoint = getattr(meta, "endpoint_url", None)
    return endpoint if isinstance(endpoint, str) else "(unknown endpoint)"


def _fix_for_code(code: str, client: Any) -> str:
    """The most likely fix for an AWS error code, always ending with the baseline way out."""
    region = _region_of(client)
    if code in {"AccessDeniedException", "AccessDenied"}:
        return (
            "allow bedrock:GetCustomModel, bedrock:GetProvisionedModelThroughput, "
            "bedrock:GetCustomModelDeployment and bedrock:GetImportedModel for these "
            f"credentials, or {BASELINE_FIX}"
        )
    if code in {"ResourceNotFoundException", "NotFoundException"}:
        return (
            f"check the identifier and that the client's region ({region}) is the region "
            f"the model lives in, or {BASELINE_FIX}"
        )
    if code == "ValidationException":
        return (
            "check that the identifier is a custom model name/ARN, a provisioned-model ARN "
            f"or a custom-model-deployment ARN, or {BASELINE_FIX}"
        )
    if code in {
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "ExpiredTokenException",
        "ExpiredToken",
        "InvalidClientTokenId",
    }:
        return f"refresh or fix the AWS credentials, or {BASELINE_FIX}"
    return f"retry, or {BASELINE_FIX}"


def _call(
    candidate: str,
    operation: str,
    method: Callable[..., Any],
    **kwargs: str,
) -> dict[str, Any]:
    """Call one control-plane operation, turning every failure into BaseModelError."""
    client = getattr(method, "__self__", None)
    what = f"Cannot find the base model of {candidate!r}: {operation}({_kwargs_text(kwargs)})"
    try:
        response = method(**kwargs)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "Unknown"))
        message = str(error.get("Message", "")) or str(exc)
        if message.lstrip().startswith("<"):
            # An HTML error page (e.g. moto server's 500 for an unimplemented operation).
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", code)
            message = (
                f"HTTP {status} from {_endpoint_of(client)} (the control plane may not "
                "implement this operation)"
            )
        raise BaseModelError(
            f"{what} failed with {code}: {message}. Fix: {_fix_for_code(code, client)}.",
            candidate=candidate,
        ) from exc
    except (NoCredentialsError, PartialCredentialsError) as exc:
        raise BaseModelError(
            f"{what} failed: {exc}. Fix: configure AWS credentials (AWS_PROFILE, "
            f"AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, SSO login), or {BASELINE_FIX}.",
            candidate=candidate,
        ) from exc
    except (EndpointConnectionError, NoRegionError) as exc:
        raise BaseModelError(
            f"{what} failed: {exc}. Fix: check the region (AWS_REGION, currently "
            f"{_region_of(client)}) and endpoint ({_endpoint_of(client)}) and the network, "
            f"or {BASELINE_FIX}.",
            candidate=candidate,
        ) from exc
    except BotoCoreError as exc:
        raise BaseModelError(
            f"{what} failed: {exc}. Fix: {BASELINE_FIX}.", candidate=candidate
        ) from exc
    except NotImplementedError as exc:
        # moto in-process raises this for operations it does not emulate.
        raise BaseModelError(
            f"{what} is not implemented by the control plane at {_endpoint_of(client)} "
            f"({exc}). Fix: {BASELINE_FIX}.",
            candidate=candidate,
        ) from exc
    if not isinstance(response, dict):
        raise BaseModelError(
            f"{what} returned {type(response).__name__}, not a response dict. "
            f"Fix: pass a boto3 'bedrock' client, or {BASELINE_FIX}.",
            candidate=candidate,
        )
    return response


def _method(control_client: Any, name: str, operation: str, candidate: str) -> Any:
    """``control_client.<name>``, or a BaseModelError if the client lacks it (old botocore)."""
    method = getattr(control_client, name, None)
    if method is None:
        raise BaseModelError(
            f"Cannot find the base model of {candidate!r}: the control client "
            f"({type(control_client).__name__}) has no {name}() for {operation}. Fix: pass a "
            f"boto3 'bedrock' client from an up-to-date boto3, or {BASELINE_FIX}.",
            candidate=candidate,
        )
    return method


def _kwargs_text(kwargs: dict[str, str]) -> str:
    return ", ".join(f"{name}={value!r}" for name, value in kwargs.items())


def _is_not_found(exc: BaseModelError) -> bool:
    cause = exc.__cause__
    return isinstance(cause, ClientError) and cause.response.get("Error", {}).get("Code") in {
        "ResourceNotFoundException",
        "NotFoundException",
    }


def _imported_error(candidate: str, detail: str) -> BaseModelError:
    return BaseModelError(
        f"{candidate!r} is an imported model ({detail}): Bedrock records no base model "
        f"for imported weights, so there is nothing to compare against automatically. "
        f"Fix: {BASELINE_FIX}.",
        candidate=candidate,
    )


def _looks_imported(candidate: str, control_client: Any) -> bool:
    """Whether a bare name that is not a custom model is an imported model.

    Best effort: any failure here (moto does not implement GetImportedModel, missing
    permission) means "can't tell", and the caller reports the original not-found error.
    """
    try:
        _call(
            candidate,
            "GetImportedModel",
            _method(control_client, "get_imported_model", "GetImportedModel", candidate),
            modelIdentifier=candidate,
        )
    except BaseModelError:
        return False
    return True


def _base_from_arn(
    candidate: str, base_arn: str, source: str, chain: list[str]
) -> BaseModelResolution:
    chain.append(base_arn)
    kind = classify_model_id(base_arn)
    base_id = _foundation_id(base_arn) if kind == "foundation-arn" else base_arn
    return BaseModelResolution(
        candidate=candidate, base_model_id=base_id, source=source, chain=tuple(chain)
    )


def _resolve_custom(
    candidate: str,
    identifier: str,
    control_client: Any,
    chain: list[str],
    source_prefix: str,
) -> BaseModelResolution:
    """Base of a custom model given by name or ARN (``identifier``)."""
    try:
        model = _call(
            candidate,
            "GetCustomModel",
            _method(control_client, "get_custom_model", "GetCustomModel", candidate),
            modelIdentifier=identifier,
        )
    except BaseModelError as exc:
        if (
            _is_not_found(exc)
            and classify_model_id(identifier) == "custom-name"
            and _looks_imported(identifier, control_client)
        ):
            raise _imported_error(
                candidate, "GetCustomModel does not know it, GetImportedModel does"
            ) from exc
        raise
    if str(model.get("customizationType", "")).upper() == "IMPORTED":
        raise _imported_error(candidate, "GetCustomModel customizationType is IMPORTED")
    base_arn = model.get("baseModelArn")
    if not isinstance(base_arn, str) or not base_arn:
        raise BaseModelError(
            f"Cannot find the base model of {candidate!r}: GetCustomModel({identifier!r}) "
            f"returned no baseModelArn (customizationType "
            f"{model.get('customizationType', 'not given')}). Fix: {BASELINE_FIX}.",
            candidate=candidate,
        )
    model_arn = model.get("modelArn")
    if isinstance(model_arn, str) and model_arn and model_arn not in chain:
        chain.append(model_arn)
    return _base_from_arn(candidate, base_arn, f"{source_prefix}GetCustomModel baseModelArn", chain)


def _resolve_served_model(
    candidate: str,
    served_arn: str,
    control_client: Any,
    chain: list[str],
    operation: str,
    what: str,
) -> BaseModelResolution:
    """Follow the model a provisioned throughput or deployment serves."""
    kind = classify_model_id(served_arn)
    if kind in {"foundation-arn", "foundation"}:
        chain.append(served_arn)
        base_id = _foundation_id(served_arn) if kind == "foundation-arn" else served_arn
        return BaseModelResolution(
            candidate=candidate,
            base_model_id=base_id,
            # Not a fine-tune: the gate then measures dedicated capacity against on-demand.
            source=f"{what} of a foundation model ({operation} modelArn; "
            "comparing provisioned vs on-demand)",
            chain=tuple(chain),
        )
    if kind == "imported":
        raise _imported_error(candidate, f"{operation} serves {served_arn}")
    if kind in {"custom-model", "custom-name"}:
        return _resolve_custom(candidate, served_arn, control_client, chain, f"{operation} -> ")
    raise BaseModelError(
        f"Cannot find the base model of {candidate!r}: {operation} says it serves "
        f"{served_arn!r}, which is neither a custom nor a foundation model. "
        f"Fix: {BASELINE_FIX}.",
        candidate=candidate,
    )


def resolve_base_model(candidate: str, control_client: Any) -> BaseModelResolution:
    """Resolve the base model to compare ``candidate`` against.

    Args:
        candidate: custom model name or ARN, provisioned-model ARN or
            custom-model-deployment ARN.
        control_client: a boto3 ``bedrock`` (control-plane) client, e.g.
            ``boto3.client("bedrock", region_name=...)``; its region must be the model's.

    Rules:
        * custom model → ``GetCustomModel(...)["baseModelArn"]``;
        * provisioned throughput → ``GetProvisionedModelThroughput(...)["modelArn"]``,
          then the custom model's base, or the foundation model itself (the comparison is
          then provisioned vs on-demand, which ``source`` says);
        * custom model deployment → ``GetCustomModelDeployment(...)["modelArn"]``, then
          the custom model's base;
        * imported models, foundation models and inference profiles have no base.

    Raises:
        BaseModelError: on any of the cases without a base and on every AWS/botocore
            error, with the AWS message, the candidate and the fix.
    """
    if not candidate:
        raise BaseModelError(
            f"No candidate model id given. Fix: pass the candidate model id, or {BASELINE_FIX}."
        )
    kind = classify_model_id(candidate)
    chain = [candidate]
    if kind in {"foundation", "foundation-arn", "inference-profile"}:
        what = "an inference profile" if kind == "inference-profile" else "a foundation model"
        raise BaseModelError(
            f"{candidate!r} is not a custom model: it is {what}, so it has no base model "
            f"to compare against. Fix: {BASELINE_FIX}.",
            candidate=candidate,
        )
    if kind == "imported":
        raise _imported_error(candidate, "imported-model ARN")
    if kind in {"custom-model", "custom-name"}:
        return _resolve_custom(candidate, candidate, control_client, chain, "")
    # A provisioned throughput or a custom model deployment serves a model: follow it.
    served_by = {
        "provisioned": (
            "get_provisioned_model_throughput",
            "GetProvisionedModelThroughput",
            "provisionedModelId",
            "provisioned throughput",
        ),
        "custom-model-deployment": (
            "get_custom_model_deployment",
            "GetCustomModelDeployment",
            "customModelDeploymentIdentifier",
            "custom model deployment",
        ),
    }
    if kind in served_by:
        name, operation, argument, what = served_by[kind]
        response = _call(
            candidate,
            operation,
            _method(control_client, name, operation, candidate),
            **{argument: candidate},
        )
        served = response.get("modelArn") or response.get("foundationModelArn")
        if not isinstance(served, str) or not served:
            raise BaseModelError(
                f"Cannot find the base model of {candidate!r}: {operation} "
                f"returned no modelArn. Fix: {BASELINE_FIX}.",
                candidate=candidate,
            )
        return _resolve_served_model(candidate, served, control_client, chain, operation, what)
    raise BaseModelError(
        f"{candidate!r} is not a Bedrock model identifier this plugin can trace to a base "
        f"model (expected a custom model name/ARN, a provisioned-model ARN or a "
        f"custom-model-deployment ARN). Fix: {BASELINE_FIX}.",
        candidate=candidate,
    )


@dataclass(frozen=True)
class BaseChoice:
    """The base model of a candidate, how it was found, or why there is none."""

    model_id: str | None
    source: str
    problem: str | None = None


class BaseModels:
    """The session's base model of each candidate: ``--bedrock-baseline``, else the control
    plane's answer, asked once per candidate (thread-safe)."""

    def __init__(self, baseline: str | None, control_client: Callable[[], Any]) -> None:
        self._baseline = baseline
        self._control_client = control_client
        self._choices: dict[str, BaseChoice] = {}
        self._lock = threading.Lock()

    def choose(self, candidate: str) -> BaseChoice:
        """The base model of ``candidate``, or why there is none."""
        if self._baseline:
            return BaseChoice(self._baseline, "--bedrock-baseline")
        with self._lock:
            cached = self._choices.get(candidate)
        if cached is not None:
            return cached
        try:
            resolution = resolve_base_model(candidate, self._control_client())
            choice = BaseChoice(resolution.base_model_id, resolution.source)
        except BaseModelError as error:
            choice = BaseChoice(None, "none", str(error))
        with self._lock:
            self._choices[candidate] = choice
        return choice
