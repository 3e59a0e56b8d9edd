"""Many hosts sharing one PostgreSQL database: two schedulers and ``taskloom run`` processes
on separate "hosts" (network namespaces joined to the database's by veth pairs, each process
with its own host name; loopback processes where namespaces cannot be made here).

Every scheduled fire runs exactly once and none is missed; a run id runs once across hosts;
``max_active_runs`` holds across hosts; a killed host's claim is taken over once its lease
runs out. Each task body appends a line to a side file: what ran, where, and when.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import warnings
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from pg_hosts import Hosts, Loopback, make_hosts, read_lines

from taskloom.testing import wait_until
from taskloom_postgres.cluster import Cluster, ClusterError, find_bin

pytestmark = [pytest.mark.skipif(sys.platform != "linux", reason="namespaces, signals"),
              pytest.mark.slow]

STEPS = '''
import os
import socket
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _note(what):
    fd = os.open(HERE / "side.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{what} {socket.gethostname()} {os.getpid()} {time.time()!r}\\n".encode())
    finally:
        os.close(fd)


def tick_a():
    _note("tick-a")


def tick_b():
    _note("tick-b")


def once():
    _note("once")
    return socket.gethostname()


def gate():
    _note("gate-start")
    opened = HERE / "open"
    for _ in range(1200):  # bounded: at most a minute, the test opens it long before
        if opened.exists():
            break
        time.sleep(0.05)
    _note("gate-end")
    return socket.gethostname()
'''

SCHEDULES = '''
[taskloom]
store = "postgres"

[tasks.tick_a]
call = "steps:tick_a"

[tasks.tick_b]
call = "steps:tick_b"

[[schedules]]
id = "tick-a"
task = "tick_a"
interval = 1

[[schedules]]
id = "tick-b"
task = "tick_b"
interval = 1
'''

RUNS = '''
[taskloom]
store = "postgres"
max_active_runs = 1
on_limit = "refuse"

[tasks.once]
call = "steps:once"
'''

GATE = '''
[taskloom]
store = "postgres"
max_active_runs = 1
on_limit = "refuse"

[tasks.gate]
call = "steps:gate"
'''

#: How many fires of each job the schedulers are left to make.
FIRES = 4


@pytest.fixture(scope="module")
def hosts() -> Iterator[Hosts | Loopback]:
    made, why = make_hosts(2)
    if why is not None:
        warnings.warn(f"many-hosts test on loopback processes: {why}", stacklevel=1)
    try:
        yield made
    finally:
        made.close()
    if isinstance(made, Hosts):
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                                check=True).stdout
        assert not any(name in listed for name in (made.db_ns, *made.names))


@pytest.fixture(scope="module")
def server(hosts: Hosts | Loopback) -> Iterator[Cluster]:
    if find_bin() is None and not os.environ.get("CI"):
        pytest.skip("PostgreSQL is not installed here (set CI to make this a failure)")
    cluster = hosts.cluster()
    try:
        cluster.start()
    except ClusterError:
        cluster.stop()
        raise
    try:
        yield cluster
    finally:
        cluster.stop()


class Project:
    def __init__(self, folder: Path, hosts: Hosts | Loopback, cluster: Cluster) -> None:
        self.folder = folder
        self.hosts = hosts
        self.cluster = cluster
        database = f"hosts_{os.getpid()}"
        cluster.create_database(database)
        self.local = cluster.socket_dsn(database)  # the test's own view, through the socket
        self.database = database
        (folder / "steps.py").write_text(STEPS)
        for name, text in (("schedules.toml", SCHEDULES), ("runs.toml", RUNS),
                           ("gate.toml", GATE)):
            (folder / name).write_text(text)

    def spawn(self, host: int, *args: str) -> subprocess.Popen[str]:
        env = {**os.environ, "PYTHONPATH": str(self.folder),
               "TASKLOOM_STORE_OPTIONS__DSN": self.hosts.dsn(self.cluster, host, self.database)}
        command = [sys.executable, "-c", "from taskloom.app.cli import main; main()", *args]
        return subprocess.Popen(self.hosts.command(host, command), cwd=self.folder, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def side(self, what: str) -> list[list[str]]:
        return [line for line in read_lines(self.folder / "side.log") if line[0] == what]

    def query(self, sql: str) -> list[tuple[object, ...]]:
        with psycopg.connect(self.local) as conn:
            return conn.execute(sql).fetchall()


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, hosts: Hosts | Loopback,
            server: Cluster) -> Project:
    folder = tmp_path_factory.mktemp("hosts")
    folder.chmod(0o755)
    return Project(folder, hosts, server)


def _finish(proc: subprocess.Popen[str], timeout: float = 120) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def test_two_schedulers_on_two_hosts_fire_every_time_exactly_once(project):
    schedulers = [project.spawn(host, "schedule", "schedules.toml") for host in (1, 2)]
    try:
        for proc in schedulers:
            assert proc.stdout is not None
            first = proc.stdout.readline()
            assert first.startswith("scheduled"), (first, proc.stderr.read()
                                                   if proc.poll() is not None else "")
        wait_until(lambda: all(len(project.side(job)) >= FIRES
                               for job in ("tick-a", "tick-b")), timeout=60)
    finally:
        for proc in schedulers:
            proc.send_signal(signal.SIGTERM)
    outputs = [_finish(proc) for proc in schedulers]
    assert [code for code, _, _ in outputs] == [0, 0], [err for _, _, err in outputs]
    claims = project.query("SELECT job_id, fire_time FROM schedule_claims ORDER BY 1, 2")
    for job in ("tick-a", "tick-b"):
        times = [float(t) for j, t in claims if j == job]
        assert len(times) >= FIRES
        # none missed: one claim per second, from the first fire to the last
        assert times == [times[0] + i for i in range(len(times))], times
        # none doubled: one execution per claimed fire time, on whichever host claimed it
        assert len(project.side(job)) == len(times)
    runs = project.query("SELECT count(*), count(DISTINCT id) FROM runs"
                         " WHERE trigger = 'schedule' AND status = 'completed'")
    assert runs == [(len(claims), len(claims))]
    fired = Counter(line for _, out, _ in outputs for line in out.splitlines()
                    if " fired " in line)
    assert sum(fired.values()) == len(claims)
    if isinstance(project.hosts, Hosts):  # each scheduler ran under its own host name
        assert {line[1] for line in project.side("tick-a") + project.side("tick-b")} <= {
            "host1", "host2"}


def test_one_run_id_on_two_hosts_runs_once(project):
    racers = [project.spawn(host, "run", "runs.toml", "--run-id", "invoice-7")
              for host in (1, 2)]
    outputs = [_finish(proc) for proc in racers]
    assert [code for code, _, _ in outputs] == [0, 0], [err for _, _, err in outputs]
    assert len(project.side("once")) == 1
    assert project.query("SELECT status, resumes FROM runs WHERE id = 'invoice-7'") == [
        ("completed", 0)]


def test_max_active_runs_across_hosts_and_a_killed_hosts_claim_taken_over(project):
    lease = ["--set", "taskloom.store_options.claim_lease=2"]
    holder = project.spawn(1, "run", "gate.toml", "--run-id", "nightly", *lease)
    wait_until(lambda: project.side("gate-start") or holder.poll() is not None, timeout=60)
    assert holder.poll() is None, holder.communicate()
    host_of_holder = project.side("gate-start")[0][1]
    # max_active_runs = 1 holds on the other host: refused, naming the holder's host
    code, _, err = _finish(project.spawn(2, "run", "gate.toml", *lease))
    assert code == 2 and f"@{host_of_holder}" in err and "max_active_runs" in err
    holder.kill()  # the whole "host" dies: its claim stays until its lease runs out
    holder.wait(timeout=30)
    assert project.query("SELECT run_id FROM run_claims") == [("nightly",)]
    (project.folder / "open").write_text("")
    code, out, err = _finish(project.spawn(2, "resume", "nightly", "gate.toml", *lease))
    assert code == 0, (out, err)
    assert "taking over the claim" in err
    if isinstance(project.hosts, Hosts):  # another host: only the lease can tell it is dead
        assert host_of_holder == "host1" and "no heartbeat within the lease" in err
    starts = project.side("gate-start")
    assert len(starts) == 2 and starts[0][2] != starts[1][2]  # run again by another process
    assert [line[1] for line in project.side("gate-end")] == [starts[1][1]]
    assert project.query("SELECT status FROM runs WHERE id = 'nightly'") == [("completed",)]
    assert project.query("SELECT count(*) FROM run_claims") == [(0,)]
