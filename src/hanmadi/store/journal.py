"""The records journal: an append-only file of call records waiting for the database.

The Recorder keeps records in memory while the database answers. When a write fails, or memory holds more than
its bound, the records go here — one JSON line each, appended in order and fsynced — and the writer takes them
back from the file, oldest first, once the database is back. A record leaves the journal only after it is
committed; when the whole journal is written the file is emptied.

One file per server process (``journal-<instance>.jsonl`` in ``HANMADI_STORE_JOURNAL``), held under an exclusive
``flock`` while the process lives. At start-up a process *adopts* every journal in the directory that no live
process holds (one left by a crash or a kill -9): their records are copied to its own journal first, so they are
written before anything new. Writes are idempotent (``insert_call`` of the same stream is a no-op, ``upsert_turn``
replaces, ``finish_call`` updates), so a record written twice — committed, then the process died before the
journal said so — changes nothing.

All methods here are blocking file I/O: the Recorder calls them through ``asyncio.to_thread``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Final

from hanmadi.store.records import CallEnd, CallStart, TurnRecord

log = logging.getLogger(__name__)

Record = CallStart | TurnRecord | CallEnd

FORMAT_VERSION: Final = 1
_KINDS: Final[dict[str, type[Record]]] = {"start": CallStart, "turn": TurnRecord, "end": CallEnd}
_KIND_OF: Final = {cls: kind for kind, cls in _KINDS.items()}
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


class JournalError(ValueError):
    """A journal line that cannot be read back as a record."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One journaled record and the server instance that produced it (its calls' owner in ``instances``)."""

    record: Record
    instance_id: str


def _default(value: object) -> object:
    if isinstance(value, datetime):
        return {"$dt": value.isoformat()}
    return str(value)


def _hook(obj: dict[str, Any]) -> object:
    if len(obj) == 1 and "$dt" in obj:
        return datetime.fromisoformat(obj["$dt"])
    return obj


def encode(entry: Entry) -> bytes:
    """One journal line (JSON, newline-terminated)."""
    record = entry.record
    fields = {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}
    line = {"v": FORMAT_VERSION, "kind": _KIND_OF[type(record)], "instance": entry.instance_id, "record": fields}
    return json.dumps(line, ensure_ascii=False, default=_default).encode() + b"\n"


def decode(line: bytes) -> Entry:
    """The entry of one journal line; ``JournalError`` when it is torn, corrupt or of an unknown kind."""
    try:
        data = json.loads(line, object_hook=_hook)
        cls = _KINDS[data["kind"]]
        return Entry(cls(**data["record"]), str(data["instance"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise JournalError(f"unreadable journal line ({len(line)} bytes): {exc}") from exc


class Journal:
    """This process's journal file: append at the end, read from ``read_offset``, empty once all is written."""

    def __init__(self, directory: Path, instance_id: str) -> None:
        self.directory = directory
        self.path = directory / f"journal-{_UNSAFE.sub('_', instance_id)}.jsonl"
        self.rejected_path = directory / "rejected.jsonl"
        self.read_offset = 0
        self._file: IO[bytes] | None = None

    # --- lifecycle ------------------------------------------------------------------------------------------

    def open(self) -> int:
        """Create and lock this process's file; adopt orphaned journals. Returns how many records it holds."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a+b")  # held open (and locked) for the process's life
        fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        adopted = 0
        for other in sorted(self.directory.glob("journal-*.jsonl")):
            if other != self.path:
                adopted += self._adopt(other)
        if adopted:
            log.warning("store: adopted %d record(s) from journal(s) left by a stopped server", adopted)
        return self.count_unread()

    def close(self) -> None:
        """Release the file; remove it when nothing is left to write."""
        if self._file is None:
            return
        empty = self.size() <= self.read_offset
        if empty:
            self.path.unlink(missing_ok=True)
        fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
        self._file.close()
        self._file = None
        if empty:
            with contextlib.suppress(OSError):  # not empty: another server's journal or rejected records
                self.directory.rmdir()

    def _adopt(self, other: Path) -> int:
        """Copy the records of ``other`` if no live process holds it, then remove it; how many were copied."""
        with open(other, "rb") as source:
            try:
                fcntl.flock(source.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return 0  # a live server's journal
            lines = [line for line in source.read().splitlines(keepends=True) if line.strip()]
            if lines and not lines[-1].endswith(b"\n"):
                log.warning("store: a torn last line in %s (the record being written at the crash) skipped", other)
                lines.pop()
            self.append(lines)
            other.unlink()
            return len(lines)

    # --- appending and reading ------------------------------------------------------------------------------

    def append(self, lines: list[bytes]) -> int:
        """Append whole lines, flushed and fsynced; returns the file's size after."""
        assert self._file is not None
        if lines:
            self._file.seek(0, os.SEEK_END)
            self._file.write(b"".join(lines))
            self._file.flush()
            os.fsync(self._file.fileno())
        return self.size()

    def read(self, max_lines: int) -> list[tuple[bytes, int]]:
        """Up to ``max_lines`` whole lines from ``read_offset``, each with the offset just past it."""
        assert self._file is not None
        self._file.seek(self.read_offset)
        out: list[tuple[bytes, int]] = []
        offset = self.read_offset
        while len(out) < max_lines:
            line = self._file.readline()
            if not line.endswith(b"\n"):
                break
            offset += len(line)
            out.append((line, offset))
        return out

    def count_unread(self) -> int:
        """Lines from ``read_offset`` to the end."""
        assert self._file is not None
        self._file.seek(self.read_offset)
        return sum(1 for line in self._file if line.endswith(b"\n"))

    def empty(self) -> None:
        """Everything was written: truncate the file and start over."""
        assert self._file is not None
        self._file.truncate(0)
        self._file.flush()
        os.fsync(self._file.fileno())
        self.read_offset = 0

    def size(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def reject(self, line: bytes, reason: str) -> None:
        """Keep a record the database refused for good in ``rejected.jsonl`` (with why), so nothing vanishes."""
        entry = json.dumps({"reason": reason, "line": line.decode(errors="replace").rstrip("\n")}, ensure_ascii=False)
        with open(self.rejected_path, "ab") as f:
            f.write(entry.encode() + b"\n")
