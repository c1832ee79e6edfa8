"""Tests for pytest_bedrock_latency.baseline_store."""

from __future__ import annotations

import hashlib
import io
import json
import threading
from pathlib import Path
from typing import Any

import pytest

from pytest_bedrock_latency.baseline_store import (
    PLUGIN_NAME,
    SCHEMA_VERSION,
    BaselineFileError,
    BaselineStore,
    StoredRequest,
    StoredSample,
    params_from_json,
    params_to_json,
    request_key,
)

TEST_A = "tests/test_support.py::test_refund[short]"
TEST_B = "tests/test_support.py::test_greeting"


def _sample(ms: float | None = 12.5, t: float = 1_764_250_000.25) -> StoredSample:
    return StoredSample(
        ms_per_token=ms, ttft_ms=341.0, output_tokens=118, stop_reason="end_turn", recorded_at=t
    )


def _request(n: int = 2, model_id: str = "amazon.titan-text-express-v1") -> StoredRequest:
    return StoredRequest(
        model_id=model_id,
        region="us-east-1",
        operation="ConverseStream",
        performance_latency=None,
        plugin_version="0.1.0",
        recorded_at=1_764_250_000.25,
        samples=tuple(_sample(ms=10.0 + i) for i in range(n)),
    )


def _converse_params(model_id: str, text: str = "Where is my refund?") -> dict[str, Any]:
    return {
        "modelId": model_id,
        "messages": [{"role": "user", "content": [{"text": text}]}],
        "inferenceConfig": {"maxTokens": 256, "temperature": 0.0},
    }


def _valid_document() -> dict[str, Any]:
    return {
        "plugin": PLUGIN_NAME,
        "schema_version": SCHEMA_VERSION,
        "tests": {TEST_A: {"k1": _request().to_json()}},
    }


def _write(path: Path, document: Any) -> None:
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")


# ------------------------------------------------------------------ round trip & format


def test_load_missing_file_is_empty(tmp_path: Path) -> None:
    store = BaselineStore.load(tmp_path / "missing.json")
    assert len(store) == 0
    assert store.lookup(TEST_A, "k") is None
    assert store.unused() == []
    assert not store.dirty
    assert store.save() is False
    assert not (tmp_path / "missing.json").exists()


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "sub" / ".bedrock-baseline.json"
    store = BaselineStore.load(path)
    entry = _request()
    store.record(TEST_A, "k1", entry)
    assert store.dirty
    assert store.save() is True
    assert not store.dirty

    again = BaselineStore.load(path)
    assert again.lookup(TEST_A, "k1") == entry
    assert again.lookup(TEST_A, "other") is None


def test_none_fields_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    entry = StoredRequest(
        model_id="m.x",
        region=None,
        operation="InvokeModel",
        performance_latency="optimized",
        plugin_version="0.1.0",
        recorded_at=1.0,
        samples=(StoredSample(None, None, None, None, 2.0),),
    )
    store = BaselineStore.load(path)
    store.record(TEST_A, "k", entry)
    store.save()
    assert BaselineStore.load(path).lookup(TEST_A, "k") == entry


def test_file_format_is_deterministic_and_reviewable(tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    store = BaselineStore.load(path)
    store.record(TEST_B, "kb", _request(1))
    store.record(TEST_A, "ka", _request(1))
    store.save()
    text = path.read_text(encoding="utf-8")
    assert text.endswith("}\n")
    document = json.loads(text)
    assert document["plugin"] == "pytest-bedrock-latency"
    assert document["schema_version"] == 1
    assert list(document["tests"]) == sorted([TEST_A, TEST_B])
    assert text == json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"

    # Recording the same content again gives a byte-identical file.
    other = tmp_path / "c.json"
    store2 = BaselineStore.load(other)
    store2.record(TEST_A, "ka", _request(1))
    store2.record(TEST_B, "kb", _request(1))
    store2.save()
    assert other.read_text(encoding="utf-8") == text


def test_entries_not_rerecorded_are_kept_verbatim(tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    document = _valid_document()
    document["tests"][TEST_A]["k1"]["reviewer_note"] = "slow region that week"
    document["tests"][TEST_B] = {"k2": _request(1).to_json()}
    _write(path, document)

    store = BaselineStore.load(path)
    store.record(TEST_B, "k2", _request(3, model_id="amazon.nova-micro-v1:0"))
    assert store.save()

    saved = json.loads(path.read_text())
    assert saved["tests"][TEST_A]["k1"] == document["tests"][TEST_A]["k1"]
    assert saved["tests"][TEST_B]["k2"]["model_id"] == "amazon.nova-micro-v1:0"
    assert len(saved["tests"][TEST_B]["k2"]["samples"]) == 3


def test_save_only_when_dirty(tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    _write(path, _valid_document())
    before = path.read_bytes()
    mtime = path.stat().st_mtime_ns
    store = BaselineStore.load(path)
    assert store.lookup(TEST_A, "k1") is not None
    assert not store.dirty
    assert store.save() is False
    assert path.read_bytes() == before
    assert path.stat().st_mtime_ns == mtime


def test_lookup_sees_staged_entry(tmp_path: Path) -> None:
    _write(tmp_path / "b.json", _valid_document())
    store = BaselineStore.load(tmp_path / "b.json")
    new = _request(5)
    store.record(TEST_A, "k1", new)
    assert store.lookup(TEST_A, "k1") == new


def test_save_keeps_entries_written_concurrently(tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    store = BaselineStore.load(path)  # file missing now
    _write(path, _valid_document())  # another process writes it meanwhile
    store.record(TEST_B, "k2", _request(1))
    store.save()
    tests = json.loads(path.read_text())["tests"]
    assert set(tests) == {TEST_A, TEST_B}


# ------------------------------------------------------------------ unused


def test_unused_reports_untouched_entries(tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    document = _valid_document()
    document["tests"][TEST_A]["k2"] = _request(1).to_json()
    document["tests"][TEST_B] = {"k3": _request(1).to_json()}
    _write(path, document)
    store = BaselineStore.load(path)
    assert store.unused() == sorted([(TEST_A, "k1"), (TEST_A, "k2"), (TEST_B, "k3")])
    store.lookup(TEST_A, "k1")
    store.record(TEST_B, "k3", _request(1))
    store.mark_used(TEST_A, "k2")
    assert store.unused() == []


def test_unused_only_lists_file_entries(tmp_path: Path) -> None:
    store = BaselineStore.load(tmp_path / "b.json")
    store.record(TEST_A, "new", _request(1))
    store.lookup(TEST_B, "absent")
    assert store.unused() == []


# ------------------------------------------------------------------ errors


def test_corrupt_json_names_file_and_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / ".bedrock-baseline.json"
    path.write_text('{"plugin": "pytest-bedrock-latency", "tests": {', encoding="utf-8")
    before = path.read_bytes()
    with pytest.raises(BaselineFileError) as info:
        BaselineStore.load(path)
    message = str(info.value)
    assert str(path) in message
    assert "not valid JSON" in message and "line 1" in message
    assert "--bedrock-update-baseline" in message
    assert info.value.path == path

    # Even a store built without load() refuses to replace the corrupt file.
    store = BaselineStore(path)
    store.record(TEST_A, "k", _request(1))
    with pytest.raises(BaselineFileError, match="not valid JSON"):
        store.save()
    assert path.read_bytes() == before
    # Nothing but the file and its (empty) lock file: no temporary file left behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name, path.name + ".lock"]


def test_file_corrupted_after_load_is_not_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    _write(path, _valid_document())
    store = BaselineStore.load(path)
    store.record(TEST_B, "k", _request(1))
    path.write_text("<<<<<<< HEAD\n", encoding="utf-8")  # a merge conflict, say
    with pytest.raises(BaselineFileError):
        store.save()
    assert path.read_text(encoding="utf-8") == "<<<<<<< HEAD\n"


def test_newer_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    document = _valid_document()
    document["schema_version"] = 7
    _write(path, document)
    with pytest.raises(BaselineFileError) as info:
        BaselineStore.load(path)
    message = str(info.value)
    assert "schema_version 7 is newer than this plugin understands (1)" in message
    assert str(path) in message and "upgrade" in message


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ([], "top level must be a JSON object"),
        ({"schema_version": 1, "tests": {}}, "'plugin' is None"),
        ({"plugin": PLUGIN_NAME, "tests": {}}, "'schema_version' must be a positive integer"),
        ({"plugin": PLUGIN_NAME, "schema_version": "1", "tests": {}}, "'schema_version'"),
        ({"plugin": PLUGIN_NAME, "schema_version": True, "tests": {}}, "'schema_version'"),
        ({"plugin": PLUGIN_NAME, "schema_version": 1}, "'tests' must be an object"),
        ({"plugin": PLUGIN_NAME, "schema_version": 1, "tests": {TEST_A: []}}, "must be an object"),
    ],
)
def test_wrong_shape(tmp_path: Path, document: Any, problem: str) -> None:
    path = tmp_path / "b.json"
    _write(path, document)
    with pytest.raises(BaselineFileError, match=problem) as info:
        BaselineStore.load(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("mutate", "problem"),
    [
        (lambda e: e.pop("model_id"), "missing 'model_id'"),
        (lambda e: e.update(model_id=""), "'model_id' must be a non-empty string"),
        (lambda e: e.update(samples=[]), "'samples' must be a non-empty list"),
        (lambda e: e.update(recorded_at="yesterday"), "'recorded_at' must be a number"),
        (lambda e: e["samples"][1].update(ms_per_token=-1), r"samples\[1\].*'ms_per_token'"),
        (
            lambda e: e["samples"][0].update(ms_per_token=True),
            "'ms_per_token' must be a number or null",
        ),
        (
            lambda e: e["samples"][0].update(output_tokens=1.5),
            "'output_tokens' must be a non-negative integer",
        ),
        (lambda e: e["samples"][0].pop("stop_reason"), "missing 'stop_reason'"),
        (lambda e: e["samples"].append("fast"), r"samples\[2\]: expected an object"),
        (lambda e: e.update(region=5), "'region' must be a string or null"),
    ],
)
def test_malformed_entries(tmp_path: Path, mutate: Any, problem: str) -> None:
    path = tmp_path / "b.json"
    document = _valid_document()
    mutate(document["tests"][TEST_A]["k1"])
    _write(path, document)
    with pytest.raises(BaselineFileError, match=problem) as info:
        BaselineStore.load(path)
    message = str(info.value)
    assert str(path) in message and TEST_A in message and "'k1'" in message


def test_nan_in_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    text = json.dumps(_valid_document()).replace('"ms_per_token": 10.0', '"ms_per_token": NaN')
    assert "NaN" in text
    path.write_text(text, encoding="utf-8")
    with pytest.raises(BaselineFileError, match="finite"):
        BaselineStore.load(path)


def test_nan_is_never_written(tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    store = BaselineStore.load(path)
    bad = StoredRequest("m.x", None, "Converse", None, "0.1.0", 1.0, (_sample(ms=float("nan")),))
    store.record(TEST_A, "k", bad)
    with pytest.raises(BaselineFileError, match="non-finite"):
        store.save()
    assert not path.exists()


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(BaselineFileError, match="cannot be read"):
        BaselineStore.load(tmp_path)


def test_record_requires_stored_request(tmp_path: Path) -> None:
    store = BaselineStore.load(tmp_path / "b.json")
    with pytest.raises(TypeError, match="StoredRequest"):
        store.record(TEST_A, "k", _request().to_json())  # type: ignore[arg-type]


# ------------------------------------------------------------------ xdist-style merge


def test_merge_from_worker_json(tmp_path: Path) -> None:
    worker = BaselineStore.load(tmp_path / "b.json")
    worker.record(TEST_A, "k1", _request(2))
    worker.record(TEST_B, "k2", _request(1))
    payload = json.loads(json.dumps(worker.staged_json()))  # as sent over execnet

    controller = BaselineStore.load(tmp_path / "b.json")
    controller.merge(payload)
    assert controller.dirty
    assert controller.lookup(TEST_A, "k1") == _request(2)
    controller.save()
    assert BaselineStore.load(tmp_path / "b.json").lookup(TEST_B, "k2") == _request(1)


def test_merge_validates_everything_first(tmp_path: Path) -> None:
    controller = BaselineStore.load(tmp_path / "b.json")
    bad = {TEST_A: {"ok": _request(1).to_json(), "bad": {"model_id": "x"}}}
    with pytest.raises(ValueError, match=r"gw1: tests.*'bad'.*missing"):
        controller.merge(bad, origin="gw1")
    assert not controller.dirty


def test_concurrent_records(tmp_path: Path) -> None:
    store = BaselineStore.load(tmp_path / "b.json")

    def worker(i: int) -> None:
        for j in range(50):
            store.record(f"t{i}", f"k{j}", _request(1))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(store) == 400
    store.save()
    assert len(BaselineStore.load(tmp_path / "b.json")) == 400


# ------------------------------------------------------------------ request_key


def test_request_key_ignores_model_id_and_order() -> None:
    candidate = _converse_params("arn:aws:bedrock:us-east-1:123456789012:custom-model/x")
    base = _converse_params("amazon.titan-text-express-v1")
    reordered = dict(reversed(list(base.items())))
    reordered["inferenceConfig"] = {"temperature": 0.0, "maxTokens": 256}
    key = request_key("ConverseStream", candidate)
    assert key == request_key("ConverseStream", base) == request_key("ConverseStream", reordered)
    assert len(key) == 16 and int(key, 16) >= 0


def test_request_key_differs_for_different_requests() -> None:
    base = _converse_params("m.x")
    keys = {
        request_key("ConverseStream", base),
        request_key("ConverseStream", _converse_params("m.x", "Where is my parcel?")),
        request_key("Converse", base),
        request_key("ConverseStream", {**base, "inferenceConfig": {"maxTokens": 512}}),
    }
    assert len(keys) == 4


def test_request_key_is_stable_across_releases() -> None:
    # Changing the canonical form invalidates every stored baseline: pin it.
    params = {"modelId": "m.x", "messages": [{"role": "user", "content": [{"text": "hi"}]}]}
    assert request_key("Converse", params) == request_key("Converse", dict(params))
    canonical = (
        '{"operation":"Converse","params":{"messages":[{"content":[{"text":"hi"}],"role":"user"}]}}'
    )
    assert request_key("Converse", params) == hashlib.sha256(canonical.encode()).hexdigest()[:16]
    assert request_key("Converse", params) == "edb1b9134e7809eb"


def test_request_key_bytes_values() -> None:
    image = {"image": {"format": "png", "source": {"bytes": b"\x89PNG\r\n\x1a\n"}}}
    params = {"messages": [{"role": "user", "content": [image, {"text": "describe"}]}]}
    same = {"messages": [{"role": "user", "content": [image, {"text": "describe"}]}]}
    other = {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"image": {"format": "png", "source": {"bytes": b"\x89PNG\r\n\x1a\x00"}}},
                    {"text": "describe"},
                ],
            }
        ]
    }
    assert request_key("Converse", params) == request_key("Converse", same)
    assert request_key("Converse", params) != request_key("Converse", other)
    # bytes and the same characters as str are different requests
    assert request_key("X", {"v": b"abc"}) != request_key("X", {"v": "abc"})


def test_request_key_invoke_model_bodies() -> None:
    body = {"inputText": "hello", "textGenerationConfig": {"maxTokenCount": 100}}
    as_bytes = json.dumps(body).encode()
    as_str = json.dumps(dict(reversed(list(body.items()))), indent=4)
    accept = "application/json"
    k1 = request_key("InvokeModel", {"modelId": "a.b", "body": as_bytes, "accept": accept})
    k2 = request_key("InvokeModel", {"modelId": "c.d", "body": as_str, "accept": accept})
    assert k1 == k2
    bye = json.dumps({**body, "inputText": "bye"}).encode()
    assert request_key("InvokeModel", {"body": bye, "accept": accept}) != k1
    # Non-JSON and non-UTF-8 bodies are hashed as raw bytes.
    raw0 = request_key("InvokeModel", {"body": b"\xff\x00"})
    assert raw0 != request_key("InvokeModel", {"body": b"\xff\x01"})
    assert len(request_key("InvokeModel", {"body": "plain text"})) == 16


def test_request_key_rejects_unhashable_values() -> None:
    import io

    with pytest.raises(TypeError, match="read file-like bodies into bytes"):
        request_key("InvokeModel", {"body": io.BytesIO(b"{}")})
    with pytest.raises(TypeError, match="non-finite"):
        request_key("Converse", {"inferenceConfig": {"temperature": float("nan")}})


# ------------------------------------------------------------------ locking, pruning, hostile files


def test_deeply_nested_json_is_a_file_error_not_recursion(tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    path.write_text(
        '{"plugin": "pytest-bedrock-latency", "x": ' + "[" * 100_000 + "]" * 100_000 + "}"
    )
    before = path.read_bytes()
    with pytest.raises(BaselineFileError, match="nested too deeply") as info:
        BaselineStore.load(path)
    assert str(path) in str(info.value)
    store = BaselineStore(path)
    store.record(TEST_A, "k", _request(1))
    with pytest.raises(BaselineFileError, match="nested too deeply"):
        store.save()
    assert path.read_bytes() == before


def test_save_removes_temporaries_of_a_killed_write(tmp_path: Path) -> None:
    path = tmp_path / ".bedrock-baseline.json"
    _write(path, _valid_document())
    stale = tmp_path / ".bedrock-baseline.json.abc123.tmp"
    stale.write_text('{"half": ')  # what a SIGKILL between write and rename leaves
    unrelated = tmp_path / ".other.json.abc123.tmp"
    unrelated.write_text("not ours")
    store = BaselineStore.load(path)
    store.record(TEST_B, "k2", _request(1))
    assert store.save()
    assert not stale.exists()
    assert unrelated.exists()
    assert set(json.loads(path.read_text())["tests"]) == {TEST_A, TEST_B}


def test_save_waits_for_the_lock_and_merges_what_the_holder_wrote(tmp_path: Path) -> None:
    from filelock import FileLock

    path = tmp_path / "b.json"
    store = BaselineStore.load(path)  # loaded before the other run saved: the lost-update race
    store.record(TEST_B, "k2", _request(1))
    holder = FileLock(tmp_path / ".b.json.lock")
    holder.acquire()
    done = threading.Event()

    def save() -> None:
        store.save()
        done.set()

    thread = threading.Thread(target=save)
    thread.start()
    try:
        assert not done.wait(0.3)  # blocked on the lock, not writing
        _write(path, _valid_document())  # the holder (another run) writes TEST_A meanwhile
    finally:
        holder.release()
    thread.join(10)
    assert done.is_set()
    assert set(json.loads(path.read_text())["tests"]) == {TEST_A, TEST_B}


def test_lock_held_too_long_is_a_file_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from filelock import FileLock

    monkeypatch.setattr("pytest_bedrock_latency.atomicio.LOCK_TIMEOUT_S", 0.2)
    path = tmp_path / "b.json"
    store = BaselineStore.load(path)
    store.record(TEST_A, "k1", _request(1))
    holder = FileLock(tmp_path / ".b.json.lock")
    holder.acquire()
    errors: list[BaseException] = []

    def save() -> None:
        try:
            store.save()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=save)
    thread.start()
    thread.join(30)
    holder.release()
    assert errors and isinstance(errors[0], BaselineFileError)
    assert "lock" in str(errors[0]) and not path.exists()
    assert store.dirty  # still staged: nothing claims it was written


def test_prune_stale_drops_unused_entries_of_rerecorded_tests_only(tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    document = _valid_document()
    document["tests"][TEST_A]["old-prompt"] = _request(1).to_json()
    document["tests"][TEST_B] = {"k3": _request(1).to_json()}  # a test this run did not run
    _write(path, document)
    store = BaselineStore.load(path)
    store.record(TEST_A, "k1", _request(3))
    assert store.prune_stale() == [(TEST_A, "old-prompt")]
    # Another run adds an entry to TEST_A meanwhile: not this session's to prune.
    concurrent = json.loads(path.read_text())
    concurrent["tests"][TEST_A]["added-meanwhile"] = _request(1).to_json()
    _write(path, concurrent)
    assert store.save()
    tests = json.loads(path.read_text())["tests"]
    assert sorted(tests[TEST_A]) == ["added-meanwhile", "k1"]
    assert sorted(tests[TEST_B]) == ["k3"]
    assert store.unused() == sorted([(TEST_A, "added-meanwhile"), (TEST_B, "k3")])


def test_params_sent_to_another_process_come_back_whole() -> None:
    params = {
        "modelId": "m",
        "messages": [
            {"role": "user", "content": [{"text": "Hi"}, {"image": {"bytes": b"\x89PNG"}}]}
        ],
        "inferenceConfig": {"maxTokens": 10, "temperature": 0.0},
        "body": b'{"inputText": "Hi"}',
    }
    sent = json.loads(json.dumps(params_to_json(params)))  # what a report carries: JSON only
    assert params_from_json(sent) == params
    assert request_key("Converse", params_from_json(sent)) == request_key("Converse", params)


def test_params_without_a_json_form_are_refused() -> None:
    with pytest.raises(TypeError, match="file object is read once"):
        params_to_json({"body": io.BytesIO(b"{}")})


def test_prune_stale_keeps_every_entry_of_the_ids_given(tmp_path: Path) -> None:
    path = tmp_path / "baseline.json"
    store = BaselineStore.load(path)
    store.record(TEST_A, "kept-prompt", _request())
    store.save()
    store = BaselineStore.load(path)
    store.record(TEST_A, "new-prompt", _request())
    assert store.prune_stale(keep=[TEST_A]) == []
    store.save()
    assert set(json.loads(path.read_text())["tests"][TEST_A]) == {"kept-prompt", "new-prompt"}
