"""Blob labels kept in SQLite beside a local store's blobs.

containerd keeps labels in its metadata database, not in the content folder; a local
store of our own needs somewhere crash-safe to keep them. SQLite commits atomically
(a crash leaves the old labels or the new ones, never a torn file), and its file in the
content root is ignored by containerd. The database is created on the first write, so
reading a containerd content root leaves it untouched.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from layerdiff.errors import InvalidArgumentError, TargetError

#: containerd refuses labels whose key and value together exceed this many bytes.
MAX_LABEL_SIZE = 4096

_SCHEMA = """
CREATE TABLE IF NOT EXISTS labels (
    digest TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
    PRIMARY KEY (digest, key)
);
CREATE TABLE IF NOT EXISTS updated (digest TEXT PRIMARY KEY, at_ns INTEGER NOT NULL);
"""


def validate_labels(labels: Mapping[str, str]) -> None:
    """Refuse labels containerd would refuse: empty keys, or key+value over 4 KiB."""
    for key, value in labels.items():
        if not key:
            raise InvalidArgumentError("label key must not be empty")
        if len(key.encode()) + len(value.encode()) > MAX_LABEL_SIZE:
            raise InvalidArgumentError(
                f"label {key[:64]!r} is longer than {MAX_LABEL_SIZE} bytes (key and value)"
            )


class LabelDB:
    """Labels per digest, and when they last changed."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    def get(self, digest: str) -> tuple[dict[str, str], int | None]:
        """The blob's labels and the time (ns) they were last set, if ever."""
        with self._lock:
            conn = self._connect(create=False)
            if conn is None:
                return {}, None
            rows = conn.execute("SELECT key, value FROM labels WHERE digest = ?", (digest,))
            labels = dict(rows.fetchall())
            at = conn.execute("SELECT at_ns FROM updated WHERE digest = ?", (digest,)).fetchone()
        return labels, (at[0] if at else None)

    def replace(self, digest: str, labels: Mapping[str, str]) -> None:
        """Make ``labels`` the blob's whole label set, in one transaction."""
        validate_labels(labels)
        with self._lock:
            conn = self._connect(create=True)
            assert conn is not None
            try:
                with conn:
                    conn.execute("DELETE FROM labels WHERE digest = ?", (digest,))
                    conn.executemany(
                        "INSERT INTO labels (digest, key, value) VALUES (?, ?, ?)",
                        [(digest, k, v) for k, v in labels.items()],
                    )
                    conn.execute(
                        "INSERT OR REPLACE INTO updated (digest, at_ns) VALUES (?, ?)",
                        (digest, time.time_ns()),
                    )
            except sqlite3.Error as err:
                raise TargetError(f"cannot write labels to {self._path}: {err}") from None

    def forget(self, digest: str) -> None:
        """Drop everything known about a deleted blob."""
        with self._lock:
            conn = self._connect(create=False)
            if conn is None:
                return
            with conn:
                conn.execute("DELETE FROM labels WHERE digest = ?", (digest,))
                conn.execute("DELETE FROM updated WHERE digest = ?", (digest,))

    def close(self) -> None:
        """Close the database connection, if one was opened."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _connect(self, create: bool) -> sqlite3.Connection | None:
        if self._conn is not None:
            return self._conn
        if not create and not self._path.exists():
            return None
        try:
            conn = sqlite3.connect(self._path, timeout=30, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.executescript(_SCHEMA)
        except sqlite3.Error as err:
            raise TargetError(f"cannot open the label database {self._path}: {err}") from None
        self._conn = conn
        return conn
