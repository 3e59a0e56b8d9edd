"""The PostgreSQL store against a real server: schema versions, runs, failures, the CLI.

What every store promises (results by codec, resume, claims, the cache, unsigned pickles) is
checked for this store by the conformance suite (``tests/conformance`` of taskloom).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest

from taskloom import Engine, Task
from taskloom_postgres import PostgresHistory, PostgresStore, create_postgres_store
from taskloom_postgres.schema import SCHEMA_VERSION
from taskloom_std.stores import StoreError, StoreVersionError


def _engine(dsn: str, **options) -> Engine:
    return Engine(max_workers=2, store="postgres", store_options={"dsn": dsn, **options})


def _versions(dsn: str) -> list[int]:
    with psycopg.connect(dsn) as conn:
        return [r[0] for r in conn.execute("SELECT version FROM taskloom_schema ORDER BY 1")]


def test_the_schema_is_made_on_first_use_and_recorded(fresh_dsn):
    store = PostgresStore(fresh_dsn)
    store.close()
    assert _versions(fresh_dsn) == list(range(1, SCHEMA_VERSION + 1))
    PostgresStore(fresh_dsn).close()  # a second opening applies nothing again
    assert _versions(fresh_dsn) == list(range(1, SCHEMA_VERSION + 1))


def test_processes_opening_one_new_database_at_once_migrate_it_once(fresh_dsn):
    errors: list[BaseException] = []
    stores: list[PostgresStore] = []
    lock = threading.Lock()

    def open_one() -> None:
        try:
            store = PostgresStore(fresh_dsn)
        except BaseException as exc:
            errors.append(exc)
            return
        with lock:
            stores.append(store)

    threads = [threading.Thread(target=open_one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for store in stores:
        store.close()
    assert not errors and len(stores) == 6
    assert _versions(fresh_dsn) == list(range(1, SCHEMA_VERSION + 1))


def test_a_newer_schema_is_refused_with_a_clear_message_and_left_untouched(fresh_dsn):
    PostgresStore(fresh_dsn).close()
    with psycopg.connect(fresh_dsn) as conn:
        conn.execute("INSERT INTO taskloom_schema(version) VALUES (%s)", (SCHEMA_VERSION + 1,))
    for read_only in (False, True):
        with pytest.raises(StoreVersionError, match=r"newer taskloom-postgres.*knows up to"):
            PostgresStore(fresh_dsn, read_only=read_only)
    assert _versions(fresh_dsn)[-1] == SCHEMA_VERSION + 1


def test_bad_options_and_an_unreachable_server_are_clear_errors(postgres_cluster):
    with pytest.raises(StoreError, match=r"store_options\.dsn"):
        create_postgres_store()
    with pytest.raises(StoreError, match="durability must be"):
        PostgresStore("postgresql://x@127.0.0.1/db", durability="maybe")
    with pytest.raises(StoreError, match="flush_interval must be"):
        PostgresStore("postgresql://x@127.0.0.1/db", flush_interval=0)
    with pytest.raises(StoreError, match=r"cannot connect to postgresql://postgres@127\.0\.0\.1"):
        PostgresStore(f"postgresql://postgres@127.0.0.1:{postgres_cluster.port}/no_such_db")


def test_a_password_never_appears_in_the_location_or_messages():
    store_error = None
    try:
        PostgresStore("postgresql://u:s3cret@127.0.0.1:1/db", connect_timeout=1)
    except StoreError as exc:
        store_error = str(exc)
    assert store_error is not None and "s3cret" not in store_error


def test_read_only_history_of_an_empty_database_says_there_is_none(fresh_dsn):
    with pytest.raises(StoreError, match="no run history"):
        PostgresStore(fresh_dsn, read_only=True)


def test_records_attempts_errors_and_logs_read_back_as_history(fresh_dsn):
    engine = _engine(fresh_dsn)

    def broken():
        raise ValueError("bad input")

    summary = engine.run([Task("a", fn=lambda: {"rows": [1, 2]}), Task("broken", fn=broken),
                          Task("after", fn=lambda: 1, dependencies=["broken"])],
                         run_id="r1", name="demo")
    engine.store.record_logs("r1", "a", 1, "hello\n")
    engine.close()
    assert summary.status == "failed"
    reader = PostgresStore(fresh_dsn, read_only=True)
    try:
        record = reader.detail("r1")
        assert (record.workflow, record.status) == ("demo", "failed")
        tasks = {t.name: t for t in record.tasks}
        assert tasks["broken"].attempts[0].error_type == "ValueError"
        assert "bad input" in tasks["broken"].attempts[0].traceback
        assert tasks["a"].state == "completed"
        assert [r.id for r in reader.runs()] == ["r1"]
        assert reader.find("r") == ["r1"] and reader.find("x") == []
        assert reader.logs("r1") == [("a", 1, pytest.approx(time.time(), abs=60), "hello\n")]
        assert reader.result_previews("r1")["a"] == '{"rows": [1, 2]}'
        assert reader.runs_page(workflow="demo").total == 1
    finally:
        reader.close()


def test_a_dropped_connection_fails_the_flush_and_the_next_round_writes_everything(fresh_dsn):
    engine = _engine(fresh_dsn, flush_interval=0.05)
    store = engine.store
    try:
        assert engine.run([Task("a", fn=lambda: 1)], run_id="before").ok
        with psycopg.connect(fresh_dsn, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE"
                          " application_name = 'taskloom' AND pid <> pg_backend_pid()")
        # The writer's connection is gone: the records of this run are kept, the round that
        # meets the dead connection fails, and a new connection writes them.
        summary = engine.run([Task(f"t{i}", fn=lambda: 2) for i in range(5)], run_id="after")
        store.flush()
        outcomes = store.outcomes("after")
    finally:
        engine.close()
    assert summary.status in ("completed", "failed")
    assert {t for t, o in outcomes.items() if o[1]} == {f"t{i}" for i in range(5)}


def test_cancel_requests_reach_the_process_running_the_run(fresh_dsn):
    engine = _engine(fresh_dsn)
    started = threading.Event()
    release = threading.Event()

    def slow(context):
        started.set()
        while not context.cancelled and not release.is_set():
            release.wait(0.02)  # a body polling its token, as long loops do
        return 1

    other = PostgresStore(fresh_dsn)
    try:
        result: list = []
        runner = threading.Thread(target=lambda: result.append(
            engine.run([Task("slow", fn=slow)], run_id="long")))
        runner.start()
        assert started.wait(10)
        other.record_action("cancel", "someone", run_id="long")
        runner.join(15)
        release.set()
        assert not runner.is_alive()
        assert result[0].status == "cancelled"
        assert other.actions("long")[0]["handled"] is not None
    finally:
        release.set()
        other.close()
        engine.close()


def _taskloom(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "from taskloom.app.cli import main; main()",
                           *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


def test_the_cli_records_into_the_configured_database_and_reads_it_by_dsn(fresh_dsn, tmp_path):
    (tmp_path / "jobs.py").write_text("def hello():\n    return 'hi'\n")
    (tmp_path / "taskloom.toml").write_text(
        '[taskloom]\nstore = "postgres"\n\n[tasks.hello]\ncall = "jobs:hello"\n'
        '\n[tasks.after]\ncall = "jobs:hello"\ndepends_on = ["hello"]\n')
    env = {**os.environ, "TASKLOOM_STORE_OPTIONS__DSN": fresh_dsn}
    ran = _taskloom("run", "taskloom.toml", env=env, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert not (tmp_path / ".taskloom").exists()  # nothing went to a local file
    reader = PostgresStore(fresh_dsn, read_only=True)
    try:
        (run,) = reader.runs()
    finally:
        reader.close()
    assert run.status == "completed" and run.counts == {"completed": 2}
    plain = {k: v for k, v in env.items() if k != "TASKLOOM_STORE_OPTIONS__DSN"}
    listed = _taskloom("runs", "--db", fresh_dsn, env=plain, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert run.id[:8] in listed.stdout and "completed" in listed.stdout
    # The configuration names the store: its DSN (from the environment) is the history.
    shown = _taskloom("show", run.id, "-c", "taskloom.toml", env=env, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "hello" in shown.stdout and "after" in shown.stdout


def test_the_history_provider_accepts_dsns_only():
    provider = PostgresHistory()
    assert provider.accepts("postgresql://h/db") and provider.accepts("postgres://h/db")
    assert not provider.accepts("runs.db")
    assert provider.locate("postgresql://h/db", None) == "postgresql://h/db"
    assert provider.record_options({}, Path("."), None, "postgresql://h/db") == {
        "dsn": "postgresql://h/db"}


def test_the_cli_chooses_the_provider_by_location_or_configured_store():
    from taskloom import load_plugins
    from taskloom.app.cli._common import history_provider

    plugins = load_plugins()
    assert history_provider(plugins).store == "sqlite"  # the default: a file
    assert history_provider(plugins, db="runs.db").store == "sqlite"
    assert history_provider(plugins, db="postgresql://h/db").store == "postgres"
    assert history_provider(plugins, store="postgres").store == "postgres"


def test_taskloom_resume_by_dsn_reruns_only_what_is_not_recorded(fresh_dsn, tmp_path):
    (tmp_path / "jobs.py").write_text(
        "from pathlib import Path\n"
        "def step(name):\n"
        "    with open('ran.txt', 'a') as f:\n"
        "        f.write(name + '\\n')\n"
        "    if name == 'flaky' and not Path('fixed').exists():\n"
        "        raise RuntimeError('not yet')\n"
        "    return name\n"
        "def first():\n    return step('first')\n"
        "def flaky(first):\n    return step('flaky')\n"
        "def last(flaky):\n    return step('last')\n")
    (tmp_path / "taskloom.toml").write_text(
        '[taskloom]\nstore = "postgres"\n\n[tasks.first]\ncall = "jobs:first"\n'
        '\n[tasks.flaky]\ncall = "jobs:flaky"\ndepends_on = ["first"]\n'
        '\n[tasks.last]\ncall = "jobs:last"\ndepends_on = ["flaky"]\n')
    env = {**os.environ, "TASKLOOM_STORE_OPTIONS__DSN": fresh_dsn}
    failed = _taskloom("run", "taskloom.toml", env=env, cwd=tmp_path)
    assert failed.returncode == 1, failed.stderr
    reader = PostgresStore(fresh_dsn, read_only=True)
    try:
        (run,) = reader.runs()
    finally:
        reader.close()
    (tmp_path / "fixed").touch()
    (tmp_path / "ran.txt").unlink()
    plain = {k: v for k, v in env.items() if k != "TASKLOOM_STORE_OPTIONS__DSN"}
    resumed = _taskloom("resume", run.id, "taskloom.toml", "--db", fresh_dsn,
                        "--retry-failed", env=plain, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr + resumed.stdout
    assert (tmp_path / "ran.txt").read_text().split() == ["flaky", "last"]
    reader = PostgresStore(fresh_dsn, read_only=True)
    try:
        record = reader.run(run.id)
    finally:
        reader.close()
    assert (record.status, record.resumes) == ("completed", 1)


_WRITER = """
import sys
from taskloom import Engine, Task
from taskloom_postgres import PostgresStore

dsn, who = sys.argv[1], sys.argv[2]
engine = Engine(max_workers=2, store="postgres", store_options={"dsn": dsn})
for i in range(3):
    tasks = [Task(f"t{j}", fn=lambda j=j: j) for j in range(20)]
    assert engine.run(tasks, run_id=f"{who}-{i}", name=who).ok
state = engine.store.schedule_state()
won = [t for t in range(200) if state.claim("job", float(t), who)]
engine.close()
print(",".join(map(str, won)))
"""


def test_processes_share_one_history_and_claim_each_fire_time_once(fresh_dsn, tmp_path):
    PostgresStore(fresh_dsn).close()  # the schema first: the processes then race only on claims
    script = tmp_path / "writer.py"
    script.write_text(_WRITER)
    procs = [subprocess.Popen([sys.executable, str(script), fresh_dsn, who],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for who in ("host-a", "host-b", "host-c")]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [err for _, err in outputs]
    won = [int(t) for out, _ in outputs for t in out.strip().split(",") if t]
    assert sorted(won) == list(range(200))  # every fire time claimed, none twice
    reader = PostgresStore(fresh_dsn, read_only=True)
    try:
        runs = reader.runs(limit=50)
        assert sorted(r.id for r in runs) == sorted(
            f"{who}-{i}" for who in ("host-a", "host-b", "host-c") for i in range(3))
        assert {r.status for r in runs} == {"completed"}
        assert reader.summary("host-b-2")["results"] == {f"t{j}": j for j in range(20)}
    finally:
        reader.close()


def test_taskloom_prune_by_dsn_and_by_configuration_never_a_run_going_elsewhere(fresh_dsn,
                                                                              tmp_path):
    engine = _engine(fresh_dsn)
    try:
        for run_id in ("r1", "r2", "r3"):
            assert engine.run([Task("a", fn=lambda: 1)], run_id=run_id).ok
    finally:
        engine.close()
    with psycopg.connect(fresh_dsn) as conn:  # a run going on another host, started long ago
        conn.execute("INSERT INTO runs(id, status, started, pid, host) VALUES"
                     " ('elsewhere', 'running', 1.0, 4242, 'other.example')")
    env = dict(os.environ)
    dry = _taskloom("prune", "--db", fresh_dsn, "--keep", "1", "--dry-run", env=env,
                    cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert "would delete 2 run(s)" in dry.stdout and "r1" in dry.stdout
    (tmp_path / "taskloom.toml").write_text(
        '[taskloom]\nstore = "postgres"\n\n[tasks.a]\ncall = "os:getpid"\n')
    env["TASKLOOM_STORE_OPTIONS__DSN"] = fresh_dsn
    done = _taskloom("prune", "-c", "taskloom.toml", "--older-than", "0s", env=env,
                     cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "deleted 3 run(s)" in done.stdout
    with psycopg.connect(fresh_dsn) as conn:
        assert conn.execute("SELECT id FROM runs").fetchall() == [("elsewhere",)]
        assert conn.execute("SELECT count(*) FROM events").fetchone() == (0,)


def test_taskloom_db_upgrade_reports_versions_and_refuses_a_newer_schema(fresh_dsn, tmp_path):
    from taskloom_postgres.schema import MIGRATIONS, migrate

    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        migrate(conn, "test", {1: MIGRATIONS[1]})  # as the first release left it
    env = dict(os.environ)
    done = _taskloom("db", "upgrade", "--db", fresh_dsn, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (f"{fresh_dsn}: schema version 1 -> schema version "
                                   f"{SCHEMA_VERSION} (upgraded)")
    assert _versions(fresh_dsn) == list(range(1, SCHEMA_VERSION + 1))
    (tmp_path / "taskloom.toml").write_text(
        '[taskloom]\nstore = "postgres"\n\n[tasks.a]\ncall = "os:getpid"\n')
    env["TASKLOOM_STORE_OPTIONS__DSN"] = fresh_dsn
    again = _taskloom("db", "upgrade", "-c", "taskloom.toml", env=env, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == f"{fresh_dsn}: schema version {SCHEMA_VERSION}, up to date"
    with psycopg.connect(fresh_dsn) as conn:
        conn.execute("INSERT INTO taskloom_schema(version) VALUES (%s)", (SCHEMA_VERSION + 1,))
    newer = _taskloom("db", "upgrade", "--db", fresh_dsn, env=env, cwd=tmp_path)
    assert newer.returncode == 2
    assert (f"has taskloom schema version {SCHEMA_VERSION + 1}, written by a newer "
            "taskloom-postgres") in newer.stderr
    assert "Traceback" not in newer.stderr
    assert _versions(fresh_dsn) == list(range(1, SCHEMA_VERSION + 2))


def test_taskloom_db_upgrade_gives_an_empty_database_the_whole_schema(fresh_dsn, tmp_path):
    done = _taskloom("db", "upgrade", "--db", fresh_dsn, env=dict(os.environ), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (f"{fresh_dsn}: no schema -> schema version "
                                   f"{SCHEMA_VERSION} (upgraded)")
