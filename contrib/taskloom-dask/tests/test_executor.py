"""The dask executor against a real LocalCluster of two worker processes."""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest
import remote_bodies as rb
from distributed import Client, Event, LocalCluster, Queue
from opentelemetry.sdk.trace import TracerProvider

from taskloom import (
    Engine,
    FakeClock,
    Retry,
    Task,
    TaskState,
    TaskTimeout,
    UpstreamFailed,
    hookimpl,
    load_plugins,
)
from taskloom_dask import DaskExecutor, NotSerializableError


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    with LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",
        silence_logs=logging.ERROR,
    ) as cluster, Client(cluster, set_as_default=False) as c:
        yield c


def engine(client: Client, *plugins: object) -> Engine:
    ps = load_plugins(plugins=plugins)
    return Engine(plugins=ps, executor="dask", executor_options={"client": client})


class RetryFirst:
    """A task-local retry policy: retry at once for the first ``failures`` errors."""

    def __init__(self, failures: int) -> None:
        self.left = failures
        self.errors: list[BaseException] = []

    @hookimpl
    def taskloom_task_error(self, task: Any, error: BaseException, attempt: Any, run: Any) -> Any:
        self.errors.append(error)
        if self.left > 0:
            self.left -= 1
            return Retry(0)
        return None


def test_registered_through_the_entry_point() -> None:
    ps = load_plugins()
    assert "dask" in ps.registry.names("executor")
    assert ps.registry.owner("executor", "dask") == "dask"
    assert isinstance(ps.registry.create("executor", "dask", processes=False), DaskExecutor)


def test_bodies_run_on_workers_and_results_flow_along_edges(client: Client) -> None:
    summary = engine(client).run([
        Task("where", fn=rb.where),
        Task("double", fn=rb.double, dependencies=["where"]),
        Task("combine", fn=rb.combine, dependencies=["where", "double"]),
        Task("async", fn=rb.async_body),
        Task("no_body"),
    ])
    assert summary.ok, summary.errors
    pid = summary.results["where"]
    worker_pids = set(client.run(os.getpid).values())
    assert pid in worker_pids and pid != os.getpid()
    assert summary.results["double"] == pid * 2
    assert summary.results["combine"] == (pid, pid * 2)
    assert summary.results["async"] == "awaited"
    assert summary.results["no_body"] is None


def test_a_failure_on_a_worker_fails_the_task_and_its_dependents(client: Client) -> None:
    summary = engine(client).run([
        Task("boom", fn=rb.boom),
        Task("after", fn=rb.where, dependencies=["boom"]),
    ])
    assert summary.status == "failed"
    tasks = {t.name: t for t in summary.tasks}
    assert tasks["boom"].error_type == "ValueError"
    assert "boom on a worker" in summary.errors["boom"]
    assert isinstance(tasks["after"].exception, UpstreamFailed)


def test_the_retry_policy_decides_on_worker_errors(client: Client, tmp_path: Any) -> None:
    policy = RetryFirst(2)
    flaky = Task("flaky", fn=partial(rb.fails_until, str(tmp_path / "count"), 2))
    summary = engine(client, policy).run([flaky])
    assert summary.ok, summary.errors
    assert flaky.attempts == 3
    assert summary.results["flaky"] == 3
    assert [type(e) for e in policy.errors] == [ConnectionError, ConnectionError]


def test_an_unpicklable_callable_fails_naming_the_task(client: Client) -> None:
    summary = engine(client).run([Task("locked", fn=rb.LockHolder())])
    task = summary.tasks[0]
    assert task.status is TaskState.FAILED
    assert isinstance(task.exception, NotSerializableError)
    assert "task 'locked'" in task.error
    assert "cannot be pickled" in task.error


def test_an_unpicklable_dependency_result_is_named(client: Client) -> None:
    summary = engine(client).run([
        Task("make_lock", fn=rb.make_lock, executor="thread"),
        Task("uses_lock", fn=rb.uses_lock, dependencies=["make_lock"]),
    ])
    task = {t.name: t for t in summary.tasks}["uses_lock"]
    assert isinstance(task.exception, NotSerializableError)
    assert "task 'uses_lock'" in task.error
    assert "dependency 'make_lock'" in task.error


def test_a_snapshot_context_travels(client: Client) -> None:
    eng = engine(client)
    run = eng.open_run(data={"day": "2026-11-24"})
    run.add([
        Task("where", fn=rb.where),
        Task("other", fn=rb.where),
        Task("reads", fn=rb.reads_context, dependencies=["where"], config={"file": "x.csv"}),
    ])
    run.start()
    assert run.wait(30)
    summary = run.close()
    assert summary.ok, summary.errors
    seen = summary.results["reads"]
    assert seen["task"] == "reads"
    assert seen["dependencies"] == ("where",)
    assert seen["config"] == {"file": "x.csv"}
    assert seen["results"] == {"where": summary.results["where"]}
    assert seen["run_id"] == run.id
    assert seen["attempt"] == 1
    assert seen["data"] == {"day": "2026-11-24"}
    assert seen["cancelled"] is False
    assert "sees the results of its own dependencies only" in seen["missing"]


def test_an_unpicklable_context_is_named(client: Client) -> None:
    eng = engine(client)
    run = eng.open_run(data={"lock": threading.Lock()})
    run.add([
        Task("where", fn=rb.where),
        Task("reads", fn=rb.reads_context, dependencies=["where"]),
    ])
    run.start()
    assert run.wait(30)
    task = run.tasks["reads"]
    assert isinstance(task.exception, NotSerializableError)
    assert "task 'reads': its context" in task.error
    run.close()


class Overruns:
    def __init__(self) -> None:
        self.seen = threading.Event()

    @hookimpl
    def taskloom_task_overrun(self, task: Any, attempt: Any, run: Any) -> None:
        self.seen.set()


def test_a_timed_out_attempt_cancels_its_future(client: Client) -> None:
    overruns = Overruns()
    started, release = f"started-{uuid.uuid4().hex}", f"release-{uuid.uuid4().hex}"
    slow = Task("slow", fn=partial(rb.block_until_released, started, release))
    run = engine(client, overruns).open_run()
    run.add([slow])
    run.start()
    try:
        Queue(started, client=client).get(timeout=30)
        assert run.fail_attempt(slow.current_attempt, TaskTimeout("slow", 0.5))
        assert slow.status is TaskState.FAILED
        assert slow.error_type == "TaskTimeout"
        # The body is still blocked: only the cancelled future can have reported back.
        assert overruns.seen.wait(30)
    finally:
        Event(release, client=client).set()
    assert run.wait(30)
    assert run.close().status == "failed"


def test_standard_timeout_and_retry_policies(client: Client, tmp_path: Any) -> None:
    clock = FakeClock()
    eng = Engine(executor="dask", executor_options={"client": client}, clock=clock)
    started, release = f"started-{uuid.uuid4().hex}", f"release-{uuid.uuid4().hex}"
    task = Task(
        "slow_once",
        fn=partial(rb.block_once, str(tmp_path / "marker"), started, release),
        timeout=5,
        retry={"max_retries": 1, "base_delay": 0},
    )
    run = eng.open_run()
    run.add([task])
    run.start()
    try:
        Queue(started, client=client).get(timeout=30)
        clock.advance(5)  # the soft timeout fires: the future is cancelled, the policy retries
        assert run.wait(30)
    finally:
        Event(release, client=client).set()
    summary = run.close()
    assert summary.ok, summary.errors
    assert task.attempts == 2
    assert summary.results["slow_once"] == "second attempt"


def test_trace_context_travels_to_the_worker(client: Client) -> None:
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("run") as root:
        summary = engine(client).run([
            Task("span_ids", fn=rb.span_ids),
            Task("span_ids_after", fn=rb.span_ids_after, dependencies=["span_ids"]),
        ])
    ctx = root.get_span_context()
    assert summary.results["span_ids"] == (ctx.trace_id, ctx.span_id)
    # Dispatched from the collector thread, where no span is current: the run's trace.
    assert summary.results["span_ids_after"] == (ctx.trace_id, ctx.span_id)


class SpanAndCache:
    """Wrappers: a span around each attempt, and a cache hit for the task named 'cached'."""

    def __init__(self) -> None:
        self.tracer = TracerProvider().get_tracer("wrappers")
        self.spans: dict[str, Any] = {}
        self.threads: dict[str, str] = {}

    @hookimpl
    def taskloom_run_wrappers(self, run: Any) -> Any:
        def wrapper(call: Any, attempt: Any) -> Any:
            task = attempt.task
            if task.name == "cached":
                return "from cache"
            with self.tracer.start_as_current_span(task.name) as span:
                self.spans[task.name] = span.get_span_context()
                self.threads[task.name] = threading.current_thread().name
                return call()

        return wrapper


def test_wrappers_run_locally_around_the_remote_body(client: Client) -> None:
    wrappers = SpanAndCache()
    summary = engine(client, wrappers).run([
        Task("span_ids", fn=rb.span_ids),
        Task("cached", fn=rb.boom),
        Task("where", fn=rb.where),
    ])
    assert summary.ok, summary.errors
    span = wrappers.spans["span_ids"]
    assert summary.results["span_ids"] == (span.trace_id, span.span_id)
    assert summary.results["cached"] == "from cache"
    assert summary.results["where"] != os.getpid()
    assert all(name.startswith("taskloom-dask-dispatch") for name in wrappers.threads.values())


def test_a_local_cluster_is_started_and_closed_with_the_run() -> None:
    eng = Engine(
        executor="dask",
        executor_options={"n_workers": 1, "threads_per_worker": 2, "processes": False},
    )
    run = eng.open_run()
    executor = run.executor
    assert isinstance(executor, DaskExecutor)
    assert executor.max_workers == 32
    assert executor._cluster is None
    run.add([Task("where", fn=rb.where), Task("double", fn=rb.double, dependencies=["where"])])
    run.start()
    cluster = executor._cluster
    assert cluster is not None
    assert run.wait(30)
    summary = run.close()
    assert summary.results["double"] == 2 * os.getpid()  # threads: the same process
    assert executor._cluster is None
    assert cluster.status.name == "closed"


def test_bad_options_are_rejected() -> None:
    with pytest.raises(ValueError, match="either address or client"):
        DaskExecutor(address="tcp://127.0.0.1:1", client=object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="local cluster only"):
        DaskExecutor(address="tcp://127.0.0.1:1", n_workers=2)
    with pytest.raises(ValueError, match="n_workers"):
        DaskExecutor(n_workers=0)


class Outputs:
    def __init__(self) -> None:
        self.seen: dict[str, str | None] = {}

    @hookimpl
    def taskloom_attempt_finish(self, task: Any, attempt: Any, error: Any, run: Any) -> None:
        self.seen[task.name] = attempt.output


def test_output_of_bodies_on_workers_is_captured_per_attempt(client: Client) -> None:
    outputs = Outputs()
    ps = load_plugins(config={"capture": {"enabled": True, "echo": False}}, plugins=[outputs])
    summary = Engine(plugins=ps, executor="dask", executor_options={"client": client}).run([
        Task("chatty", fn=rb.chatty), Task("fails", fn=rb.chatty_failure)])
    assert summary.status == "failed"
    pid = summary.results["chatty"]
    assert pid != os.getpid()  # printed on a worker process
    assert outputs.seen["chatty"] == f"on worker {pid}\nto stderr\nWARNING etl: kept 7\n"
    assert outputs.seen["fails"] == "before the failure\n"
    assert summary.errors["fails"].endswith("bad on a worker")
