"""The three markers as frozen dataclasses, validated once at collection.

Each class documents its marker; :func:`parse_markers` turns an item's marks into these
objects or a :class:`MarkerError` whose message names the test, the argument and the fix.
No pytest import: a mark is anything with ``name``, ``args`` and ``kwargs``, and an item
anything with pytest's node attributes (:func:`marker_levels`).

Where a marker is given at several levels, the closest one wins, whole (its arguments are
not merged with a farther one's): ``pytest.param(..., marks=...)`` over the function's
over the class's over the module's. Two markers of one name at the same level are an
error, since nothing says which one was meant.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Protocol

from .settings import MAX_BUDGET, POLICIES


class MarkLike(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def args(self) -> tuple[Any, ...]: ...

    @property
    def kwargs(self) -> Mapping[str, Any]: ...


class MarkerError(ValueError):
    """A marker was written wrongly; the message is meant for the user as is."""


@dataclass(frozen=True)
class LatencyBounds:
    """``@pytest.mark.bedrock_latency``: over the calls the test made, the given percentile
    of each metric must be within its bound (milliseconds)."""

    max_ms_per_token: float | None = None
    max_ttft_ms: float | None = None
    max_total_ms: float | None = None
    percentile: float = 50

    MARKER = "bedrock_latency"
    HELP = (
        "bedrock_latency(max_ms_per_token=None, max_ttft_ms=None, max_total_ms=None, percentile=50): "
        "the percentile of each latency figure over the test's Bedrock calls must be within its bound (ms)."
    )

    def validate(self, where: str) -> None:
        _require_bound(self, where, ("max_ms_per_token", "max_ttft_ms", "max_total_ms"))
        for name in ("max_ms_per_token", "max_ttft_ms", "max_total_ms"):
            _positive_number(self, where, name)
        if not _is_number(self.percentile) or not 0 < self.percentile <= 100:
            raise MarkerError(
                f"{where}: percentile must be a number in (0, 100], got {self.percentile!r}"
            )


@dataclass(frozen=True)
class LengthBounds:
    """``@pytest.mark.bedrock_length``: every answer must be within these lengths."""

    max_tokens: int | None = None
    min_tokens: int | None = None
    max_words: int | None = None
    max_chars: int | None = None

    MARKER = "bedrock_length"
    HELP = (
        "bedrock_length(max_tokens=None, min_tokens=None, max_words=None, max_chars=None): "
        "every Bedrock answer of the test must be within these lengths (tokens from Bedrock's usage)."
    )

    def validate(self, where: str) -> None:
        names = ("max_tokens", "min_tokens", "max_words", "max_chars")
        _require_bound(self, where, names)
        for name in names:
            _positive_number(self, where, name, integer=True)
        if (
            self.min_tokens is not None
            and self.max_tokens is not None
            and self.min_tokens > self.max_tokens
        ):
            raise MarkerError(
                f"{where}: min_tokens ({self.min_tokens}) is greater than max_tokens ({self.max_tokens}); "
                "no answer could pass"
            )


@dataclass(frozen=True)
class RegressionGate:
    """``@pytest.mark.bedrock_regression``: the candidate may be at most this much worse
    than its base model, per metric, as a ratio (1.10 = 10% slower per token)."""

    max_slowdown: float = 1.10
    max_verbosity: float = 1.15
    max_ttft_slowdown: float = 1.25
    budget: int | None = None
    policy: str | None = None
    group: str | None = None

    MARKER = "bedrock_regression"
    HELP = (
        "bedrock_regression(max_slowdown=1.10, max_verbosity=1.15, max_ttft_slowdown=1.25, budget=40, "
        "policy='strict', group=None): compare the candidate with its base model in back-to-back pairs and fail "
        "when it is slower per token, slower to the first token or more verbose than allowed."
    )

    def validate(self, where: str) -> None:
        for name in ("max_slowdown", "max_verbosity", "max_ttft_slowdown"):
            if getattr(self, name) is None:
                default = next(f.default for f in fields(self) if f.name == name)
                raise MarkerError(
                    f"{where}: {name} must be a ratio of at least 1.0, got None "
                    f"(leave it out for the default {default})"
                )
            _positive_number(self, where, name)
            if getattr(self, name) < 1.0:
                raise MarkerError(
                    f"{where}: {name} is the ratio candidate/base allowed and must be at least 1.0 "
                    f"(1.10 allows 10% worse), got {getattr(self, name)!r}"
                )
        if self.budget is not None:
            _positive_number(self, where, "budget", integer=True)
            if self.budget < 5:
                raise MarkerError(
                    f"{where}: budget must be at least 5 pairs (the first look), got {self.budget}"
                )
            if self.budget > MAX_BUDGET:
                raise MarkerError(
                    f"{where}: budget must be at most {MAX_BUDGET} pairs, got {self.budget}"
                )
        if self.policy is not None and self.policy not in POLICIES:
            raise MarkerError(
                f"{where}: policy must be one of {', '.join(map(repr, POLICIES))}, got {self.policy!r}"
            )
        if self.group is not None and (
            not isinstance(self.group, str)
            or not self.group.strip()
            or any(c in self.group for c in "[]\n")
        ):
            raise MarkerError(
                f"{where}: group must be a non-empty name without brackets, got {self.group!r}"
            )


def group_nodeid(name: str) -> str:
    """The node id of pooled group ``name``'s verdict, also its key in stored baselines."""
    return f"{RegressionGate.MARKER}[{name}]"


MARKERS: tuple[type[LatencyBounds] | type[LengthBounds] | type[RegressionGate], ...] = (
    LatencyBounds,
    LengthBounds,
    RegressionGate,
)
MARKER_NAMES = frozenset(cls.MARKER for cls in MARKERS)


@dataclass(frozen=True)
class TestBounds:
    """All the bedrock markers of one test (each at most once; the closest level wins)."""

    latency: LatencyBounds | None = None
    length: LengthBounds | None = None
    regression: RegressionGate | None = None

    __test__ = False  # not a pytest test class, despite the name

    @property
    def any(self) -> bool:
        return any((self.latency, self.length, self.regression))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in ("latency", "length", "regression"):
            bound = getattr(self, name)
            if bound is not None:
                out[bound.MARKER] = {f.name: getattr(bound, f.name) for f in fields(bound)}
        return out


@dataclass(frozen=True)
class MarkLevel:
    """The marks given at one level of a test: its ``pytest.param``, function, class, module."""

    where: str  # for messages: "pytest.param", "the function", "class TestX", "module m.py"
    marks: Sequence[MarkLike]


def marker_levels(item: Any) -> list[MarkLevel]:
    """The item's marks by level, closest first (duck-typed on pytest's nodes).

    pytest's ``iter_markers()`` walks the item, then its parents, but an item's own
    markers hold the function's marks *followed by* its ``pytest.param`` marks, so the
    first mark of a name is the function's, not the parameter's. The parameter's marks
    are the item's ``callspec.marks``; they are taken off the end of ``own_markers`` (by
    identity, as pytest appends those very objects), which leaves the function's marks
    and any added with ``item.add_marker``.
    """
    own = list(getattr(item, "own_markers", ()))
    callspec = getattr(item, "callspec", None)
    param = list(getattr(callspec, "marks", ()) or ())
    for mark in reversed(param):
        for index in range(len(own) - 1, -1, -1):
            if own[index] is mark:
                del own[index]
                break
    levels = [MarkLevel("pytest.param", param), MarkLevel("the function", own)]
    chain = item.listchain() if hasattr(item, "listchain") else [item]
    for node in reversed(chain[:-1]):
        marks = list(getattr(node, "own_markers", ()))
        if not marks:
            continue
        cls = getattr(node, "obj", None)
        if isinstance(cls, type):
            # A class node's marks are its MRO's, base classes' first: each class is a level
            # of its own, the subclass closest (its marker overrides the base class's).
            levels.extend(
                MarkLevel(f"class {klass.__name__}", _class_marks(klass))
                for klass in cls.__mro__
                if "pytestmark" in vars(klass)
            )
        else:
            kind = type(node).__name__.lower()
            levels.append(MarkLevel(f"{kind} {getattr(node, 'name', '?')}", marks))
    return levels


def _class_marks(klass: type) -> list[MarkLike]:
    """The marks written on ``klass`` itself (``pytestmark``: one mark or a list)."""
    value: Any = vars(klass)["pytestmark"]
    marks: list[Any] = value if isinstance(value, list) else [value]
    out: list[MarkLike] = []
    for mark in marks:
        out.append(getattr(mark, "mark", mark))  # a MarkDecorator holds its Mark
    return out


def parse_markers(test_id: str, levels: Iterable[MarkLevel]) -> TestBounds:
    """The test's bedrock markers as dataclasses; the closest level of each name wins.

    Raises:
        MarkerError: a marker is written wrongly, or given twice at one level.
    """
    found: dict[str, Any] = {}
    for level in levels:
        here: dict[str, MarkLike] = {}
        for mark in level.marks:
            if mark.name not in MARKER_NAMES:
                continue
            if mark.name in here:
                raise MarkerError(
                    f"{test_id}: @pytest.mark.{mark.name} is given twice on {level.where} "
                    f"({_describe(here[mark.name])} and {_describe(mark)}); give it once with "
                    "all its bounds"
                )
            here[mark.name] = mark
        for name, mark in here.items():
            built = _build(test_id, mark)  # a farther one is checked too: a typo is a typo
            found.setdefault(name, built)
    return TestBounds(
        latency=found.get(LatencyBounds.MARKER),
        length=found.get(LengthBounds.MARKER),
        regression=found.get(RegressionGate.MARKER),
    )


def _describe(mark: MarkLike) -> str:
    arguments = [repr(a) for a in mark.args] + [f"{k}={v!r}" for k, v in mark.kwargs.items()]
    return f"{mark.name}({', '.join(arguments)})"


def _build(test_id: str, mark: MarkLike) -> Any:
    cls = next(c for c in MARKERS if mark.name == c.MARKER)
    where = f"{test_id}: @pytest.mark.{mark.name}"
    allowed = [f.name for f in fields(cls)]
    if mark.args:
        raise MarkerError(
            f"{where} takes keyword arguments only, got positional {mark.args!r}; "
            f"write e.g. {mark.name}({allowed[0]}=...)"
        )
    unknown = sorted(set(mark.kwargs) - set(allowed))
    if unknown:
        raise MarkerError(
            f"{where}: unknown argument {unknown[0]!r} (allowed: {', '.join(allowed)})"
        )
    instance = cls(**mark.kwargs)
    instance.validate(where)
    return instance


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _positive_number(instance: Any, where: str, name: str, *, integer: bool = False) -> None:
    value = getattr(instance, name)
    if value is None:
        return
    kind = "a whole number" if integer else "a number"
    if not _is_number(value) or (integer and not isinstance(value, int)):
        raise MarkerError(f"{where}: {name} must be {kind}, got {value!r} ({type(value).__name__})")
    if not math.isfinite(value) or value <= 0:
        raise MarkerError(f"{where}: {name} must be greater than 0, got {value!r}")


def _require_bound(instance: Any, where: str, names: tuple[str, ...]) -> None:
    if all(getattr(instance, name) is None for name in names):
        raise MarkerError(f"{where} has no bound: give at least one of {', '.join(names)}")
