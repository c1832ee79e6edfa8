"""Latency/verbosity profiles of emulated models: schema, TOML loading, validation, lookup.

A profile file looks like::

    [defaults]
    jitter = 0.05

    [models."anthropic.claude-3-haiku-20240307-v1:0"]
    ttft_ms = 300
    ms_per_token = 8

    [models."support-v3"]
    like = "anthropic.claude-3-haiku-20240307-v1:0"
    answer_tokens = 120

    [models."arn:aws:bedrock:*:custom-model/*"]
    family = "titan"

Field values are resolved as: built-in defaults, then ``[defaults]``, then the ``like``
chain (root first), then the profile's own fields.

A model may carry per-prompt entries, keyed by the emulator's prompt hash (never the
text; ``textgen.prompt_sha``), which a recorded profile file fills in::

    [models."support-v3".prompts]
    "3f2a9c0d1e4b5a67" = { answer_tokens = 212, stop_reason = "end_turn" }

A request whose prompt has an entry is answered with exactly that many tokens (and that
entry's ``answer_text``, when it was recorded with answers). A ``[provenance]`` table (what
the plugin's recorder writes: where and when each model was recorded) is accepted and not
interpreted.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from ..modelkeys import KeyMatcher

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

__all__ = [
    "BUILTIN_DEFAULTS",
    "FAMILIES",
    "FIELDS",
    "Profile",
    "ProfileError",
    "ProfileSet",
    "ProfileSource",
    "PromptEntry",
    "default_profiles_path",
    "load_profiles",
]

#: Native InvokeModel body formats the emulator speaks.
FAMILIES: tuple[str, ...] = ("anthropic", "nova", "titan", "llama", "mistral")

#: Every allowed field, in documentation order.
FIELDS: tuple[str, ...] = (
    "like",
    "family",
    "ttft_ms",
    "ms_per_token",
    "jitter",
    "answer_tokens",
    "prompt_spread",
    "answer_tokens_spread",
    "long_answer_rate",
    "long_answer_factor",
    "tokens_per_chunk",
    "optimized_speedup",
    "throttle_rate",
    "not_ready_rate",
    "stream_error_rate",
    "outlier_rate",
    "outlier_factor",
    "prefill_ms_per_1k_input_tokens",
    "cache_ttl_s",
    "cached_prefill_factor",
    "tool_use_rate",
    "reasoning_tokens",
    "guardrail_intervention_rate",
    "max_output_tokens",
    "seed",
    "prompts",
)

#: Defaults applied before a file's ``[defaults]`` table.
BUILTIN_DEFAULTS: Mapping[str, Any] = {
    "family": None,
    "ttft_ms": 200.0,
    "ms_per_token": 20.0,
    "jitter": 0.0,
    "answer_tokens": 60.0,
    "prompt_spread": 0.3,
    "answer_tokens_spread": 0.1,
    "long_answer_rate": 0.0,
    "long_answer_factor": 1.0,
    "tokens_per_chunk": 1,
    "optimized_speedup": 1.0,
    "throttle_rate": 0.0,
    "not_ready_rate": 0.0,
    "stream_error_rate": 0.0,
    "outlier_rate": 0.0,
    "outlier_factor": 3.0,
    "prefill_ms_per_1k_input_tokens": 0.0,
    "cache_ttl_s": 300.0,
    "cached_prefill_factor": 0.3,
    "tool_use_rate": 0.8,
    "reasoning_tokens": 200.0,
    "guardrail_intervention_rate": 0.0,
    "max_output_tokens": 65536,
    "seed": 0,
    "prompts": (),
}

# (kind, description used in error messages). Kinds: "nonneg" number >= 0, "pos" number > 0,
# "rate" number in [0, 1], "atleast1" number >= 1, "int1" integer >= 1, "int" any integer.
_RULES: Mapping[str, tuple[str, str]] = {
    "ttft_ms": ("nonneg", "a number >= 0"),
    "ms_per_token": ("nonneg", "a number >= 0"),
    "jitter": ("nonneg", "a number >= 0"),
    "answer_tokens": ("atleast1", "a number >= 1"),
    "prompt_spread": ("nonneg", "a number >= 0"),
    "answer_tokens_spread": ("nonneg", "a number >= 0"),
    "long_answer_rate": ("rate", "a number between 0 and 1"),
    "long_answer_factor": ("pos", "a number > 0"),
    "tokens_per_chunk": ("int1", "an integer >= 1"),
    "optimized_speedup": ("pos", "a number > 0"),
    "throttle_rate": ("rate", "a number between 0 and 1"),
    "not_ready_rate": ("rate", "a number between 0 and 1"),
    "stream_error_rate": ("rate", "a number between 0 and 1"),
    "outlier_rate": ("rate", "a number between 0 and 1"),
    "outlier_factor": ("pos", "a number > 0"),
    "prefill_ms_per_1k_input_tokens": ("nonneg", "a number >= 0"),
    "cache_ttl_s": ("pos", "a number > 0"),
    "cached_prefill_factor": ("rate", "a number between 0 and 1"),
    "tool_use_rate": ("rate", "a number between 0 and 1"),
    "reasoning_tokens": ("nonneg", "a number >= 0"),
    "guardrail_intervention_rate": ("rate", "a number between 0 and 1"),
    "max_output_tokens": ("int1", "an integer >= 1"),
    "seed": ("int", "an integer"),
}

# Upper (and, where > 0 is not enough, lower) bounds: beyond them a value is a typo or would
# make a request sleep for days, overflow, or never finish. README's profile table lists them.
_BOUNDS: Mapping[str, tuple[float, float]] = {
    "ttft_ms": (0, 600_000),
    "ms_per_token": (0, 60_000),
    "jitter": (0, 10),
    "answer_tokens": (1, 1e9),
    "prompt_spread": (0, 10),
    "answer_tokens_spread": (0, 10),
    "long_answer_factor": (0.001, 1_000),
    "tokens_per_chunk": (1, 10_000),
    "optimized_speedup": (0.01, 100),
    "outlier_factor": (0.01, 1_000),
    "max_output_tokens": (1, 1_000_000),
    "prefill_ms_per_1k_input_tokens": (0, 60_000),
    "cache_ttl_s": (0.001, 86_400),
    "reasoning_tokens": (0, 1_000_000),
    "seed": (-(2**63), 2**63 - 1),
}

ProfileSource = Union[str, "os.PathLike[str]", Mapping[str, Any], "ProfileSet", None]


class ProfileError(ValueError):
    """A profile file or dict is invalid. The message names the source, model key and field."""


#: Stop reasons a per-prompt entry may replay (the Converse vocabulary).
PROMPT_STOP_REASONS: tuple[str, ...] = ("end_turn", "max_tokens", "stop_sequence", "tool_use")
_PROMPT_KEY = re.compile(r"^[0-9a-f]{16}$")
_PROMPT_FIELDS = ("answer_tokens", "stop_reason", "answer_text")


@dataclass(frozen=True)
class PromptEntry:
    """How one prompt (by its hash) was answered when the profile was recorded."""

    sha: str
    answer_tokens: int
    stop_reason: str | None = None
    answer_text: str | None = None

    def to_toml(self) -> dict[str, Any]:
        """The entry as its profile-file table."""
        out: dict[str, Any] = {"answer_tokens": self.answer_tokens}
        if self.stop_reason is not None:
            out["stop_reason"] = self.stop_reason
        if self.answer_text is not None:
            out["answer_text"] = self.answer_text
        return out


def _check_prompts(where: str, value: Any) -> tuple[PromptEntry, ...]:
    """Validate a ``prompts`` table ({sha: {answer_tokens, stop_reason, answer_text}})."""
    if isinstance(value, tuple) and all(isinstance(e, PromptEntry) for e in value):
        return value  # already validated (Profile.fields() handed back)
    if not isinstance(value, Mapping):
        raise ProfileError(
            f'{where}: field "prompts" must be a table of prompt hashes (got {_repr(value)})'
        )
    entries = []
    for sha, entry in value.items():
        at = f'{where}: prompts."{sha}"'
        if not isinstance(sha, str) or not _PROMPT_KEY.match(sha):
            raise ProfileError(
                f"{at}: a prompt key must be 16 lowercase hex digits (a prompt hash)"
            )
        if not isinstance(entry, Mapping):
            raise ProfileError(f"{at}: must be a table of fields (got {_repr(entry)})")
        unknown = [k for k in entry if k not in _PROMPT_FIELDS]
        if unknown:
            raise ProfileError(
                f'{at}: unknown field "{unknown[0]}" (allowed: {", ".join(_PROMPT_FIELDS)})'
            )
        tokens = entry.get("answer_tokens")
        if not isinstance(tokens, int) or isinstance(tokens, bool) or not 1 <= tokens <= 1e9:
            raise ProfileError(
                f'{at}: field "answer_tokens" must be an integer from 1 to 1e+09 '
                f"(got {_repr(tokens)})"
            )
        reason = entry.get("stop_reason")
        if reason is not None and reason not in PROMPT_STOP_REASONS:
            raise ProfileError(
                f'{at}: field "stop_reason" must be one of {", ".join(PROMPT_STOP_REASONS)} '
                f"(got {_repr(reason)})"
            )
        text = entry.get("answer_text")
        if text is not None and not isinstance(text, str):
            raise ProfileError(f'{at}: field "answer_text" must be a string (got {_repr(text)})')
        entries.append(PromptEntry(sha, tokens, reason, text))
    return tuple(sorted(entries, key=lambda e: e.sha))


@dataclass(frozen=True)
class Profile:
    """The fully resolved timing and verbosity behaviour of one emulated model."""

    key: str
    family: str | None
    ttft_ms: float
    ms_per_token: float
    jitter: float
    answer_tokens: float
    prompt_spread: float
    answer_tokens_spread: float
    long_answer_rate: float
    long_answer_factor: float
    tokens_per_chunk: int
    optimized_speedup: float
    throttle_rate: float
    not_ready_rate: float
    stream_error_rate: float
    outlier_rate: float
    outlier_factor: float
    prefill_ms_per_1k_input_tokens: float
    cache_ttl_s: float
    cached_prefill_factor: float
    tool_use_rate: float
    reasoning_tokens: float
    guardrail_intervention_rate: float
    max_output_tokens: int
    seed: int
    prompts: tuple[PromptEntry, ...] = ()
    _by_sha: Mapping[str, PromptEntry] = dataclasses.field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_sha", {e.sha: e for e in self.prompts})

    def prompt(self, sha: str) -> PromptEntry | None:
        """The per-prompt entry for the prompt hash ``sha``, if the profile has one."""
        return self._by_sha.get(sha)

    def fields(self) -> dict[str, Any]:
        """The field values (without ``key``), suitable for re-validation with overrides."""
        # Shallow: per-prompt entries stay PromptEntry objects, which re-validate as they are.
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}
        del out["key"]
        return out


def _repr(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)


def _is_number(value: Any) -> bool:
    # bool is an int subclass but "jitter = true" is a mistake, not 1.0.
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_field(where: str, name: str, value: Any) -> Any:
    """Validate one field and return its normalised value."""

    def fail(expect: str) -> ProfileError:
        return ProfileError(f'{where}: field "{name}" must be {expect} (got {_repr(value)})')

    if name == "like":
        if not isinstance(value, str):
            raise fail("a string naming another model key")
        return value
    if name == "prompts":
        return _check_prompts(where, value)
    if name == "family":
        if value not in FAMILIES:
            raise fail("one of " + ", ".join(FAMILIES))
        return value
    kind, expect = _RULES[name]
    low, high = _BOUNDS.get(name, (-math.inf, math.inf))

    def out_of_bounds() -> ProfileError:
        return fail(f"a number from {low:g} to {high:g}")

    if kind in ("int1", "int"):
        if not isinstance(value, int) or isinstance(value, bool):
            raise fail(expect)
        if kind == "int1" and value < 1:
            raise fail(expect)
        if not low <= value <= high:
            raise out_of_bounds()
        return int(value)
    if not _is_number(value):
        raise fail(expect)
    number = float(value)
    if not math.isfinite(number):  # NaN never compares; inf would make a sleep never end
        raise fail(expect.replace("a number", "a finite number", 1))
    if kind == "nonneg" and number < 0:
        raise fail(expect)
    if kind == "pos" and number <= 0:
        raise fail(expect)
    if kind == "atleast1" and number < 1:
        raise fail(expect)
    if kind == "rate" and not 0.0 <= number <= 1.0:
        raise fail(expect)
    if not low <= number <= high:
        raise out_of_bounds()
    return number


def _check_table(where: str, table: Any, allow_like: bool = True) -> dict[str, Any]:
    if not isinstance(table, Mapping):
        raise ProfileError(f"{where}: must be a table of fields (got {_repr(table)})")
    out: dict[str, Any] = {}
    allowed = FIELDS if allow_like else tuple(f for f in FIELDS if f != "like")
    for name, value in table.items():
        if name not in allowed:
            raise ProfileError(f'{where}: unknown field "{name}" (allowed: {", ".join(allowed)})')
        out[name] = _check_field(where, name, value)
    return out


class ProfileSet:
    """A validated, immutable collection of model profiles with exact and glob lookup."""

    def __init__(
        self,
        models: Mapping[str, Mapping[str, Any]],
        defaults: Mapping[str, Any] | None = None,
        source: str = "<dict>",
    ) -> None:
        self.source = source
        self._defaults = _check_table(f"{source}: [defaults]", defaults or {}, allow_like=False)
        raw: dict[str, dict[str, Any]] = {}
        for key, table in models.items():
            if not isinstance(key, str) or not key:
                raise ProfileError(
                    f"{source}: model keys must be non-empty strings (got {_repr(key)})"
                )
            raw[key] = _check_table(f'{source}: model "{key}"', table)
        self._raw = raw
        self._profiles: dict[str, Profile] = {key: self._resolve(key) for key in raw}
        self._matcher = KeyMatcher(raw)

    def _resolve(self, key: str) -> Profile:
        chain: list[str] = []
        current: str | None = key
        while current is not None:
            if current in chain:
                cycle = " -> ".join([*chain, current])
                raise ProfileError(f'{self.source}: model "{key}": "like" cycle ({cycle})')
            if current not in self._raw:
                raise ProfileError(
                    f'{self.source}: model "{chain[-1]}": field "like" names unknown model '
                    f'"{current}" (known: {", ".join(sorted(self._raw))})'
                )
            chain.append(current)
            current = self._raw[current].get("like")
        values: dict[str, Any] = dict(BUILTIN_DEFAULTS)
        values.update(self._defaults)
        for name in reversed(chain):
            values.update({k: v for k, v in self._raw[name].items() if k != "like"})
        return Profile(key=key, **values)

    # -- lookup -----------------------------------------------------------------------------

    def keys(self) -> list[str]:
        """All model keys (exact ids and globs) in definition order."""
        return list(self._raw)

    def get(self, key: str) -> Profile | None:
        """The profile defined under exactly ``key`` (no glob matching)."""
        return self._profiles.get(key)

    def match_exact(self, model_id: str) -> Profile | None:
        """The profile whose key equals ``model_id`` (globs are not consulted)."""
        return self._profiles.get(model_id)

    def match_glob(self, model_id: str, include_star: bool = True) -> Profile | None:
        """The longest glob key matching ``model_id``; the bare ``"*"`` only if ``include_star``."""
        pattern = self._matcher.glob(model_id, include_star)
        return self._profiles[pattern] if pattern is not None else None

    def match(self, model_id: str) -> Profile | None:
        """Exact key first, then the longest matching glob."""
        return self.match_exact(model_id) or self.match_glob(model_id)

    def defaults_profile(self, key: str) -> Profile:
        """A profile made only of built-in defaults and the ``[defaults]`` table."""
        values: dict[str, Any] = dict(BUILTIN_DEFAULTS)
        values.update(self._defaults)
        return Profile(key=key, **values)

    def derive(
        self, key: str, base: Profile | None, fields: Mapping[str, Any], source: str = "set_profile"
    ) -> Profile:
        """Validate ``fields`` and layer them on ``base`` (or on the defaults), honouring ``like``."""
        checked = _check_table(f'{source}: model "{key}"', fields)
        values = (base or self.defaults_profile(key)).fields()
        like = checked.pop("like", None)
        if like is not None:
            target = self._profiles.get(like)
            if target is None:
                raise ProfileError(
                    f'{source}: model "{key}": field "like" names unknown model "{like}" '
                    f"(known: {', '.join(sorted(self._raw))})"
                )
            values = target.fields()
        values.update(checked)
        return Profile(key=key, **values)

    def __len__(self) -> int:
        return len(self._raw)

    def __repr__(self) -> str:
        return f"ProfileSet(source={self.source!r}, models={list(self._raw)!r})"


def default_profiles_path() -> Path:
    """The profile file shipped with the package (used when ``profiles=None``)."""
    return Path(__file__).with_name("default_profiles.toml")


def _from_document(doc: Mapping[str, Any], source: str) -> ProfileSet:
    if "models" in doc and isinstance(doc["models"], Mapping):
        unknown = [k for k in doc if k not in ("defaults", "models", "provenance")]
        if unknown:
            raise ProfileError(
                f'{source}: unknown top-level table "{unknown[0]}" '
                "(allowed: defaults, models, provenance)"
            )
        if not isinstance(doc.get("provenance", {}), Mapping):
            raise ProfileError(f"{source}: [provenance] must be a table")
        return ProfileSet(doc["models"], doc.get("defaults"), source)
    # Flat form: {model_id: fields, ..., "defaults": {...}}.
    models = {k: v for k, v in doc.items() if k not in ("defaults", "provenance")}
    return ProfileSet(models, doc.get("defaults"), source)


def load_profiles(source: ProfileSource = None) -> ProfileSet:
    """Load and validate profiles from a TOML file path, a dict, or ``None`` (shipped defaults).

    A dict may use the TOML layout (``{"defaults": {...}, "models": {id: {...}}}``) or be flat
    (``{id: {...}}`` with an optional ``"defaults"`` entry). Raises :class:`ProfileError`.
    """
    if isinstance(source, ProfileSet):
        return source
    if source is None:
        source = default_profiles_path()
    if isinstance(source, Mapping):
        return _from_document(source, "<dict>")
    path = Path(os.fspath(source))
    name = str(source)
    try:
        with path.open("rb") as fh:
            doc = tomllib.load(fh)
    except FileNotFoundError:
        raise ProfileError(f"{name}: no such profile file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{name}: invalid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ProfileError(
            f"{name}: not UTF-8 text (byte {exc.start}); TOML profile files must be UTF-8"
        ) from None
    except OSError as exc:
        raise ProfileError(f"{name}: cannot read: {exc.strerror}") from None
    return _from_document(doc, name)
