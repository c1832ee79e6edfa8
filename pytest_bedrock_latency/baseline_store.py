"""Stored baselines: the base model's samples, recorded per test and request, in a reviewable file.

This works like snapshot testing. ``--bedrock-update-baseline`` records the base model's
samples for every (test, request) into a JSON file (default ``.bedrock-baseline.json``)
that is meant to be committed and reviewed. Later runs that have no live base compare the
candidate against the stored samples *for the same request*. Requests are matched by
:func:`request_key`, a hash of the request without ``modelId``, so the candidate's request
and the base's request for the same prompt share a key.

A stored baseline is weaker evidence than a live, interleaved one: a session-to-session
shift of 5-10% (time of day, region load, service changes) behaves like drift, which no
statistical test removes. That is why every request and
sample carries ``recorded_at``, ``region`` and ``plugin_version``: the report can show how
old the baseline is and where it was recorded.

File format (``schema_version`` 1); keys are sorted and the indentation is fixed so that
re-recording produces a small, reviewable diff::

    {
      "plugin": "pytest-bedrock-latency",
      "schema_version": 1,
      "tests": {
        "tests/test_support.py::test_refund_answer": {
          "3f9a0c1d2b4e5f60": {
            "model_id": "amazon.titan-text-express-v1",
            "operation": "ConverseStream",
            "performance_latency": null,
            "plugin_version": "0.1.0",
            "recorded_at": 1764250000.25,
            "region": "us-east-1",
            "samples": [
              {
                "ms_per_token": 12.5,
                "output_tokens": 118,
                "recorded_at": 1764250000.25,
                "stop_reason": "end_turn",
                "ttft_ms": 341.0
              }
            ]
          }
        }
      }
    }

Unknown keys inside an entry are tolerated and, for entries that are not re-recorded,
kept as they were (so a reviewer's note survives). A file this plugin cannot read
completely is never overwritten: :meth:`BaselineStore.load` raises
:class:`BaselineFileError`, and :meth:`BaselineStore.save` re-reads and validates the
file on disk before replacing it.

For pytest-xdist, workers send :meth:`BaselineStore.staged_json` (plain dicts) and the
keys they used to the controller, which calls :meth:`BaselineStore.merge` and
:meth:`BaselineStore.mark_used` and then saves once.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import threading
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .atomicio import FileLocked, lock_path, update_text_locked

__all__ = [
    "DEFAULT_BASELINE_FILE",
    "PLUGIN_NAME",
    "SCHEMA_VERSION",
    "BaselineFileError",
    "BaselineStore",
    "StoredRequest",
    "StoredSample",
    "request_key",
]

SCHEMA_VERSION = 1
PLUGIN_NAME = "pytest-bedrock-latency"
DEFAULT_BASELINE_FILE = ".bedrock-baseline.json"

_REFIX = "fix or delete it, then re-record with --bedrock-update-baseline"


class BaselineFileError(Exception):
    """The baseline file cannot be read, is malformed, or cannot be written.

    The message always names the file and says how to fix it.
    """

    def __init__(self, path: str | os.PathLike[str], problem: str, fix: str = _REFIX) -> None:
        super().__init__(f"Baseline file {os.fspath(path)!r}: {problem}; {fix}.")
        self.path = Path(path)
        self.problem = problem


class _EntryError(ValueError):
    """Internal: one entry is malformed; turned into BaselineFileError with the file name."""


# --------------------------------------------------------------------------- validation


def _number(data: Mapping[str, Any], name: str, where: str, *, optional: bool) -> float | None:
    if name not in data:
        raise _EntryError(f"{where}: missing {name!r}")
    value = data[name]
    if value is None and optional:
        return None
    # bool is an int subclass; true/false in a timing field is a typo, not a number.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        kind = "a number or null" if optional else "a number"
        raise _EntryError(f"{where}: {name!r} must be {kind}, got {value!r}")
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise _EntryError(f"{where}: {name!r} must be finite and >= 0, got {value!r}")
    return number


def _required_number(data: Mapping[str, Any], name: str, where: str) -> float:
    number = _number(data, name, where, optional=False)
    assert number is not None  # optional=False never returns None
    return number


def _optional_str(data: Mapping[str, Any], name: str, where: str) -> str | None:
    if name not in data:
        raise _EntryError(f"{where}: missing {name!r}")
    value = data[name]
    if value is not None and not isinstance(value, str):
        raise _EntryError(f"{where}: {name!r} must be a string or null, got {value!r}")
    return value


def _required_str(data: Mapping[str, Any], name: str, where: str) -> str:
    value = _optional_str(data, name, where)
    if not value:
        raise _EntryError(f"{where}: {name!r} must be a non-empty string, got {value!r}")
    return value


def _as_mapping(data: object, where: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise _EntryError(f"{where}: expected an object, got {type(data).__name__}")
    return data


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class StoredSample:
    """One invocation of the base model, as stored.

    ``ms_per_token`` is None when the answer had at most one output token (no
    inter-token time), ``ttft_ms`` is None for non-streaming operations.
    """

    ms_per_token: float | None
    ttft_ms: float | None
    output_tokens: int | None
    stop_reason: str | None
    recorded_at: float  # epoch seconds

    def to_json(self) -> dict[str, Any]:
        """Plain-dict form written to the file."""
        return {
            "ms_per_token": self.ms_per_token,
            "ttft_ms": self.ttft_ms,
            "output_tokens": self.output_tokens,
            "stop_reason": self.stop_reason,
            "recorded_at": self.recorded_at,
        }

    @classmethod
    def from_json(cls, data: object, *, where: str) -> StoredSample:
        """Validate and build from a plain dict; ``where`` prefixes error messages.

        Raises:
            ValueError: naming ``where`` and the offending field.
        """
        d = _as_mapping(data, where)
        if "output_tokens" not in d:
            raise _EntryError(f"{where}: missing 'output_tokens'")
        tokens = d["output_tokens"]
        if tokens is not None and (
            isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 0
        ):
            raise _EntryError(
                f"{where}: 'output_tokens' must be a non-negative integer or null, got {tokens!r}"
            )
        return cls(
            ms_per_token=_number(d, "ms_per_token", where, optional=True),
            ttft_ms=_number(d, "ttft_ms", where, optional=True),
            output_tokens=tokens,
            stop_reason=_optional_str(d, "stop_reason", where),
            recorded_at=_required_number(d, "recorded_at", where),
        )


@dataclass(frozen=True)
class StoredRequest:
    """The base model's samples for one request of one test."""

    model_id: str  # the base model that produced the samples
    region: str | None
    operation: str  # "ConverseStream", "InvokeModel", ...
    performance_latency: str | None  # performanceConfig latency ("standard"/"optimized")
    plugin_version: str
    recorded_at: float  # epoch seconds
    samples: tuple[StoredSample, ...]

    def to_json(self) -> dict[str, Any]:
        """Plain-dict form written to the file (and sent from xdist workers)."""
        return {
            "model_id": self.model_id,
            "region": self.region,
            "operation": self.operation,
            "performance_latency": self.performance_latency,
            "plugin_version": self.plugin_version,
            "recorded_at": self.recorded_at,
            "samples": [sample.to_json() for sample in self.samples],
        }

    @classmethod
    def from_json(cls, data: object, *, where: str) -> StoredRequest:
        """Validate and build from a plain dict; ``where`` prefixes error messages.

        Unknown keys are ignored. Raises:
            ValueError: naming ``where`` and the offending field.
        """
        d = _as_mapping(data, where)
        if "samples" not in d:
            raise _EntryError(f"{where}: missing 'samples'")
        raw_samples = d["samples"]
        if not isinstance(raw_samples, list) or not raw_samples:
            raise _EntryError(f"{where}: 'samples' must be a non-empty list, got {raw_samples!r}")
        samples = tuple(
            StoredSample.from_json(item, where=f"{where}.samples[{index}]")
            for index, item in enumerate(raw_samples)
        )
        return cls(
            model_id=_required_str(d, "model_id", where),
            region=_optional_str(d, "region", where),
            operation=_required_str(d, "operation", where),
            performance_latency=_optional_str(d, "performance_latency", where),
            plugin_version=_required_str(d, "plugin_version", where),
            recorded_at=_required_number(d, "recorded_at", where),
            samples=samples,
        )


# --------------------------------------------------------------------------- request keys


def _canonical(value: object, where: str) -> object:
    """JSON-ready form of request parameters; bytes become ``{"$bytes": base64}``."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        # A marker object keeps b"x" and "x" distinct; prompts with images carry bytes.
        return {"$bytes": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, Mapping):
        out: dict[str, object] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"request_key: non-string key {k!r} at {where}")
            out[k] = _canonical(v, f"{where}.{k}")
        return out
    if isinstance(value, (list, tuple)):
        return [_canonical(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TypeError(f"request_key: non-finite float {value!r} at {where}")
        return value
    raise TypeError(
        f"request_key: {where} is a {type(value).__name__}, which cannot be stored or sent "
        "again (a file object is read once); pass JSON-like values: read file-like bodies "
        "into bytes first (body=f.read())"
    )


def params_to_json(params: Mapping[str, Any]) -> dict[str, object]:
    """Request parameters as JSON-ready data (bytes as ``{"$bytes": base64}``), to send
    to another process; :func:`params_from_json` gives them back.

    Raises:
        TypeError: for values that have no JSON form (file objects, datetimes, ...).
    """
    return {name: _canonical(value, name) for name, value in params.items()}


def params_from_json(data: object) -> Any:
    """The request parameters :func:`params_to_json` made, bytes restored."""
    if isinstance(data, Mapping):
        if set(data) == {"$bytes"} and isinstance(data["$bytes"], str):
            return base64.b64decode(data["$bytes"])
        return {k: params_from_json(v) for k, v in data.items()}
    if isinstance(data, list):
        return [params_from_json(v) for v in data]
    return data


def _canonical_body(body: object) -> object:
    """An InvokeModel body: JSON bodies are parsed so key order inside them does not matter."""
    text: str | None
    if isinstance(body, (bytes, bytearray, memoryview)):
        try:
            text = bytes(body).decode("utf-8")
        except UnicodeDecodeError:
            text = None
    elif isinstance(body, str):
        text = body
    else:
        return _canonical(body, "body")
    if text is not None:
        try:
            return {"$json": _canonical(json.loads(text), "body")}
        except (ValueError, TypeError):
            pass
    return _canonical(body, "body")


def request_key(operation: str, params: Mapping[str, Any]) -> str:
    """Stable 16-hex-digit key of a request, ignoring ``modelId``.

    The key is the first 16 hex digits of the SHA-256 of canonical JSON
    (``sort_keys``, compact separators) of ``{"operation", "params"}`` where ``params``
    lacks ``modelId``; the candidate's request and the base's request for the same prompt
    therefore share a key. Bytes values are base64-encoded. An InvokeModel ``body``
    (bytes or str) holding JSON is parsed first, so key order inside it does not matter.

    Compute the key from the request as the test wrote it, before any per-invocation
    nonce (cache busting) is added, or keys will never match between runs.

    Raises:
        TypeError: for values that have no JSON form (file objects, datetimes, ...).
    """
    cleaned: dict[str, object] = {}
    for name, value in params.items():
        if name == "modelId":
            continue
        if name == "body":
            cleaned[name] = _canonical_body(value)
        else:
            cleaned[name] = _canonical(value, name)
    payload = json.dumps(
        {"operation": operation, "params": cleaned},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


# --------------------------------------------------------------------------- the store

# (test_id -> key -> raw entry dict as read from the file)
_RawTests = dict[str, dict[str, dict[str, Any]]]


@dataclass
class _FileContent:
    raw: _RawTests  # verbatim entries, written back as-is unless re-recorded
    extras: dict[str, Any]  # unknown top-level keys, kept too
    parsed: dict[tuple[str, str], StoredRequest]


def _read_file(path: Path) -> _FileContent | None:
    """Parse and fully validate the file; None if it does not exist.

    Raises:
        BaselineFileError: on anything but a complete, valid file.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError as exc:
        raise BaselineFileError(path, f"is not UTF-8 text ({exc})") from exc
    except OSError as exc:
        raise BaselineFileError(
            path, f"cannot be read ({exc.strerror or exc})", "check the path and permissions"
        ) from exc
    return _parse(path, text)


def _parse(path: Path, text: str) -> _FileContent:
    """Validate the file's text completely (see :func:`_read_file`)."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BaselineFileError(
            path, f"is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from exc
    except RecursionError:
        # The json module recurses per nesting level; no baseline nests more than five deep.
        raise BaselineFileError(path, "is nested too deeply to be a baseline file") from None
    if not isinstance(document, dict):
        raise BaselineFileError(
            path, f"top level must be a JSON object, got {type(document).__name__}"
        )
    plugin = document.get("plugin")
    if plugin != PLUGIN_NAME:
        raise BaselineFileError(
            path,
            f"'plugin' is {plugin!r}, expected {PLUGIN_NAME!r} (not a baseline file of "
            "this plugin?)",
            "use a different baseline file path, or " + _REFIX,
        )
    version = document.get("schema_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise BaselineFileError(
            path, f"'schema_version' must be a positive integer, got {version!r}"
        )
    if version > SCHEMA_VERSION:
        raise BaselineFileError(
            path,
            f"schema_version {version} is newer than this plugin understands ({SCHEMA_VERSION})",
            "upgrade pytest-bedrock-latency, or delete the file and re-record with "
            "--bedrock-update-baseline",
        )
    tests = document.get("tests")
    if not isinstance(tests, dict):
        raise BaselineFileError(
            path, f"'tests' must be an object of test ids, got {type(tests).__name__}"
        )
    raw: _RawTests = {}
    parsed: dict[tuple[str, str], StoredRequest] = {}
    for test_id, entries in tests.items():
        if not isinstance(entries, dict):
            raise BaselineFileError(
                path,
                f"tests[{test_id!r}] must be an object of request keys, "
                f"got {type(entries).__name__}",
            )
        raw[test_id] = {}
        for key, entry in entries.items():
            where = f"tests[{test_id!r}][{key!r}]"
            try:
                parsed[(test_id, key)] = StoredRequest.from_json(entry, where=where)
            except _EntryError as exc:
                raise BaselineFileError(path, str(exc)) from exc
            raw[test_id][key] = entry
    extras = {k: v for k, v in document.items() if k not in {"plugin", "schema_version", "tests"}}
    return _FileContent(raw=raw, extras=extras, parsed=parsed)


class BaselineStore:
    """The stored baseline file, plus this session's lookups and recordings.

    Create with :meth:`load` (a missing file is an empty store). :meth:`record` stages
    entries; nothing touches the disk until :meth:`save`. All methods are thread-safe.
    """

    path: Path

    def __init__(self, path: str | os.PathLike[str]) -> None:
        """An empty store for ``path``; use :meth:`load` to read an existing file.

        Even a store built directly can never overwrite a corrupt file: :meth:`save`
        validates what is on disk first.
        """
        self.path = Path(path)
        self._lock = threading.Lock()
        self._parsed: dict[tuple[str, str], StoredRequest] = {}
        self._staged: dict[tuple[str, str], StoredRequest] = {}
        self._used: set[tuple[str, str]] = set()
        self._pruned: set[tuple[str, str]] = set()

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> BaselineStore:
        """Read ``path``; a missing file gives an empty store.

        Raises:
            BaselineFileError: invalid JSON, wrong top-level shape, a ``schema_version``
                this plugin does not understand, or a malformed entry; the message names
                the file, what is wrong and the fix.
        """
        store = cls(path)
        content = _read_file(store.path)
        if content is not None:
            store._parsed = content.parsed
        return store

    def __len__(self) -> int:
        """Number of (test, request) entries, file and staged together."""
        with self._lock:
            return len(self._parsed.keys() | self._staged.keys())

    def lookup(self, test_id: str, key: str) -> StoredRequest | None:
        """The stored (or this session's staged) entry, or None; marks the entry used."""
        with self._lock:
            ident = (test_id, key)
            self._used.add(ident)
            staged = self._staged.get(ident)
            return staged if staged is not None else self._parsed.get(ident)

    def mark_used(self, test_id: str, key: str) -> None:
        """Mark an entry used without reading it (xdist controller, for workers' lookups)."""
        with self._lock:
            self._used.add((test_id, key))

    def record(self, test_id: str, key: str, entry: StoredRequest) -> None:
        """Stage ``entry`` for (test, request); replaces the stored one on :meth:`save`."""
        if not isinstance(entry, StoredRequest):
            raise TypeError(f"record() needs a StoredRequest, got {type(entry).__name__}")
        with self._lock:
            self._staged[(test_id, key)] = entry
            self._used.add((test_id, key))

    def staged_json(self) -> dict[str, dict[str, dict[str, Any]]]:
        """This session's staged entries as plain dicts ``{test_id: {key: entry}}``."""
        with self._lock:
            out: dict[str, dict[str, dict[str, Any]]] = {}
            for (test_id, key), entry in sorted(self._staged.items()):
                out.setdefault(test_id, {})[key] = entry.to_json()
            return out

    def merge(self, staged: Mapping[str, Mapping[str, Any]], *, origin: str = "worker") -> None:
        """Record entries given as plain dicts ``{test_id: {key: entry_json}}``.

        Meant for the xdist controller receiving :meth:`staged_json` from workers. All
        entries are validated before any is recorded.

        Raises:
            ValueError: an entry is malformed (message names ``origin`` and the field).
        """
        parsed: list[tuple[str, str, StoredRequest]] = []
        for test_id, entries in staged.items():
            for key, data in _as_mapping(entries, f"{origin}: tests[{test_id!r}]").items():
                where = f"{origin}: tests[{test_id!r}][{key!r}]"
                parsed.append((test_id, key, StoredRequest.from_json(data, where=where)))
        for test_id, key, entry in parsed:
            self.record(test_id, key, entry)

    def unused(self) -> list[tuple[str, str]]:
        """(test_id, key) entries of the file that no lookup/record touched this session.

        Sorted; typically stale entries of renamed tests or changed prompts.
        """
        with self._lock:
            return sorted(ident for ident in self._parsed if ident not in self._used)

    def prune_stale(self, keep: Collection[str] = ()) -> list[tuple[str, str]]:
        """Drop, at the next :meth:`save`, the stale entries of tests re-recorded this session.

        An entry is stale when its test recorded new samples this session but this session
        never looked the entry up: the test's prompt changed, or a parametrised case went.
        Entries of tests that did not run are kept whatever their age: a run with ``-k``
        or on a subset of files cannot tell a deleted test from a deselected one, so those
        are for a person to remove by hand. So are all the entries of the ids in ``keep``
        (pooled groups: a run of some of their tests records only those tests' prompts).
        Returns the entries that will be dropped.
        """
        with self._lock:
            recorded = {test_id for test_id, _ in self._staged} - set(keep)
            stale = sorted(
                ident for ident in self._parsed if ident[0] in recorded and ident not in self._used
            )
            self._pruned.update(stale)
            return stale

    @property
    def dirty(self) -> bool:
        """Whether :meth:`save` would write: staged entries, or entries to prune."""
        with self._lock:
            return bool(self._staged or self._pruned)

    def save(self) -> bool:
        """Write staged entries merged into the file, atomically, if there are any.

        Read, merge and replace happen under the file's lock (:func:`update_text_locked`),
        so entries written by another run since :meth:`load`, even one saving at the
        same moment, are kept, and a file that became unreadable is never overwritten.
        Entries not re-recorded are kept exactly as they were; entries given to
        :meth:`prune_stale` are dropped (only those: an entry another run added since is
        not this session's to judge). Temporary files of a killed earlier write are
        removed.

        Returns:
            Whether the file was written.

        Raises:
            BaselineFileError: the file on disk is invalid, or it cannot be written.
        """
        with self._lock:
            if not self._staged and not self._pruned:
                return False
            merged: list[_FileContent] = []

            def merge(current: str | None) -> str:
                content = (
                    _parse(self.path, current)
                    if current is not None
                    else _FileContent(raw={}, extras={}, parsed={})
                )
                raw = content.raw
                for test_id, key in self._pruned:
                    if (test_id, key) not in self._staged:
                        raw.get(test_id, {}).pop(key, None)
                        content.parsed.pop((test_id, key), None)
                for test_id in [test_id for test_id, entries in raw.items() if not entries]:
                    del raw[test_id]
                for (test_id, key), entry in self._staged.items():
                    raw.setdefault(test_id, {})[key] = entry.to_json()
                document: dict[str, Any] = dict(content.extras)
                document.update({"plugin": PLUGIN_NAME, "schema_version": SCHEMA_VERSION})
                document["tests"] = raw
                try:
                    text = json.dumps(
                        document, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False
                    )
                except ValueError as exc:
                    # A NaN/inf slipped into a staged entry; refuse rather than write bad JSON.
                    raise BaselineFileError(
                        self.path,
                        f"refusing to write a non-finite number ({exc})",
                        "this is a bug in the caller that recorded it",
                    ) from exc
                merged.append(content)
                return text + "\n"

            try:
                update_text_locked(self.path, merge)
            except UnicodeDecodeError as exc:
                raise BaselineFileError(self.path, f"is not UTF-8 text ({exc})") from exc
            except FileLocked as exc:
                raise BaselineFileError(
                    self.path,
                    f"cannot be written: {exc}",
                    "if no other pytest run is recording, a process is stuck holding the lock; "
                    "end it and re-run",
                ) from exc
            except OSError as exc:
                raise BaselineFileError(
                    self.path,
                    f"cannot be written ({exc.strerror or exc})",
                    "check the directory exists and is writable (the baseline and its "
                    f"lock file {lock_path(self.path).name} are written there)",
                ) from exc
            # The file now holds exactly this content; staged entries are no longer pending.
            self._parsed = {**merged[-1].parsed, **self._staged}
            self._staged.clear()
            self._pruned.clear()
            return True
