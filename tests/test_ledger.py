"""The ledger on its own: unknown usage kept as unknown, views and resets, incremental reads,
appends racing reset and close, and the SQLite file read back exactly (real files, no mocks)."""

from __future__ import annotations

import math
import sqlite3
import threading
import warnings
from datetime import UTC, datetime

import pandas as pd
import pytest

from llmroute_magic._ledger import Ledger, LedgerCursor
from llmroute_magic._types import LEDGER_COLUMNS, AttemptRecord

T0 = 1_764_000_000.0


def rec(i: int, *, provider: str = "p1", tokens: bool = True, t: float = T0) -> AttemptRecord:
    failed = i % 7 == 3
    return AttemptRecord(
        f"req-{i}",
        1 + i % 2,
        t + i * 0.001,
        provider,
        f"model-{i % 3}",
        "round_robin",
        "error" if failed else "ok",
        "rate_limit" if failed else None,
        None if i % 11 == 5 else (429 if failed else 200),
        (100 + i) if tokens else None,
        (20 + i % 9) if tokens else None,
        math.nan if (i % 13 == 4 or not tokens) else 1e-6 * (i + 1) / 3,
        0.01 + (i % 17) / 1000,
        None if i % 2 else 0.004,
        bool(i % 2),
        i % 5,
        i % 3 * 7,
    )


def same_rows(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True), check_categorical=False)


# -- unknown usage ---------------------------------------------------------------------------------


def test_tokens_the_provider_did_not_report_stay_unknown():
    ledger = Ledger()
    ledger.append(rec(1))
    ledger.append(rec(2, tokens=False))
    df = ledger.to_frame()
    assert list(df.columns) == list(LEDGER_COLUMNS)
    assert len(df) == 2  # the first release dropped the row (None did not fit its int column)
    assert str(df["input_tokens"].dtype) == "Int64" and str(df["output_tokens"].dtype) == "Int64"
    assert df["input_tokens"].isna().tolist() == [False, True]
    assert df["output_tokens"].isna().tolist() == [False, True]
    assert math.isnan(df["cost"].iloc[1])
    rows = list(ledger.records())
    assert rows[1]["input_tokens"] is None and rows[1]["output_tokens"] is None
    assert rows[0]["cache_read_tokens"] == 1 and rows[0]["cache_write_tokens"] == 7


def test_a_million_row_ledger_keeps_unknown_tokens_cheaply():
    ledger = Ledger()
    for i in range(3000):
        ledger.append(rec(i, tokens=i % 1000 != 0))
    df = ledger.to_frame()
    assert int(df["input_tokens"].isna().sum()) == 3 and int(df["input_tokens"].sum()) == sum(
        100 + i for i in range(3000) if i % 1000
    )


def test_rows_across_the_column_blocks_come_back_in_order_from_any_start(monkeypatch):
    from llmroute_magic import _ledger

    monkeypatch.setattr(_ledger._Column, "BLOCK", 1000)  # a million rows' worth of block edges, small
    ledger = Ledger()
    want = [rec(i) for i in range(2600)]
    for r in want[:700]:
        ledger.append(r)
    assert len(ledger.to_frame()) == 700  # a read folds a part batch; appends go on after it
    for r in want[700:]:
        ledger.append(r)
    df = ledger.to_frame()
    assert df["request_id"].tolist() == [r.request_id for r in want]
    assert df["input_tokens"].tolist() == [r.input_tokens for r in want]
    assert df["http_status"].isna().tolist() == [r.http_status is None for r in want]
    assert df["model"].tolist() == [r.model for r in want]
    for start in (0, 999, 1000, 1001, 2599, 2600):
        rows = [r["request_id"] for r in ledger.records()][start:]
        assert rows == [r.request_id for r in want[start:]], start
        cols = ledger.columns(start)
        assert list(cols["latency_s"]) == [r.latency_s for r in want[start:]], start


# -- views -----------------------------------------------------------------------------------------


@pytest.fixture(params=["memory", "file"])
def ledger(request, tmp_path):
    lg = Ledger(None if request.param == "memory" else tmp_path / "usage.sqlite")
    yield lg
    lg.close()


def test_reset_starts_a_new_view_and_keeps_every_row(ledger):
    for i in range(5):
        ledger.append(rec(i))
    ledger.reset_view()
    for i in range(5, 8):
        ledger.append(rec(i))
    assert ledger.to_frame()["request_id"].tolist() == ["req-5", "req-6", "req-7"]
    assert len(ledger.to_frame(all=True)) == 8
    assert len(list(ledger.records())) == 8  # every row this process appended
    assert [r["request_id"] for r in ledger.records(view=True)] == ["req-5", "req-6", "req-7"]
    ledger.clear()  # what reset_usage calls today: a new view too, nothing dropped
    assert len(ledger.to_frame()) == 0 and len(ledger.to_frame(all=True)) == 8


def test_since_bounds_the_timestamp(ledger):
    for i in range(10):
        ledger.append(rec(i))
    edge = T0 + 6 * 0.001
    want = [f"req-{i}" for i in range(6, 10)]
    for since in (
        edge,
        datetime.fromtimestamp(edge, UTC),
        pd.Timestamp(edge, unit="s", tz="UTC"),
        datetime.fromtimestamp(edge, UTC).replace(tzinfo=None).isoformat(),
    ):
        assert ledger.to_frame(since=since)["request_id"].tolist() == want, since
    ledger.reset_view()
    assert len(ledger.to_frame(since=edge)) == 0 and len(ledger.to_frame(all=True, since=edge)) == 4


def test_rows_since_gives_only_the_new_rows_and_says_when_to_start_again(ledger):
    for i in range(4):
        ledger.append(rec(i))
    first, cursor = ledger.rows_since()
    assert len(first) == 4 and cursor.restart
    more, cursor = ledger.rows_since(cursor)
    assert len(more) == 0 and not cursor.restart
    for i in range(4, 7):
        ledger.append(rec(i))
    more, cursor = ledger.rows_since(cursor)
    assert more["request_id"].tolist() == ["req-4", "req-5", "req-6"] and not cursor.restart
    ledger.reset_view()
    ledger.append(rec(7))
    after_reset, cursor = ledger.rows_since(cursor)
    assert after_reset["request_id"].tolist() == ["req-7"] and cursor.restart
    assert isinstance(cursor, LedgerCursor)


# -- races -----------------------------------------------------------------------------------------


def _hammer(ledger: Ledger, n_threads: int, per_thread: int, during) -> list[BaseException]:
    errors: list[BaseException] = []
    start = threading.Barrier(n_threads + 1)

    def work(k: int) -> None:
        start.wait()
        try:
            for i in range(per_thread):
                ledger.append(rec(k * per_thread + i, provider=f"p{k}"))
        except BaseException as e:  # noqa: BLE001 - what the test looks for
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(n_threads)]
    for t in threads:
        t.start()
    start.wait()
    during()
    for t in threads:
        t.join()
    return errors


def test_reset_and_clear_racing_appends_drop_no_row(ledger):
    def resets() -> None:
        for i in range(200):
            (ledger.clear if i % 2 else ledger.reset_view)()

    errors = _hammer(ledger, 4, 3000, resets)
    assert not errors
    ids = [r["request_id"] for r in ledger.records()]
    assert len(ids) == 12_000 and len(set(ids)) == 12_000
    assert len(ledger.to_frame(all=True)) == 12_000


def test_close_racing_appends_raises_nothing_and_keeps_every_row(tmp_path):
    for round_ in range(3):
        path = tmp_path / f"race{round_}.sqlite"
        ledger = Ledger(path)
        errors = _hammer(ledger, 3, 1500, ledger.close)
        assert not errors
        assert len(list(ledger.records())) == 4500
        ledger.append(rec(99_999))  # a request that ends after the router closed
        assert len(list(ledger.records())) == 4501
        with sqlite3.connect(path) as db:  # every row reached the file, the late ones too
            assert db.execute("SELECT count(*) FROM attempts").fetchone()[0] == 4501
        assert len(Ledger(path).to_frame()) == 4501


# -- the file --------------------------------------------------------------------------------------


def test_the_file_reads_back_exactly_what_memory_holds(tmp_path):
    path = tmp_path / "exact.sqlite"
    ledger = Ledger(path)
    memory = Ledger()
    for i in range(9000):  # many small commits, then merges
        r = rec(i, tokens=i % 97 != 0, provider=("alpha", "beta", "gamma")[i % 3])
        ledger.append(r)
        memory.append(r)
        if i % 250 == 0:
            ledger.flush()
    ledger.close()
    same_rows(Ledger(path).to_frame(), memory.to_frame())
    with sqlite3.connect(path) as db:
        n, batches, covered = db.execute(
            "SELECT (SELECT count(*) FROM attempts), count(*), sum(n) FROM attempt_batches"
        ).fetchone()
        nulls = db.execute("SELECT count(*) FROM attempts WHERE input_tokens IS NULL").fetchone()[0]
    assert n == covered == 9000 and batches < 60  # small commits were merged
    assert nulls == 93  # unknown is NULL in SQL too, not 0


def test_a_second_kernel_sees_the_whole_file_and_its_own_view(tmp_path):
    path = tmp_path / "shared.sqlite"
    a, b = Ledger(path), Ledger(path)
    for i in range(3):
        a.append(rec(i))
    a.flush()
    assert len(b.to_frame()) == 3
    b.reset_view()
    for i in range(3, 5):
        a.append(rec(i))
    a.flush()
    assert b.to_frame()["request_id"].tolist() == ["req-3", "req-4"]  # other kernels' rows after the reset
    assert len(b.to_frame(all=True)) == 5 and len(a.to_frame()) == 5
    a.close()
    b.close()


def test_a_refresh_does_not_read_the_old_batches(tmp_path):
    path = tmp_path / "big.sqlite"
    ledger = Ledger(path)
    for i in range(20_000):
        ledger.append(rec(i))
    ledger.flush()
    _, cursor = ledger.rows_since()
    # Spoil every large batch already read: a refresh that touched them would fail to decode.
    with sqlite3.connect(path) as db:
        spoiled = db.execute("UPDATE attempt_batches SET data = x'00' WHERE n >= 4096").rowcount
    assert spoiled >= 1
    for i in range(20_000, 20_010):
        ledger.append(rec(i))
    new, _ = ledger.rows_since(cursor)
    assert new["request_id"].tolist() == [f"req-{i}" for i in range(20_000, 20_010)]
    ledger.close()


FIRST_RELEASE_SCHEMA = """
CREATE TABLE attempts (
    request_id TEXT NOT NULL, attempt INTEGER NOT NULL, timestamp REAL NOT NULL,
    provider TEXT NOT NULL, model TEXT NOT NULL, strategy TEXT NOT NULL, status TEXT NOT NULL,
    error_type TEXT, http_status INTEGER, input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL,
    cost REAL, latency_s REAL NOT NULL, ttft_s REAL, streamed INTEGER NOT NULL
)"""


def test_a_first_release_file_is_read_and_takes_unknown_usage(tmp_path):
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(FIRST_RELEASE_SCHEMA)
        db.executemany(
            "INSERT INTO attempts VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            [
                (f"old-{i}", 1, T0 - 100 + i, "p1", "m", "priority", "ok", None, 200, 10, 5, None, 0.1, None, 0)
                for i in range(5)
            ],
        )
    ledger = Ledger(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ledger.append(rec(1, tokens=False))
        df = ledger.to_frame()
    assert df["request_id"].tolist() == [f"old-{i}" for i in range(5)] + ["req-1"]
    assert df["input_tokens"].isna().tolist() == [False] * 5 + [True]
    assert df["cache_read_tokens"].tolist()[:5] == [0] * 5 and df["cost"].iloc[:5].isna().all()
    ledger.close()
