"""The SQLite store: what it records, schema versions, bad files, locks, several processes."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from taskloom import Engine, Fail, Retry, Task, hookimpl
from taskloom_std.stores import (
    StoreCorruptError,
    StoreError,
    StoreLockedError,
    StoreVersionError,
)
from taskloom_std.stores.codec import decode, encode
from taskloom_std.stores.schema import SCHEMA_VERSION, migrate
from taskloom_std.stores.sqlite import SqliteStore


def _engine(db: Path, **options) -> Engine:
    return Engine(max_workers=2, store="sqlite", store_options={"path": str(db), **options})


class RetryOnce:
    @hookimpl
    def taskloom_task_error(self, task, error, attempt, run):
        return Retry(0) if attempt.number == 1 and task.name == "flaky" else Fail()


def _flaky():
    calls = []

    def fn():
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("first try fails")
        return "ok"

    return fn


def test_records_runs_attempts_errors_and_results(tmp_path):
    db = tmp_path / "t.db"
    engine = _engine(db)
    engine.plugins.register(RetryOnce(), name="retry-once")

    def broken():
        raise ValueError("bad input")

    summary = engine.run(
        [
            Task("json", fn=lambda: {"rows": [1, 2]}),
            Task("tuple", fn=lambda: (1, 2)),  # JSON would make it a list: pickled instead
            Task("big", fn=lambda: "x" * 5000),
            Task("unpicklable", fn=lambda: threading.Lock()),
            Task("flaky", fn=_flaky()),
            Task("broken", fn=broken),
            Task("after", fn=lambda: 1, dependencies=["broken"]),
        ],
        run_id="r1", name="demo",
    )
    assert summary.status == "failed"
    record = engine.store.detail("r1")
    engine.close()
    assert (record.workflow, record.status) == ("demo", "failed")
    assert record.counts == {"completed": 5, "failed": 2}
    tasks = {t.name: t for t in record.tasks}
    flaky = tasks["flaky"]
    assert [a.state for a in flaky.attempts] == ["retrying", "completed"]
    assert flaky.attempts[0].error_type == "ConnectionError"
    assert flaky.attempts[0].error == "first try fails"
    assert "ConnectionError: first try fails" in flaky.attempts[0].traceback
    assert all(a.duration is not None and a.duration >= 0 for a in flaky.attempts)
    assert [s for s, _ in flaky.events] == ["ready", "running", "retrying", "running",
                                           "completed"]
    broken_attempt = tasks["broken"].attempts[0]
    assert (broken_attempt.error_type, broken_attempt.error) == ("ValueError", "bad input")
    assert "raise ValueError" in broken_attempt.traceback
    assert tasks["after"].attempts == []
    assert tasks["after"].error_type == "UpstreamFailed"
    assert tasks["json"].result_kind == "json"
    assert tasks["tuple"].result_kind == "pickle"
    assert "a tuple does not survive JSON unchanged" in tasks["tuple"].result_note
    assert tasks["unpicklable"].result_kind == "missing"
    assert "neither JSON nor picklable" in tasks["unpicklable"].result_note

    reopened = SqliteStore(db)
    try:
        outcomes = reopened.outcomes("r1")
    finally:
        reopened.close()
    assert outcomes["json"] == ("completed", True, {"rows": [1, 2]}, None, None)
    assert outcomes["tuple"][2] == (1, 2)
    assert outcomes["unpicklable"][:2] == ("completed", False)
    assert outcomes["broken"][0] == "failed"


def test_pickled_results_over_the_limit_are_not_stored_with_a_note(tmp_path):
    engine = _engine(tmp_path / "t.db", result_limit=100)
    engine.run([Task("big", fn=lambda: {1: "y" * 1000})], run_id="big")
    record = engine.store.detail("big")
    engine.close()
    (task,) = record.tasks
    assert task.result_kind == "missing"
    assert "over the store's result_limit of 100" in task.result_note


def test_close_commits_what_is_queued(tmp_path):
    db = tmp_path / "t.db"
    engine = _engine(db, flush_interval=3600)
    engine.run([Task(f"t{i}", fn=lambda: 7) for i in range(50)], run_id="queued")
    engine.close()
    store = SqliteStore(db)
    try:
        assert store.summary("queued")["results"] == {f"t{i}": 7 for i in range(50)}
        assert store.run("queued").status == "completed"
    finally:
        store.close()


def test_safe_durability_commits_a_result_before_dependents_start(tmp_path):
    db = tmp_path / "t.db"
    engine = _engine(db, durability="safe", flush_interval=3600)

    def check():
        with sqlite3.connect(db) as conn:
            rows = conn.execute("SELECT task FROM results WHERE run_id = 's'").fetchall()
        return sorted(r[0] for r in rows)

    summary = engine.run(
        [Task("first", fn=lambda: 1), Task("second", fn=check, dependencies=["first"])],
        run_id="s",
    )
    engine.close()
    assert summary.results["second"] == ["first"]


def test_schema_is_versioned_and_old_databases_are_migrated(tmp_path):
    db = tmp_path / "old.db"
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("BEGIN")
    migrate(conn, 0, 1)
    conn.execute("INSERT INTO runs(id, workflow, status) VALUES ('old', 'w', 'completed')")
    conn.execute("COMMIT")
    conn.close()
    store = SqliteStore(db)
    try:
        assert store.run("old").workflow == "w"
        assert store.schedule_state().claim("job", 1.0, "me")
    finally:
        store.close()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_newer_schema_is_refused_and_left_untouched(tmp_path):
    db = tmp_path / "new.db"
    SqliteStore(db).close()
    with sqlite3.connect(db) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    before = db.read_bytes()
    with pytest.raises(StoreVersionError, match=r"newer taskloom.*left untouched"):
        SqliteStore(db)
    assert db.read_bytes() == before


@pytest.mark.parametrize("content", [b"not a database at all" * 100,
                                     b"SQLite format 3\x00" + b"\xff" * 4000])
def test_a_corrupt_file_is_refused_and_left_untouched(tmp_path, content):
    db = tmp_path / "bad.db"
    db.write_bytes(content)
    with pytest.raises(StoreCorruptError, match="left untouched"):
        SqliteStore(db)
    assert db.read_bytes() == content
    assert not Path(f"{db}-wal").exists() or Path(f"{db}-wal").stat().st_size == 0


def test_another_applications_database_is_refused(tmp_path):
    db = tmp_path / "other.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE mine (x)")
    with pytest.raises(StoreCorruptError, match="not a taskloom one"):
        SqliteStore(db)


def test_bad_options_are_errors(tmp_path):
    with pytest.raises(StoreError, match="durability must be 'fast' or 'safe'"):
        SqliteStore(tmp_path / "t.db", durability="paranoid")


_HOLD_LOCK = textwrap.dedent("""
    import sqlite3, sys
    conn = sqlite3.connect(sys.argv[1], isolation_level=None)
    conn.execute("BEGIN EXCLUSIVE")
    print("locked", flush=True)
    sys.stdin.readline()
""")


def test_a_locked_database_times_out_naming_the_holder(tmp_path):
    db = tmp_path / "t.db"
    SqliteStore(db).close()
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(db)], cwd=tmp_path,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(StoreLockedError) as info:
            SqliteStore(db, lock_timeout=0.2)
        message = str(info.value)
        assert "is locked: waited 0.2s" in message
        assert f"pid {holder.pid}" in message
    finally:
        holder.communicate("\n", timeout=30)


_WRITER = textwrap.dedent("""
    import sys
    from taskloom import Engine, Task
    engine = Engine(max_workers=2, store="sqlite",
                    store_options={"path": sys.argv[1], "flush_interval": 0.01})
    for r in range(3):
        summary = engine.run([Task(f"t{i}", fn=lambda i=i: i) for i in range(200)],
                             run_id=f"{sys.argv[2]}-{r}")
        assert summary.ok
    engine.close()
""")


def test_two_processes_write_runs_to_one_database(tmp_path):
    db = tmp_path / "shared.db"
    SqliteStore(db).close()
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(db), name], cwd=tmp_path)
             for name in ("a", "b")]
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    store = SqliteStore(db)
    try:
        runs = {r.id: r for r in store.runs(limit=10)}
        assert set(runs) == {f"{n}-{r}" for n in "ab" for r in range(3)}
        for run_id, record in runs.items():
            assert record.status == "completed" and record.counts == {"completed": 200}
            assert store.summary(run_id)["results"] == {f"t{i}": i for i in range(200)}
        with store.read() as conn:
            assert conn.execute("SELECT count(*) FROM owners").fetchone()[0] == 1  # only us
    finally:
        store.close()


def test_schedule_state_claims_each_fire_time_once_across_stores(tmp_path):
    db = tmp_path / "t.db"
    first, second = SqliteStore(db), SqliteStore(db)
    try:
        states = [first.schedule_state(), second.schedule_state()]
        assert states[0].load("job") is None
        states[0].save("job", {"next_fire_time": 60.0, "paused": False})
        assert states[1].load("job") == {"next_fire_time": 60.0, "paused": False}

        wins: list[tuple[int, float]] = []
        lock = threading.Lock()

        def claim(which: int) -> None:
            for t in range(100):
                if states[which].claim("job", float(t), f"scheduler-{which}"):
                    with lock:
                        wins.append((which, float(t)))

        threads = [threading.Thread(target=claim, args=(i,)) for i in (0, 1, 0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(t for _, t in wins) == [float(t) for t in range(100)]
        assert not states[1].claim("job", 5.0, "late")
    finally:
        first.close()
        second.close()


def test_the_scheduler_gets_its_state_from_the_engine_store(tmp_path):
    engine = _engine(tmp_path / "t.db")
    try:
        state = engine.store.schedule_state()
        assert state.claim("nightly", 1000.0, "a") and not state.claim("nightly", 1000.0, "b")
    finally:
        engine.close()


def test_stores_of_two_engines_on_one_plugin_set_record_only_their_runs(tmp_path):
    a = _engine(tmp_path / "a.db")
    b = Engine(max_workers=1, plugins=a.plugins, store="sqlite",
               store_options={"path": str(tmp_path / "b.db")})
    a.run([Task("x")], run_id="in-a")
    b.run([Task("y")], run_id="in-b")
    try:
        assert [r.id for r in a.store.runs()] == ["in-a"]
        assert [r.id for r in b.store.runs()] == ["in-b"]
    finally:
        a.close()
        b.close()
    assert os.path.exists(tmp_path / "a.db")


_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5)
    | st.floats(allow_nan=False),
    lambda inner: st.lists(inner, max_size=3) | st.tuples(inner, inner)
    | st.dictionaries(st.text(max_size=3) | st.integers(), inner, max_size=3),
    max_leaves=8,
)


@given(_values)
def test_a_stored_value_comes_back_equal(value):
    kind, data, _ = encode(value)
    assert kind in ("none", "json", "pickle")
    back = decode(kind, data)
    assert back == value and type(back) is type(value)


# -- faults: a full disk, a held lock, crafted and damaged files, concurrency -----------------


def _counting(n: int, size: int, ran: list[str], upstream: dict[str, list[str]] | None = None):
    """``n`` tasks returning ``size``-character results; each execution is appended to ran."""

    def body(name):
        def fn(**_):
            ran.append(name)
            return name + "x" * size

        return fn

    upstream = upstream or {}
    return [Task(f"t{i:02d}", fn=body(f"t{i:02d}"), dependencies=upstream.get(f"t{i:02d}"))
            for i in range(n)]


def _recorded(db: Path, run_id: str) -> set[str]:
    store = SqliteStore(db, read_only=True)
    try:
        return {n for n, (state, stored, *_) in store.outcomes(run_id).items()
                if state == "completed" and stored}
    finally:
        store.close()


def _cap_pages(engine: Engine, extra: int) -> None:
    """A full disk: SQLite refuses to grow this connection's file past ``extra`` pages more."""
    conn = engine.store._conn
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages + extra}")


@pytest.mark.parametrize("durability", ["safe", "fast"])
def test_a_full_disk_fails_the_run_and_resume_reruns_exactly_the_unrecorded(tmp_path,
                                                                            durability):
    db = tmp_path / "full.db"
    ran: list[str] = []
    engine = _engine(db, durability=durability, lock_timeout=0.5)
    _cap_pages(engine, 6)
    summary = engine.run(_counting(30, 3000, ran), run_id="full")
    assert summary.status == "failed" and not summary.ok
    assert summary.store_error is not None
    assert "database or disk is full" in summary.store_error and str(db) in summary.store_error
    assert "cannot rollback" not in summary.store_error
    with pytest.raises(StoreError, match="disk is full"):
        engine.close()  # what is still queued cannot be written either

    recorded = _recorded(db, "full")
    if durability == "safe":
        # Completed means committed: every task the run completed has its result stored.
        # A task whose commit went through while another's failed was cancelled with the
        # run before it could complete: its result is kept, and resume does not rerun it.
        states = {t.name: t.status.value for t in summary.tasks}
        completed = {n for n, state in states.items() if state == "completed"}
        assert completed and completed <= recorded
        assert all(states[n] == "cancelled" for n in recorded - completed)
        assert len(recorded) < 30
    first = set(ran)

    ran.clear()
    again = _engine(db, durability=durability)  # a fresh connection: the disk has room again
    try:
        # run() with the id resumes the recorded run; when the disk filled before even the
        # run's start was committed there is nothing recorded, and it runs everything afresh.
        resumed = again.run(_counting(30, 3000, ran), run_id="full")
    finally:
        again.close()
    assert resumed.ok and resumed.counts == {"completed": 30}
    assert sorted(ran) == sorted(f"t{i:02d}" for i in range(30) if f"t{i:02d}" not in recorded)
    assert first  # the first run did execute tasks before the disk filled
    assert _recorded(db, "full") == {f"t{i:02d}" for i in range(30)}


@pytest.mark.parametrize("durability", ["safe", "fast"])
def test_a_lock_held_by_another_connection_fails_the_run(tmp_path, durability):
    db = tmp_path / "locked.db"
    engine = _engine(db, durability=durability, lock_timeout=0.2)
    holder = sqlite3.connect(db, isolation_level=None, check_same_thread=False)

    def take_the_lock():
        holder.execute("BEGIN IMMEDIATE")
        holder.execute("INSERT INTO owners VALUES (1, 'elsewhere', 'holder', 0)")
        return "took it"

    ran: list[str] = []
    tasks = [Task("lock", fn=take_the_lock),
             *_counting(4, 10, ran, {f"t{i:02d}": ["lock"] for i in range(4)})]
    try:
        summary = engine.run(tasks, run_id="held")
        assert summary.status == "failed"
        assert summary.store_error is not None
        assert f"database {db} is locked" in summary.store_error
        if durability == "safe":
            # The lock's own result could not be committed: nothing after it started.
            assert ran == []
            assert summary.counts.get("completed", 0) == 0
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        engine.close()  # the lock is gone: what was kept is written now
    recorded = _recorded(db, "held")
    ran.clear()
    again = _engine(db, durability=durability)
    try:
        resumed = again.resume("held", [Task("lock", fn=lambda: "again"),
                                        *_counting(4, 10, ran, {f"t{i:02d}": ["lock"]
                                                                for i in range(4)})])
    finally:
        again.close()
    assert resumed.ok
    assert sorted(ran) == sorted({f"t{i:02d}" for i in range(4)} - recorded)


def test_a_slow_write_is_logged_with_the_store_name_while_it_runs(tmp_path):
    import logging

    db = tmp_path / "slow.db"
    store = SqliteStore(db, lock_timeout=30, slow_write=0.05)
    warned = threading.Event()
    running_when_warned: list[bool] = []

    class Catch(logging.Handler):
        def emit(self, record):
            if "has been running for" in record.getMessage():
                running_when_warned.append(writer.is_alive())
                warned.set()

    handler = Catch()
    logging.getLogger("taskloom.store").addHandler(handler)
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        store.cache_put("k", "task", 1, 1e12)
        writer = threading.Thread(target=store.flush)
        writer.start()
        assert warned.wait(20)
        assert running_when_warned == [True]
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        logging.getLogger("taskloom.store").removeHandler(handler)
    writer.join(30)
    store.close()
    assert _cache_rows(db) == 1


def _cache_rows(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute("SELECT count(*) FROM cache").fetchone()[0])
    finally:
        conn.close()


class _Marker:
    """Unpickling this creates a file: proof that code from the database ran."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def _plant_pickle(db: Path, run_id: str, task: str, marker: Path) -> None:
    import pickle

    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute(
            "INSERT OR REPLACE INTO results(run_id, task, kind, value, note, cache_hit, t)"
            " VALUES (?, ?, 'pickle', ?, 'pickled', 0, 0)",
            (run_id, task, pickle.dumps(_Marker(str(marker)))),
        )
    finally:
        conn.close()


def test_a_crafted_pickle_is_never_loaded(tmp_path):
    db, marker = tmp_path / "crafted.db", tmp_path / "ran"
    engine = _engine(db)
    engine.run([Task("a", fn=lambda: (1, 2)), Task("b", fn=lambda: 3)], run_id="r")
    engine.close()
    _plant_pickle(db, "r", "b", marker)

    reader = SqliteStore(db, read_only=True)
    try:
        outcomes = reader.outcomes("r")
        assert reader.summary("r")["results"]["b"].startswith("<pickled value")
        assert reader.detail("r") is not None
    finally:
        reader.close()
    assert outcomes["b"][2].startswith("<pickled value")
    writer = SqliteStore(db)
    try:
        loaded = writer.outcomes("r")
    finally:
        writer.close()
    assert loaded["a"] == ("completed", True, (1, 2), None, None)  # signed here: loaded
    assert loaded["b"][:2] == ("completed", False)  # unsigned: not loaded, runs again
    assert not marker.exists()


def test_files_are_private_and_a_shared_key_is_refused(tmp_path, monkeypatch):
    from taskloom_std.stores.codec import KEY_ENV

    key = tmp_path / "keys" / "store.key"
    monkeypatch.setenv(KEY_ENV, str(key))
    db = tmp_path / "private" / "p.db"
    engine = _engine(db)
    engine.run([Task("t", fn=lambda: (1, 2))], run_id="r")
    engine.close()
    assert db.stat().st_mode & 0o777 == 0o600
    assert key.stat().st_mode & 0o777 == 0o600
    key.chmod(0o644)
    store = SqliteStore(db)
    try:
        with pytest.raises(StoreError, match="readable by you only"):
            store.outcomes("r")
    finally:
        store.close()


def _flip(db: Path, sql: str, mutate) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        rowid, data = conn.execute(sql).fetchone()
        conn.execute("UPDATE events SET data = ? WHERE rowid = ?", (mutate(data), rowid))
    finally:
        conn.close()


@pytest.mark.parametrize("damage", [
    lambda d: d[: len(d) // 2],                          # truncated
    lambda d: d[:5] + chr(ord(d[5]) ^ 0x55) + d[6:],     # a flipped bit pattern
    lambda d: b"\xff\xfe" + d.encode(),                  # not text
    lambda d: '[["t", "exploded", 1.0]]',                # a state taskloom does not know
])
def test_a_damaged_event_batch_names_the_database_and_the_batch(tmp_path, damage):
    db = tmp_path / "damaged.db"
    engine = _engine(db)
    engine.run([Task("t", fn=lambda: 1)], run_id="r")
    engine.close()
    _flip(db, "SELECT rowid, data FROM events ORDER BY rowid LIMIT 1", damage)
    store = SqliteStore(db, read_only=True)
    try:
        with pytest.raises(StoreCorruptError, match=r"event batch \d+ of run 'r'") as info:
            store.detail("r")
    finally:
        store.close()
    assert str(db) in str(info.value)


def test_read_only_history_writes_nothing_and_reads_a_read_only_copy(tmp_path):
    db = tmp_path / "live.db"
    engine = _engine(db)
    engine.run([Task("t", fn=lambda: {"a": 1})], run_id="r")
    engine.close()
    copy_dir = tmp_path / "copy"
    copy_dir.mkdir()
    copy = copy_dir / "ro.db"
    copy.write_bytes(db.read_bytes())
    copy.chmod(0o400)
    copy_dir.chmod(0o500)
    try:
        store = SqliteStore(copy, read_only=True)
        try:
            assert [r.id for r in store.runs()] == ["r"]
            assert store.summary("r")["results"] == {"t": {"a": 1}}
        finally:
            store.close()
        assert sorted(p.name for p in copy_dir.iterdir()) == ["ro.db"]
    finally:
        copy_dir.chmod(0o700)
    before = db.read_bytes()
    store = SqliteStore(db, read_only=True)
    try:
        store.runs()
        with pytest.raises(StoreError, match="read-only"):
            store.cache_put("k", "t", 1, 1e12)
    finally:
        store.close()
    assert db.read_bytes() == before


def test_history_reads_while_another_process_holds_the_write_lock(tmp_path):
    db = tmp_path / "busy.db"
    engine = _engine(db)
    engine.run([Task("t", fn=lambda: 1)], run_id="r")
    engine.close()
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("DELETE FROM runs")  # uncommitted: readers still see the run
    try:
        store = SqliteStore(db, read_only=True, lock_timeout=60)
        try:
            assert [r.id for r in store.runs()] == ["r"]
        finally:
            store.close()
    finally:
        holder.execute("ROLLBACK")
        holder.close()


_OPEN_AT_ONCE = textwrap.dedent("""
    import sys
    from taskloom_std.stores.sqlite import SqliteStore
    print("ready", flush=True)
    sys.stdin.readline()
    store = SqliteStore(sys.argv[1])
    store.close()
    print("opened", flush=True)
""")


@pytest.mark.parametrize("attempt", range(4))
def test_processes_creating_one_new_database_at_once_all_succeed(tmp_path, attempt):
    db = tmp_path / "new" / "fresh.db"
    procs = [
        subprocess.Popen([sys.executable, "-c", _OPEN_AT_ONCE, str(db)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(6)
    ]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        for p in procs:  # released together: every one finds no database, or a half-made one
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        outcomes = [p.communicate(timeout=60) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert [p.returncode for p in procs] == [0] * 6, [err for _, err in outcomes]
    store = SqliteStore(db, read_only=True)
    store.close()


@pytest.fixture(scope="module")
def recorded_db(tmp_path_factory) -> bytes:
    db = tmp_path_factory.mktemp("fuzz") / "base.db"
    engine = _engine(db)
    engine.plugins.register(RetryOnce(), name="retry-once")

    def broken():
        raise ValueError("broken")

    engine.run([Task("flaky", fn=_flaky()), Task("broken", fn=broken),
                Task("tuple", fn=lambda: (1, "a"), dependencies=["flaky"])], run_id="r")
    engine.close()
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return db.read_bytes()


@given(flips=st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(1, 255)), min_size=1,
                      max_size=8),
       cut=st.one_of(st.none(), st.integers(0, 1 << 20)))
def test_history_of_a_damaged_file_is_read_or_refused_never_a_crash(recorded_db, tmp_path_factory,
                                                                    flips, cut):
    data = bytearray(recorded_db)
    for where, mask in flips:
        data[where % len(data)] ^= mask
    if cut is not None:
        del data[cut % len(data):]
    db = tmp_path_factory.mktemp("damaged") / "d.db"
    db.write_bytes(bytes(data))
    try:
        store = SqliteStore(db, read_only=True)
    except StoreError:
        return
    try:
        for record in store.runs():
            store.detail(record.id)
            store.summary(record.id)
    except StoreError:
        pass
    finally:
        store.close()


def test_event_batches_pickled_by_an_older_taskloom_are_skipped_never_unpickled(tmp_path):
    import pickle

    db, marker = tmp_path / "old.db", tmp_path / "ran"
    engine = _engine(db)
    engine.run([Task("t", fn=lambda: 1)], run_id="r")
    engine.close()
    _flip(db, "SELECT rowid, data FROM events ORDER BY rowid LIMIT 1",
          lambda d: pickle.dumps([("r", "t", _Marker(str(marker)), 1.0)], protocol=4))
    store = SqliteStore(db, read_only=True)
    try:
        record = store.detail("r")
        outcomes = store.outcomes("r")
    finally:
        store.close()
    assert record is not None and outcomes["t"][:2] == ("completed", True)
    assert not marker.exists()


def test_one_writer_round_with_two_runs_interleaved_stores_each_runs_own(tmp_path):
    store = SqliteStore(path=tmp_path / "t.db")
    try:
        conn = store._conn
        # Two runs' changes as one round takes them from the flat queue: r1, r2, r2, r1.
        events = ["r1", "a", "y", 1.0, "r2", "b", "y", 2.0, "r2", "b", "c", 3.0,
                  "r1", "a", "c", 4.0]
        results = ["r1", "a", None, 4.0, False, "r2", "b", [1, 2], 3.0, False,
                   "r1", "c", None, 5.0, True]
        conn.execute("BEGIN")
        store._write_events(conn, events)
        store._write_results(conn, results)
        conn.execute("COMMIT")
        with store.read() as reader:
            assert store.events(reader, "r1") == [("r1", "a", "ready", 1.0),
                                                  ("r1", "a", "completed", 4.0)]
            assert store.events(reader, "r2") == [("r2", "b", "ready", 2.0),
                                                  ("r2", "b", "completed", 3.0)]
            hits = dict(reader.execute("SELECT task, cache_hit FROM results WHERE run_id = 'r1'"))
        assert hits == {"a": 0, "c": 1}
        assert store.outcomes("r2")["b"] == ("completed", True, [1, 2], None, None)
        assert store.outcomes("r1")["a"] == ("completed", True, None, None, None)
    finally:
        store.close()


def test_results_of_no_value_are_stored_as_such(tmp_path):
    store = SqliteStore(path=tmp_path / "t.db")
    try:
        conn = store._conn
        results: list[object] = []
        for i in range(600):  # more than one statement's rows
            results.extend(("r1", f"t{i}", None, float(i), False))
        conn.execute("BEGIN")
        store._write_results(conn, results)
        conn.execute("COMMIT")
        with store.read() as reader:
            rows = reader.execute(
                "SELECT kind, value, note, cache_hit, count(*) FROM results GROUP BY 1, 2, 3, 4"
            ).fetchall()
            last = reader.execute("SELECT t FROM results WHERE task = 't599'").fetchone()
        assert rows == [("none", None, None, 0, 600)] and last == (599.0,)
    finally:
        store.close()


def test_the_writer_checkpoints_the_log_into_the_database_after_its_rounds(tmp_path,
                                                                           monkeypatch):
    from taskloom_std.stores import sqlite as sqlite_store

    monkeypatch.setattr(sqlite_store, "CHECKPOINT_RECORDS", 100)
    db = tmp_path / "t.db"
    engine = _engine(db)
    try:
        tasks = [Task(f"t{i}", fn=lambda: None) for i in range(300)]
        assert engine.run(tasks).ok
        engine.store.flush()
        engine.store.flush()  # a round after the one whose checkpoint followed it
        # The database file alone (the log ignored) holds the run: a checkpoint copied it.
        conn = sqlite3.connect(f"file:{db}?immutable=1", uri=True)
        try:
            assert conn.execute("SELECT count(*) FROM results").fetchone() == (300,)
        finally:
            conn.close()
    finally:
        engine.close()
