"""Tests for pytest_bedrock_latency.atomicio."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest

from pytest_bedrock_latency.atomicio import write_text_atomic


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def test_creates_file_and_parent_directories(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "baseline.json"
    write_text_atomic(target, "hello\n")
    assert target.read_bytes() == b"hello\n"
    assert _leftovers(target.parent) == []


def test_replaces_content_exactly(tmp_path: Path) -> None:
    target = tmp_path / "f.json"
    target.write_text("old content that is longer than the new one\n")
    write_text_atomic(str(target), "new\n")
    # Bytes, not text: no newline translation, no leftover tail of the old content.
    assert target.read_bytes() == b"new\n"


def test_unicode_is_utf8(tmp_path: Path) -> None:
    target = tmp_path / "f.json"
    write_text_atomic(target, "test_ü[Ω]\n")
    assert target.read_bytes() == "test_ü[Ω]\n".encode()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permission bits")
def test_keeps_existing_permission_bits(tmp_path: Path) -> None:
    target = tmp_path / "f.json"
    target.write_text("old")
    os.chmod(target, 0o640)
    write_text_atomic(target, "new")
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permission bits")
def test_new_file_gets_umask_mode_not_tempfile_0600(tmp_path: Path) -> None:
    target = tmp_path / "f.json"
    old = os.umask(0o022)
    try:
        write_text_atomic(target, "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


@pytest.mark.skipif(sys.platform == "win32", reason="symlinks need privileges")
def test_symlink_is_followed_not_replaced(tmp_path: Path) -> None:
    real = tmp_path / "real.json"
    real.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    write_text_atomic(link, "new")
    assert link.is_symlink()
    assert real.read_text() == "new"


def test_failed_replace_keeps_old_file_and_removes_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "f.json"
    target.write_text("old")

    def failing_replace(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("pytest_bedrock_latency.atomicio.os.replace", failing_replace)
    with pytest.raises(OSError, match="No space left"):
        write_text_atomic(target, "new")
    assert target.read_text() == "old"
    assert _leftovers(tmp_path) == []


def test_keyboard_interrupt_during_fsync_cleans_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "f.json"
    target.write_text(json.dumps({"a": 1}))

    def interrupted_fsync(fd: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("pytest_bedrock_latency.atomicio.os.fsync", interrupted_fsync)
    with pytest.raises(KeyboardInterrupt):
        write_text_atomic(target, json.dumps({"a": 2}))
    assert json.loads(target.read_text()) == {"a": 1}
    assert _leftovers(tmp_path) == []


def test_unencodable_text_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "f.json"
    target.write_text("old")
    with pytest.raises(UnicodeEncodeError):
        write_text_atomic(target, "lone surrogate \ud800")
    assert target.read_text() == "old"
    assert _leftovers(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.json"]
