"""The ledger's ``conversation`` column: from the request option to the DataFrame, through a ledger
file and a restart, and into a file written before the column existed (migrated once, every row kept).

``tests/data/ledger_before_conversation.sqlite`` was written by the ledger of the release before
this column (commit 64fa523): 75 attempts, "old-0" … "old-74", committed one or a few at a time,
so it holds one merged batch of 64 rows and small batches after it, all in the ``LRB1`` format,
and a row table without the column. Tests work on a copy.
"""

from __future__ import annotations

import math
import shutil
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from llmroute_magic import ConfigError, ModelClientRouter, ProviderRoutingConfig
from llmroute_magic._ledger import Ledger
from llmroute_magic._types import LEDGER_COLUMNS, AttemptRecord

OLD_FILE = Path(__file__).parent / "data" / "ledger_before_conversation.sqlite"
OLD_ROWS = 75
T0 = 1_765_000_000.0


def rec(i: int, conversation: str | None) -> AttemptRecord:
    return AttemptRecord(
        f"new-{i}", 1, T0 + i, "p1", "m", "priority", "ok", None, 200, 10, 5, 1e-6, 0.1, None, False, 0, 0, conversation
    )


def old_copy(tmp_path: Path) -> Path:
    path = tmp_path / "old.sqlite"
    shutil.copy(OLD_FILE, path)
    return path


def test_the_column_is_the_last_field_of_a_record_and_of_the_frame():
    assert LEDGER_COLUMNS == AttemptRecord._fields
    assert LEDGER_COLUMNS[-1] == "conversation"
    assert (
        AttemptRecord("r", 1, T0, "p", "m", "priority", "ok", None, 200, 1, 1, 0.0, 0.1, None, False).conversation
        is None
    )  # positional records of the earlier shape still build


def test_in_memory_the_column_is_categorical_with_na_where_there_is_none():
    ledger = Ledger()
    for i, conv in enumerate(["chat", None, "chat", "other"]):
        ledger.append(rec(i, conv))
    df = ledger.to_frame()
    assert list(df.columns) == list(LEDGER_COLUMNS)
    assert isinstance(df["conversation"].dtype, pd.CategoricalDtype)
    assert df["conversation"].isna().tolist() == [False, True, False, False]
    assert df["conversation"].dropna().tolist() == ["chat", "chat", "other"]
    assert [r["conversation"] for r in ledger.records()] == ["chat", None, "chat", "other"]


def test_the_column_survives_a_restart_with_a_ledger_file(tmp_path):
    path = tmp_path / "usage.sqlite"
    ledger = Ledger(path)
    for i in range(5):
        ledger.append(rec(i, "chat" if i % 2 else None))
    ledger.close()
    again = Ledger(path)
    df = again.to_frame(all=True)
    assert df["conversation"].tolist()[1::2] == ["chat", "chat"]
    assert df["conversation"].isna().tolist() == [True, False, True, False, True]
    again.close()
    with sqlite3.connect(path) as db:  # and in the row table, for anyone who queries the file
        assert db.execute("SELECT conversation FROM attempts ORDER BY rowid").fetchall() == [
            (None,),
            ("chat",),
            (None,),
            ("chat",),
            (None,),
        ]


def test_a_file_written_before_the_column_is_migrated_once_and_keeps_every_row(tmp_path):
    path = old_copy(tmp_path)
    with sqlite3.connect(path) as db:
        assert "conversation" not in {r[1] for r in db.execute("PRAGMA table_info(attempts)")}
        before = db.execute("SELECT rowid, request_id, cost FROM attempts ORDER BY rowid").fetchall()
        assert {bytes(b[0][:4]) for b in db.execute("SELECT data FROM attempt_batches")} == {b"LRB1"}
    ledger = Ledger(path)
    df = ledger.to_frame(all=True)
    assert df["request_id"].tolist() == [f"old-{i}" for i in range(OLD_ROWS)]
    assert df["conversation"].isna().all()
    assert df["provider"].tolist()[:2] == ["sim-anthropic", "sim-openai"]
    assert int(df["input_tokens"].sum()) == sum(10 + i for i in range(OLD_ROWS))
    ledger.append(rec(0, "chat"))
    ledger.close()

    with sqlite3.connect(path) as db:
        columns = [r[1] for r in db.execute("PRAGMA table_info(attempts)")]
        after = db.execute(
            "SELECT rowid, request_id, cost FROM attempts WHERE rowid <= ? ORDER BY rowid", (OLD_ROWS,)
        ).fetchall()
    assert columns == list(LEDGER_COLUMNS)
    assert after == before  # rowids, ids and values as they were

    restarted = Ledger(path)
    df = restarted.to_frame(all=True)
    assert len(df) == OLD_ROWS + 1
    assert df["conversation"].isna().sum() == OLD_ROWS and df["conversation"].iloc[-1] == "chat"
    restarted.close()
    with sqlite3.connect(path) as db:  # opened twice: migrated once (the column is there once)
        assert [r[1] for r in db.execute("PRAGMA table_info(attempts)")].count("conversation") == 1


def test_old_and_new_batches_merge_into_one_without_losing_the_column(tmp_path):
    path = old_copy(tmp_path)
    ledger = Ledger(path)
    for i in range(70):  # one commit each: the small batches after the old ones add up and are merged
        ledger.append(rec(i, f"c{i % 3}" if i % 4 else None))
        ledger.flush()
    ledger.close()
    with sqlite3.connect(path) as db:
        batches = db.execute("SELECT first_seq, last_seq, n, data FROM attempt_batches ORDER BY first_seq").fetchall()
    merged = [b for b in batches if b[0] <= OLD_ROWS < b[1]]
    assert merged, "no batch spans old and new rows: the merge did not run"
    assert bytes(merged[0][3][:4]) == b"LRB2"
    assert sum(b[2] for b in batches) == OLD_ROWS + 70
    reopened = Ledger(path)
    df = reopened.to_frame(all=True)
    reopened.close()
    assert df["request_id"].tolist() == [f"old-{i}" for i in range(OLD_ROWS)] + [f"new-{i}" for i in range(70)]
    expected = [None] * OLD_ROWS + [f"c{i % 3}" if i % 4 else None for i in range(70)]
    assert [None if pd.isna(v) else v for v in df["conversation"]] == expected


def test_rows_no_batch_covers_are_read_with_their_conversation(tmp_path):
    path = tmp_path / "rows.sqlite"
    ledger = Ledger(path)
    for i in range(3):
        ledger.append(rec(i, "chat" if i != 1 else None))
    ledger.close()
    with sqlite3.connect(path) as db:
        db.execute("DELETE FROM attempt_batches")  # as if another writer had left rows only
    reopened = Ledger(path)
    df = reopened.to_frame(all=True)
    reopened.close()
    assert [None if pd.isna(v) else v for v in df["conversation"]] == ["chat", None, "chat"]


# -- from the request option -----------------------------------------------------------------------


def test_the_request_option_labels_every_attempt_and_never_reaches_the_provider(fresh_sim, tmp_path):
    specs = fresh_sim.provider_specs(["sim-openai", "sim-anthropic"])
    path = tmp_path / "usage.sqlite"
    fresh_sim.inject("sim-openai", ["server_error"])
    with ModelClientRouter(ProviderRoutingConfig(specs, ledger_path=str(path))) as router:
        router.complete("hello", conversation="trip")  # fails over: two attempts
        router.complete("hello")
        list(router.stream("hello", conversation="trip"))
        df = router.usage_df()
        plain = router.complete("hello")  # the label changes nothing that is sent
    assert df["conversation"].tolist()[:2] == ["trip", "trip"]
    assert pd.isna(df["conversation"].iloc[2]) and df["conversation"].iloc[3] == "trip"
    with ModelClientRouter(ProviderRoutingConfig(specs, ledger_path=str(path))) as restarted:
        again = restarted.usage_df(all=True)
    assert [None if pd.isna(v) else v for v in again["conversation"]] == ["trip", "trip", None, "trip", None]
    with ModelClientRouter(ProviderRoutingConfig(specs)) as router:
        labelled = router.complete("hello", conversation="x")
    assert labelled.input_tokens == plain.input_tokens and labelled.text == plain.text


@pytest.mark.parametrize("bad", ["", "  ", 3, b"x"])
def test_a_bad_label_is_a_config_error_naming_the_field(fresh_sim, bad):
    with ModelClientRouter(ProviderRoutingConfig(fresh_sim.provider_specs(["sim-openai"]))) as router:
        with pytest.raises(ConfigError, match="conversation"):
            router.complete("hello", conversation=bad)
        assert len(router.usage_df()) == 0


def test_stats_and_usage_by_conversation_reconcile_with_the_total(fresh_sim):
    with ModelClientRouter(ProviderRoutingConfig(fresh_sim.provider_specs(["sim-openai"]))) as router:
        for i in range(4):
            router.complete(f"q{i}", conversation="a" if i % 2 else "b")
        router.complete("no label")
        df = router.usage_df()
    by = df.groupby("conversation", observed=True, dropna=False)["cost"].sum()
    assert math.isclose(by.sum(), df["cost"].sum())
    assert set(by.index.dropna()) == {"a", "b"}


def test_a_batch_with_a_column_this_version_does_not_know_keeps_it_through_a_merge():
    """Forward room (DESIGN 10's tag_<key> columns): batches name their columns, so a newer
    writer's extra column is carried through this version's merges and ignored by its reads."""
    import struct
    from array import array

    from llmroute_magic._ledger import _BATCH_COLUMNS, _MAGIC, _columns_from_file, _header, _merge, _pack, _segments

    names: dict[str, int] = {}
    name_id = lambda v: -1 if v is None else names.setdefault(v, len(names))  # noqa: E731
    plain, lo, hi = _pack([rec(0, "chat"), rec(1, None)], name_id)
    n, cols, ids = _segments(plain)
    columns = [*_BATCH_COLUMNS, ("tag_arm", "i")]
    arm = array("i", [name_id("A"), -1]).tobytes()
    newer = b"".join(
        [
            _MAGIC,
            struct.pack("<I", n),
            _header(columns),
            *(cols[name][1] if name in cols else arm for name, _ in columns),
            bytes(ids),
        ]
    )
    merged = _merge([plain, newer])
    m, merged_cols, _ = _segments(merged)
    assert m == 4 and "tag_arm" in merged_cols
    assert array("i", bytes(merged_cols["tag_arm"][1])).tolist() == [-1, -1, names["A"], -1]  # filled, then kept
    file_names = sorted((i, v) for v, i in names.items())
    out = _columns_from_file([(1, 4, merged)], [], file_names, 0, None)
    codes, values = out["conversation"]
    assert [values[c] if c >= 0 else None for c in codes] == ["chat", None, "chat", None]
    assert "tag_arm" not in out
