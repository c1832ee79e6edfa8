"""The session's counts toward ``--bedrock-max-calls`` and ``--bedrock-max-cost``.

The caps are on the whole session, and under pytest-xdist a session is several processes
(the workers, and the controller for the pooled gates it draws). So the counts live in a
ledger: in memory for a single process (:class:`MemoryLedger`), or in one small JSON file
that every process of the session reads and replaces under its lock (:class:`FileLedger`,
through :func:`~.atomicio.update_text_locked`). Both apply a change atomically: the
check and the count of a reservation are one step, so no two processes (or threads) can
both take the last call under the cap.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .atomicio import update_text_locked

__all__ = ["Counts", "FileLedger", "Ledger", "LedgerError", "MemoryLedger"]

#: The file's name in the directory :meth:`FileLedger.create` makes.
FILE_NAME = "bedrock-caps.json"


class LedgerError(OSError):
    """The shared ledger file cannot be read (it is the plugin's own file, in a private
    temporary directory: something else changed it)."""


@dataclass(frozen=True)
class Counts:
    """What the session has used of its caps so far."""

    calls: int = 0  # invocations made or reserved (--bedrock-max-calls)
    spent_usd: float = 0.0  # dollars the completed calls cost (--bedrock-max-cost)
    reserved_usd: float = 0.0  # dollars reserved for gate pairs in flight
    cost_cap_passed: bool = False  # the "spend passed --bedrock-max-cost" warning was given

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, source: Path) -> Counts:
        try:
            data = json.loads(text)
            return cls(
                calls=int(data["calls"]),
                spent_usd=float(data["spent_usd"]),
                reserved_usd=float(data["reserved_usd"]),
                cost_cap_passed=bool(data["cost_cap_passed"]),
            )
        except (ValueError, TypeError, KeyError) as error:
            raise LedgerError(
                f"the session's cap ledger {source} is not the plugin's ({error}); "
                "rerun the session"
            ) from None


#: A change to the counts: the new counts, or None to leave them (a refused reservation).
Change = Callable[[Counts], "Counts | None"]


class Ledger(Protocol):
    """Where a session's counts live; every method is safe from any thread."""

    def read(self) -> Counts:
        """The counts as they are now."""
        ...

    def update(self, change: Change) -> bool:
        """Apply ``change`` atomically; whether it changed the counts (None leaves them)."""
        ...


class MemoryLedger:
    """The counts of a session that is one process."""

    def __init__(self) -> None:
        self._counts = Counts()
        self._lock = threading.Lock()

    def read(self) -> Counts:
        with self._lock:
            return self._counts

    def update(self, change: Change) -> bool:
        with self._lock:
            new = change(self._counts)
            if new is None:
                return False
            self._counts = new
            return True


class FileLedger:
    """The counts of a session of several processes, in a JSON file they share.

    Each update reads, changes and atomically replaces the file while holding its lock
    (an OS lock, released if its holder dies). A thread lock in front of it keeps the
    threads of one process (a gate's pairs in flight) from polling the file lock.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    @classmethod
    def create(cls) -> FileLedger:
        """A new ledger with zero counts, in a temporary directory of its own."""
        directory = Path(tempfile.mkdtemp(prefix="bedrock-caps-"))
        ledger = cls(directory / FILE_NAME)
        ledger.update(lambda counts: counts)
        return ledger

    def remove(self) -> None:
        """Remove the directory :meth:`create` made (the session is over)."""
        with contextlib.suppress(OSError):
            shutil.rmtree(self.path.parent)

    def _parse(self, text: str | None) -> Counts:
        return Counts() if text is None else Counts.from_json(text, self.path)

    def read(self) -> Counts:
        # No lock needed: the file is only ever replaced whole.
        try:
            text: str | None = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            text = None
        return self._parse(text)

    def update(self, change: Change) -> bool:
        def apply(text: str | None) -> str | None:
            new = change(self._parse(text))
            return None if new is None else new.to_json()

        with self._lock:
            return update_text_locked(self.path, apply)
