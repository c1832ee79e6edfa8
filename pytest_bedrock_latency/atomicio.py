"""Atomic file replacement for files people review and commit (the stored baseline).

A reader (a concurrent pytest run, an editor, ``git diff``) must see either the complete
old file or the complete new one, never a truncated mix, and an interrupted write (Ctrl-C,
a full disk, a crash) must leave the old file as it was. The classic recipe does that:
write a temporary file in the *same directory* (so the final rename never crosses a file
system), flush and fsync it, then ``os.replace`` it onto the target, which is atomic on
POSIX and on Windows.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

__all__ = ["write_text_atomic"]


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


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Replace the file at ``path`` with ``text`` (UTF-8) atomically.

    * Parent directories are created.
    * The data is written to ``.<name>.<random>.tmp`` next to the target, flushed and
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
        dir=directory, delete=False, prefix=f".{target.name}.", suffix=".tmp"
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
