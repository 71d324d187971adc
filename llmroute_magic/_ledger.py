"""The usage ledger: one row per attempt, kept in compact columns, optionally persisted to SQLite.

Appending is O(1) and allocation-light (typed arrays, repeated strings stored once as codes),
so a million attempts fit in well under 300 MB and turn into a DataFrame in about a second.
pandas is imported only by ``to_frame``.

With a ``path`` the rows also go to SQLite (WAL) through a background writer that batches them,
so the event loop never waits on disk; a restarted kernel, or a second kernel on the same file,
sees every committed row. A file that cannot be used (corrupt, locked, read-only) gives one
clear warning and the ledger keeps working in memory.
"""

from __future__ import annotations

import logging
import math
import operator
import os
import sqlite3
import threading
import time
import warnings
from array import array
from typing import Any, Callable, Iterable

from ._errors import LedgerPersistenceWarning
from ._types import LEDGER_COLUMNS, AttemptRecord

log = logging.getLogger("llmroute_magic")

_TEXT_CODED = ("provider", "model", "strategy", "status", "error_type")

# Appends collect whole records and fold them into the columns this many at a time: one C-speed
# pass per column instead of sixteen Python-level appends per row (about 4x cheaper per attempt).
_FOLD_EVERY = 512
_NAN = (math.nan,)


class _Codes:
    """Strings stored once; rows keep small integer codes (-1 for None)."""

    __slots__ = ("values", "index")

    def __init__(self) -> None:
        self.values: list[str] = []
        self.index: dict[str, int] = {}

    def code(self, value: str | None) -> int:
        if value is None:
            return -1
        c = self.index.get(value)
        if c is None:
            c = self.index[value] = len(self.values)
            self.values.append(value)
        return c


class Ledger:
    def __init__(self, path: str | os.PathLike | None = None, *, flush_interval_s: float = 0.25) -> None:
        self._lock = threading.Lock()
        self._clear_columns()
        self._listeners: list[Callable[[AttemptRecord], None]] = []
        self._store: _SQLiteStore | None = None
        self.path = None if path is None else os.fspath(path)
        if self.path is not None:
            try:
                self._store = _SQLiteStore(self.path, flush_interval_s)
            except (sqlite3.Error, OSError) as e:
                self._persistence_failed(e)

    def _clear_columns(self) -> None:
        self._pending: list[AttemptRecord] = []  # appended, not yet folded into the columns
        self._request_id: list[str] = []
        self._attempt = array("i")
        self._timestamp = array("d")
        self._codes = {name: _Codes() for name in _TEXT_CODED}
        self._coded = {name: array("i") for name in _TEXT_CODED}
        self._http_status = array("i")
        self._input_tokens = array("q")
        self._output_tokens = array("q")
        self._cost = array("d")
        self._latency = array("d")
        self._ttft = array("d")
        self._streamed = array("b")

    # -- writing -----------------------------------------------------------------------------
    def append(self, r: AttemptRecord) -> None:
        # No lock to append: list.append is atomic, and _fold takes only what it copied, so a
        # record appended meanwhile stays pending. The lock serialises folds and reads.
        pending = self._pending
        pending.append(r)
        if len(pending) >= _FOLD_EVERY:
            with self._lock:
                self._fold()
        if self._store is not None:
            try:
                self._store.put(r)
            except (sqlite3.Error, OSError) as e:
                self._persistence_failed(e)
        for fn in self._listeners:
            try:
                fn(r)
            except Exception:  # a broken listener must not lose usage or fail a request
                log.exception("llmroute_magic: usage listener %r failed", fn)

    def _fold(self) -> None:
        """Move the pending records into the columns; the caller holds the lock."""
        pending = self._pending
        batch = pending[:]
        if not batch:
            return
        del pending[:len(batch)]
        try:
            converted = [self._convert(batch)]
        except (TypeError, ValueError, OverflowError):
            converted = []
            for r in batch:  # keep every good row; report the bad one
                try:
                    converted.append(self._convert([r]))
                except (TypeError, ValueError, OverflowError):
                    log.exception("llmroute_magic: malformed usage record %r not recorded", r)
        for request_ids, columns in converted:
            self._request_id.extend(request_ids)
            for column, values in columns:
                column.extend(values)

    def _convert(self, batch: list[AttemptRecord]) -> tuple[tuple[str, ...], list[tuple[array, array]]]:
        """The batch as typed arrays, paired with the column each extends. Converting everything
        before extending anything means a malformed record cannot leave the columns uneven.
        Every step is one C-level pass over a column; Python-level loops run only for the rare
        None in a numeric column."""
        n = len(batch)
        (request_id, attempt, timestamp, provider, model, strategy, status, error_type, http_status,
         input_tokens, output_tokens, cost, latency, ttft, streamed, _cache_read, _cache_write) = zip(*batch)
        if None in http_status:
            http_status = [-1 if s is None else s for s in http_status]
        if ttft.count(None) == n:
            ttft_column = array("d", _NAN) * n
        else:
            ttft_column = array("d", [math.nan if t is None else t for t in ttft])
        columns = [
            (self._attempt, array("i", attempt)),
            (self._timestamp, array("d", timestamp)),
            (self._http_status, array("i", http_status)),
            (self._input_tokens, array("q", input_tokens)),
            (self._output_tokens, array("q", output_tokens)),
            (self._cost, array("d", cost)),
            (self._latency, array("d", latency)),
            (self._ttft, ttft_column),
            (self._streamed, array("b", map(bool, streamed))),
        ]
        for name, values in (("provider", provider), ("model", model), ("strategy", strategy),
                             ("status", status), ("error_type", error_type)):
            codes = self._codes[name]
            distinct = dict.fromkeys(values)  # a handful of strings per batch, in order of first appearance
            for v in distinct:
                if v is not None and not isinstance(v, str):
                    raise TypeError(f"{name}: expected a string, got {type(v).__name__}")
                codes.code(v)
            if len(distinct) == 1:
                coded = array("i", (codes.code(values[0]),)) * n
            else:
                lookup = distinct
                for v in distinct:
                    lookup[v] = codes.code(v)
                coded = array("i", operator.itemgetter(*values)(lookup))
            columns.append((self._coded[name], coded))
        return request_id, columns

    def subscribe(self, fn: Callable[[AttemptRecord], None]) -> Callable[[], None]:
        self._listeners = [*self._listeners, fn]  # copy-on-write: append() iterates without a lock

        def unsubscribe() -> None:
            self._listeners = [f for f in self._listeners if f is not fn]

        return unsubscribe

    def clear(self) -> None:
        """Forget the in-memory rows (rows already persisted stay in the file)."""
        with self._lock:
            self._clear_columns()

    def __len__(self) -> int:
        return len(self._attempt) + len(self._pending)

    # -- reading -----------------------------------------------------------------------------
    def columns(self) -> dict[str, Any]:
        """A consistent snapshot of the in-memory rows as plain columns (no pandas needed)."""
        with self._lock:
            self._fold()
            snap = {
                "request_id": list(self._request_id),
                "attempt": array("i", self._attempt),
                "timestamp": array("d", self._timestamp),
                "http_status": array("i", self._http_status),
                "input_tokens": array("q", self._input_tokens),
                "output_tokens": array("q", self._output_tokens),
                "cost": array("d", self._cost),
                "latency_s": array("d", self._latency),
                "ttft_s": array("d", self._ttft),
                "streamed": array("b", self._streamed),
            }
            for name in _TEXT_CODED:
                snap[name] = (array("i", self._coded[name]), list(self._codes[name].values))
        return snap

    def records(self) -> Iterable[dict[str, Any]]:
        """Rows as dicts, decoded (for small ledgers and tests)."""
        cols = self.columns()
        for i in range(len(cols["attempt"])):
            row: dict[str, Any] = {}
            for name in LEDGER_COLUMNS:
                col = cols[name]
                if name in _TEXT_CODED:
                    codes, values = col
                    row[name] = values[codes[i]] if codes[i] >= 0 else None
                elif name == "http_status":
                    row[name] = None if col[i] < 0 else col[i]
                elif name == "ttft_s":
                    row[name] = None if math.isnan(col[i]) else col[i]
                elif name == "streamed":
                    row[name] = bool(col[i])
                else:
                    row[name] = col[i]
            yield row

    def to_frame(self):
        """The ledger as a pandas DataFrame, one row per attempt (all sessions' rows when persisted)."""
        if self._store is not None:
            try:
                return self._store.read_frame()
            except (sqlite3.Error, OSError) as e:
                self._persistence_failed(e)
        return frame_from_columns(self.columns())

    # -- persistence -------------------------------------------------------------------------
    def flush(self) -> None:
        if self._store is not None:
            try:
                self._store.flush()
            except (sqlite3.Error, OSError) as e:
                self._persistence_failed(e)

    def close(self) -> None:
        store, self._store = self._store, None
        if store is not None:
            try:
                store.close()
            except (sqlite3.Error, OSError) as e:
                self._persistence_failed(e)

    @property
    def persistent(self) -> bool:
        return self._store is not None

    def _persistence_failed(self, error: BaseException) -> None:
        store, self._store = self._store, None
        if store is not None:
            store.abandon()
        msg = (f"usage ledger file {self.path!r} cannot be used ({type(error).__name__}: {error}); "
               "usage is kept in memory only for this session. Fix or move the file, or set another ledger_path.")
        warnings.warn(msg, LedgerPersistenceWarning, stacklevel=3)
        log.warning(msg)


def frame_from_columns(cols: dict[str, Any]):
    import numpy as np
    import pandas as pd

    data: dict[str, Any] = {"request_id": _string_array(cols["request_id"])}
    data["attempt"] = np.frombuffer(cols["attempt"], dtype=np.int32).astype(np.int64)
    data["timestamp"] = utc_timestamps(np.frombuffer(cols["timestamp"], dtype=np.float64))
    for name in ("provider", "model", "strategy", "status", "error_type"):
        codes, values = cols[name]
        data[name] = pd.Categorical.from_codes(np.frombuffer(codes, dtype=np.int32), categories=values) \
            if values else pd.Categorical.from_codes(np.full(len(codes), -1, dtype=np.int32), categories=[])
    status = np.frombuffer(cols["http_status"], dtype=np.int32)
    data["http_status"] = pd.arrays.IntegerArray(status.astype(np.int64), status < 0)
    data["input_tokens"] = np.frombuffer(cols["input_tokens"], dtype=np.int64)
    data["output_tokens"] = np.frombuffer(cols["output_tokens"], dtype=np.int64)
    data["cost"] = np.frombuffer(cols["cost"], dtype=np.float64)
    data["latency_s"] = np.frombuffer(cols["latency_s"], dtype=np.float64)
    data["ttft_s"] = np.frombuffer(cols["ttft_s"], dtype=np.float64)
    data["streamed"] = np.frombuffer(cols["streamed"], dtype=np.int8).astype(bool)
    return pd.DataFrame({name: data[name] for name in LEDGER_COLUMNS}, copy=False)


def utc_timestamps(epoch_s):
    """Epoch seconds (float array) as tz-aware UTC timestamps, to the microsecond.

    Rounded, then cast: ``pd.to_datetime(unit="s")`` is ten times slower and keeps float noise
    (…00.000999928) that no clock behind these numbers had."""
    import numpy as np
    import pandas as pd

    micros = np.rint(np.asarray(epoch_s, dtype=np.float64) * 1e6).astype("int64").astype("datetime64[us]")
    return pd.DatetimeIndex(micros).tz_localize("UTC")


def _string_array(values: list[str]):
    """pandas' "string" array; through pyarrow directly when it is there (5x faster for 1M ids)."""
    import pandas as pd

    try:
        import pyarrow as pa

        return pd.arrays.ArrowStringArray(pa.array(values, type=pa.large_string()))
    except (ImportError, AttributeError, TypeError, ValueError):
        return pd.array(values, dtype="string")


_SCHEMA = """
CREATE TABLE IF NOT EXISTS attempts (
    request_id TEXT NOT NULL, attempt INTEGER NOT NULL, timestamp REAL NOT NULL,
    provider TEXT NOT NULL, model TEXT NOT NULL, strategy TEXT NOT NULL, status TEXT NOT NULL,
    error_type TEXT, http_status INTEGER, input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL,
    cost REAL, latency_s REAL NOT NULL, ttft_s REAL, streamed INTEGER NOT NULL
)
"""


class _SQLiteStore:
    """Batches rows to SQLite from a writer thread: the event loop only appends to a list."""

    def __init__(self, path: str, flush_interval_s: float) -> None:
        self.path = path
        self.flush_interval_s = flush_interval_s
        self._pending: list[tuple] = []
        self._cond = threading.Condition()
        self._closed = False
        self._failed: BaseException | None = None
        self._write_lock = threading.Lock()  # one connection: the writer thread and flush() take turns
        self._conn = self._connect()
        self._thread = threading.Thread(target=self._run, name="llmroute-ledger-writer", daemon=True)
        self._thread.start()

    def _connect(self) -> sqlite3.Connection:
        # Opening waits at most 2 s for a lock (a file held by another program must not freeze the
        # notebook cell that builds the router for long); the writer thread then waits up to 10 s,
        # long enough for another kernel's batch on the same file.
        conn = sqlite3.connect(self.path, timeout=2.0, check_same_thread=False, isolation_level=None)
        deadline = time.monotonic() + 2.0
        while True:
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute(_SCHEMA)
                conn.execute("SELECT count(*) FROM attempts").fetchone()  # fails now, not later, on a corrupt file
                conn.execute("PRAGMA busy_timeout=10000")
                return conn
            except sqlite3.OperationalError as e:
                # Two kernels creating the same new file at once: switching it to WAL answers
                # "locked" at once, without waiting on the busy timeout. Try again briefly.
                if "locked" in str(e) and time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                conn.close()
                raise
            except BaseException:
                conn.close()
                raise

    def put(self, r: AttemptRecord) -> None:
        if self._failed is not None:
            raise sqlite3.OperationalError(str(self._failed))
        row = (r.request_id, r.attempt, r.timestamp, r.provider, r.model, r.strategy, r.status, r.error_type,
               r.http_status, r.input_tokens, r.output_tokens, None if math.isnan(r.cost) else r.cost,
               r.latency_s, r.ttft_s, int(r.streamed))
        with self._cond:
            self._pending.append(row)
            if len(self._pending) >= 2000:
                self._cond.notify()

    def _take(self) -> list[tuple]:
        with self._cond:
            rows, self._pending = self._pending, []
        return rows

    def _write(self, rows: list[tuple]) -> None:
        if not rows:
            return
        with self._write_lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany("INSERT INTO attempts VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._closed:
                    self._cond.wait(self.flush_interval_s)
                closed = self._closed
            try:
                self._write(self._take())
            except (sqlite3.Error, OSError) as e:
                self._failed = e
                log.warning("llmroute_magic: writing the usage ledger to %r failed: %s", self.path, e)
                return
            if closed:
                return

    def flush(self) -> None:
        if self._failed is not None:
            raise sqlite3.OperationalError(str(self._failed))
        self._write(self._take())

    def read_frame(self):
        import pandas as pd

        self.flush()
        with self._write_lock:
            df = pd.read_sql_query("SELECT * FROM attempts ORDER BY timestamp, request_id, attempt", self._conn)
        df["timestamp"] = utc_timestamps(df["timestamp"].to_numpy(dtype="float64"))
        df["http_status"] = df["http_status"].astype("Int64")
        df["cost"] = df["cost"].astype(float)
        df["ttft_s"] = df["ttft_s"].astype(float)
        df["streamed"] = df["streamed"].astype(bool)
        for name in ("request_id",):
            df[name] = df[name].astype("string")
        for name in _TEXT_CODED:
            df[name] = df[name].astype("category")
        return df[list(LEDGER_COLUMNS)]

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout=10)
        try:
            self._write(self._take())
        finally:
            self._conn.close()

    def abandon(self) -> None:
        with self._cond:
            self._closed = True
            self._pending = []
            self._cond.notify()
        try:
            self._conn.close()
        except sqlite3.Error:
            pass
