"""What a Bedrock call costs: the price table, its TOML files, and the arithmetic.

A price file looks like::

    as_of = "2025-12-01"                  # optional: when these prices were true
    source = "our AWS contract"           # optional: where they come from

    [models."amazon.nova-lite-v1:0"]
    input_per_1k = 0.00006                # USD per 1,000 input tokens
    output_per_1k = 0.00024
    cache_read_per_1k = 0.000015          # optional: defaults to the input price
    cache_write_per_1k = 0.00006          # optional: defaults to the input price

    [models."amazon.nova-lite-v1:0".regions."eu-central-1"]
    input_per_1k = 0.000078               # only what differs in that region

    [models."arn:aws:bedrock:*:custom-model/*"]
    like = "amazon.titan-text-express-v1" # price another entry's way

Keys are model ids or globs, matched with the emulator profiles' rule (:mod:`.modelkeys`).
A user's file is consulted before the shipped table; an entry whose key is also in the
shipped table is layered on it field by field. For one call the candidates are the model
id as called, the id inside a foundation-model or inference-profile ARN, and the base
model of a cross-region inference profile (``us.``, ``eu.``, ``apac.``, ``global.`` ...,
which Bedrock bills as the base model in the calling region); each layer tries every
candidate's exact key, then every candidate's longest glob, then ``"*"``. Custom models,
provisioned throughput and application inference profiles have no per-token list price:
they are priced only by a key that names them (or a glob), otherwise there is no price.

Pure code: no pytest, no boto3.
"""

from __future__ import annotations

import math
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .modelkeys import KeyMatcher

if TYPE_CHECKING:
    from .measurement import Generation

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

__all__ = [
    "GEO_PREFIXES",
    "PRICE_FIELDS",
    "Price",
    "PriceError",
    "PriceTable",
    "format_usd",
    "load_prices",
    "shipped_prices_path",
]

#: The per-1,000-token prices an entry may give, in documentation order.
PRICE_FIELDS: tuple[str, ...] = (
    "input_per_1k",
    "output_per_1k",
    "cache_read_per_1k",
    "cache_write_per_1k",
)
_ENTRY_FIELDS: tuple[str, ...] = ("like", *PRICE_FIELDS, "regions")
_REQUIRED: tuple[str, ...] = ("input_per_1k", "output_per_1k")
_TOP_LEVEL: tuple[str, ...] = ("as_of", "source", "models")

#: Prefixes of system-defined cross-region inference profiles (billed as the base model).
GEO_PREFIXES: tuple[str, ...] = ("us.", "us-gov.", "eu.", "apac.", "jp.", "au.", "ca.", "global.")

# arn:aws:bedrock:<region>:<account>:<resource-type>/<id>; only these two carry a model id
# that has a list price, the rest (custom-model, provisioned-model, imported-model,
# application-inference-profile) are priced by their own key or not at all.
_ARN = re.compile(
    r"^arn:aws[\w-]*:bedrock:(?P<region>[^:]*):[^:]*:"
    r"(?P<kind>foundation-model|inference-profile)/(?P<id>.+)$"
)


def format_usd(value: float) -> str:
    """Dollars to four significant digits, never in exponent form: $0.00001234, $0.0123, $12.35."""
    if value == 0:
        return "$0"
    digits = min(10, max(2, 3 - math.floor(math.log10(abs(value)))))
    text = f"{value:,.{digits}f}"
    if digits > 2:  # trailing zeros say nothing, but cents stay whole: $0.10, $1.00
        text = text.rstrip("0")
        text += "0" * max(0, 2 - len(text.partition(".")[2]))
    return f"${text}"


class PriceError(ValueError):
    """A price file is invalid. The message names the file, the model key and the field."""


@dataclass(frozen=True)
class Price:
    """USD per 1,000 tokens of each kind, for one model (and region), and where it came from."""

    key: str  # the table key that priced the call
    source: str  # the file (or "shipped table") that key is in
    input_per_1k: float
    output_per_1k: float
    cache_read_per_1k: float
    cache_write_per_1k: float

    def cost(
        self,
        input_tokens: int | None,
        output_tokens: int | None,
        cache_read_tokens: int | None = None,
        cache_write_tokens: int | None = None,
    ) -> float | None:
        """USD for these token counts; ``None`` when Bedrock reported no input or output count.

        Bedrock's ``inputTokens`` excludes the cached prompt, so the four kinds add up.
        """
        if input_tokens is None or output_tokens is None:
            return None  # a partial count would understate the cost
        return (
            input_tokens * self.input_per_1k
            + output_tokens * self.output_per_1k
            + (cache_read_tokens or 0) * self.cache_read_per_1k
            + (cache_write_tokens or 0) * self.cache_write_per_1k
        ) / 1000.0


def _repr(value: Any) -> str:
    return f'"{value}"' if isinstance(value, str) else repr(value)


@dataclass(frozen=True)
class _Entry:
    """One validated table entry: its own fields, its ``like`` and its per-region fields."""

    source: str
    fields: Mapping[str, float]
    like: str | None
    regions: Mapping[str, Mapping[str, float]]

    def layered(self, over: _Entry) -> _Entry:
        """``over``'s fields on top of this entry's (a user entry on a shipped one).

        An ``over`` with a ``like`` replaces the entry: it says whose prices to take.
        """
        if over.like is not None:
            return over
        regions = {name: dict(fields) for name, fields in self.regions.items()}
        for name, fields in over.regions.items():
            regions.setdefault(name, {}).update(fields)
        return _Entry(
            over.source,
            {**self.fields, **over.fields},
            self.like,
            regions,
        )


def _check_price(where: str, name: str, value: Any) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise PriceError(
            f'{where}: field "{name}" must be a number of USD per 1,000 tokens (got {_repr(value)})'
        )
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise PriceError(
            f'{where}: field "{name}" must be a finite number >= 0 (USD per 1,000 tokens), '
            f"got {_repr(value)}"
        )
    return number


def _check_fields(where: str, table: Any, allowed: Sequence[str]) -> dict[str, Any]:
    if not isinstance(table, Mapping):
        raise PriceError(f"{where}: must be a table of fields (got {_repr(table)})")
    out: dict[str, Any] = {}
    for name, value in table.items():
        if name not in allowed:
            hint = " (prices are in USD; there is no currency field)" if "curr" in name else ""
            raise PriceError(
                f'{where}: unknown field "{name}"{hint} (allowed: {", ".join(allowed)})'
            )
        if name in PRICE_FIELDS:
            out[name] = _check_price(where, name, value)
        else:
            out[name] = value
    return out


def _entry(source: str, key: Any, table: Any) -> _Entry:
    if not isinstance(key, str) or not key:
        raise PriceError(f"{source}: model keys must be non-empty strings (got {_repr(key)})")
    where = f'{source}: model "{key}"'
    checked = _check_fields(where, table, _ENTRY_FIELDS)
    like = checked.pop("like", None)
    if like is not None and (not isinstance(like, str) or not like):
        raise PriceError(f'{where}: field "like" must be a string naming another model key')
    raw_regions = checked.pop("regions", {})
    if not isinstance(raw_regions, Mapping):
        raise PriceError(
            f'{where}: field "regions" must be a table of regions, e.g. '
            f'[models."{key}".regions."eu-central-1"] (got {_repr(raw_regions)})'
        )
    regions = {
        str(region): _check_fields(f"{where}, region {region}", fields, PRICE_FIELDS)
        for region, fields in raw_regions.items()
    }
    return _Entry(source, checked, like, regions)


class PriceTable:
    """Validated price entries in layers (a user's file, then the shipped table)."""

    def __init__(
        self,
        layers: Sequence[Mapping[str, _Entry]],
        *,
        as_of: str | None = None,
        source: str | None = None,
    ) -> None:
        self._layers = [dict(layer) for layer in layers]
        self._matchers = [KeyMatcher(layer) for layer in self._layers]
        self.as_of = as_of
        self.source = source
        # Resolve every entry once, so a bad "like" or a missing price is an error at
        # load time, naming the file and key, not a surprise in the middle of a run.
        for layer in self._layers:
            for key in layer:
                self._resolved(key, None)
                for region in self._entry(key).regions:
                    self._resolved(key, region)

    @classmethod
    def from_documents(
        cls, shipped: tuple[Mapping[str, Any], str], user: tuple[Mapping[str, Any], str] | None
    ) -> PriceTable:
        """The table of a shipped document with a user's over it (each ``(document, source)``).

        The user's entries come first; one whose key the shipped document also has is
        layered on that entry field by field. Validated as a whole, so a user entry may
        change only one price of a shipped model or be ``like`` one.
        """
        base = _layer(*shipped)
        as_of, source = _meta(shipped[0], "as_of", shipped[1]), shipped[1]
        if user is None:
            return cls([base], as_of=as_of, source=source)
        theirs = _layer(*user)
        top = {k: (base[k].layered(e) if k in base else e) for k, e in theirs.items()}
        rest = {k: e for k, e in base.items() if k not in top}
        return cls(
            [top, rest],
            as_of=_meta(user[0], "as_of", user[1]) or as_of,
            source=f"{user[1]} over {source}",
        )

    def model_keys(self) -> list[str]:
        """Every key of every layer, the user's first."""
        return [key for layer in self._layers for key in layer]

    # -- resolution ------------------------------------------------------------------------
    def _entry(self, key: str) -> _Entry:
        for layer in self._layers:
            if key in layer:
                return layer[key]
        raise KeyError(key)

    def _resolved(self, key: str, region: str | None) -> Price:
        chain: list[str] = []
        current: str | None = key
        while current is not None:
            if current in chain:
                cycle = " -> ".join([*chain, current])
                raise PriceError(
                    f'{self._entry(key).source}: model "{key}": "like" cycle ({cycle})'
                )
            try:
                entry = self._entry(current)
            except KeyError:
                raise PriceError(
                    f'{self._entry(chain[-1]).source}: model "{chain[-1]}": field "like" names '
                    f'unknown model "{current}"'
                ) from None
            chain.append(current)
            current = entry.like
        values: dict[str, float] = {}
        for name in reversed(chain):  # root first: an entry's own fields win over its like's
            values.update(self._entry(name).fields)
        if region is not None:
            for name in reversed(chain):
                values.update(self._entry(name).regions.get(region, {}))
        entry = self._entry(key)
        for name in _REQUIRED:
            if name not in values:
                raise PriceError(
                    f'{entry.source}: model "{key}": field "{name}" is required '
                    '(or "like" naming a priced model)'
                )
        return Price(
            key=key,
            source=entry.source,
            input_per_1k=values["input_per_1k"],
            output_per_1k=values["output_per_1k"],
            cache_read_per_1k=values.get("cache_read_per_1k", values["input_per_1k"]),
            cache_write_per_1k=values.get("cache_write_per_1k", values["input_per_1k"]),
        )

    def lookup(self, model_id: str, region: str | None = None) -> Price | None:
        """The price of calls to ``model_id`` from ``region``, or ``None``: no price known.

        ``region`` is the calling client's region; an ARN's own region takes precedence.
        """
        candidates, arn_region = _candidates(model_id)
        region = arn_region or region
        for matcher in self._matchers:
            key = next((k for c in candidates if (k := matcher.exact(c)) is not None), None)
            if key is None:
                key = next(
                    (k for c in candidates if (k := matcher.glob(c, include_star=False))),
                    None,
                )
            if key is None:
                key = matcher.glob(model_id)
            if key is not None:
                return self._resolved(key, region)
        return None

    def cost(
        self,
        model_id: str,
        region: str | None,
        input_tokens: int | None,
        output_tokens: int | None,
        cache_read_tokens: int | None = None,
        cache_write_tokens: int | None = None,
    ) -> float | None:
        """USD for one call, or ``None`` when the model has no price or the counts are missing."""
        price = self.lookup(model_id, region)
        if price is None:
            return None
        return price.cost(input_tokens, output_tokens, cache_read_tokens, cache_write_tokens)

    def cost_of(
        self, generation: Generation, region: str | None, model_id: str | None = None
    ) -> float | None:
        """USD of a measured call from ``region``; with ``model_id``, had it gone to that model."""
        return self.cost(
            model_id or generation.model_id,
            region,
            generation.input_tokens,
            generation.output_tokens,
            generation.cache_read_input_tokens,
            generation.cache_write_input_tokens,
        )

    def coster(self, region: str | None) -> Callable[[Generation], float | None]:
        """How to price a measured call made from ``region`` (the instrumentation's hook)."""
        return lambda generation: self.cost_of(generation, region)

    def __repr__(self) -> str:
        return f"PriceTable(source={self.source!r}, models={len(self.model_keys())})"


def _candidates(model_id: str) -> tuple[list[str], str | None]:
    """The ids a call to ``model_id`` may be priced by, most specific first; the ARN's region."""
    candidates = [model_id]
    region = None
    arn = _ARN.match(model_id)
    if arn is not None:
        region = arn.group("region") or None
        candidates.append(arn.group("id"))
    inner = candidates[-1]
    for prefix in GEO_PREFIXES:
        if inner.startswith(prefix) and len(inner) > len(prefix):
            candidates.append(inner[len(prefix) :])
            break
    return candidates, region


def _meta(doc: Mapping[str, Any], name: str, source: str) -> str | None:
    value = doc.get(name)
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if hasattr(value, "isoformat"):  # TOML dates are dates, not strings
        return str(value.isoformat())
    raise PriceError(f'{source}: "{name}" must be a string or a date (got {_repr(value)})')


def _layer(doc: Mapping[str, Any], source: str) -> dict[str, _Entry]:
    unknown = [k for k in doc if k not in _TOP_LEVEL]
    if unknown:
        hint = " (prices are in USD; there is no currency field)" if "curr" in unknown[0] else ""
        raise PriceError(
            f'{source}: unknown top-level key "{unknown[0]}"{hint} '
            f'(allowed: {", ".join(_TOP_LEVEL)}; prices go in [models."MODEL_ID"] tables)'
        )
    _meta(doc, "source", source)
    models = doc.get("models", {})
    if not isinstance(models, Mapping):
        raise PriceError(f'{source}: "models" must be a table of [models."MODEL_ID"] entries')
    return {key: _entry(source, key, table) for key, table in models.items()}


def shipped_prices_path() -> Path:
    """The price table shipped with the package (on-demand list prices, dated inside)."""
    return Path(__file__).with_name("prices.toml")


def _read(path: Path) -> dict[str, Any]:
    name = str(path)
    try:
        with path.open("rb") as handle:
            document: dict[str, Any] = tomllib.load(handle)
            return document
    except FileNotFoundError:
        raise PriceError(f"{name}: no such price file") from None
    except IsADirectoryError:
        raise PriceError(f"{name}: is a directory, not a price file") from None
    except tomllib.TOMLDecodeError as error:
        raise PriceError(f"{name}: invalid TOML: {error}") from None
    except UnicodeDecodeError:
        raise PriceError(f"{name}: invalid TOML: not UTF-8 text") from None
    except OSError as error:
        raise PriceError(f"{name}: cannot read: {error.strerror}") from None


def load_prices(
    user: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    *,
    shipped: str | os.PathLike[str] | Mapping[str, Any] | None = None,
) -> PriceTable:
    """The shipped table, with ``user``'s file (or dict) over it. Raises :class:`PriceError`."""

    def read(source: str | os.PathLike[str] | Mapping[str, Any]) -> tuple[Mapping[str, Any], str]:
        if isinstance(source, Mapping):
            return source, "<dict>"
        return _read(Path(os.fspath(source))), str(source)

    base = read(shipped if shipped is not None else shipped_prices_path())
    return PriceTable.from_documents(base, read(user) if user is not None else None)
