"""A scheduler and two workers started as separate processes, reached by address."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import remote_bodies as rb
from distributed import Client

from taskloom import Engine, Task
from taskloom_dask.executor import shared_client

HERE = Path(__file__).resolve().parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    logs = tmp_path_factory.mktemp("dask-logs")
    address = f"tcp://127.0.0.1:{_free_port()}"
    # Workers import the task bodies by module name, like any deployment would.
    path = os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path}
    commands = [
        [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
         "--port", address.rsplit(":", 1)[1], "--dashboard-address", ":0"],
        *[[sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1",
           "--no-nanny", "--no-dashboard", "--host", "127.0.0.1"] for _ in range(2)],
    ]
    procs = []
    try:
        for i, cmd in enumerate(commands):
            with open(logs / f"{i}.log", "wb") as log:
                procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT))
        with Client(address, timeout=30, set_as_default=False) as client:
            client.wait_for_workers(2, timeout=30)
        yield address
    finally:
        if len(procs) == len(commands):
            # Shuts the scheduler and its workers down cleanly.
            shared_client(address).shutdown()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_runs_on_a_cluster_reached_by_address(address: str) -> None:
    engine = Engine(executor="dask", executor_options={"address": address})
    tasks = [Task("where", fn=rb.where), *(Task(f"where{i}", fn=rb.where) for i in range(7))]
    tasks.append(Task("double", fn=rb.double, dependencies=["where"]))
    summary = engine.run(tasks)
    assert summary.ok, summary.errors
    with Client(address, set_as_default=False) as client:
        worker_pids = set(client.run(os.getpid).values())
    assert len(worker_pids) == 2
    ran_on = {summary.results["where"], *(summary.results[f"where{i}"] for i in range(7))}
    assert ran_on <= worker_pids
    assert summary.results["double"] == 2 * summary.results["where"]
    # A second run reuses the connection.
    assert engine.run([Task("again", fn=rb.where)]).results["again"] in worker_pids
