"""The SQLite ledger (``ledger_path``): survives a killed process, takes two writers at once, and
degrades to memory with one clear warning when the file cannot be used."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import warnings

import pytest
from helpers import simulator_fixture

from llmroute_magic import LedgerPersistenceWarning, ModelClientRouter, ProviderRoutingConfig
from llmroute_magic.sim import ProviderProfile

PROFILES = [
    ProviderProfile("p1", input_price=1.0, output_price=2.0),
    ProviderProfile("p2", api="anthropic", input_price=3.0, output_price=4.0),
]


sim = simulator_fixture(PROFILES)


def config(sim, path) -> ProviderRoutingConfig:
    return ProviderRoutingConfig(sim.provider_specs(), strategy="round_robin", ledger_path=path)


def read_rows(path) -> list[tuple]:
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        return db.execute(
            "SELECT request_id, attempt, provider, status, input_tokens, output_tokens, cost FROM attempts"
        ).fetchall()


# A writer that says how many of its rows are committed, then keeps writing until it is killed.
WRITER = """
    import sys
    from llmroute_magic import ModelClientRouter, ProviderRoutingConfig, ProviderSpec
    url1, url2, path, tag = sys.argv[1:5]
    specs = [ProviderSpec("p1", "m1", base_url=url1, input_price=1.0, output_price=2.0),
             ProviderSpec("p2", "m2", api="anthropic", base_url=url2, input_price=3.0, output_price=4.0)]
    r = ModelClientRouter(ProviderRoutingConfig(specs, strategy="round_robin", ledger_path=path))
    n = int(sys.argv[5]) if len(sys.argv) > 5 else None
    i = 0
    while n is None or i < n:
        i += 1
        r.complete(f"{tag} {i}", max_tokens=8)
        if i % 25 == 0:
            r.ledger.flush()  # committed: these rows must survive anything
            print(i, flush=True)
    r.close()
    print("closed", flush=True)
"""


def start_writer(sim, path, tag: str, n: int | None = None) -> subprocess.Popen:
    args = [sim.base_url("p1"), sim.base_url("p2"), str(path), tag] + ([str(n)] if n else [])
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(WRITER), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_sigkill_loses_no_committed_row_and_leaves_no_corruption(sim, tmp_path):
    path = tmp_path / "usage.sqlite"
    proc = start_writer(sim, path, "killed")
    committed = 0
    try:
        while committed < 150:
            line = proc.stdout.readline()
            assert line, proc.stderr.read()
            committed = int(line)
    finally:
        proc.send_signal(signal.SIGKILL)  # mid-write: the writer thread is busy all the time
        proc.wait(10)
    got = read_rows(path)
    assert len(got) >= committed
    assert len({(r[0], r[1]) for r in got}) == len(got)  # no row twice
    assert all(r[3] == "ok" and r[4] > 0 and r[5] > 0 and r[6] > 0 for r in got)  # no half-written row
    # a new router on the same file carries on from there
    with ModelClientRouter(config(sim, path)) as r:
        r.complete("after the crash")
        df = r.usage_df()
    assert len(df) == len(got) + 1


def test_two_processes_append_to_one_file_at_once(sim, tmp_path):
    path = tmp_path / "shared.sqlite"
    procs = [start_writer(sim, path, tag, n=200) for tag in ("left", "right")]
    outs = [p.communicate(timeout=90) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0 and out.strip().endswith("closed"), err
        assert "Warning" not in err and "locked" not in err, err
    got = read_rows(path)
    assert len(got) == 400
    prefixes = {r[0].rsplit("-", 1)[0] for r in got}
    assert len(prefixes) == 2  # each process names its requests apart: no request id collides
    assert len({r[0] for r in got}) == 400


def test_a_corrupt_file_warns_once_and_the_router_keeps_working(sim, tmp_path):
    path = tmp_path / "corrupt.sqlite"
    path.write_bytes(os.urandom(8192))
    with pytest.warns(LedgerPersistenceWarning) as caught:
        r = ModelClientRouter(config(sim, path))
    with r:
        msg = str(caught[0].message)
        assert str(path) in msg and "memory" in msg  # which file, and what happens now
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no second warning per request
            for i in range(3):
                assert r.complete(f"q{i}").text
            df = r.usage_df()
        assert len(df) == 3 and (df["status"] == "ok").all()
        assert not r.ledger.persistent
    assert path.read_bytes() != b""  # the user's file is left as it was, for them to look at


def test_a_file_locked_by_another_process_warns_and_the_router_keeps_working(sim, tmp_path):
    path = tmp_path / "locked.sqlite"
    with ModelClientRouter(config(sim, path)) as r:
        r.complete("before the lock")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")  # another program holds the file and never lets go
    try:
        t0 = time.monotonic()
        with pytest.warns(LedgerPersistenceWarning, match="locked"):
            r = ModelClientRouter(config(sim, path))
            with r:
                assert r.complete("while locked").text
                df = r.usage_df()
        assert len(df) == 1 and df["status"].iloc[0] == "ok"
        assert time.monotonic() - t0 < 6  # it gives up waiting for the lock soon, with a message
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_an_unwritable_location_warns_and_the_router_keeps_working(sim, tmp_path):
    path = tmp_path / "no-such-dir" / "usage.sqlite"
    with pytest.warns(LedgerPersistenceWarning, match="no-such-dir"):
        r = ModelClientRouter(config(sim, path))
    with r:
        assert r.complete("hello").text and len(r.usage_df()) == 1


# Appends N rows straight to the ledger, says so, then idles until it is killed.
APPENDER = """
    import sys, time
    from llmroute_magic._ledger import Ledger
    from llmroute_magic._types import AttemptRecord
    path, n = sys.argv[1], int(sys.argv[2])
    ledger = Ledger(path)
    t = time.time()
    for i in range(n):
        ledger.append(AttemptRecord(f"kill-{i}", 1, t, "p1", "m1", "priority", "ok", None, 200, 10, 5, 1e-5,
                                    0.01, None, False))
    print("appended", flush=True)
    time.sleep(60)
"""


@pytest.mark.parametrize("n", [1, 300])
def test_sigkill_shortly_after_appends_loses_no_row(tmp_path, n):
    """The writer commits as soon as rows are queued (group commit), not on a timer: rows
    appended 0.1 s before a SIGKILL are in the file."""
    path = tmp_path / "kill.sqlite"
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(APPENDER), str(path), str(n)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "appended", proc.stderr.read()
        time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert db.execute("SELECT count(*) FROM attempts").fetchone()[0] == n
        assert db.execute("SELECT coalesce(sum(n), 0) FROM attempt_batches").fetchone()[0] == n


def test_reset_starts_a_new_view_of_a_persistent_ledger(sim, tmp_path):
    path = tmp_path / "view.sqlite"
    with ModelClientRouter(config(sim, path)) as r:
        for i in range(4):
            r.complete(f"before {i}", max_tokens=8)
        r.reset_usage()
        r.complete("after", max_tokens=8)
        df = r.usage_df()
        assert len(df) == 1 and df["status"].iloc[0] == "ok"  # the first release still showed 5
        stats = r.get_usage_stats()
        assert stats.total_requests == 1
        assert stats.total_cost == pytest.approx(float(df["cost"].iloc[0]))
        assert len(r.ledger.to_frame(all=True)) == 5  # the file keeps every row
    assert len(read_rows(path)) == 5
    with ModelClientRouter(config(sim, path)) as r2:  # a restarted kernel sees the old rows
        assert len(r2.usage_df()) == 5


def test_the_ledger_reads_back_what_two_processes_wrote(sim, tmp_path):
    path = tmp_path / "shared-read.sqlite"
    procs = [start_writer(sim, path, tag, n=60) for tag in ("left", "right")]
    for p in procs:
        out, err = p.communicate(timeout=90)
        assert p.returncode == 0, err
    from llmroute_magic._ledger import Ledger

    ledger = Ledger(path)
    df = ledger.to_frame(all=True)
    ledger.close()
    rows = sorted(read_rows(path))
    got = sorted(
        zip(
            df["request_id"],
            df["attempt"],
            df["provider"].astype(str),
            df["status"].astype(str),
            df["input_tokens"].astype(int),
            df["output_tokens"].astype(int),
            df["cost"],
        )
    )
    assert len(got) == 120 and [tuple(r) for r in rows] == got
