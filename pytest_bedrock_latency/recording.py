"""Fitting emulator profiles to measured calls, and writing them as a profile file.

Pure code: no pytest, no boto3. :func:`fit_profiles` turns the calls a session measured
(:class:`~.measurement.Generation` records and failed calls) into one emulator profile per
model, with the fields the emulator replays (``emulator/profiles.py``); :func:`merge_document`
merges them into an existing profile file's content per model; :func:`dump_profiles` writes
the TOML. A field with too few calls to fit is left out, and the fit says so in its notes.

How each field is fitted (the emulator's model in brackets):

* ``ttft_ms`` and ``jitter`` [TTFT = (ttft_ms + prefill x input/1000) x a mean-1 lognormal
  factor of CV ``jitter``]: the spread is the MAD of log TTFT; ``ttft_ms`` is set so that
  the replayed median equals the recorded median.
* ``prefill_ms_per_1k_input_tokens``: the Theil-Sen slope (median of pairwise slopes) of
  TTFT on input tokens, robust to outliers; only when the input lengths differ enough.
* ``ms_per_token``: the median of the calls' (total - TTFT) / (tokens - 1).
* ``outlier_rate`` / ``outlier_factor``: calls whose TTFT is far above the rest (more than
  1.5x the median and beyond five spreads).
* ``answer_tokens``, ``prompt_spread``, ``answer_tokens_spread`` [tokens = answer_tokens x
  prompt factor x sample factor, both mean-1 lognormal]: from answers that ended on their
  own (a ``max_tokens`` stop is censored): the mean of the per-prompt means, their CV
  between prompts, and the CV of repeated asks of one prompt.
* ``tokens_per_chunk``: the median output tokens per content event of the streams.
* ``throttle_rate``, ``not_ready_rate``, ``stream_error_rate``: per attempt, as the emulator
  draws them (throttling first, then not-ready, then a broken stream). Extra attempts of a
  call that finally succeeded count as throttled: botocore does not say why it retried,
  and throttling is what Bedrock retries are nearly always about.
* per-prompt entries (``prompts``, keyed by the emulator's prompt hash): each prompt's
  median answer tokens and its most frequent stop reason (and, only when asked, the
  answer text), so a replay keeps the verbosity pattern prompt by prompt.
"""

from __future__ import annotations

import math
import os
import re
import sys
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from statistics import median
from typing import Any

from .measurement import Generation

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

__all__ = [
    "MIN_CALLS",
    "Failure",
    "ModelFit",
    "RecordError",
    "dump_profiles",
    "fit_model",
    "fit_profiles",
    "merge_document",
    "record_profiles",
]

#: The fewest observations each field is fitted from; with fewer it is left out.
MIN_CALLS: Mapping[str, int] = {
    "ttft_ms": 5,
    "jitter": 10,
    "ms_per_token": 5,
    "prefill_ms_per_1k_input_tokens": 10,
    "outlier_rate": 20,
    "answer_tokens": 5,
    "prompt_spread": 5,  # distinct prompts
    "answer_tokens_spread": 3,  # prompts asked at least twice
    "tokens_per_chunk": 5,
    "rates": 20,  # attempts
}
_OUTLIER_SPREADS = 5.0
_OUTLIER_MIN_RATIO = 1.5
_MAX_SLOPE_POINTS = 300  # Theil-Sen is quadratic; a larger recording is thinned evenly
_MAD_TO_SIGMA = 1.4826
_MIN_INPUT_SPAN_K = 0.5  # thousands of input tokens between the shortest and longest prompt


@dataclass(frozen=True)
class Failure:
    """A failed call as the fit needs it: Bedrock's error code and where it failed."""

    model_id: str
    error_code: str
    attempts: int = 1
    mid_stream: bool = False
    streaming: bool = False


@dataclass
class ModelFit:
    """The fitted profile of one model, what it was fitted from, and what was left out."""

    model_id: str
    fields: dict[str, Any] = field(default_factory=dict)
    prompts: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: int = 0
    failed_calls: int = 0
    stop_reasons: dict[str, int] = field(default_factory=dict)
    left_out: dict[str, str] = field(default_factory=dict)  # field -> why

    def notes(self) -> list[str]:
        """What was left out and why, one note per reason."""
        by_reason: dict[str, list[str]] = {}
        for name, why in self.left_out.items():
            by_reason.setdefault(why, []).append(name)
        return [f"{', '.join(names)} ({why})" for why, names in by_reason.items()]


def _spread_sigma(logs: Sequence[float]) -> float:
    centre = median(logs)
    return _MAD_TO_SIGMA * median(abs(x - centre) for x in logs)


def _cv_of_sigma(sigma: float) -> float:
    return math.sqrt(math.expm1(sigma * sigma))


def _theil_sen(xs: Sequence[float], ys: Sequence[float]) -> float:
    if len(xs) > _MAX_SLOPE_POINTS:
        step = len(xs) / _MAX_SLOPE_POINTS
        picks = [int(i * step) for i in range(_MAX_SLOPE_POINTS)]
        xs, ys = [xs[i] for i in picks], [ys[i] for i in picks]
    slopes = [
        (ys[j] - ys[i]) / (xs[j] - xs[i])
        for i in range(len(xs))
        for j in range(i + 1, len(xs))
        if xs[j] != xs[i]
    ]
    return median(slopes) if slopes else 0.0


def _few(have: int, need: int, what: str) -> str:
    return f"{have} {what}, {need} needed"


def _fit_ttft(fit: ModelFit, calls: Sequence[Generation]) -> None:
    timed = [g for g in calls if g.ttft_ms is not None and g.ttft_ms > 0]
    need = MIN_CALLS["ttft_ms"]
    if len(timed) < need:
        why = _few(len(timed), need, "streamed calls with a first token")
        for name in ("ttft_ms", "jitter", "prefill_ms_per_1k_input_tokens", "outlier_rate"):
            fit.left_out[name] = why
        return
    ttfts = [float(g.ttft_ms or 0.0) for g in timed]
    centre = median(ttfts)
    sigma = _spread_sigma([math.log(t) for t in ttfts])
    # Outliers: far above the rest, in ratio and in spreads (a jittery model has none).
    limit = centre * max(_OUTLIER_MIN_RATIO, math.exp(_OUTLIER_SPREADS * sigma))
    outliers = [t for t in ttfts if t > limit]
    if len(timed) >= MIN_CALLS["outlier_rate"]:
        fit.fields["outlier_rate"] = round(len(outliers) / len(timed), 4)
        if outliers:
            fit.fields["outlier_factor"] = round(median(outliers) / centre, 3)
    else:
        fit.left_out["outlier_rate"] = _few(len(timed), MIN_CALLS["outlier_rate"], "streamed calls")
    normal = [g for g in timed if float(g.ttft_ms or 0.0) <= limit]
    xs = [(g.input_tokens or 0) / 1000.0 for g in normal]
    ys = [float(g.ttft_ms or 0.0) for g in normal]
    slope = 0.0
    need = MIN_CALLS["prefill_ms_per_1k_input_tokens"]
    positive = [x for x in xs if x > 0]
    if len(normal) < need:
        fit.left_out["prefill_ms_per_1k_input_tokens"] = _few(len(normal), need, "streamed calls")
    elif (
        len(positive) < need
        or max(positive) < 2 * min(positive)
        or max(positive) - min(positive) < _MIN_INPUT_SPAN_K
    ):
        # Over a narrow range the slope is noise: 1 ms over 100 tokens reads as 10 ms/1k.
        fit.left_out["prefill_ms_per_1k_input_tokens"] = (
            "the prompts' input token counts differ too little (the longest must be at least "
            f"twice the shortest and {_MIN_INPUT_SPAN_K * 1000:.0f} tokens longer)"
        )
    else:
        slope = max(0.0, _theil_sen(xs, ys))
        fit.fields["prefill_ms_per_1k_input_tokens"] = round(slope, 3)
    intercept = max(0.0, median(y - slope * x for x, y in zip(xs, ys, strict=True)))
    fitted = [intercept + slope * x for x in xs]
    ratios = [y / f for y, f in zip(ys, fitted, strict=True) if f > 0]
    if len(ratios) >= MIN_CALLS["jitter"]:
        cv = _cv_of_sigma(_spread_sigma([math.log(r) for r in ratios]))
        fit.fields["jitter"] = round(cv, 4)
    else:
        cv = 0.0
        fit.left_out["jitter"] = _few(len(ratios), MIN_CALLS["jitter"], "streamed calls")
    # A mean-1 lognormal factor has median 1/sqrt(1 + cv^2): scale up so the replayed
    # median TTFT is the recorded one.
    fit.fields["ttft_ms"] = round(intercept * math.sqrt(1.0 + cv * cv), 3)


def _fit_speed(fit: ModelFit, calls: Sequence[Generation]) -> None:
    speeds = [g.ms_per_token for g in calls if g.ms_per_token is not None]
    need = MIN_CALLS["ms_per_token"]
    if len(speeds) >= need:
        fit.fields["ms_per_token"] = round(median(speeds), 4)
    else:
        fit.left_out["ms_per_token"] = _few(len(speeds), need, "calls of two or more tokens")
    ratios = [
        g.output_tokens / g.chunks
        for g in calls
        if g.chunks and g.output_tokens and g.output_tokens >= g.chunks
    ]
    need = MIN_CALLS["tokens_per_chunk"]
    if len(ratios) >= need:
        fit.fields["tokens_per_chunk"] = max(1, round(median(ratios)))
    else:
        fit.left_out["tokens_per_chunk"] = _few(len(ratios), need, "streamed answers")


def _fit_lengths(fit: ModelFit, calls: Sequence[Generation], *, answers: bool) -> None:
    by_prompt: dict[str, list[Generation]] = {}
    for g in calls:
        if g.prompt_sha is not None and g.output_tokens is not None:
            by_prompt.setdefault(g.prompt_sha, []).append(g)
    for sha, asked in sorted(by_prompt.items()):
        tokens = sorted(int(g.output_tokens or 0) for g in asked)
        reasons = Counter(g.stop_reason for g in asked if g.stop_reason)
        entry: dict[str, Any] = {"answer_tokens": max(1, tokens[(len(tokens) - 1) // 2])}
        if reasons:
            entry["stop_reason"] = reasons.most_common(1)[0][0]
        if answers:
            # The answer of the call whose length the entry replays.
            chosen = next(g for g in asked if g.output_tokens == entry["answer_tokens"])
            if chosen.text:
                entry["answer_text"] = chosen.text
        fit.prompts[sha] = entry
    # Lengths of answers that ended on their own; a max_tokens stop only says "at least".
    free: dict[str, list[float]] = {}
    for g in calls:
        if g.output_tokens and g.stop_reason != "max_tokens":
            free.setdefault(g.prompt_sha or f"call-{id(g)}", []).append(float(g.output_tokens))
    n_free = sum(len(v) for v in free.values())
    need = MIN_CALLS["answer_tokens"]
    if n_free < need:
        why = _few(n_free, need, "answers that ended on their own")
        for name in ("answer_tokens", "prompt_spread", "answer_tokens_spread"):
            fit.left_out[name] = why
        return
    means = [sum(v) / len(v) for v in free.values()]
    overall = sum(means) / len(means)
    fit.fields["answer_tokens"] = round(max(1.0, overall), 2)
    repeated = [v for v in free.values() if len(v) >= 2]
    within = 0.0
    if len(repeated) >= MIN_CALLS["answer_tokens_spread"]:
        cvs = []
        for v in repeated:
            m = sum(v) / len(v)
            var = sum((x - m) ** 2 for x in v) / (len(v) - 1)
            cvs.append(var / (m * m))
        within = math.sqrt(sum(cvs) / len(cvs))
        fit.fields["answer_tokens_spread"] = round(within, 4)
    else:
        fit.left_out["answer_tokens_spread"] = _few(
            len(repeated), MIN_CALLS["answer_tokens_spread"], "prompts asked more than once"
        )
    if len(means) >= MIN_CALLS["prompt_spread"]:
        between = sum((m - overall) ** 2 for m in means) / (len(means) - 1) / (overall * overall)
        # The per-prompt means still carry the sample spread; take its share out.
        counts = [len(v) for v in free.values()]
        noise = within * within * sum(1.0 / c for c in counts) / len(counts)
        fit.fields["prompt_spread"] = round(math.sqrt(max(0.0, between - noise)), 4)
    else:
        fit.left_out["prompt_spread"] = _few(len(means), MIN_CALLS["prompt_spread"], "prompts")


_THROTTLE = "ThrottlingException"
_NOT_READY = "ModelNotReadyException"


def _fit_rates(fit: ModelFit, calls: Sequence[Generation], failures: Sequence[Failure]) -> None:
    attempts = sum(max(1, g.attempts) for g in calls) + sum(f.attempts for f in failures)
    need = MIN_CALLS["rates"]
    if attempts < need:
        why = _few(attempts, need, "attempts")
        for name in ("throttle_rate", "not_ready_rate", "stream_error_rate"):
            fit.left_out[name] = why
        return
    retried = sum(max(1, g.attempts) - 1 for g in calls)
    throttled = retried + sum(f.attempts for f in failures if f.error_code == _THROTTLE)
    not_ready = sum(f.attempts for f in failures if f.error_code == _NOT_READY)
    mid_stream = sum(1 for f in failures if f.mid_stream)
    fit.fields["throttle_rate"] = round(throttled / attempts, 4)
    past_throttle = attempts - throttled
    fit.fields["not_ready_rate"] = round(not_ready / past_throttle, 4) if past_throttle else 0.0
    streams = sum(1 for g in calls if g.chunks is not None) + mid_stream
    if streams >= need:
        fit.fields["stream_error_rate"] = round(mid_stream / streams, 4)
    else:
        fit.left_out["stream_error_rate"] = _few(streams, need, "streamed calls")


def fit_model(
    model_id: str,
    calls: Sequence[Generation],
    failures: Sequence[Failure] = (),
    *,
    answers: bool = False,
) -> ModelFit:
    """The profile of one model fitted from its measured calls and failed calls.

    ``answers``: keep each prompt's answer text in its per-prompt entry (opt-in).
    """
    from .emulator.profiles import FIELDS

    fit = ModelFit(model_id, calls=len(calls), failed_calls=len(failures))
    fit.stop_reasons = dict(Counter(g.stop_reason for g in calls if g.stop_reason))
    _fit_ttft(fit, calls)
    _fit_speed(fit, calls)
    _fit_lengths(fit, calls, answers=answers)
    _fit_rates(fit, calls, failures)
    # The profile file's documentation order, so recorded files read like hand-written ones.
    order = {name: i for i, name in enumerate(FIELDS)}
    fit.fields = dict(sorted(fit.fields.items(), key=lambda kv: order.get(kv[0], len(order))))
    fit.left_out = dict(sorted(fit.left_out.items(), key=lambda kv: order.get(kv[0], len(order))))
    return fit


def fit_profiles(
    calls: Iterable[Generation], failures: Iterable[Failure] = (), *, answers: bool = False
) -> list[ModelFit]:
    """One fitted profile per model that has measured calls, by model id."""
    by_model: dict[str, list[Generation]] = {}
    for g in calls:
        by_model.setdefault(g.model_id, []).append(g)
    failed: dict[str, list[Failure]] = {}
    for f in failures:
        failed.setdefault(f.model_id, []).append(f)
    return [
        fit_model(model, by_model[model], failed.get(model, ()), answers=answers)
        for model in sorted(by_model)
    ]


def merge_document(
    existing: Mapping[str, Any] | None,
    fits: Sequence[ModelFit],
    provenance: Mapping[str, Any],
) -> dict[str, Any]:
    """An existing profile document with ``fits`` merged in, model by model.

    A recorded model's fitted fields replace its old ones; fields this run could not fit
    keep their old values; per-prompt entries are merged (this run's win). Other models,
    ``[defaults]`` and their provenance stay as they were.
    """
    doc: dict[str, Any] = {k: v for k, v in (existing or {}).items()}
    models: dict[str, Any] = dict(doc.get("models") or {})
    prov: dict[str, Any] = dict(doc.get("provenance") or {})
    prov_models: dict[str, Any] = dict(prov.get("models") or {})
    for fit in fits:
        old = dict(models.get(fit.model_id) or {})
        old_prompts = dict(old.pop("prompts", None) or {})
        old.update(fit.fields)
        prompts = {**old_prompts, **fit.prompts}
        if prompts:
            old["prompts"] = prompts
        models[fit.model_id] = old
        entry: dict[str, Any] = dict(provenance)
        entry["calls"] = fit.calls
        entry["failed_calls"] = fit.failed_calls
        if fit.stop_reasons:
            entry["stop_reasons"] = dict(sorted(fit.stop_reasons.items()))
        if fit.left_out:
            entry["left_out"] = fit.notes()
        prov_models[fit.model_id] = entry
    prov["models"] = prov_models
    doc["provenance"] = prov
    doc["models"] = models
    return doc


class _Refused(Exception):
    """The existing file cannot be merged into; it is left as it was."""


class RecordError(Exception):
    """The profile file was not written; the message is the one line to show."""


def record_profiles(
    path: str | os.PathLike[str], fits: Sequence[ModelFit], provenance: Mapping[str, Any]
) -> list[str]:
    """Merge ``fits`` into the profile file at ``path`` (atomically, under its lock).

    Returns the lines to show: what was written, and per model what was left out. The
    merged document is validated as the emulator will load it before it replaces the file;
    a file that cannot be read or merged is left untouched and :class:`RecordError` says why.
    """
    from .atomicio import update_text_locked
    from .emulator.profiles import ProfileError, load_profiles

    name = os.fspath(path)

    def update(current: str | None) -> str:
        existing: dict[str, Any] | None = None
        if current is not None and current.strip():
            try:
                existing = tomllib.loads(current)
                load_profiles(existing)
            except tomllib.TOMLDecodeError as error:
                raise _Refused(f"it is not valid TOML ({error})") from None
            except ProfileError as error:
                raise _Refused(str(error).replace("<dict>: ", "", 1)) from None
        doc = merge_document(existing, fits, provenance)
        text = dump_profiles(doc, _HEADER)
        load_profiles(tomllib.loads(text))  # what we write, the emulator must load
        return text

    try:
        update_text_locked(path, update)
    except _Refused as error:
        raise RecordError(
            f"bedrock: profiles not recorded: {name} exists but {error}; fix or remove it "
            "and run again"
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise RecordError(f"bedrock: profiles not recorded: cannot write {name}: {error}") from None
    calls = ", ".join(f"{fit.model_id} ({fit.calls} calls)" for fit in fits)
    lines = [f"bedrock: emulator profiles recorded in {name}: {calls}"]
    for fit in fits:
        if fit.left_out:
            lines.append(
                f"bedrock: {fit.model_id}: too few calls to fit "
                + "; ".join(fit.notes())
                + " (left out of the profile)"
            )
    return lines


_HEADER = (
    "Emulator profiles recorded by pytest-bedrock-latency (--bedrock-record-profiles).",
    "Replay offline: pytest --bedrock-emulator --bedrock-emulator-profiles <this file>",
    "[provenance] says where, when and from how many calls each model was recorded.",
)


# -- TOML ---------------------------------------------------------------------------------------
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else _string(key)


def _string(value: str) -> str:
    out = ['"']
    for ch in value:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"cannot write {value!r} to TOML")
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise ValueError(f"cannot write {type(value).__name__} to TOML")


def dump_profiles(doc: Mapping[str, Any], header: Sequence[str] = ()) -> str:
    """A profile document as TOML (``header`` lines become leading comments).

    Per-prompt entries and stop-reason counts are written as inline tables, one line each.
    """
    lines = [f"# {line}" if line else "#" for line in header]
    ordered = {k: doc[k] for k in ("provenance", "defaults", "models") if k in doc}
    ordered.update({k: v for k, v in doc.items() if k not in ordered})
    body: list[str] = []
    _write(body, [], ordered)
    lines.extend(body)
    return "\n".join(lines).lstrip("\n") + "\n"


def _write(lines: list[str], path: list[str], table: Mapping[str, Any]) -> None:
    plain = {
        k: v
        for k, v in table.items()
        if not isinstance(v, Mapping) or (k == "stop_reasons" and path)
    }
    prompts = table.get("prompts") if path else None
    nested = {k: v for k, v in table.items() if k not in plain and not (k == "prompts" and path)}
    if path and (plain or not (nested or prompts)):
        lines.append("")
        lines.append("[" + ".".join(_key(p) for p in path) + "]")
    for k, v in plain.items():
        lines.append(f"{_key(k)} = {_value(v)}")
    if isinstance(prompts, Mapping):
        # One prompt per line reads and diffs better than one long inline table.
        lines.append("")
        lines.append("[" + ".".join(_key(p) for p in [*path, "prompts"]) + "]")
        for sha, entry in prompts.items():
            lines.append(f"{_key(sha)} = {_value(entry)}")
    for k, v in nested.items():
        _write(lines, [*path, k], v)
