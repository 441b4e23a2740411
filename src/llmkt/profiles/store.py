"""One SQLite file holds every generated profile and its embeddings.

Key = hash(dataset, user, history hash, prompt hash, model id, generation settings). Each profile is committed in
its own transaction the moment it is finished (WAL journal), so a crash, SIGKILL or Ctrl-C loses at most the
profiles still being written, and ``INSERT OR IGNORE`` on the primary key means a rerun never duplicates one.
Several worker processes may write at once (busy timeout).

Several *jobs* may share one store (two ``llmkt profiles generate`` on one machine, or several machines on a
shared file system that supports SQLite locking): before a profile is generated its key is leased for
``LEASE_SECONDS`` (renewed while the work goes on, by a heartbeat thread), so another process skips users that are in
flight instead of paying the LLM for them twice. A lease of a process that died simply expires.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from llmkt.errors import DataError

SCHEMA_VERSION = 1
#: how long a claimed user stays reserved without a heartbeat (the heartbeat renews it every quarter of that)
LEASE_SECONDS = 120.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS profiles (
    key TEXT PRIMARY KEY,
    dataset TEXT NOT NULL,
    user_id TEXT NOT NULL,
    history_hash TEXT NOT NULL,
    prompt_hash TEXT NOT NULL,
    model_id TEXT NOT NULL,
    settings_hash TEXT NOT NULL,
    split TEXT NOT NULL,
    cutoff_timestamp INTEGER NOT NULL,
    cutoff_order INTEGER NOT NULL,
    n_items INTEGER NOT NULL,
    history TEXT NOT NULL,
    text TEXT NOT NULL,
    calls INTEGER NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    seconds REAL NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 0,
    settings TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS profiles_job ON profiles (dataset, prompt_hash, model_id, settings_hash);
CREATE TABLE IF NOT EXISTS embeddings (
    profile_key TEXT NOT NULL REFERENCES profiles(key) ON DELETE CASCADE,
    encoder_id TEXT NOT NULL,
    dim INTEGER NOT NULL,
    vector BLOB NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (profile_key, encoder_id)
);
CREATE TABLE IF NOT EXISTS leases (key TEXT PRIMARY KEY, owner TEXT NOT NULL, expires REAL NOT NULL);
"""


def new_owner() -> str:
    """A lease owner id unique to this process and call: host, pid and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def owner_is_dead(owner: str) -> bool:
    """True when ``owner`` is a process of this host that no longer runs (its leases need not wait to expire:
    a rerun right after a crash or SIGKILL resumes at once). Owners on other hosts are never judged dead."""
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def profile_key(dataset: str, user_id: str, history_hash: str, prompt_hash: str, model_id: str,
                settings_hash: str) -> str:
    raw = "\x1f".join([dataset, user_id, history_hash, prompt_hash, model_id, settings_hash])
    return hashlib.sha256(raw.encode()).hexdigest()


@dataclass
class ProfileRecord:
    key: str
    dataset: str
    user_id: str  # JSON text of the external id
    history_hash: str
    prompt_hash: str
    model_id: str
    settings_hash: str
    split: str
    cutoff_timestamp: int
    cutoff_order: int
    n_items: int
    history: str  # JSON [[item_id, timestamp, order], ...]
    text: str
    calls: int
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    attempt: int
    settings: str
    created: float

    @property
    def external_user(self) -> Any:
        return json.loads(self.user_id)

    @property
    def history_keys(self) -> list[list[Any]]:
        return json.loads(self.history)


_FIELDS = list(ProfileRecord.__dataclass_fields__)


class ProfileStore:
    def __init__(self, path: str | Path, *, timeout: float = 60.0, create: bool = True):
        """Open (``create``: or make) the store at ``path``; readers pass ``create=False`` so that a mistyped
        path is an error instead of a new empty store."""
        self.path = Path(path)
        if not create and not self.path.exists():
            raise DataError(f"profile store {self.path} does not exist; run `llmkt profiles generate` with this "
                            "job first, or fix the job's `store` field.")
        if self.path.is_dir():
            raise DataError(f"profile store {self.path} is a folder; the job's `store` field must name a file "
                            "(e.g. profiles/{dataset}.sqlite).")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.conn = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.execute("PRAGMA foreign_keys=ON")
            self.conn.executescript(_SCHEMA)
            row = self.conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        except sqlite3.DatabaseError as e:
            raise DataError(f"profile store {self.path} is not a llmkt profile store (SQLite said: {e}); point the "
                            "job's `store` field at a .sqlite file written by `llmkt profiles generate`, or at a "
                            "new path.") from None
        if row is None:
            self.conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        elif int(row[0]) != SCHEMA_VERSION:
            raise DataError(f"profile store {self.path}: schema version {row[0]}, this llmkt reads "
                            f"{SCHEMA_VERSION}; use a new store file.")

    # -- profiles --------------------------------------------------------------------------------------------
    def add(self, rec: ProfileRecord, *, replace: bool = False) -> bool:
        """Store one profile in its own transaction. Returns False if the key was already there (not replaced)."""
        verb = "INSERT OR REPLACE" if replace else "INSERT OR IGNORE"
        cur = self.conn.execute(f"{verb} INTO profiles ({', '.join(_FIELDS)}) VALUES "
                                f"({', '.join('?' * len(_FIELDS))})", [getattr(rec, f) for f in _FIELDS])
        return cur.rowcount > 0

    def has(self, key: str) -> bool:
        return self.conn.execute("SELECT 1 FROM profiles WHERE key=?", (key,)).fetchone() is not None

    def existing(self, keys: list[str]) -> set[str]:
        out: set[str] = set()
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            q = f"SELECT key FROM profiles WHERE key IN ({','.join('?' * len(chunk))})"
            out.update(r[0] for r in self.conn.execute(q, chunk))
        return out

    def get(self, key: str) -> ProfileRecord | None:
        row = self.conn.execute(f"SELECT {', '.join(_FIELDS)} FROM profiles WHERE key=?", (key,)).fetchone()
        return ProfileRecord(*row) if row else None

    def records(self, *, dataset: str | None = None, prompt_hash: str | None = None, model_id: str | None = None,
                settings_hash: str | None = None, keys: list[str] | None = None) -> Iterator[ProfileRecord]:
        where, args = [], []
        for col, val in (("dataset", dataset), ("prompt_hash", prompt_hash), ("model_id", model_id),
                         ("settings_hash", settings_hash)):
            if val is not None:
                where.append(f"{col}=?")
                args.append(val)
        q = f"SELECT {', '.join(_FIELDS)} FROM profiles"
        if where:
            q += " WHERE " + " AND ".join(where)
        q += " ORDER BY created, key"
        wanted = set(keys) if keys is not None else None
        for row in self.conn.execute(q, args):
            rec = ProfileRecord(*row)
            if wanted is None or rec.key in wanted:
                yield rec

    def count(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM profiles").fetchone()[0])

    def jobs(self) -> list[dict[str, Any]]:
        """One row per (dataset, model, prompt, settings) with counts and token totals."""
        q = ("SELECT dataset, model_id, prompt_hash, settings_hash, COUNT(*), SUM(prompt_tokens), "
             "SUM(completion_tokens), SUM(seconds) FROM profiles GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4")
        cols = ["dataset", "model_id", "prompt_hash", "settings_hash", "profiles", "prompt_tokens",
                "completion_tokens", "seconds"]
        return [dict(zip(cols, r)) for r in self.conn.execute(q)]

    # -- leases: two processes never generate the same profile at once ----------------------------------------
    def claim(self, key: str, owner: str, ttl: float = LEASE_SECONDS, *, redo: bool = False) -> str:
        """Reserve ``key`` for ``owner``: ``"claimed"``, ``"done"`` (the profile is stored; with ``redo`` a stored
        profile does not count) or ``"busy"`` (another owner holds a lease that has not expired)."""
        now = time.time()
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            if not redo and self.has(key):
                self.conn.execute("ROLLBACK")
                return "done"
            row = self.conn.execute("SELECT owner, expires FROM leases WHERE key=?", (key,)).fetchone()
            if row is not None and row[0] != owner and row[1] > now and not owner_is_dead(row[0]):
                self.conn.execute("ROLLBACK")
                return "busy"
            self.conn.execute("INSERT OR REPLACE INTO leases VALUES (?, ?, ?)", (key, owner, now + ttl))
            self.conn.execute("COMMIT")
            return "claimed"
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise

    def release(self, key: str, owner: str) -> None:
        self.conn.execute("DELETE FROM leases WHERE key=? AND owner=?", (key, owner))

    def renew(self, owner: str, ttl: float = LEASE_SECONDS) -> int:
        """Extend every lease of ``owner``; returns how many."""
        return self.conn.execute("UPDATE leases SET expires=? WHERE owner=?", (time.time() + ttl, owner)).rowcount

    def leased(self, keys: list[str] | None = None) -> dict[str, str]:
        """Keys with a live lease, and their owners."""
        rows = self.conn.execute("SELECT key, owner FROM leases WHERE expires > ?", (time.time(),)).fetchall()
        wanted = set(keys) if keys is not None else None
        return {k: o for k, o in rows if wanted is None or k in wanted}

    # -- embeddings ------------------------------------------------------------------------------------------
    def add_embeddings(self, keys: list[str], encoder_id: str, vectors: np.ndarray) -> None:
        vectors = np.asarray(vectors, dtype=np.float32)
        now = time.time()
        rows = [(k, encoder_id, int(vectors.shape[1]), vectors[i].tobytes(), now) for i, k in enumerate(keys)]
        with self.conn:
            self.conn.execute("BEGIN")
            self.conn.executemany("INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?, ?, ?)", rows)

    def embeddings(self, keys: list[str], encoder_id: str) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            q = (f"SELECT profile_key, dim, vector FROM embeddings WHERE encoder_id=? AND profile_key IN "
                 f"({','.join('?' * len(chunk))})")
            for k, dim, blob in self.conn.execute(q, [encoder_id, *chunk]):
                out[k] = np.frombuffer(blob, dtype=np.float32, count=dim).copy()
        return out

    def encoders(self) -> list[tuple[str, int, int]]:
        return [tuple(r) for r in self.conn.execute(
            "SELECT encoder_id, dim, COUNT(*) FROM embeddings GROUP BY 1, 2 ORDER BY 1")]

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "ProfileStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


@dataclass
class MergeCounts:
    """What merging one source store did (``llmkt profiles merge``)."""

    source: str
    read: int = 0
    added: int = 0
    replaced: int = 0  # the source had a later attempt (a profile regenerated by --retry-flagged)
    duplicates: int = 0  # key already there, same text
    conflicts: int = 0  # key already there with another text at the same or a later attempt: the first one kept
    embeddings: int = 0


def merge_stores(target: str | Path, sources: list[str | Path]) -> list[MergeCounts]:
    """Merge profile stores (e.g. one per machine of a sharded job) into ``target``, exactly once by key.

    For a key present twice the record with the higher ``attempt`` wins (a regeneration), else the first one met
    (the target's, then the sources' in the given order); an embedding is copied when its profile's text is the
    one kept and the target has none for that encoder. Each source's profiles go in one transaction: a crash leaves
    the target as it was before that source. The sources' profiles are only read."""
    target = Path(target)
    resolved = {Path(p).resolve() for p in sources}
    if target.resolve() in resolved:
        raise DataError(f"profiles merge: the target {target} is also a source; merge into a new or another file.")
    for p in sources:
        if not Path(p).is_file():
            raise DataError(f"profiles merge: source store {p} does not exist.")
    out: list[MergeCounts] = []
    with ProfileStore(target) as dst:
        for path in sources:
            counts = MergeCounts(str(path))
            with _read_only(Path(path)) as src:
                with dst.conn:
                    dst.conn.execute("BEGIN")
                    for row in src.execute(f"SELECT {', '.join(_FIELDS)} FROM profiles ORDER BY created, key"):
                        rec = ProfileRecord(*row)
                        counts.read += 1
                        have = dst.get(rec.key)
                        if have is None:
                            dst.add(rec)
                            counts.added += 1
                        elif rec.attempt > have.attempt:
                            dst.add(rec, replace=True)
                            dst.conn.execute("DELETE FROM embeddings WHERE profile_key=?", (rec.key,))
                            counts.replaced += 1
                        elif rec.text == have.text:
                            counts.duplicates += 1
                        else:
                            counts.conflicts += 1
                    q = ("SELECT e.profile_key, e.encoder_id, e.dim, e.vector, e.created, p.text FROM embeddings e "
                         "JOIN profiles p ON p.key = e.profile_key")
                    for key, enc, dim, blob, created, text in src.execute(q):
                        kept = dst.conn.execute("SELECT text FROM profiles WHERE key=?", (key,)).fetchone()
                        if kept is None or kept[0] != text:
                            continue
                        cur = dst.conn.execute("INSERT OR IGNORE INTO embeddings VALUES (?, ?, ?, ?, ?)",
                                               (key, enc, dim, blob, created))
                        counts.embeddings += cur.rowcount
            out.append(counts)
    return out


class _read_only:
    """A source store opened read-only (``mode=ro``: nothing is written to it, not even the journal mode), its
    schema version checked; a context manager yielding the connection."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self) -> sqlite3.Connection:
        try:
            self.conn = sqlite3.connect(self.path.resolve().as_uri() + "?mode=ro", uri=True)
            row = self.conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        except sqlite3.DatabaseError as e:
            raise DataError(f"profiles merge: {self.path} is not a llmkt profile store (SQLite said: {e}).") from None
        if row is None or int(row[0]) != SCHEMA_VERSION:
            raise DataError(f"profiles merge: {self.path} has schema version {row[0] if row else None}, this llmkt "
                            f"reads {SCHEMA_VERSION}.")
        return self.conn

    def __exit__(self, *exc: Any) -> None:
        self.conn.close()


class LeaseKeeper:
    """A heartbeat thread that renews every lease of ``owner`` in the store at ``path`` every ``ttl / 4`` seconds
    (its own SQLite connection), and drops them when stopped. Use as a context manager around the work."""

    def __init__(self, path: str | Path, owner: str, ttl: float = LEASE_SECONDS):
        self.path, self.owner, self.ttl = Path(path), owner, ttl
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="llmkt-lease-keeper", daemon=True)

    def _run(self) -> None:
        conn = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
        try:
            while not self._stop.wait(self.ttl / 4):
                try:
                    conn.execute("UPDATE leases SET expires=? WHERE owner=?", (time.time() + self.ttl, self.owner))
                except sqlite3.Error:  # a busy store: try again at the next beat
                    pass
        finally:
            try:
                conn.execute("DELETE FROM leases WHERE owner=?", (self.owner,))
            except sqlite3.Error:
                pass
            conn.close()

    def __enter__(self) -> "LeaseKeeper":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
