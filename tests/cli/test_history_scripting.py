"""History you can find and script: where ``runs`` looks, ``--json`` and filters, ``show``'s
results and captured output, ``prune`` and ``retention``, interrupted runs. Through real
``taskloom`` processes and a real SQLite file."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from taskloom.api.history import parse_age, parse_since

CLI = [sys.executable, "-c", "from taskloom.app.cli import main; main()"]

BODIES = textwrap.dedent('''
    import os

    def extract():
        print("extracting")
        return {"rows": list(range(200))}

    def chatty():
        for i in range(30):
            print(f"line {i}")
        return "said"

    def odd():
        return {1, 2, 3}  # a set: not JSON, stored pickled

    def broken(extract):
        raise ValueError("broken on purpose")

    def gate():
        with open(os.environ["READY"], "w") as ready:  # returns once the test reads it
            ready.write("gate\\n")
        with open(os.environ["GATE"]) as pipe:  # returns once the test releases it
            pipe.read()
        return "gate"

    def after(gate):
        return "after"
''')


def _cli(*args: str, cwd: Path, env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=120,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": str(cwd), **(env or {})},
    )


def _project(folder: Path, tasks: dict[str, dict[str, object]], name: str = "taskloom.toml",
             head: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "bodies.py").write_text(BODIES)
    lines = [head] if head else []
    for task, spec in tasks.items():
        lines.append(f"[tasks.{task}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in spec.items()]
    (folder / name).write_text("\n".join(lines) + "\n")
    return folder / name


def _runs_json(cwd: Path, *args: str) -> list[dict[str, object]]:
    result = _cli("runs", "--json", *args, cwd=cwd)
    assert result.returncode == 0, result.stderr
    value: list[dict[str, object]] = json.loads(result.stdout)
    return value


# -- where the history is --------------------------------------------------------------------


def test_runs_finds_the_history_as_run_records_it_and_says_where_it_looked(tmp_path):
    project = tmp_path / "examples" / "etl"
    _project(project, {"extract": {"call": "bodies:extract"}})
    assert _cli("run", "examples/etl/taskloom.toml", cwd=tmp_path,
                env={"PYTHONPATH": str(project)}).returncode == 0

    # From the folder above: no configuration there, so nothing is guessed; it says where
    # it looked and points at the history below.
    lost = _cli("runs", cwd=tmp_path)
    assert lost.returncode == 2 and "Traceback" not in lost.stderr
    assert "no run history at" in lost.stderr
    assert f"in {tmp_path.resolve()} and every folder above it" in lost.stderr
    hint = os.path.join("examples", "etl", "taskloom.toml")
    assert f"(taskloom runs --config {hint})" in lost.stderr

    # --config, and from a subfolder of the project (the configuration found upwards).
    found = _runs_json(tmp_path, "--config", "examples/etl/taskloom.toml")
    assert [r["status"] for r in found] == ["completed"]
    (project / "sub").mkdir()
    assert _runs_json(project / "sub") == found
    # --db relative to the current folder, for runs, show and logs alike.
    run_id = str(found[0]["id"])
    db = os.path.join("examples", "etl", ".taskloom", "taskloom.db")
    assert _runs_json(tmp_path, "--db", db) == found
    assert _cli("show", run_id, "--db", db, "--json", cwd=tmp_path).returncode == 0
    logs = _cli("logs", run_id, "extract", "--db", db, cwd=tmp_path)
    assert logs.returncode == 0 and "extracting" in logs.stdout


def test_runs_reads_the_store_path_the_configuration_sets(tmp_path):
    _project(tmp_path, {"extract": {"call": "bodies:extract"}},
             head='[taskloom]\nstore_options = { path = "state/history.db" }')
    state = tmp_path / "state"
    state.mkdir()
    before = _cli("runs", cwd=state)  # before any run: the configuration is found upwards
    assert before.returncode == 2
    assert f"no run history at {tmp_path.resolve() / 'state' / 'history.db'}" in before.stderr
    assert (f"where 'taskloom run' records runs of {tmp_path.resolve() / 'taskloom.toml'}, "
            "found from the current folder upwards") in before.stderr
    assert _cli("run", cwd=tmp_path).returncode == 0
    assert (tmp_path / "state" / "history.db").is_file()
    listed = _cli("runs", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "state/history.db" in listed.stdout.replace("\n", "")
    missing = _cli("runs", "--config", "nosuch.toml", cwd=tmp_path)
    assert missing.returncode == 2 and "no such file: nosuch.toml" in missing.stderr


# -- runs --json and its filters ---------------------------------------------------------------


def test_runs_json_and_filters(tmp_path):
    _project(tmp_path, {"extract": {"call": "bodies:extract"}}, name="good.toml")
    _project(tmp_path, {"extract": {"call": "bodies:extract"},
                        "broken": {"call": "bodies:broken", "depends_on": ["extract"]}},
             name="bad.toml")
    assert _cli("run", "good.toml", cwd=tmp_path).returncode == 0
    assert _cli("run", "bad.toml", cwd=tmp_path).returncode == 1
    assert _cli("run", "good.toml", cwd=tmp_path).returncode == 0

    every = _runs_json(tmp_path, "--config", "good.toml")
    assert [r["workflow"] for r in every] == ["good", "bad", "good"]  # newest first
    for record in every:
        assert {"id", "workflow", "status", "trigger", "parent_id", "started_at",
                "finished_at", "counts"} <= set(record)
        assert str(record["started_at"]).endswith("+00:00")
    assert every[1]["status"] == "failed"
    assert every[1]["counts"] == {"completed": 1, "failed": 1}

    failed = _runs_json(tmp_path, "--config", "good.toml", "--status", "failed")
    assert [r["id"] for r in failed] == [every[1]["id"]]
    good = _runs_json(tmp_path, "--config", "good.toml", "--workflow", "good")
    assert [r["id"] for r in good] == [every[0]["id"], every[2]["id"]]
    assert _runs_json(tmp_path, "--config", "good.toml", "--limit", "1") == every[:1]
    assert len(_runs_json(tmp_path, "--config", "good.toml", "--since", "1h")) == 3
    assert _runs_json(tmp_path, "--config", "good.toml", "--since", "2999-01-01") == []
    none = _cli("runs", "--config", "good.toml", "--status", "cancelled", cwd=tmp_path)
    assert none.returncode == 0 and "no runs match in" in none.stdout
    bad = _cli("runs", "--config", "good.toml", "--since", "yesterday", cwd=tmp_path)
    assert bad.returncode == 2 and "--since: 'yesterday' is neither an age" in bad.stderr


def test_ages_and_dates():
    assert parse_age("30d") == 30 * 86400
    assert parse_age("1d12h") == 36 * 3600
    assert parse_age(" 90s ") == 90 and parse_age("1.5h") == 5400 and parse_age("2w") == 1209600
    for bad in ("", "30", "d", "3x", "-1d", "1d 2"):
        with pytest.raises(ValueError, match="is not an age"):
            parse_age(bad)
    assert parse_since("3h", now=100_000.0) == 100_000.0 - 3 * 3600
    from datetime import datetime

    assert parse_since("2026-12-01", now=0) == datetime(2026, 12, 1).timestamp()
    assert parse_since("2026-12-01T08:00+00:00", now=0) == 1796112000.0
    with pytest.raises(ValueError, match="neither an age"):
        parse_since("soon", now=0)


# -- show: results, --result, --json, captured output --------------------------------------------


def test_show_previews_results_and_prints_the_whole_one_asked_for(tmp_path):
    _project(tmp_path, {"extract": {"call": "bodies:extract"}, "odd": {"call": "bodies:odd"},
                        "chatty": {"call": "bodies:chatty"}})
    assert _cli("run", cwd=tmp_path).returncode == 0
    (run,) = _runs_json(tmp_path)
    run_id = str(run["id"])

    shown = _cli("show", run_id[:6], cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert '{"rows": [0, 1, 2' in shown.stdout and "…" in shown.stdout
    assert "result stored" not in shown.stdout
    assert "(not JSON: pickled" in shown.stdout
    # Captured output, indented under its attempt and capped with a pointer to the rest.
    lines = shown.stdout.splitlines()
    at = lines.index("  chatty attempt 1")
    assert lines[at + 1:at + 21] == [f"    line {i}" for i in range(20)]
    assert f"10 more line(s): taskloom logs {run_id} chatty --attempt 1" in lines[at + 21]
    assert "    extracting" in lines

    whole = _cli("show", run_id, "--result", "extract", cwd=tmp_path)
    assert whole.returncode == 0 and json.loads(whole.stdout) == {"rows": list(range(200))}
    assert json.loads(_cli("show", run_id, "--result", "chatty", cwd=tmp_path).stdout) == "said"
    pickled = _cli("show", run_id, "--result", "odd", cwd=tmp_path)
    assert pickled.returncode == 2 and "never unpickles" in pickled.stderr
    assert pickled.stdout == ""
    unknown = _cli("show", run_id, "--result", "nosuch", cwd=tmp_path)
    assert unknown.returncode == 2 and "has no task 'nosuch'" in unknown.stderr

    as_json = _cli("show", run_id, "--json", cwd=tmp_path)
    assert as_json.returncode == 0, as_json.stderr
    detail = json.loads(as_json.stdout)
    assert detail["id"] == run_id and detail["status"] == "completed"
    tasks = {t["name"]: t for t in detail["tasks"]}
    assert set(tasks) == {"extract", "odd", "chatty"}
    assert tasks["chatty"]["result"] == '"said"'
    assert tasks["extract"]["result"].startswith('{"rows": [0, 1') and tasks[
        "extract"]["result"].endswith("…")
    assert tasks["odd"]["result"] is None and tasks["odd"]["result_kind"] == "pickle"
    (attempt,) = tasks["extract"]["attempts"]
    assert attempt["number"] == 1 and attempt["status"] == "completed"
    assert tasks["extract"]["status"] == "completed"


# -- interrupted runs -------------------------------------------------------------------------


def _gated_run(tmp_path: Path, signals: list[signal.Signals]) -> tuple[int, str]:
    """``taskloom run`` of gate -> after, sent ``signals`` while gate runs (each once the
    previous one was acted on), then gate released."""
    _project(tmp_path, {"gate": {"call": "bodies:gate"},
                        "after": {"call": "bodies:after", "depends_on": ["gate"]}})
    ready, gate = tmp_path / "ready.pipe", tmp_path / "gate.pipe"
    os.mkfifo(ready)
    os.mkfifo(gate)
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "PYTHONUNBUFFERED": "1",
           "READY": str(ready), "GATE": str(gate)}
    proc = subprocess.Popen([*CLI, "run"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        with open(ready) as f:  # gate is running
            assert f.readline().strip() == "gate"
        assert proc.stdout is not None
        said = []
        for sig in signals:
            proc.send_signal(sig)
            expected = "Interrupted (" if not said else "Cancelling running tasks ("
            for line in proc.stdout:
                said.append(line)
                if expected in line:
                    break
        with open(gate, "w"):
            pass
        out = proc.stdout.read()  # the same reader: what it buffered is not lost
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, "".join(said) + out


@pytest.mark.skipif(sys.platform == "win32", reason="signals and named pipes")
@pytest.mark.parametrize(("signals", "reason"), [
    ([signal.SIGINT], "SIGINT"),
    ([signal.SIGTERM], "SIGTERM"),
    ([signal.SIGINT, signal.SIGINT], "SIGINT"),
    ([signal.SIGTERM, signal.SIGINT], "SIGTERM, SIGINT"),
])
def test_one_or_two_signals_record_the_run_interrupted_with_the_reason(tmp_path, signals,
                                                                     reason):
    code, out = _gated_run(tmp_path, signals)
    assert code == 130, out
    assert "Traceback" not in out
    assert f"interrupted by {reason}" in out
    (run,) = _runs_json(tmp_path)
    assert run["status"] == "interrupted" and run["reason"] == reason
    listed = _cli("runs", cwd=tmp_path)
    assert f"interrupted ({reason})" in listed.stdout
    interrupted = _runs_json(tmp_path, "--status", "interrupted")
    assert [r["id"] for r in interrupted] == [run["id"]]
    assert _runs_json(tmp_path, "--status", "failed") == []
    shown = json.loads(_cli("show", str(run["id"]), "--json", cwd=tmp_path).stdout)
    assert shown["status"] == "interrupted" and shown["reason"] == reason
    assert {t["name"]: t["status"] for t in shown["tasks"]}["after"] == "cancelled"


# -- prune and retention ---------------------------------------------------------------------


def _rows(db: Path, run_ids: list[str]) -> dict[str, int]:
    conn = sqlite3.connect(db)
    try:
        marks = ",".join("?" * len(run_ids))
        out = {"runs": conn.execute(f"SELECT count(*) FROM runs WHERE id IN ({marks})",
                                    run_ids).fetchone()[0]}
        for table in ("events", "errors", "results", "logs", "run_actions"):
            out[table] = conn.execute(
                f"SELECT count(*) FROM {table} WHERE run_id IN ({marks})", run_ids
            ).fetchone()[0]
        return out
    finally:
        conn.close()


def test_prune_deletes_old_runs_with_all_their_rows_but_never_a_running_one(tmp_path):
    _project(tmp_path, {"extract": {"call": "bodies:extract"},
                        "broken": {"call": "bodies:broken", "depends_on": ["extract"]}})
    for _ in range(3):
        assert _cli("run", cwd=tmp_path).returncode == 1
    db = tmp_path / ".taskloom" / "taskloom.db"
    ids = [str(r["id"]) for r in _runs_json(tmp_path)]
    old = ids[1:]
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("INSERT INTO run_actions(run_id, action, requested_by, requested)"
                 " VALUES (?, 'cancel', 'test', 0)", (old[0],))
    # A run still going in a live process, started long ago: never deleted.
    conn.execute("INSERT INTO runs(id, workflow, status, started, pid, host)"
                 " VALUES ('live', 'w', 'running', 1.0, ?, ?)",
                 (os.getpid(), socket.gethostname()))
    conn.close()
    before = _rows(db, old)
    assert all(before.values()), before  # every kind of row is there to be deleted

    dry = _cli("prune", "--keep", "2", "--dry-run", cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.startswith("would delete 1 run(s)") and old[1] in dry.stdout
    assert _rows(db, old) == before
    young = _cli("prune", "--older-than", "1d", cwd=tmp_path)
    assert young.returncode == 0 and young.stdout.startswith("deleted 0 run(s)")

    pruned = _cli("prune", "--older-than", "0s", "--keep", "1", cwd=tmp_path)
    assert pruned.returncode == 0, pruned.stderr
    assert pruned.stdout.startswith("deleted 2 run(s)")
    assert _rows(db, old) == dict.fromkeys(before, 0)
    assert [r["id"] for r in _runs_json(tmp_path)] == [ids[0], "live"]
    everything = _cli("prune", "--older-than", "0s", cwd=tmp_path)
    assert everything.stdout.startswith("deleted 1 run(s)")
    assert [r["id"] for r in _runs_json(tmp_path)] == ["live"]

    for args, said in ((("prune",), "give --older-than AGE, --keep N or both"),
                       (("prune", "--older-than", "soon"), "'soon' is not an age")):
        refused = _cli(*args, cwd=tmp_path)
        assert refused.returncode == 2 and said in refused.stderr


def test_retention_after_each_run_and_its_validation(tmp_path):
    _project(tmp_path, {"extract": {"call": "bodies:extract"}},
             head='[taskloom]\nretention = { older_than = "0s", keep = 2 }')
    seen = []
    for _ in range(4):
        result = _cli("run", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        seen.append(str(_runs_json(tmp_path)[0]["id"]))
    assert [r["id"] for r in _runs_json(tmp_path)] == seen[:-3:-1]
    assert "retention: deleted 1 old run(s)" in result.stderr

    _project(tmp_path, {"extract": {"call": "bodies:extract"}}, name="bad.toml",
             head='[taskloom]\nretention = { older_than = "3x", kep = 1 }')
    checked = _cli("validate", "bad.toml", cwd=tmp_path)
    assert checked.returncode == 2
    assert "taskloom.retention.older_than: '3x' is not an age" in checked.stderr
    assert "taskloom.retention.kep: unknown key; did you mean 'keep'?" in checked.stderr


def test_prune_vacuums_and_says_how_much_it_reclaimed(tmp_path):
    (tmp_path / "big.py").write_text("def big():\n    return 'x' * 300_000\n")
    (tmp_path / "taskloom.toml").write_text('[tasks.big]\ncall = "big:big"\n')
    for _ in range(4):
        assert _cli("run", cwd=tmp_path).returncode == 0
    db = tmp_path / ".taskloom" / "taskloom.db"
    kept = _cli("prune", "--keep", "3", "--no-vacuum", cwd=tmp_path)
    assert kept.returncode == 0, kept.stderr
    assert kept.stdout.splitlines() == [f"deleted 1 run(s) from {db}"]
    grown = db.stat().st_size
    assert grown > 1_000_000
    pruned = _cli("prune", "--keep", "1", cwd=tmp_path)
    assert pruned.returncode == 0, pruned.stderr
    deleted, vacuumed = pruned.stdout.splitlines()
    assert deleted == f"deleted 2 run(s) from {db}"
    assert vacuumed.startswith("vacuumed: ") and vacuumed.endswith(" reclaimed)")
    assert db.stat().st_size < grown / 2
    nothing = _cli("prune", "--keep", "1", cwd=tmp_path)  # nothing deleted: no vacuum
    assert nothing.stdout.splitlines() == [f"deleted 0 run(s) from {db}"]
