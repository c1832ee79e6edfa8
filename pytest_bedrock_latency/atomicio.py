"""Atomic file replacement for files people review and commit (the stored baseline).

A reader (a concurrent pytest run, an editor, ``git diff``) must see either the complete
old file or the complete new one, never a truncated mix, and an interrupted write (Ctrl-C,
a full disk, a crash) must leave the old file as it was. The classic recipe does that:
write a temporary file in the *same directory* (so the final rename never crosses a file
system), flush and fsync it, then ``os.replace`` it onto the target, which is atomic on
POSIX and on Windows.

Files that several runs may update at once (two CI jobs recording the same baseline) go
through :func:`update_text_locked`: read, merge and replace while holding a lock on a
small companion file (``.<name>.lock``, e.g. ``.bedrock-baseline.json.lock``; it stays,
as removing a lock file races with the next run taking it), so no run's entries are lost to another's
replace. The lock is ``filelock``'s: an OS-level lock (``flock`` on POSIX, ``LockFileEx``
on Windows, a soft lock where a network file system has neither) that the OS releases
when its holder dies, so a killed run never leaves the file locked.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

__all__ = [
    "FileLocked",
    "lock_path",
    "remove_stale_temporaries",
    "update_text_locked",
    "write_text_atomic",
]

LOCK_TIMEOUT_S = 60.0  # a write takes milliseconds; a lock held this long is a stuck process


class FileLocked(OSError):
    """Another process held the file's lock for longer than the timeout."""


def _default_file_mode() -> int:
    """Permission bits a plain ``open(path, "w")`` would give a new file.

    ``tempfile`` creates files with mode 0o600, which would make a freshly recorded,
    meant-to-be-shared baseline file private. Python has no ``os.getumask()``; on Linux
    the umask is readable from /proc without changing it, and elsewhere we fall back to
    the set-and-restore idiom (briefly racy with other threads creating files, which is
    why it is only the fallback).
    """
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable; best effort (not possible on Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _temporary_prefix(target: Path) -> str:
    return f".{target.name.lstrip('.')}."


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Replace the file at ``path`` with ``text`` (UTF-8) atomically.

    * Parent directories are created.
    * The data is written to ``.<name>.<random>.tmp`` next to the target (one leading dot
      even for a hidden name), flushed and
      fsynced, then moved onto the target with :func:`os.replace`.
    * An existing file keeps its permission bits; a new file gets the usual
      ``0o666 & ~umask``.
    * If the target is a symlink, the file it points to is replaced (the link stays).
    * On any failure, including ``KeyboardInterrupt``, the temporary file is removed
      and the original file is left untouched; the exception propagates.

    Newlines are written exactly as given (bytes, no platform translation), so the
    file is byte-identical on every OS.
    """
    # realpath: replacing a symlink with a regular file would silently break the link.
    target = Path(os.path.realpath(os.fspath(path)))
    directory = target.parent
    directory.mkdir(parents=True, exist_ok=True)
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        mode = _default_file_mode()
    # Encode before creating anything so an unencodable string leaves no trace.
    data = text.encode("utf-8")

    # Not a with-block: the file must outlive this statement until it is renamed into place.
    tmp = tempfile.NamedTemporaryFile(  # noqa: SIM115
        dir=directory, delete=False, prefix=_temporary_prefix(target), suffix=".tmp"
    )
    tmp_name = tmp.name
    try:
        with tmp:
            tmp.write(data)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.chmod(tmp_name, mode)
        os.replace(tmp_name, target)
    except BaseException:
        # BaseException: a Ctrl-C between write and replace must not leave litter.
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    _fsync_directory(directory)


def lock_path(path: str | os.PathLike[str]) -> Path:
    """The companion lock file of ``path``: ``.<name>.lock`` in the same directory."""
    target = Path(os.path.realpath(os.fspath(path)))
    return target.with_name(f".{target.name.lstrip('.')}.lock")


def remove_stale_temporaries(path: str | os.PathLike[str], *, min_age: float = 0.0) -> list[Path]:
    """Remove temporary files a killed :func:`write_text_atomic` of ``path`` left behind.

    Safe while holding ``path``'s lock (as :func:`update_text_locked` does): then no other
    writer is between creating its temporary file and renaming it. Without the lock, give
    ``min_age`` (seconds since the file was last modified): a live write keeps its
    temporary file for milliseconds, so one older than a minute is a killed write's. Files
    that cannot be removed are left (the write that follows reports a real problem itself).
    """
    target = Path(os.path.realpath(os.fspath(path)))
    # Earlier releases named them ".<name>." even for a hidden name ("..name."): both go.
    prefixes = (_temporary_prefix(target), f".{target.name}.")
    removed: list[Path] = []
    try:
        candidates = list(target.parent.iterdir())
    except OSError:
        return removed
    now = time.time()
    for candidate in candidates:
        if candidate.name.startswith(prefixes) and candidate.name.endswith(".tmp"):
            with contextlib.suppress(OSError):
                if min_age and now - candidate.stat().st_mtime < min_age:
                    continue
                candidate.unlink()
                removed.append(candidate)
    return removed


def update_text_locked(
    path: str | os.PathLike[str],
    update: Callable[[str | None], str | None],
    *,
    timeout: float | None = None,
) -> bool:
    """Read–merge–replace ``path`` under its lock; returns whether the file was written.

    ``update`` receives the file's current text (None when it does not exist) and
    returns the new text, or None to leave the file as it is. It runs while the lock is
    held, so what it read is what it replaces. Stale temporary files of earlier, killed
    writes are removed first. Parent directories are created.

    Raises:
        FileLocked: another process held the lock for ``timeout`` seconds (default
            :data:`LOCK_TIMEOUT_S`).
        OSError: the lock, the file or its directory cannot be read or written.
        UnicodeDecodeError: the file is not UTF-8.
        Whatever ``update`` raises (the file is then left untouched).
    """
    from filelock import FileLock, Timeout

    target = Path(os.path.realpath(os.fspath(path)))
    target.parent.mkdir(parents=True, exist_ok=True)
    if timeout is None:
        timeout = LOCK_TIMEOUT_S
    lock = FileLock(lock_path(target), timeout=timeout)
    try:
        lock.acquire()
    except Timeout:
        raise FileLocked(
            f"another process has held {lock_path(target)} for more than {timeout:g}s"
        ) from None
    try:
        remove_stale_temporaries(target)
        try:
            current: str | None = target.read_text(encoding="utf-8")
        except FileNotFoundError:
            current = None
        new = update(current)
        if new is None:
            return False
        write_text_atomic(target, new)
        return True
    finally:
        lock.release()
