"""``taskloom runs``, ``show`` and ``resume`` on runs recorded by ``taskloom run``."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from taskloom.app.cli import main
from taskloom_std.stores.sqlite import SqliteStore

HERE = Path(__file__).resolve().parent

STEPS = textwrap.dedent('''
    from pathlib import Path

    HERE = Path(__file__).resolve().parent

    def _log(name):
        with open(HERE / "executions.log", "a") as f:
            f.write(name + "\\n")

    def extract():
        _log("extract")
        return {"rows": [1, 2, 3]}

    def transform(extract):
        _log("transform")
        if not (HERE / "fixed").exists():
            raise ValueError("transform is broken")
        return sum(extract["rows"])

    def load(transform):
        _log("load")
        return transform * 2
''')

CONFIG = textwrap.dedent('''
    [taskloom]
    executor = { kind = "thread", max_workers = 2 }

    [tasks.extract]
    call = "steps:extract"

    [tasks.transform]
    call = "steps:transform"
    depends_on = ["extract"]

    [tasks.load]
    call = "steps:load"
    depends_on = ["transform"]
''')


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "steps.py").write_text(STEPS)
    (tmp_path / "taskloom.toml").write_text(CONFIG)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("steps", None)
    yield tmp_path
    sys.modules.pop("steps", None)


def _invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _executions(folder: Path) -> Counter[str]:
    log = folder / "executions.log"
    return Counter(log.read_text().split()) if log.exists() else Counter()


def _only_run(db: Path) -> str:
    store = SqliteStore(db)
    try:
        (record,) = store.runs()
    finally:
        store.close()
    return record.id


def test_runs_show_and_resume_a_failed_run(project):
    assert _invoke("run", "taskloom.toml").exit_code == 1
    db = project / ".taskloom" / "taskloom.db"
    assert db.is_file()
    run_id = _only_run(db)

    listed = _invoke("runs")
    assert listed.exit_code == 0
    assert run_id in listed.output and "failed" in listed.output
    assert "1 completed, 2 failed" in listed.output

    shown = _invoke("show", run_id[:6])
    assert shown.exit_code == 0
    assert "ValueError: transform is broken" in shown.output
    assert 'raise ValueError("transform is broken")' in shown.output  # the traceback
    assert "```mermaid" in shown.output and "section transform" in shown.output

    gantt = _invoke("show", run_id, "--gantt")
    lines = gantt.output.splitlines()
    assert lines[0] == "gantt" and "    dateFormat x" in lines
    assert any(line.startswith("    #1 failed :crit, ") for line in lines)
    assert any(line.startswith("    #1 completed :done, ") for line in lines)

    (project / "fixed").touch()
    kept = _invoke("resume", run_id)
    assert kept.exit_code == 1 and "transform is broken" in kept.output
    assert _executions(project) == {"extract": 1, "transform": 1}

    retried = _invoke("resume", run_id, "--retry-failed")
    assert retried.exit_code == 0, retried.output
    assert f"run {run_id} completed" in retried.output
    assert _executions(project) == {"extract": 1, "transform": 2, "load": 1}
    assert "completed" in _invoke("runs").output

    done = _invoke("resume", run_id)
    assert done.exit_code == 0 and "already completed" in done.output


def test_db_option_and_bad_input(project, tmp_path_factory):
    missing = tmp_path_factory.mktemp("empty") / "none.db"
    result = _invoke("runs", "--db", str(missing))
    assert result.exit_code == 2 and "no run history" in result.output
    _invoke("run", "taskloom.toml")
    db = project / ".taskloom" / "taskloom.db"
    assert _invoke("runs", "--db", str(db)).exit_code == 0
    unknown = _invoke("show", "zzzz", "--db", str(db))
    assert unknown.exit_code == 2 and "no recorded run 'zzzz'" in unknown.output


def test_a_corrupt_database_is_reported_not_replaced(project):
    db = project / ".taskloom" / "taskloom.db"
    db.parent.mkdir()
    db.write_bytes(b"garbage" * 100)
    result = _invoke("runs")
    assert result.exit_code == 2 and "left untouched" in result.output
    assert db.read_bytes() == b"garbage" * 100


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL and named pipes")
def test_kill_taskloom_run_then_resume_from_the_cli(tmp_path, monkeypatch):
    import crash_workflow

    shutil.copy(HERE / "crash_workflow.py", tmp_path / "crash_workflow.py")
    log = tmp_path / "executions.log"
    tables = ['[taskloom]', 'executor = { kind = "thread", max_workers = 2 }',
              'store_options = { durability = "safe" }']
    for name, deps in crash_workflow.graph().items():
        tables += [f"[tasks.{name}]", 'call = "crash_workflow:step"',
                   f"depends_on = {deps!r}".replace("'", '"'),
                   f"config = {{ log = {str(log)!r} }}".replace("'", '"')]
    (tmp_path / "taskloom.toml").write_text("\n".join(tables) + "\n")
    pipe = tmp_path / "gate.pipe"
    os.mkfifo(pipe)
    env = {**os.environ, "TASKLOOM_CRASH_BLOCK": str(pipe), "PYTHONPATH": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-c", "from taskloom.app.cli import main; main()", "run", "taskloom.toml"],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        with open(pipe) as f:  # blocks until gate is running
            assert f.readline().strip() == "gate"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    before = _executions(tmp_path)
    run_id = _only_run(tmp_path / ".taskloom" / "taskloom.db")

    monkeypatch.chdir(tmp_path)
    assert "interrupted" in _invoke("runs").output
    store = SqliteStore(tmp_path / ".taskloom" / "taskloom.db")
    try:
        recorded = {n for n, (s, stored, *_) in store.outcomes(run_id).items()
                    if s == "completed" and stored}
    finally:
        store.close()
    result = _invoke("resume", run_id)
    assert result.exit_code == 0, result.output
    after = _executions(tmp_path)
    assert set(after) == set(crash_workflow.graph())
    assert all(after[n] == 1 for n in recorded)
    again = {n for n, c in after.items() if c > 1}
    assert "gate" in again and len(again) <= 2
    assert all(after[n] == 2 and before[n] == 1 for n in again)


def test_an_attempt_cut_off_by_a_kill_stays_running_not_the_next_state():
    from taskloom_std.stores.history import TaskRecord, _attempts

    rec = TaskRecord("t", "completed")
    rec.events = [("pending", 1.0), ("ready", 1.1), ("running", 1.2),  # killed here
                  ("pending", 9.0), ("ready", 9.1), ("running", 9.2), ("completed", 9.5)]
    first, second = _attempts(rec, {})
    assert (first.number, first.state, first.finished) == (1, "running", None)
    assert (second.number, second.state, second.finished) == (2, "completed", 9.5)


# -- faults through real processes: crafted, damaged, read-only and full databases ------------


def _cli(*args: str, cwd: Path, env: dict[str, str] | None = None,
         **popen: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from taskloom.app.cli import main; main()", *args],
        cwd=cwd, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1", **(env or {})},
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
        **popen,  # type: ignore[arg-type]
    )


def _no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr + result.stdout, result.stderr


class _Marker:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_crafted_database_runs_no_code(project, tmp_path_factory):
    import pickle
    import sqlite3

    (project / "fixed").touch()
    assert _cli("run", "taskloom.toml", cwd=project).returncode == 0
    db = project / ".taskloom" / "taskloom.db"
    run_id = _only_run(db)
    marker = project / "code-ran"
    evil = tmp_path_factory.mktemp("evil")
    (evil / "evilmod.py").write_text(f"open({str(marker)!r}, 'w').close()\ndef f(): pass\n")
    (evil / "taskloom.toml").write_text('[tasks.extract]\ncall = "evilmod:f"\n')
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("UPDATE results SET kind = 'pickle', value = ? WHERE task = 'extract'",
                 (pickle.dumps(_Marker(str(marker))),))
    conn.execute("UPDATE runs SET status = 'failed', config_path = ?",
                 (str(evil / "taskloom.toml"),))
    conn.close()
    env = {"PYTHONPATH": os.pathsep.join([str(project), str(evil)])}

    listed = _cli("runs", cwd=project, env=env)
    assert listed.returncode == 0 and run_id in listed.stdout
    shown = _cli("show", run_id, cwd=project, env=env)
    assert shown.returncode == 0 and "extract" in shown.stdout
    refused = _cli("resume", run_id, cwd=project, env=env)
    assert refused.returncode == 2
    assert f"give it as FILE to resume ('taskloom resume {run_id} {evil}" in refused.stderr
    assert not marker.exists()

    resumed = _cli("resume", run_id, "taskloom.toml", cwd=project, env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert not marker.exists()
    # The unsigned result was not trusted: extract ran again, the others kept their results.
    assert _executions(project) == {"extract": 2, "transform": 1, "load": 1}
    for result in (listed, shown, refused, resumed):
        _no_traceback(result)


def _damage_first_event(db: Path, mutate) -> None:
    import sqlite3

    conn = sqlite3.connect(db, isolation_level=None)
    rowid, data = conn.execute("SELECT rowid, data FROM events ORDER BY rowid").fetchone()
    conn.execute("UPDATE events SET data = ? WHERE rowid = ?", (mutate(data), rowid))
    conn.close()


def _set_version(db: Path, version: int) -> None:
    import sqlite3

    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute(f"PRAGMA user_version = {version}")
    conn.close()


@pytest.fixture(scope="module")
def failed_run(tmp_path_factory):
    """A database holding one failed run of the project (resume then reads all of it)."""
    folder = tmp_path_factory.mktemp("failed-run")
    (folder / "steps.py").write_text(STEPS)
    (folder / "taskloom.toml").write_text(CONFIG)
    result = _cli("run", "taskloom.toml", cwd=folder, env={"PYTHONPATH": str(folder)})
    assert result.returncode == 1, result.stderr
    return folder / ".taskloom"


_EVERY = (("runs",), ("show", "RUN"), ("resume", "RUN", "taskloom.toml"))
_DETAIL = (("show", "RUN"), ("resume", "RUN", "taskloom.toml"))


@pytest.mark.parametrize(("damage", "said", "commands"), [
    # An event batch: the run list does not read events; show and resume refuse.
    (lambda db: _damage_first_event(db, lambda d: d[: len(d) // 3]), "event batch", _DETAIL),
    (lambda db: _damage_first_event(db, lambda d: d.replace('"', "\x00", 3)), "event batch",
     _DETAIL),
    (lambda db: _damage_first_event(db, lambda d: b"\xff\xfe" + d.encode()), "event batch",
     _DETAIL),
    # The file's pages past the header: SQLite's own check finds the damage.
    (lambda db: db.write_bytes(db.read_bytes()[:4096] + random.Random(7).randbytes(1 << 14)),
     "malformed", _EVERY),
    (lambda db: db.write_bytes(b"garbage" * 300), "not an SQLite database", _EVERY),
    (lambda db: _set_version(db, 99), "newer taskloom", _EVERY),
])
def test_a_damaged_database_exits_2_naming_the_file(project, failed_run, damage, said,
                                                    commands):
    db = project / ".taskloom" / "taskloom.db"
    shutil.copytree(failed_run, project / ".taskloom")
    run_id = _only_run(db)
    damage(db)
    for args in _EVERY:
        args = tuple(run_id if a == "RUN" else a for a in args)
        result = _cli(*args, cwd=project, env={"PYTHONPATH": str(project)})
        _no_traceback(result)
        if args[0] in {c[0] for c in commands}:
            assert result.returncode == 2, (args, result.stdout, result.stderr)
            assert str(db) in result.stderr and said in result.stderr, result.stderr
        else:
            assert result.returncode == 0, (args, result.stderr)


def test_runs_and_show_read_a_read_only_copy_and_write_nothing(project):
    import tempfile

    (project / "fixed").touch()
    assert _cli("run", "taskloom.toml", cwd=project).returncode == 0
    db = project / ".taskloom" / "taskloom.db"
    run_id = _only_run(db)
    folder = Path(tempfile.mkdtemp(prefix="taskloom-ro-"))
    try:
        copy = folder / "history.db"
        copy.write_bytes(db.read_bytes())
        copy.chmod(0o400)
        folder.chmod(0o500)
        before = copy.read_bytes()
        listed = _cli("runs", "--db", str(copy), cwd=folder)
        shown = _cli("show", run_id, "--db", str(copy), cwd=folder)
        assert listed.returncode == 0 and run_id in listed.stdout, listed.stderr
        assert shown.returncode == 0 and "section load" in shown.stdout, shown.stderr
        assert copy.read_bytes() == before
        assert sorted(p.name for p in folder.iterdir()) == ["history.db"]
    finally:
        folder.chmod(0o700)
        shutil.rmtree(folder)


def test_runs_does_not_wait_for_a_writer_and_writes_no_owner(project):
    import sqlite3

    (project / "fixed").touch()
    assert _cli("run", "taskloom.toml", cwd=project).returncode == 0
    db = project / ".taskloom" / "taskloom.db"
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("DELETE FROM runs")
    try:
        listed = _cli("runs", cwd=project)
    finally:
        holder.execute("ROLLBACK")
    owners = holder.execute("SELECT count(*) FROM owners").fetchone()[0]
    holder.close()
    assert listed.returncode == 0 and "completed" in listed.stdout, listed.stderr
    assert owners == 0
    assert db.stat().st_mode & 0o777 == 0o600


def test_resume_reads_a_relative_db_from_the_current_folder(project, tmp_path_factory):
    assert _cli("run", "taskloom.toml", cwd=project).returncode == 1
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    shutil.move(str(project / ".taskloom"), str(elsewhere / "history"))
    run_id = _only_run(elsewhere / "history" / "taskloom.db")
    (project / "fixed").touch()
    result = _cli("resume", run_id, str(project / "taskloom.toml"), "--retry-failed",
                  "--db", "history/taskloom.db", cwd=elsewhere,
                  env={"PYTHONPATH": str(project)})
    assert result.returncode == 0, result.stderr
    assert not (project / ".taskloom").exists()  # no new, empty database beside the config
    assert _executions(project) == {"extract": 1, "transform": 2, "load": 1}


MANY = textwrap.dedent('''
    from pathlib import Path

    def make(context):
        name = context.task.name
        with open(Path(__file__).resolve().parent / "executions.log", "a") as f:
            f.write(name + "\\n")
        return name * 20000
''')


def _limit_file_size(limit: int):
    def apply() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE")
@pytest.mark.parametrize("durability", ["safe", "fast"])
def test_a_full_disk_exits_non_zero_and_resume_runs_exactly_the_unrecorded(tmp_path,
                                                                            durability):
    (tmp_path / "many.py").write_text(MANY)
    tables = ["[taskloom]", 'executor = { kind = "thread", max_workers = 2 }',
              f'store_options = {{ durability = "{durability}", lock_timeout = 1 }}']
    names = [f"m{i:02d}" for i in range(30)]
    for name in names:
        tables += [f"[tasks.{name}]", 'call = "many:make"']
    (tmp_path / "taskloom.toml").write_text("\n".join(tables) + "\n")
    env = {"PYTHONPATH": str(tmp_path)}
    # The process may not grow any file past 200 kB: the database's disk is "full".
    full = _cli("run", "taskloom.toml", cwd=tmp_path, env=env,
                preexec_fn=_limit_file_size(200_000))
    _no_traceback(full)
    db = tmp_path / ".taskloom" / "taskloom.db"
    assert full.returncode == 1, full.stdout + full.stderr
    said = full.stdout + full.stderr
    assert "store error" in said and str(db) in said and "disk I/O error" in said
    assert "cannot rollback" not in said
    store = SqliteStore(db, read_only=True)
    try:
        runs = store.runs()
        if not runs:
            # fast: the disk filled before the writer's first round; nothing to resume,
            # and the run said so (exit 1, the cause) instead of claiming success.
            assert durability == "fast"
            return
        (run,) = runs
        run_id = run.id
        recorded = {n for n, (s, stored, *_) in store.outcomes(run_id).items()
                    if s == "completed" and stored}
    finally:
        store.close()
    assert len(recorded) < len(names)
    before = _executions(tmp_path)
    resumed = _cli("resume", run_id, "taskloom.toml", cwd=tmp_path, env=env)
    assert resumed.returncode == 0, resumed.stderr
    again = _executions(tmp_path) - before
    assert sorted(again.elements()) == sorted(set(names) - recorded)


GATED = textwrap.dedent('''
    import os
    from pathlib import Path

    HERE = Path(__file__).resolve().parent

    def step(context):
        name = context.task.name
        with open(HERE / "executions.log", "a") as f:
            f.write(name + "\\n")
        if name == "gate":
            with open(os.environ["GATE"]) as pipe:  # returns once the test holds the lock
                pipe.read()
        return name
''')


@pytest.mark.skipif(sys.platform == "win32", reason="named pipes")
@pytest.mark.parametrize("durability", ["safe", "fast"])
def test_a_lock_held_by_another_process_fails_taskloom_run(tmp_path, durability):
    import sqlite3

    (tmp_path / "gated.py").write_text(GATED)
    tables = ["[taskloom]", 'executor = { kind = "thread", max_workers = 1 }',
              f'store_options = {{ durability = "{durability}", lock_timeout = 0.3 }}',
              '[tasks.first]', 'call = "gated:step"',
              '[tasks.gate]', 'call = "gated:step"', 'depends_on = ["first"]',
              '[tasks.after]', 'call = "gated:step"', 'depends_on = ["gate"]']
    (tmp_path / "taskloom.toml").write_text("\n".join(tables) + "\n")
    pipe = tmp_path / "gate.pipe"
    os.mkfifo(pipe)
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "GATE": str(pipe)}
    proc = subprocess.Popen(
        [sys.executable, "-c", "from taskloom.app.cli import main; main()", "run", "taskloom.toml"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    db = tmp_path / ".taskloom" / "taskloom.db"
    with open(pipe, "w"):  # opens once gate is running: the database exists
        holder = sqlite3.connect(db, isolation_level=None, timeout=30)
        holder.execute("BEGIN IMMEDIATE")
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert "Traceback" not in out + err
    assert proc.returncode == 1, out + err
    assert "store error" in out and f"database {db} is locked" in out.replace("\n", " ")
    if durability == "safe":
        # first was committed before gate started; gate's commit failed, after never ran.
        assert _executions(tmp_path) == {"first": 1, "gate": 1}
        run_id = _only_run(db)
        resumed = _cli("resume", run_id, "taskloom.toml", cwd=tmp_path,
                       env={"PYTHONPATH": str(tmp_path), "GATE": "/dev/null"})
        assert resumed.returncode == 0, resumed.stderr
        assert _executions(tmp_path) == {"first": 1, "gate": 2, "after": 1}


def test_the_cli_reads_history_through_the_history_component(project):
    """The commands name no store and no file: a plugin without a ``history`` component
    means no history, and the standard one's location is the store's own."""
    import ast

    from taskloom.app.cli import _common, history_cmd

    for module in (_common, history_cmd):
        tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
        text = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)
                and isinstance(n.value, str)]
        imports = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        assert not [t for t in text if "sqlite" in t or ".db" in t], module.__name__
        assert not [m for m in imports if m.startswith("taskloom_std")], module.__name__
    _invoke("run", "taskloom.toml")
    listed = _invoke("runs")
    assert listed.exit_code == 0
    assert str(project / ".taskloom" / "taskloom.db") in listed.output.replace("\n", "")
    env = {**os.environ, "TASKLOOM_DISABLE_PLUGINS": "stores"}
    result = CliRunner().invoke(main, ["runs"], env=env)
    assert result.exit_code == 2 and "keeps a run history" in result.output
