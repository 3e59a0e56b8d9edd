"""A worker killed mid-task: a failed attempt, retried on another worker by the policy."""

from __future__ import annotations

import logging
import os
import signal
import uuid
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
import remote_bodies as rb
from distributed import Client, KilledWorker, LocalCluster, Queue
from test_executor import RetryFirst

from taskloom import Engine, Task, load_plugins


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    # allowed_failures=0: Dask hands a task lost with its worker straight back to taskloom
    # (the executor's own local cluster is configured the same way).
    with LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",
        silence_logs=logging.CRITICAL,
        scheduler_kwargs={"allowed_failures": 0},
    ) as cluster, Client(cluster, set_as_default=False) as c:
        yield c


def test_a_killed_worker_is_a_failed_attempt_retried_elsewhere(
    client: Client, tmp_path: Path
) -> None:
    policy = RetryFirst(1)
    engine = Engine(
        plugins=load_plugins(plugins=[policy]),
        executor="dask",
        executor_options={"client": client},
    )
    started = f"started-{uuid.uuid4().hex}"
    victim = Task("victim", fn=partial(rb.die_once, str(tmp_path / "attempted"), started))
    run = engine.open_run()
    run.add([victim])
    run.start()
    killed = Queue(started, client=client).get(timeout=30)
    os.kill(killed, signal.SIGKILL)
    assert run.wait(60)
    summary = run.close()
    assert summary.ok, summary.errors
    assert victim.attempts == 2
    assert len(policy.errors) == 1 and isinstance(policy.errors[0], KilledWorker)
    assert summary.results["victim"]["pid"] != killed
