"""The usage ledger: one row per attempt, kept in compact columns, optionally persisted to SQLite.

In memory. Appending is O(1) and allocation-light (typed arrays, repeated strings stored once as
codes), so a million attempts fit in well under 300 MB and turn into a DataFrame in about a
second. pandas is imported only when a DataFrame is asked for. Tokens the provider did not
report are stored as unknown (NA in the frame), never as 0.

Views. ``reset_view()`` starts a new view: ``to_frame()`` (and so the stats, plots and panel)
shows the rows appended from then on, while every row is kept: ``to_frame(all=True)`` shows them
all, and ``records()`` still lists every row this process appended. Nothing is ever dropped, so
a reset racing an append cannot lose it, and an in-memory ledger behaves as a persistent one.
``rows_since(cursor)`` gives a live display only the rows added since its last look.

On disk (``path``). Rows go to SQLite (WAL) from a writer thread, so the event loop never waits
on disk. The writer commits as soon as rows are queued, all that are queued in one transaction
(group commit): a killed process loses at most the rows of the commit under way. Each commit
writes the rows to the ``attempts`` table (one SQL row per attempt, for anyone who queries the
file) and, in the same transaction, the same rows as one columnar batch to ``attempt_batches``,
which is what the ledger reads: a million rows come back in well under a second instead of the
four seconds it takes SQLite to hand over seventeen million values one by one. Small batches are
merged as they accumulate. ``attempts.rowid`` is each row's place in the file (the batches cover
ranges of it), so a reader can ask for the rows after the last one it saw. Two kernels may write
to one file at once. A file that cannot be used (corrupt, locked, read-only) gives one clear
warning and the ledger keeps working in memory. Rows written by the first release (no batches)
are still read, row by row. Columns added later (``conversation``) are added to an older file's
row table when it is opened; its batches are read as they are, the missing column as unknown.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import operator
import os
import sqlite3
import struct
import sys
import threading
import time
import warnings
from array import array
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from ._errors import LedgerPersistenceWarning
from ._types import LEDGER_COLUMNS, AttemptRecord

log = logging.getLogger("llmroute_magic")

# Text columns: kept as small integer codes into a table of their strings (in memory and in the
# file's batches), as TEXT in the file's row table. Every part of the ledger reads this one list:
# a new text column is one more name here (and a field of AttemptRecord). Opening an older file
# adds its row-table column (ALTER TABLE), batches name their columns, and a batch written before
# a column existed reads as None there. DESIGN 10's tag_<key> columns are meant to join the same way.
_TEXT_CODED = ("provider", "model", "strategy", "status", "error_type", "conversation")
_FIELD = {name: i for i, name in enumerate(LEDGER_COLUMNS)}  # a column's place in a record (its fields, in order)

# Appends collect whole records and fold them into the columns this many at a time: one C-speed
# pass per column instead of seventeen Python-level appends per row (about 4x cheaper per attempt).
_FOLD_EVERY = 512
_NAN = (math.nan,)

# Numeric columns: name, array typecode, and the value that stands for "unknown" (None).
_NUMERIC = (
    ("attempt", "i"),
    ("timestamp", "d"),
    ("http_status", "i"),
    ("input_tokens", "i"),
    ("output_tokens", "i"),
    ("cost", "d"),
    ("latency_s", "d"),
    ("ttft_s", "d"),
    ("streamed", "b"),
    ("cache_read_tokens", "i"),
    ("cache_write_tokens", "i"),
)  # tokens of one attempt fit in 32 bits (2 billion); the DataFrame widens them to int64
_NULLABLE_INT = ("http_status", "input_tokens", "output_tokens")  # -1 stands for None


class _Codes:
    """Strings stored once; rows keep small integer codes (-1 for None)."""

    __slots__ = ("values", "index")

    def __init__(self) -> None:
        self.values: list[str] = []
        self.index: dict[str | None, int] = {None: -1}

    def code(self, value: str | None) -> int:
        c = self.index.get(value)
        if c is None:
            c = self.index[value] = len(self.values)
            self.values.append(value)  # type: ignore[arg-type]  # None is in the index from the start
        return c

    def column(self, values: tuple, name: str) -> array:
        """A batch of strings as an array of codes: one dict lookup per row, none for a batch of
        one value throughout (strategy, most statuses), which is counted instead."""
        first = values[0]
        if values.count(first) == len(values):
            return array("i", (self._checked(first, name),)) * len(values)
        try:
            return _packed("i", operator.itemgetter(*values)(self.index))
        except KeyError:  # a string not seen before: register the batch's new ones, then look up
            for v in dict.fromkeys(values):
                self._checked(v, name)
            return _packed("i", operator.itemgetter(*values)(self.index))

    def _checked(self, value: Any, name: str) -> int:
        if value is not None and not isinstance(value, str):
            raise TypeError(f"{name}: expected a string, got {type(value).__name__}")
        return self.code(value)


class _Column:
    """A typed column in fixed-size blocks, each filled in place. One growing array per column
    copied itself on every resize (arrays grow by a sixteenth, and a dozen of them take turns to
    outgrow their place in the heap): a third of the time of recording a million attempts."""

    __slots__ = ("typecode", "blocks", "size")

    BLOCK = 1 << 16  # rows: at most one partly filled block per column is allocated ahead

    def __init__(self, typecode: str) -> None:
        self.typecode = typecode
        self.blocks: list[array] = []
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def extend(self, values: array) -> None:
        done, n = 0, len(values)
        while done < n:
            at = self.size % self.BLOCK
            if at == 0:
                self.blocks.append(array(self.typecode, bytes(self.BLOCK * values.itemsize)))
            take = min(n - done, self.BLOCK - at)
            self.blocks[-1][at : at + take] = values[done : done + take] if take < n else values
            self.size += take
            done += take

    def since(self, start: int) -> array:
        """The rows from ``start`` on as one array (a copy: later appends do not show in it),
        written into place: no transient second copy of a million rows."""
        block, start = self.BLOCK, min(start, self.size)
        column = array(self.typecode, (0,)) * (self.size - start)
        into = memoryview(column).cast("B")
        at = 0
        for k in range(start // block, len(self.blocks)):
            part = memoryview(self.blocks[k])[max(start - k * block, 0) : self.size - k * block].cast("B")
            into[at : at + len(part)] = part
            at += len(part)
        return column

    def last(self) -> int | float:
        return self.blocks[-1][(self.size - 1) % self.BLOCK]

    def truncate(self, size: int) -> None:
        """Keep the first ``size`` rows (the benchmark's probe of appending at a million)."""
        del self.blocks[-(-size // self.BLOCK) :]
        self.size = min(self.size, size)


def _coded(values: tuple, code: Callable[[Any], int], name: str) -> array:
    """A column of strings as an array of codes given by ``code`` (the file's table of names)."""
    distinct = dict.fromkeys(values, 0)
    for v in distinct:
        if v is not None and not isinstance(v, str):
            raise TypeError(f"{name}: expected a string, got {type(v).__name__}")
        distinct[v] = code(v)
    return (
        _packed("i", operator.itemgetter(*values)(distinct))
        if len(distinct) > 1
        else array("i", distinct.values()) * len(values)
    )


def _packed(code: str, values: tuple) -> array:
    """``array(code, values)`` three times faster: struct converts each item with one C call
    where array() parses an argument format per item, and a million rows have a dozen columns.
    A value of the wrong type raises TypeError, as array() does."""
    try:
        packed = struct.pack(f"@{len(values)}{'?' if code == 'b' else code}", *values)
    except struct.error as e:
        raise TypeError(str(e)) from None
    column = array(code)
    column.frombytes(packed)
    return column


def _numeric(batch: list[AttemptRecord]) -> tuple[tuple, dict[str, array]]:
    """The batch's numeric columns as typed arrays (None as -1 or NaN), and its raw columns.
    Every step is one C-level pass; Python-level loops run only for the rare None."""
    cols = tuple(zip(*batch))
    n = len(batch)
    f = _FIELD
    attempt, timestamp, http_status = cols[f["attempt"]], cols[f["timestamp"]], cols[f["http_status"]]
    input_tokens, output_tokens, cost = cols[f["input_tokens"]], cols[f["output_tokens"]], cols[f["cost"]]
    latency, ttft, streamed = cols[f["latency_s"]], cols[f["ttft_s"]], cols[f["streamed"]]
    cache_read, cache_write = cols[f["cache_read_tokens"]], cols[f["cache_write_tokens"]]
    if ttft.count(None) == n:
        ttft_column = array("d", _NAN) * n
    else:
        ttft_column = _typed("d", ttft, math.nan)
    numeric = {
        "attempt": _packed("i", attempt),
        "timestamp": _packed("d", timestamp),
        "http_status": _typed("i", http_status, -1),
        "input_tokens": _typed("i", input_tokens, -1),
        "output_tokens": _typed("i", output_tokens, -1),
        "cost": _typed("d", cost, math.nan),
        "latency_s": _packed("d", latency),
        "ttft_s": ttft_column,
        "streamed": _mostly_one("b", streamed),  # any truthy value is True, as bool() has it
        "cache_read_tokens": _mostly_one("i", cache_read),
        "cache_write_tokens": _mostly_one("i", cache_write),
    }
    return cols, numeric


def _mostly_one(code: str, values: tuple) -> array:
    """A column that is usually one value throughout a batch (no prompt cache, all streamed or
    none): counting it is a third of the cost of converting it."""
    first = values[0]
    if values.count(first) == len(values) and type(first) in (int, bool):
        return _packed(code, (first,)) * len(values)
    return _packed(code, values)


def _typed(code: str, values: tuple, none: float | int) -> array:
    """A column that may hold None (unknown): one C-level pass, a second only when it does."""
    try:
        return _packed(code, values)
    except TypeError:
        if None not in values:
            raise
        return _packed(code, tuple(none if v is None else v for v in values))


@dataclasses.dataclass(frozen=True)
class LedgerCursor:
    """Where a reader of ``rows_since`` left off. ``restart`` is True when the rows that came with
    it are a whole view (the first look, or the view was reset since): drop what you had."""

    source: str  # "memory" or the ledger file's path
    view: int  # the view generation: bumped by every reset_view()
    position: int  # in memory: rows seen; in a file: the last rowid seen
    restart: bool = False


class Ledger:
    """The attempts of one router. ``append`` is the listener the router calls once per finished
    attempt: fast, thread-safe, never raising into the caller."""

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self._lock = threading.Lock()  # serialises folds, reads and view changes
        self._pending: list[AttemptRecord] = []  # appended, not yet folded into the columns
        # Request ids as UTF-8 bytes end to end, with offsets (Arrow's layout): 20 bytes an id
        # instead of ~70 for a list of str, and the DataFrame's string column is made without copying.
        self._rid_data = bytearray()
        self._rid_off = _Column("q")
        self._rid_off.extend(array("q", (0,)))
        self._codes = {name: _Codes() for name in _TEXT_CODED}
        self._coded = {name: _Column("i") for name in _TEXT_CODED}
        self._num = {name: _Column(code) for name, code in _NUMERIC}
        self._view = 0  # generation of the view, for cursors
        self._view_start = 0  # in memory: the first row of the view
        self._view_seq = 0  # in the file: the last rowid before the view
        self._store: _SQLiteStore | None = None
        self._told = False  # the file's failure was reported
        self.path = None if path is None else os.fspath(path)
        if self.path is not None:
            try:
                self._store = _SQLiteStore(self.path)
            except (sqlite3.Error, OSError) as e:
                self._persistence_failed(e)

    # -- writing -----------------------------------------------------------------------------
    def append(self, r: AttemptRecord) -> None:
        """Record one finished attempt. Never raises: usage must not fail a request."""
        # No lock to append: list.append is atomic, and _fold takes only what it copied, so a
        # record appended meanwhile stays pending. The lock serialises folds and reads.
        pending = self._pending
        pending.append(r)
        if len(pending) >= _FOLD_EVERY:
            with self._lock:
                self._fold()
        store = self._store  # read once: close() or a failure may clear it meanwhile
        if store is not None:
            try:
                store.put(r)
            except (sqlite3.Error, OSError) as e:
                self._persistence_failed(e)
            except Exception:  # the row is in memory; the file is the only thing that missed it
                log.exception("llmroute_magic: usage row not written to %r", self.path)

    def _fold(self) -> None:
        """Move the pending records into the columns; the caller holds the lock."""
        pending = self._pending
        batch = pending[:]
        if not batch:
            return
        del pending[: len(batch)]
        try:
            converted = [self._convert(batch)]
        except (TypeError, ValueError, OverflowError):
            converted = []
            for r in batch:  # keep every good row; report the bad one
                try:
                    converted.append(self._convert([r]))
                except (TypeError, ValueError, OverflowError):
                    log.exception("llmroute_magic: malformed usage record %r not recorded", r)
        for (data, lengths), numeric, coded in converted:
            self._rid_off.extend(_packed("q", tuple(itertools.accumulate(lengths, initial=self._rid_off.last()))[1:]))
            self._rid_data += data
            for name, values in numeric.items():
                self._num[name].extend(values)
            for name, values in coded.items():
                self._coded[name].extend(values)

    def _convert(self, batch: list[AttemptRecord]) -> tuple[tuple, dict[str, array], dict[str, array]]:
        """The batch as typed arrays. Converting everything before extending anything means a
        malformed record cannot leave the columns uneven."""
        cols, numeric = _numeric(batch)
        request_ids = cols[0]
        joined = "".join(request_ids)  # TypeError unless every id is a str
        data = joined.encode()
        # ASCII (ours always are): lengths in characters are lengths in bytes
        lengths = (
            tuple(map(len, request_ids)) if len(data) == len(joined) else tuple(len(r.encode()) for r in request_ids)
        )
        coded = {name: self._codes[name].column(cols[_FIELD[name]], name) for name in _TEXT_CODED}
        return (data, lengths), numeric, coded

    # -- views -------------------------------------------------------------------------------
    def reset_view(self) -> None:
        """Start a new view: from now on ``to_frame()`` shows the rows appended after this call
        (a persistent file keeps every row; ``to_frame(all=True)`` shows them all)."""
        store = self._store
        seq = None
        if store is not None:
            try:
                store.flush()  # this process's queued rows belong before the mark
                seq = store.last_seq()
            except (sqlite3.Error, OSError) as e:
                self._persistence_failed(e)
        with self._lock:
            self._fold()
            self._view_start = len(self._num["attempt"])
            if seq is not None:
                self._view_seq = seq
            self._view += 1

    def clear(self) -> None:
        """The first release's reset: now starts a new view (``reset_view``), dropping nothing."""
        self.reset_view()

    def __len__(self) -> int:
        return len(self._num["attempt"]) + len(self._pending)

    # -- reading -----------------------------------------------------------------------------
    def columns(self, start: int = 0) -> dict[str, Any]:
        """A consistent snapshot of the in-memory rows from ``start`` on, as plain columns
        (typed arrays; text as (codes, values)); no pandas needed."""
        with self._lock:
            self._fold()
            snap: dict[str, Any] = {"request_id": (self._rid_off.since(start), bytes(self._rid_data))}
            for name, column in self._num.items():
                snap[name] = column.since(start)
            for name in _TEXT_CODED:
                snap[name] = (self._coded[name].since(start), list(self._codes[name].values))
        return snap

    def records(self, *, view: bool = False) -> Iterator[dict[str, Any]]:
        """Every row this process appended, as dicts (``view=True``: from the last reset on).
        Unknown values are None. For small ledgers and tests."""
        with self._lock:
            start = self._view_start if view else 0
        cols = self.columns(start)
        offsets, data = cols["request_id"]
        for i in range(len(cols["attempt"])):
            row: dict[str, Any] = {"request_id": data[offsets[i] : offsets[i + 1]].decode()}
            for name in LEDGER_COLUMNS[1:]:
                col = cols[name]
                if name in _TEXT_CODED:
                    codes, values = col
                    row[name] = values[codes[i]] if codes[i] >= 0 else None
                elif name in _NULLABLE_INT:
                    row[name] = None if col[i] < 0 else col[i]
                elif name == "ttft_s":
                    row[name] = None if math.isnan(col[i]) else col[i]
                elif name == "streamed":
                    row[name] = bool(col[i])
                else:
                    row[name] = col[i]
            yield row

    def to_frame(self, *, all: bool = False, since: Any = None):  # noqa: A002 - the public spelling
        """The ledger as a pandas DataFrame, one row per attempt, oldest first.

        By default the rows from the last ``reset_view()`` on; ``all=True``: every row (a
        persistent ledger: the whole file, earlier sessions, resets and other kernels included).
        ``since`` (a datetime, pandas Timestamp, ISO string or epoch seconds; naive means UTC)
        keeps the rows whose ``timestamp`` is at or after it."""
        lower = _epoch(since)
        store = self._store
        if store is not None:
            try:
                cols, _ = store.read(0 if all else self._view_seq, lower)
                return frame_from_columns(cols)
            except (sqlite3.Error, OSError) as e:
                self._persistence_failed(e)
        with self._lock:
            start = 0 if all else self._view_start
        return frame_from_columns(self.columns(start), since=lower)

    def rows_since(self, cursor: LedgerCursor | None = None):
        """The rows added since ``cursor`` (None: the whole current view) as a DataFrame, and the
        cursor to pass next time. Reads only the new rows, also from a file of a million.
        When the view was reset since (or the ledger fell back from its file to memory), the
        frame holds the whole new view and the returned cursor says ``restart=True``."""
        store = self._store
        with self._lock:
            view, view_start, view_seq = self._view, self._view_start, self._view_seq
        if store is not None:
            try:
                fresh = cursor is None or cursor.source != store.path or cursor.view != view
                after = view_seq if fresh else max(cursor.position, view_seq)  # type: ignore[union-attr]
                cols, last = store.read(after, None)
                return frame_from_columns(cols), LedgerCursor(store.path, view, max(last, after), fresh)
            except (sqlite3.Error, OSError) as e:
                self._persistence_failed(e)
        fresh = cursor is None or cursor.source != "memory" or cursor.view != view
        start = view_start if fresh else max(cursor.position, view_start)  # type: ignore[union-attr]
        cols = self.columns(start)
        return frame_from_columns(cols), LedgerCursor("memory", view, start + len(cols["attempt"]), fresh)

    # -- persistence -------------------------------------------------------------------------
    def flush(self) -> None:
        """Wait until every row appended so far is committed to the file."""
        store = self._store
        if store is not None:
            try:
                store.flush()
            except (sqlite3.Error, OSError) as e:
                self._persistence_failed(e)

    def close(self) -> None:
        """Commit what is queued and stop the writer. A row appended afterwards (a request that
        ends while the router closes) is still kept in memory and written to the file."""
        store = self._store
        if store is not None:
            try:
                store.close()
            except (sqlite3.Error, OSError) as e:
                self._persistence_failed(e)

    @property
    def persistent(self) -> bool:
        return self._store is not None

    def _persistence_failed(self, error: BaseException) -> None:
        with self._lock:
            store, self._store = self._store, None
            told, self._told = self._told, True
        if store is not None:
            store.abandon()
        if told:
            return  # one warning per ledger
        msg = (
            f"usage ledger file {self.path!r} cannot be used ({type(error).__name__}: {error}); "
            "usage is kept in memory only for this session. Fix or move the file, or set another ledger_path."
        )
        # a warning only: a log record as well reached the console twice (logging's last resort)
        warnings.warn(msg, LedgerPersistenceWarning, stacklevel=3)


def _epoch(since: Any) -> float | None:
    """A lower bound on ``timestamp`` as epoch seconds (naive datetimes and strings are UTC)."""
    if since is None:
        return None
    if isinstance(since, (int, float)) and not isinstance(since, bool):
        return float(since)
    if isinstance(since, str):
        since = datetime.fromisoformat(since.replace("Z", "+00:00"))
    if hasattr(since, "to_pydatetime"):  # a pandas Timestamp
        since = since.to_pydatetime(warn=False)
    if isinstance(since, datetime):
        if since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        return since.timestamp()
    raise TypeError(f"since: expected a datetime, an ISO date string or epoch seconds, got {since!r}")


# -- DataFrames --------------------------------------------------------------------------------


def frame_from_columns(cols: dict[str, Any], *, since: float | None = None):
    """Columns (typed arrays or numpy arrays; text as (codes, values); request ids as a list or
    a pyarrow array) as the ledger's DataFrame."""
    import numpy as np
    import pandas as pd

    keep = None
    if since is not None:
        keep = _np(cols["timestamp"], np.float64) >= since
        if keep.all():
            keep = None
    take = (lambda a: a) if keep is None else (lambda a: a[keep])

    data: dict[str, Any] = {}
    rid = cols["request_id"]
    if isinstance(rid, tuple):  # (offsets, UTF-8 bytes), as the in-memory ledger keeps them
        rid = _ids([(_np(rid[0]), rid[1])])
    data["request_id"] = _string_array(rid if keep is None else _filter_ids(rid, keep))
    data["attempt"] = take(_np(cols["attempt"], np.int64))
    data["timestamp"] = utc_timestamps(take(_np(cols["timestamp"], np.float64)))
    for name in _TEXT_CODED:
        codes, values = cols[name]
        codes = take(_np(codes, np.int32))
        data[name] = _categorical(codes, values)
    status = take(_np(cols["http_status"], np.int64))
    data["http_status"] = pd.arrays.IntegerArray(status, status < 0)
    for name in ("input_tokens", "output_tokens"):
        tokens = take(_np(cols[name], np.int64))
        data[name] = pd.arrays.IntegerArray(tokens, tokens < 0)
    for name in ("cost", "latency_s", "ttft_s"):
        data[name] = take(_np(cols[name], np.float64))
    data["streamed"] = take(_np(cols["streamed"])).astype(bool)
    for name in ("cache_read_tokens", "cache_write_tokens"):
        data[name] = take(_np(cols[name], np.int64))
    return pd.DataFrame({name: data[name] for name in LEDGER_COLUMNS}, copy=False)


def _np(values: Any, dtype=None):
    """A typed array (``array.array``: no copy) or a numpy array, as numpy, cast to ``dtype``."""
    import numpy as np

    if not isinstance(values, np.ndarray):
        values = np.frombuffer(values, dtype=values.typecode) if len(values) else np.empty(0, dtype=values.typecode)
    return values if dtype is None else values.astype(dtype, copy=False)


def _categorical(codes, values: list[str]):
    """Codes into ``values`` (-1: None) as a Categorical holding only the values in use."""
    import numpy as np
    import pandas as pd

    if not values or not len(codes):
        return pd.Categorical.from_codes(np.full(len(codes), -1, dtype=np.int32), categories=[])
    used = np.bincount(codes + 1, minlength=len(values) + 1)[1:] > 0
    if used.all():
        return pd.Categorical.from_codes(codes, categories=values)
    remap = np.full(len(values) + 1, -1, dtype=np.int32)  # index 0: code -1 stays -1
    remap[1:][used] = np.arange(int(used.sum()), dtype=np.int32)
    kept = [v for v, u in zip(values, used) if u]
    return pd.Categorical.from_codes(remap[codes + 1], categories=kept)


def utc_timestamps(epoch_s):
    """Epoch seconds (float array) as tz-aware UTC timestamps, to the microsecond.

    Rounded, then cast: ``pd.to_datetime(unit="s")`` is ten times slower and keeps float noise
    (…00.000999928) that no clock behind these numbers had."""
    import numpy as np
    import pandas as pd

    micros = np.rint(np.asarray(epoch_s, dtype=np.float64) * 1e6).astype("int64").astype("datetime64[us]")
    return pd.DatetimeIndex(micros).tz_localize("UTC")


def _string_array(values: Any):
    """pandas' "string" array; through pyarrow directly when it is there (5x faster for 1M ids)."""
    import pandas as pd

    try:
        import pyarrow as pa

        if not isinstance(values, (pa.Array, pa.ChunkedArray)):
            values = pa.array(values, type=pa.large_string())
        return pd.arrays.ArrowStringArray(values)
    except (ImportError, AttributeError, TypeError, ValueError):
        return pd.array(list(values), dtype="string")


# -- the SQLite file ---------------------------------------------------------------------------

# The row table: one SQL row per attempt with every column of the ledger, for anyone who queries
# the file. Text columns added after the first release are nullable TEXT, added to an older file
# by ALTER TABLE when it is opened.
_ROW_TYPES = {
    "request_id": "TEXT NOT NULL",
    "attempt": "INTEGER NOT NULL",
    "timestamp": "REAL NOT NULL",
    "provider": "TEXT NOT NULL",
    "model": "TEXT NOT NULL",
    "strategy": "TEXT NOT NULL",
    "status": "TEXT NOT NULL",
    "error_type": "TEXT",
    "http_status": "INTEGER",
    "input_tokens": "INTEGER",
    "output_tokens": "INTEGER",
    "cost": "REAL",
    "latency_s": "REAL NOT NULL",
    "ttft_s": "REAL",
    "streamed": "INTEGER NOT NULL",
    "cache_read_tokens": "INTEGER NOT NULL DEFAULT 0",
    "cache_write_tokens": "INTEGER NOT NULL DEFAULT 0",
    **{name: "TEXT" for name in _TEXT_CODED[5:]},
}
_ROW_COLUMNS = ", ".join(f"{name} {_ROW_TYPES[name]}" for name in LEDGER_COLUMNS)
_SCHEMA = (
    f"CREATE TABLE IF NOT EXISTS attempts ({_ROW_COLUMNS})",
    # One row per batch of attempts: their rowids first_seq..last_seq in `attempts`, as columns.
    "CREATE TABLE IF NOT EXISTS attempt_batches (first_seq INTEGER PRIMARY KEY, last_seq INTEGER NOT NULL, "
    "n INTEGER NOT NULL, min_ts REAL NOT NULL, max_ts REAL NOT NULL, data BLOB NOT NULL)",
    # The strings of the batches' coded columns (provider, model, ...): ids never change.
    "CREATE TABLE IF NOT EXISTS attempt_names (id INTEGER PRIMARY KEY, value TEXT NOT NULL UNIQUE)",
)
_INSERT = (
    f"INSERT INTO attempts (rowid, {', '.join(LEDGER_COLUMNS)}) VALUES ({', '.join('?' * (len(LEDGER_COLUMNS) + 1))})"
)
_SELECT_ROWS = f"SELECT rowid, {', '.join(LEDGER_COLUMNS)} FROM attempts WHERE rowid BETWEEN ? AND ? ORDER BY rowid"
_COST, _STREAMED = _FIELD["cost"], _FIELD["streamed"]


def _sql_row(rowid: int, r: AttemptRecord) -> tuple:
    """A record as the row table's values: NaN cost as NULL, streamed as 0/1."""
    values = list(r)
    cost = values[_COST]
    if cost is None or math.isnan(cost):  # type: ignore[arg-type]  # the cost field
        values[_COST] = None
    values[_STREAMED] = int(bool(values[_STREAMED]))
    return (rowid, *values)


# A batch: b"LRB2", n (uint32), the number of columns (uint16) and, for each, its typecode (1 byte)
# and name (1-byte length, UTF-8); then one column after another (little-endian), then the request
# ids' UTF-8 bytes. Columns can be concatenated batch by batch, which is all a merge does. A column
# a batch lacks (it was written before the column existed) reads as unknown. b"LRB1" batches (the
# release before the conversation column) hold the columns of _BATCH_COLUMNS_V1, with no header.
_MAGIC = b"LRB2"
_MAGIC_V1 = b"LRB1"
_BATCH_COLUMNS_V1 = (
    ("attempt", "i"),
    ("timestamp", "d"),
    ("provider", "i"),
    ("model", "i"),
    ("strategy", "i"),
    ("status", "i"),
    ("error_type", "i"),
    ("http_status", "i"),
    ("input_tokens", "i"),
    ("output_tokens", "i"),
    ("cost", "d"),
    ("latency_s", "d"),
    ("ttft_s", "d"),
    ("streamed", "b"),
    ("cache_read_tokens", "i"),
    ("cache_write_tokens", "i"),
    ("request_id_len", "i"),
)
_BATCH_COLUMNS = (*_BATCH_COLUMNS_V1[:-1], *((name, "i") for name in _TEXT_CODED[5:]), ("request_id_len", "i"))
_SIZES = {"i": 4, "d": 8, "q": 8, "b": 1}
_BIG_ENDIAN = sys.byteorder == "big"
# What a column a batch lacks reads as: unknown (-1 codes and ints, NaN floats), or 0 for counts.
_FILL = {"streamed": 0, "cache_read_tokens": 0, "cache_write_tokens": 0}
# Merging: the trailing batches smaller than a level are merged once they add up to it. A million
# rows written one commit at a time end up in ~250 batches; each row is rewritten about twice.
_MERGE_LEVELS = (64, 4096)
_MAX_BATCH = 65536  # rows per batch written at once (a huge group commit is split)


def _header(columns: tuple[tuple[str, str], ...] | list[tuple[str, str]]) -> bytes:
    parts = [struct.pack("<H", len(columns))]
    for name, code in columns:
        raw = name.encode()
        parts.append(code.encode() + bytes((len(raw),)) + raw)
    return b"".join(parts)


_HEADER = _header(_BATCH_COLUMNS)


def _le(column: array) -> bytes:
    if _BIG_ENDIAN:
        column = array(column.typecode, column)
        column.byteswap()
    return column.tobytes()


def _fill_value(name: str, code: str) -> float | int:
    return _FILL.get(name, math.nan if code == "d" else -1)


def _filler(name: str, code: str, n: int) -> bytes:
    return _le(array(code, (_fill_value(name, code),)) * n)


def _pack(records: list[AttemptRecord], name_id: Callable[[str | None], int]) -> tuple[bytes, float, float]:
    """Records as one batch blob, with their least and greatest timestamp."""
    cols, numeric = _numeric(records)
    coded = {name: _coded(cols[_FIELD[name]], name_id, name) for name in _TEXT_CODED}
    ids = [rid.encode() for rid in cols[0]]
    numeric["request_id_len"] = array("i", map(len, ids))
    parts = [_MAGIC, struct.pack("<I", len(records)), _HEADER]
    for name, _ in _BATCH_COLUMNS:
        parts.append(_le(numeric[name] if name in numeric else coded[name]))
    parts.append(b"".join(ids))
    ts = numeric["timestamp"]
    return b"".join(parts), min(ts), max(ts)


_MALFORMED = (TypeError, ValueError, OverflowError, AttributeError, UnicodeError)


def _packs(r: AttemptRecord) -> bool:
    try:
        _pack([r], lambda v: 0)
        return True
    except _MALFORMED:
        return False


def _segments(blob: bytes) -> tuple[int, dict[str, tuple[str, memoryview]], memoryview]:
    """A batch's row count, its columns by name as (typecode, bytes), and the request ids' bytes."""
    magic = bytes(blob[:4])
    if magic not in (_MAGIC, _MAGIC_V1):
        raise sqlite3.DatabaseError("usage ledger: a batch in an unknown format (written by a newer version?)")
    (n,) = struct.unpack_from("<I", blob, 4)
    columns: list[tuple[str, str]]
    if magic == _MAGIC_V1:
        columns, off = list(_BATCH_COLUMNS_V1), 8
    else:
        (k,) = struct.unpack_from("<H", blob, 8)
        columns, off = [], 10
        for _ in range(k):
            code, length = chr(blob[off]), blob[off + 1]
            columns.append((bytes(blob[off + 2 : off + 2 + length]).decode(), code))
            off += 2 + length
    view = memoryview(blob)
    out = {}
    for name, code in columns:
        if code not in _SIZES:
            raise sqlite3.DatabaseError(f"usage ledger: batch column {name!r} has an unknown type {code!r}")
        size = _SIZES[code] * n
        out[name] = (code, view[off : off + size])
        off += size
    return n, out, view[off:]


def _merge(blobs: list[bytes]) -> bytes:
    """One batch of several: every column any of them has (ours first), the missing ones filled."""
    split = [_segments(b) for b in blobs]
    n = sum(s[0] for s in split)
    columns = list(_BATCH_COLUMNS)
    have = dict(columns)
    for _, cols, _ in split:
        for name, (code, _) in cols.items():
            if have.setdefault(name, code) != code:
                raise sqlite3.DatabaseError(f"usage ledger: batch column {name!r} stored as two types")
            if (name, code) not in columns:
                columns.append((name, code))  # a newer version's column: kept, never dropped
    parts = [_MAGIC, struct.pack("<I", n), _header(columns)]
    for name, code in columns:
        for m, cols, _ in split:
            seg = cols.get(name)
            parts.append(seg[1] if seg is not None else _filler(name, code, m))  # type: ignore[arg-type]
    parts.extend(s[2] for s in split)  # type: ignore[misc]
    return b"".join(parts)


class _SQLiteStore:
    """The ledger file: a writer thread that group-commits, and a reader."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._cond = threading.Condition()
        self._queue: list[AttemptRecord] = []
        self._queued = 0  # rows ever queued
        self._committed = 0  # rows ever committed (or given up on)
        self._closing = False
        self._closed = False
        self._late: list[AttemptRecord] = []  # appended after close
        self._late_writing = False
        self._failed: BaseException | None = None
        self._names: dict[str, int] = {}  # the file's name ids, cached (ids never change)
        self._read_lock = threading.Lock()
        self._reader: sqlite3.Connection | None = None
        self._conn = self._connect()
        self._thread = threading.Thread(target=self._run, name="llmroute-ledger-writer", daemon=True)
        self._thread.start()

    # -- connections -------------------------------------------------------------------------
    def _connect(self, *, write: bool = True) -> sqlite3.Connection:
        # Opening waits at most 2 s for a lock (a file held by another program must not freeze the
        # notebook cell that builds the router for long); the writer then waits up to 10 s,
        # long enough for another kernel's commit on the same file.
        conn = sqlite3.connect(self.path, timeout=2.0, check_same_thread=False, isolation_level=None)
        deadline = time.monotonic() + 2.0
        while True:
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")  # WAL: a commit survives a killed process
                if write:
                    for ddl in _SCHEMA:
                        conn.execute(ddl)
                    self._migrate(conn)
                conn.execute("SELECT count(*) FROM attempt_batches").fetchone()  # a corrupt file fails now
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

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        """Bring an older file's row table up to this version's columns, once, keeping every row
        and its rowid. A first-release file (token columns NOT NULL, so they cannot hold
        "unknown"; no cache columns) is rebuilt; a later one only gains its missing text columns
        (``conversation``), NULL in the rows it already has. Its batches stay as they are: a
        column a batch lacks reads as unknown."""

        def current() -> dict[str, tuple]:
            return {row[1]: row for row in conn.execute("PRAGMA table_info(attempts)")}

        def rebuild(info: dict[str, tuple]) -> bool:
            return "cache_write_tokens" not in info or bool(info["input_tokens"][3])

        info = current()
        if not rebuild(info) and all(c in info for c in LEDGER_COLUMNS):
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            info = current()  # again, in the transaction: another kernel may have migrated it meanwhile
            if rebuild(info):
                old = [c for c in info if c in LEDGER_COLUMNS]
                conn.execute(f"CREATE TABLE attempts_new ({_ROW_COLUMNS})")
                names = ", ".join(old)
                conn.execute(f"INSERT INTO attempts_new (rowid, {names}) SELECT rowid, {names} FROM attempts")
                conn.execute("DROP TABLE attempts")
                conn.execute("ALTER TABLE attempts_new RENAME TO attempts")
            else:
                for name in LEDGER_COLUMNS:
                    if name not in info:
                        conn.execute(f"ALTER TABLE attempts ADD COLUMN {name} {_ROW_TYPES[name]}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    # -- writing -----------------------------------------------------------------------------
    def put(self, r: AttemptRecord) -> None:
        with self._cond:
            if self._failed is not None:
                raise sqlite3.OperationalError(str(self._failed))
            if not self._closed:
                self._queue.append(r)
                self._queued += 1
                if len(self._queue) == 1:
                    self._cond.notify_all()  # the writer waits only on an empty queue
                return
            self._late.append(r)
            if self._late_writing:
                return  # the caller writing late rows takes this one too
            self._late_writing = True
        self._drain_late()

    def _drain_late(self) -> None:
        """Rows appended after close: the caller that finds no one writing them writes them all,
        group-committed, on a connection of its own; never raising."""
        try:
            while True:
                with self._cond:
                    rows, self._late = self._late, []
                    if not rows:
                        self._late_writing = False
                        return
                self._write_late(rows)
        except BaseException:
            with self._cond:
                self._late_writing = False
            raise

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                rows, self._queue = self._queue, []
                if not rows:  # closing, and nothing left
                    self._closed = True
                    self._cond.notify_all()
                    return
            try:
                self._commit(self._conn, rows)
            except Exception as e:  # noqa: BLE001 - any failure: the ledger goes on in memory, with a warning
                with self._cond:
                    self._failed = e
                    self._committed += len(rows)
                    self._cond.notify_all()
                log.debug("llmroute_magic: writing the usage ledger to %r failed: %s", self.path, e)
                return
            with self._cond:
                self._committed += len(rows)
                self._cond.notify_all()

    def _commit(self, conn: sqlite3.Connection, records: list[AttemptRecord]) -> None:
        """The records in one transaction: their SQL rows and their batch(es), then merges."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            seq = conn.execute("SELECT coalesce(max(rowid), 0) FROM attempts").fetchone()[0]
            name_id = lambda v: self._name_id(conn, v)  # noqa: E731
            for start in range(0, len(records), _MAX_BATCH):
                chunk = records[start : start + _MAX_BATCH]
                try:
                    blob, lo_ts, hi_ts = _pack(chunk, name_id)
                except _MALFORMED:
                    chunk = [r for r in chunk if _packs(r)]  # the in-memory ledger reports the bad one
                    if not chunk:
                        continue
                    blob, lo_ts, hi_ts = _pack(chunk, name_id)
                first = seq + 1
                conn.executemany(_INSERT, [_sql_row(first + i, r) for i, r in enumerate(chunk)])
                seq += len(chunk)
                conn.execute(
                    "INSERT INTO attempt_batches VALUES (?,?,?,?,?,?)", (first, seq, len(chunk), lo_ts, hi_ts, blob)
                )
            self._merge_tail(conn)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _name_id(self, conn: sqlite3.Connection, value: str | None) -> int:
        if value is None:
            return -1
        i = self._names.get(value)
        if i is None:
            conn.execute("INSERT OR IGNORE INTO attempt_names (value) VALUES (?)", (value,))
            i = conn.execute("SELECT id FROM attempt_names WHERE value = ?", (value,)).fetchone()[0]
            self._names[value] = i
        return i

    @staticmethod
    def _merge_tail(conn: sqlite3.Connection) -> None:
        """Merge the trailing run of small contiguous batches once it adds up to a level."""
        for level in _MERGE_LEVELS:
            # fewer than 64 batches under 64 rows, and fewer than 64 more under 4096, ever trail
            tail = conn.execute(
                "SELECT first_seq, last_seq, n FROM attempt_batches ORDER BY first_seq DESC LIMIT 256"
            ).fetchall()
            run: list[Any] = []
            total = 0
            for first, last, n in tail:
                if n >= level or (run and last != run[-1][0] - 1):
                    break
                run.append((first, last, n))
                total += n
            if len(run) < 2 or total < level:
                continue
            run.reverse()
            lo, hi = run[0][0], run[-1][1]
            got = conn.execute(
                "SELECT data, min_ts, max_ts FROM attempt_batches WHERE first_seq BETWEEN ? AND ? ORDER BY first_seq",
                (lo, run[-1][0]),
            ).fetchall()
            blob = _merge([g[0] for g in got])
            conn.execute("DELETE FROM attempt_batches WHERE first_seq BETWEEN ? AND ?", (lo, run[-1][0]))
            conn.execute(
                "INSERT INTO attempt_batches VALUES (?,?,?,?,?,?)",
                (lo, hi, total, min(g[1] for g in got), max(g[2] for g in got), blob),
            )

    def _write_late(self, records: list[AttemptRecord]) -> None:
        try:
            conn = sqlite3.connect(self.path, timeout=5.0, isolation_level=None)
            try:
                self._commit(conn, records)
            finally:
                conn.close()
        except (sqlite3.Error, OSError) as e:
            log.debug("llmroute_magic: a late usage row stays in memory only (%s)", e)

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until the rows queued so far are committed."""
        deadline = time.monotonic() + timeout
        with self._cond:
            target = self._queued
            while self._committed < target and not self._closed and self._failed is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise sqlite3.OperationalError("usage ledger: the writer did not commit within 30 s")
                self._cond.wait(left)
            if self._failed is not None:
                raise sqlite3.OperationalError(str(self._failed))

    def close(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout=30)
        with self._cond:
            self._closed = True  # from now on a row is written by put() itself
            self._late.extend(self._queue)  # only if the writer died
            self._queue = []
            drain = bool(self._late) and not self._late_writing
            self._late_writing = self._late_writing or drain
        if drain:
            self._drain_late()
        try:
            self._conn.close()
        finally:
            with self._read_lock:
                if self._reader is not None:
                    self._reader.close()
                    self._reader = None
        if self._failed is not None:
            raise sqlite3.OperationalError(str(self._failed))

    def abandon(self) -> None:
        with self._cond:
            self._closing = self._closed = True
            self._queue = []
            self._cond.notify_all()
        for conn in (self._conn, self._reader):
            try:
                if conn is not None:
                    conn.close()
            except sqlite3.Error:
                pass

    # -- reading -----------------------------------------------------------------------------
    def _read_conn(self) -> sqlite3.Connection:
        if self._reader is None:
            self._reader = self._connect(write=False)
        return self._reader

    def last_seq(self) -> int:
        with self._read_lock:
            return self._read_conn().execute("SELECT coalesce(max(rowid), 0) FROM attempts").fetchone()[0]

    def read(self, after: int, since: float | None) -> tuple[dict[str, Any], int]:
        """The committed rows with rowid > ``after`` (and timestamp >= ``since``) as columns, and
        the last rowid read. One read transaction: the batches and the rows agree."""
        self.flush()
        with self._read_lock:
            conn = self._read_conn()
            conn.execute("BEGIN")
            try:
                last = conn.execute("SELECT coalesce(max(rowid), 0) FROM attempts").fetchone()[0]
                batches = conn.execute(
                    "SELECT first_seq, last_seq, data FROM attempt_batches WHERE last_seq > ? AND first_seq <= ? "
                    + ("AND max_ts >= ? " if since is not None else "")
                    + "ORDER BY first_seq",
                    (after, last, since) if since is not None else (after, last),
                ).fetchall()
                covered = (
                    conn.execute(
                        "SELECT first_seq, last_seq FROM attempt_batches WHERE last_seq > ? AND first_seq <= ? "
                        "ORDER BY first_seq",
                        (after, last),
                    ).fetchall()
                    if since is not None
                    else [(b[0], b[1]) for b in batches]
                )
                gaps, pos = [], after
                for first, hi in covered:
                    if first > pos + 1:
                        gaps.append((pos + 1, first - 1))
                    pos = max(pos, hi)
                if last > pos:
                    gaps.append((pos + 1, last))
                legacy = [row for lo, hi in gaps for row in conn.execute(_SELECT_ROWS, (lo, hi))]
                names = conn.execute("SELECT id, value FROM attempt_names ORDER BY id").fetchall()
            finally:
                conn.execute("COMMIT")
        return _columns_from_file(batches, legacy, names, after, since), last


def _columns_from_file(
    batches: list[tuple], legacy: list[tuple], names: list[tuple[int, str]], after: int, since: float | None
) -> dict[str, Any]:
    """Batches (and rows of the first release) as the columns ``frame_from_columns`` takes."""
    import numpy as np

    dtype = {"i": "<i4", "d": "<f8", "q": "<i8", "b": "i1"}
    values = [v for _, v in names]
    index = {v: j for j, v in enumerate(values)}
    lookup = np.full((max((i for i, _ in names), default=0) + 2), -1, dtype=np.int32)
    for j, (i, _) in enumerate(names):
        lookup[i + 1] = j  # file id -> position in `values`; -1 (None) stays -1

    parts: list[tuple[int, dict[str, Any]]] = []  # (first rowid, columns), to put in rowid order
    for first, _last, blob in batches:
        n, segs, id_bytes = _segments(blob)
        cols = {}
        for name, code in _BATCH_COLUMNS:
            seg = segs.get(name)
            if seg is None:  # written before this column existed
                cols[name] = np.full(n, _fill_value(name, code), dtype=dtype[code])
            elif seg[0] != code:
                raise sqlite3.DatabaseError(f"usage ledger: batch column {name!r} has type {seg[0]!r}, not {code!r}")
            else:
                cols[name] = np.frombuffer(seg[1], dtype=dtype[code])
        lengths = cols.pop("request_id_len")
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        cols["request_id"] = (offsets, id_bytes)  # type: ignore[assignment]  # (offsets, bytes)
        for name in _TEXT_CODED:
            cols[name] = lookup[cols[name] + 1]
        skip = max(0, after + 1 - first)
        if skip:
            cols = {k: (v if k == "request_id" else v[skip:]) for k, v in cols.items()}
            cols["request_id"] = (offsets[skip:], id_bytes)  # type: ignore[assignment]
        parts.append((first + skip, cols))
    if legacy:
        parts.append((legacy[0][0], _legacy_columns(legacy, values, index)))
        parts.sort(key=lambda p: p[0])

    out: dict[str, Any] = {}
    for name, code in _BATCH_COLUMNS[:-1]:
        arrays = [p[1][name] for p in parts]
        target = np.dtype(dtype[code])
        out[name] = np.concatenate(arrays).astype(target, copy=False) if arrays else np.empty(0, dtype=target)
    out["request_id"] = _ids([p[1]["request_id"] for p in parts])
    for name in _TEXT_CODED:
        out[name] = (out[name], values)
    if since is not None:
        keep = out["timestamp"] >= since
        if not keep.all():
            for name in out:
                if name in _TEXT_CODED:
                    out[name] = (out[name][0][keep], values)
                elif name == "request_id":
                    out[name] = _filter_ids(out[name], keep)
                else:
                    out[name] = out[name][keep]
    return out


def _legacy_columns(rows: list[tuple], values: list[str], index: dict[str, int]) -> dict[str, Any]:
    """Rows read one by one from the ``attempts`` table (no batch covers them)."""
    import numpy as np

    cols = dict(zip(("rowid", *LEDGER_COLUMNS), zip(*rows)))  # the columns of _SELECT_ROWS
    out: dict[str, Any] = {"request_id": list(cols["request_id"])}

    def code(v):
        if v is None:
            return -1
        j = index.get(v)
        if j is None:
            j = index[v] = len(values)
            values.append(v)
        return j

    for name in _TEXT_CODED:
        out[name] = np.array([code(v) for v in cols[name]], dtype=np.int32)

    def ints(col, none=-1):
        return np.array([none if v is None else v for v in col], dtype=np.int64)

    def floats(col):
        return np.array([math.nan if v is None else v for v in col], dtype=np.float64)

    out["attempt"] = ints(cols["attempt"]).astype(np.int32)
    out["timestamp"] = floats(cols["timestamp"])
    out["http_status"] = ints(cols["http_status"]).astype(np.int32)
    out["input_tokens"] = ints(cols["input_tokens"])
    out["output_tokens"] = ints(cols["output_tokens"])
    out["cost"] = floats(cols["cost"])
    out["latency_s"] = floats(cols["latency_s"])
    out["ttft_s"] = floats(cols["ttft_s"])
    out["streamed"] = ints(cols["streamed"], 0).astype(np.int8)
    out["cache_read_tokens"] = ints(cols["cache_read_tokens"], 0)
    out["cache_write_tokens"] = ints(cols["cache_write_tokens"], 0)
    return out


def _ids(parts: list[Any]):
    """Request ids of every part as one pyarrow array (or a list without pyarrow)."""
    try:
        import pyarrow as pa
    except ImportError:  # pragma: no cover - pyarrow comes with pandas 3
        out: list[str] = []
        for p in parts:
            if isinstance(p, list):
                out.extend(p)
            else:
                offsets, data = p
                raw = bytes(data)
                out.extend(raw[offsets[i] : offsets[i + 1]].decode() for i in range(len(offsets) - 1))
        return out
    chunks = []
    for p in parts:
        if isinstance(p, list):
            chunks.append(pa.array(p, type=pa.large_string()))
        else:
            offsets, data = p
            n = len(offsets) - 1
            if n == 0:
                continue
            if offsets[0]:  # a batch read from its middle
                data = data[int(offsets[0]) :]
                offsets = offsets - offsets[0]
            chunks.append(
                pa.Array.from_buffers(pa.large_string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(data)])
            )
    return pa.chunked_array(chunks, type=pa.large_string())


def _filter_ids(ids: Any, keep):
    if isinstance(ids, list):
        return [r for r, k in zip(ids, keep) if k]
    import pyarrow as pa

    return ids.filter(pa.array(keep))
