"""The otel plugin with a real SDK: the exact span tree of a run, metrics, exporters.

Providers are handed to the plugin through its configuration (``otel.tracer_provider``), so
nothing here installs a global provider; the one test that does runs in its own process.
"""

import asyncio
import functools
import os
import subprocess
import sys
import textwrap
import threading
import uuid

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from taskloom import (
    ConfigError,
    Engine,
    FakeClock,
    Retry,
    Task,
    TaskManager,
    TaskState,
    hookimpl,
    load_plugins,
)
from taskloom_std.observability import otel

# Set to the test's provider for executors that run bodies in this process; a worker
# process imports this module afresh and opens its span with a provider of its own.
USER_PROVIDER = None


def _user_span(name):
    provider = USER_PROVIDER
    if provider is None:
        provider = TracerProvider()
    with provider.get_tracer("user-code").start_as_current_span(name) as span:
        pass
    ctx = span.get_span_context()
    return {"trace_id": ctx.trace_id, "span_id": ctx.span_id,
            "parent": span.parent.span_id if span.parent else None}


# Bodies live at module level so worker processes can import them.
def extract():
    return _user_span("extract.rows")


async def extract_async():
    await asyncio.sleep(0)
    return _user_span("extract.rows")


def flaky(marker):
    """Fails the first time (leaving ``marker`` behind), succeeds after."""
    if not os.path.exists(marker):
        with open(marker, "w"):
            pass
        raise ValueError("first attempt fails")
    return 2


def bad():
    raise RuntimeError("boom")


def never():
    raise AssertionError("must not run")


class RetryFlakyOnce:
    @hookimpl(tryfirst=True)
    def taskloom_task_error(self, task, error, attempt, run):
        if task.name == "flaky" and attempt.number == 1:
            return Retry(0)
        return None


@pytest.fixture
def sdk():
    exporter = InMemorySpanExporter()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    mp = MeterProvider(metric_readers=[reader])
    yield tp, mp, exporter, reader
    tp.shutdown()
    mp.shutdown()


def make_engine(tp, mp=None, executor="thread", plugins=(), **otel_options):
    section = {"tracer_provider": tp, **otel_options}
    if mp is not None:
        section["meter_provider"] = mp
    ps = load_plugins(plugins=[RetryFlakyOnce(), *plugins], config={"otel": section})
    workers = 1 if executor == "inline" else 2
    return Engine(plugins=ps, executor=executor, max_workers=workers)


def workflow(tmp_path, extract_fn=extract):
    return [
        Task("extract", fn=extract_fn, tags=["etl", "db"], priority=2),
        Task("flaky", fn=functools.partial(flaky, str(tmp_path / "flaky-marker"))),
        Task("bad", fn=bad),
        Task("after_bad", fn=never, dependencies=["bad"]),
        Task("alert", fn=never, dependencies=["extract"], trigger_rule="one_failed"),
    ]


def tree(spans):
    """(name, parent name, final state, attempt, status, links) of each span, sorted."""
    by_id = {s.context.span_id: s for s in spans}
    rows = []
    for s in spans:
        parent = by_id[s.parent.span_id].name if s.parent is not None else None
        rows.append((
            s.name, parent, s.attributes.get("taskloom.task.state"),
            s.attributes.get("taskloom.task.attempt"), s.status.status_code.name, len(s.links),
        ))
    return sorted(rows, key=repr)


EXPECTED = [
    ("run wf", None, None, None, "ERROR", 0),
    ("task after_bad", "run wf", "failed", None, "ERROR", 0),
    ("task alert", "run wf", "skipped", None, "UNSET", 0),
    ("task bad", "run wf", "failed", 1, "ERROR", 0),
    ("task extract", "run wf", "completed", 1, "UNSET", 0),
    ("task flaky", "run wf", "completed", 2, "UNSET", 1),
    ("task flaky", "run wf", "retrying", 1, "ERROR", 0),
]


def _executors():
    names = ["thread", "inline"]
    registry = load_plugins().registry
    names += [n for n in ("asyncio", "process") if n in registry.names("executor")]
    return names


@pytest.mark.parametrize("executor", _executors())
def test_span_tree_of_a_run_with_a_retry_a_failure_a_skip_and_a_user_span(
    executor, sdk, tmp_path, monkeypatch
):
    tp, _mp, exporter, _reader = sdk
    in_process = executor != "process"
    if in_process:
        monkeypatch.setattr(sys.modules[__name__], "USER_PROVIDER", tp)
    fn = extract_async if executor == "asyncio" else extract
    tasks = workflow(tmp_path, fn)
    summary = make_engine(tp, executor=executor).run(tasks, name="wf")
    assert summary.counts == {"completed": 2, "failed": 2, "skipped": 1}

    spans = exporter.get_finished_spans()
    expected = list(EXPECTED)
    if in_process:
        expected.append(("extract.rows", "task extract", None, None, "UNSET", 0))
    assert tree(spans) == sorted(expected, key=repr)

    assert len({s.context.trace_id for s in spans}) == 1
    named = {}
    for s in spans:
        named.setdefault(s.name, []).append(s)
    run_span = named["run wf"][0]
    assert run_span.attributes["taskloom.run.status"] == "failed"
    assert run_span.attributes["taskloom.run.tasks.completed"] == 2
    assert run_span.attributes["taskloom.run.id"] == summary.id

    extract_span = named["task extract"][0]
    assert uuid.UUID(hex=tasks[0].id).version == 4
    assert dict(extract_span.attributes) == {
        "taskloom.task.name": "extract",
        "taskloom.task.id": tasks[0].id,
        "taskloom.task.priority": 2,
        "taskloom.task.tags": ("db", "etl"),
        "taskloom.task.executor": executor,
        "taskloom.task.attempt": 1,
        "taskloom.task.state": "completed",
    }
    # The span the body opened nests under its attempt, even in a worker process.
    user = summary.results["extract"]
    assert user["parent"] == extract_span.context.span_id
    assert user["trace_id"] == extract_span.context.trace_id

    first, second = sorted(named["task flaky"], key=lambda s: s.attributes["taskloom.task.attempt"])
    assert second.links[0].context == first.context
    assert first.events[0].name == "exception"
    assert first.events[0].attributes["exception.type"] == "ValueError"
    assert first.start_time <= first.end_time <= second.start_time

    [bad_span] = named["task bad"]
    assert bad_span.status.description == "RuntimeError: boom"
    assert bad_span.events[0].attributes["exception.message"] == "boom"
    for name in ("task after_bad", "task alert"):
        [s] = named[name]
        assert s.start_time == s.end_time  # never ran: a zero-length span
    assert "bad" in named["task after_bad"][0].status.description


def test_a_sync_body_on_the_asyncio_executor_nests_its_spans(sdk, monkeypatch):
    tp, _mp, exporter, _reader = sdk
    monkeypatch.setattr(sys.modules[__name__], "USER_PROVIDER", tp)
    summary = make_engine(tp, executor="asyncio").run([Task("extract", fn=extract)])
    [attempt] = [s for s in exporter.get_finished_spans() if s.name == "task extract"]
    assert summary.results["extract"]["parent"] == attempt.context.span_id


def test_a_traced_run_calls_no_per_task_hook(sdk):
    tp, *_ = sdk
    traced = make_engine(tp).plugins
    plain = load_plugins(plugins=[RetryFlakyOnce()], config={"disable_plugins": ["otel"]})
    for flag in ("transition", "attempt_finish", "task_prepare"):
        assert getattr(traced.flags, flag) == getattr(plain.flags, flag), flag


def test_a_traced_run_keeps_one_wrapper_for_all_its_tasks_and_spans_are_complete(sdk):
    tp, _, exporter, _ = sdk
    tasks = [Task(f"t{i}", fn=lambda: 1, priority=3, tags=["x", "a"] if i == 0 else None)
             for i in range(20)]
    assert make_engine(tp).run(tasks).ok
    wrappers = {id(w) for t in tasks for w in t._plan.wrappers
                if isinstance(w, otel.AttemptSpan)}
    assert len(wrappers) == 1
    spans = {s.name: s for s in exporter.get_finished_spans() if s.name.startswith("task ")}
    assert len(spans) == 20
    for task in tasks:
        attrs = dict(spans[f"task {task.name}"].attributes)
        assert attrs.pop("taskloom.task.tags", None) == (("a", "x") if task.name == "t0" else None)
        assert attrs == {"taskloom.task.name": task.name, "taskloom.task.id": task.id,
                         "taskloom.task.priority": 3, "taskloom.task.executor": "thread",
                         "taskloom.task.attempt": 1, "taskloom.task.state": "completed"}


def test_a_task_cancelled_while_running_ends_its_span_cancelled(sdk):
    tp, _mp, exporter, _reader = sdk
    running = threading.Event()

    def slow(context):
        running.set()
        context.token.wait(10)  # cooperative: returns once cancelled

    task = Task("slow", fn=slow)
    run = make_engine(tp).open_run(name="x")
    run.add([task])
    run.start()
    assert running.wait(10)
    task.cancel()
    run.wait()
    run.drain(10)
    run.close()
    assert tree(exporter.get_finished_spans()) == [
        ("run x", None, None, None, "ERROR", 0),
        ("task slow", "run x", "cancelled", 1, "UNSET", 0),
    ]


def test_a_soft_timeout_ends_the_span_failed_while_the_body_still_runs(sdk):
    tp, _mp, exporter, _reader = sdk
    clock = FakeClock()
    running, release = threading.Event(), threading.Event()

    def hang():
        running.set()
        release.wait(10)

    task = Task("hang", fn=hang, timeout=1)
    engine = Engine(plugins=load_plugins(config={"otel": {"tracer_provider": tp}}),
                    clock=clock, max_workers=1)
    run = engine.open_run(name="t")
    run.add([task])
    run.start()
    assert running.wait(10)
    clock.advance(1)
    assert task.status is TaskState.FAILED
    [span] = [s for s in exporter.get_finished_spans() if s.name == "task hang"]
    assert span.attributes["taskloom.task.state"] == "failed"
    assert span.status.status_code is StatusCode.ERROR
    assert span.events[0].attributes["exception.type"] == "taskloom.kernel.errors.TaskTimeout"
    release.set()
    run.wait()
    run.drain(10)
    run.close()
    assert [s.name for s in exporter.get_finished_spans()].count("task hang") == 1


def test_cancelled_tasks_are_zero_length_spans(sdk):
    tp, _mp, exporter, _reader = sdk
    engine = make_engine(tp)
    keep, drop = Task("keep", fn=lambda: 1), Task("drop", fn=never)
    run = engine.open_run(name="c")
    run.add([keep, drop])
    drop.cancel()
    run.start()
    run.wait()
    run.close()
    assert tree(exporter.get_finished_spans()) == [
        ("run c", None, None, None, "ERROR", 0),
        ("task drop", "run c", "cancelled", None, "UNSET", 0),
        ("task keep", "run c", "completed", 1, "UNSET", 0),
    ]


def test_each_manager_call_is_a_run_of_its_own(sdk):
    tp, _mp, exporter, _reader = sdk
    ps = load_plugins(config={"otel": {"tracer_provider": tp}})
    with TaskManager(max_workers=2, plugins=ps) as manager:
        a = manager.create_task("a", fn=lambda: 1)
        assert manager.execute_task(a.id) == 1
        b = manager.create_task("b", fn=lambda a: a + 1, dependencies=["a"])
        assert manager.execute_task(b.id) == 2
    # b's run takes a's recorded result: a is not run (no attempt) a second time.
    assert tree(exporter.get_finished_spans()) == [
        ("run manager", None, None, None, "UNSET", 0),
        ("run manager", None, None, None, "UNSET", 0),
        ("task a", "run manager", "completed", 1, "UNSET", 0),
        ("task b", "run manager", "completed", 1, "UNSET", 0),
    ]


def test_a_run_inside_a_user_span_is_its_child(sdk):
    tp, _mp, exporter, _reader = sdk
    with tp.get_tracer("app").start_as_current_span("nightly job"):
        make_engine(tp).run([Task("a", fn=lambda: 1)], name="r")
    assert tree(exporter.get_finished_spans()) == [
        ("nightly job", None, None, None, "UNSET", 0),
        ("run r", "nightly job", None, None, "UNSET", 0),
        ("task a", "run r", "completed", 1, "UNSET", 0),
    ]


def points(reader):
    """{metric name: {frozenset(attributes): value or histogram count}}."""
    out = {}
    data = reader.get_metrics_data()
    for rm in data.resource_metrics if data else ():
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                out[m.name] = {
                    frozenset(p.attributes.items()): getattr(p, "value", None)
                    if not hasattr(p, "bucket_counts") else p.count
                    for p in m.data.data_points
                }
    return out


def test_metrics_count_final_states_retries_and_durations(sdk, tmp_path):
    tp, mp, _exporter, reader = sdk
    seen = {}

    def gauges():
        seen.update(points(reader))

    tasks = [*workflow(tmp_path), Task("gauged", fn=gauges)]
    make_engine(tp, mp).run(tasks, name="wf")
    got = points(reader)
    assert got["taskloom.tasks"] == {
        frozenset({("taskloom.task.state", "completed")}): 3,
        frozenset({("taskloom.task.state", "failed")}): 2,
        frozenset({("taskloom.task.state", "skipped")}): 1,
    }
    assert got["taskloom.task.retries"] == {frozenset(): 1}
    assert got["taskloom.task.duration"] == {
        frozenset({("taskloom.outcome", "ok")}): 3,
        frozenset({("taskloom.outcome", "error")}): 2,
    }
    # Observed while the run was going: the gauging task itself was running.
    running = seen["taskloom.tasks.running"][frozenset({("taskloom.run.name", "wf")})]
    assert 1 <= running <= 2
    assert frozenset({("taskloom.run.name", "wf")}) in seen["taskloom.queue.depth"]
    # Finished runs are no longer observed.
    assert not got.get("taskloom.tasks.running")


def test_metrics_only_when_no_tracer_provider(sdk, tmp_path):
    _tp, mp, exporter, reader = sdk
    ps = load_plugins(plugins=[RetryFlakyOnce()], config={"otel": {"meter_provider": mp}})
    Engine(plugins=ps, max_workers=2).run(workflow(tmp_path))
    assert exporter.get_finished_spans() == ()
    assert sum(points(reader)["taskloom.tasks"].values()) == 5


def test_circuit_changes_are_events_on_the_attempt_span_and_counted(sdk):
    tp, mp, exporter, reader = sdk

    def trips(context):
        context.run.hook.taskloom_circuit_change(
            key="task:trips", old="closed", new="open", task=context.task
        )
        return 1

    make_engine(tp, mp).run([Task("trips", fn=trips)])
    [span] = [s for s in exporter.get_finished_spans() if s.name == "task trips"]
    [event] = span.events
    assert event.name == "taskloom.circuit_change"
    assert dict(event.attributes) == {
        "taskloom.circuit.key": "task:trips", "taskloom.circuit.old": "closed",
        "taskloom.circuit.new": "open",
    }
    assert points(reader)["taskloom.circuit.changes"] == {
        frozenset({("taskloom.circuit.key", "task:trips"), ("taskloom.circuit.state", "open")}): 1
    }


class Job:
    id = "nightly"
    task = "extract"
    trigger = "cron */5 * * * *"


def test_scheduler_fires_are_spans_and_lateness_is_measured(sdk):
    from datetime import datetime, timedelta, timezone

    tp, mp, exporter, reader = sdk
    ps = make_engine(tp, mp).plugins
    due = datetime(2026, 3, 1, 2, 30, tzinfo=timezone.utc)
    ps.hook.taskloom_schedule_fire(job=Job(), scheduled_for=due,
                                   fired_at=due + timedelta(seconds=1.5))
    ps.hook.taskloom_schedule_misfire(job=Job(), scheduled_for=due,
                                      fired_at=due + timedelta(hours=2))
    fire, misfire = sorted(exporter.get_finished_spans(),
                           key=lambda s: "taskloom.schedule.misfire" in s.attributes)
    assert fire.name == misfire.name == "schedule nightly"
    assert fire.attributes["taskloom.schedule.lateness"] == 1.5
    assert fire.attributes["taskloom.job.task"] == "extract"
    assert fire.start_time == int((due + timedelta(seconds=1.5)).timestamp() * 1e9)
    assert misfire.status.status_code is StatusCode.ERROR
    got = points(reader)
    assert got["taskloom.schedule.lateness"] == {frozenset({("taskloom.job.id", "nightly")}): 1}
    assert got["taskloom.schedule.misfires"] == {frozenset({("taskloom.job.id", "nightly")}): 1}


def test_a_run_skipped_at_max_instances_is_counted_and_traced(sdk):
    from datetime import datetime, timedelta, timezone

    tp, mp, exporter, reader = sdk
    ps = make_engine(tp, mp).plugins
    due = datetime(2026, 3, 1, 2, 30, tzinfo=timezone.utc)
    for k in range(2):
        ps.hook.taskloom_schedule_overlap(job=Job(), scheduled_for=due + timedelta(minutes=k),
                                          fired_at=due + timedelta(minutes=k), running=1)
    spans = exporter.get_finished_spans()
    assert [s.attributes["taskloom.schedule.running"] for s in spans] == [1, 1]
    assert all(s.status.status_code is StatusCode.ERROR for s in spans)
    assert points(reader)["taskloom.schedule.overlaps"] == {
        frozenset({("taskloom.job.id", "nightly")}): 2}


def test_a_real_scheduler_fire_is_a_span_with_its_lateness(sdk):
    from datetime import datetime, timedelta, timezone

    from taskloom import TaskScheduler

    tp, mp, exporter, reader = sdk
    clock = FakeClock(datetime(2024, 5, 1, 8, 0, tzinfo=timezone.utc))
    plugins = load_plugins(config={"otel": {"tracer_provider": tp, "meter_provider": mp}})
    manager = TaskManager(plugins=plugins, clock=clock)
    scheduler = TaskScheduler(clock=clock, manager=manager)
    try:
        scheduler.add_task(Task("nightly", fn=lambda: 1),
                           schedule_time=clock.now() + timedelta(hours=1))
        clock.advance(3600 + 2.5)  # noticed 2.5 s late
        assert scheduler.run_pending() == ["nightly"]
    finally:
        scheduler.shutdown()
        manager.shutdown()
    [fire] = [s for s in exporter.get_finished_spans() if s.name.startswith("schedule ")]
    assert fire.attributes["taskloom.job.task"] == "nightly"
    assert fire.attributes["taskloom.schedule.lateness"] == 2.5
    assert "task nightly" in {s.name for s in exporter.get_finished_spans()}
    [point] = points(reader)["taskloom.schedule.lateness"].values()
    assert point == 1


def test_unknown_exporter_is_a_configuration_error():
    with pytest.raises(ConfigError, match="otel.exporter: unknown exporter 'zipkin'"):
        load_plugins(config={"otel": {"exporter": "zipkin"}})


def test_setup_sdk_memory_exporter_without_installing(tmp_path):
    handle = otel.setup_sdk({"otel": {"exporter": "memory"}}, install=False)
    assert handle.owns_tracer and not handle.installed_tracer
    ps = load_plugins(config={"otel": {"tracer_provider": handle.tracer_provider,
                                       "meter_provider": handle.meter_provider}})
    Engine(plugins=ps).run([Task("a", fn=lambda: 1)], name="m")
    handle.flush()
    assert sorted(s.name for s in handle.spans()) == ["run m", "task a"]
    assert handle.metrics() is not None
    handle.shutdown()


def test_setup_sdk_reads_the_standard_environment(monkeypatch):
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "memory")
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")
    handle = otel.setup_sdk({}, install=False)
    assert handle.span_exporters == ["memory"] and handle.meter_provider is None
    handle.shutdown()
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "jaeger")
    with pytest.raises(ConfigError, match="OTEL_TRACES_EXPORTER: unknown exporter 'jaeger'"):
        otel.setup_sdk({}, install=False)
    monkeypatch.delenv("OTEL_TRACES_EXPORTER")
    monkeypatch.delenv("OTEL_METRICS_EXPORTER")
    assert not otel.setup_sdk({}, install=False).active  # nothing asked: nothing set up


def test_otlp_without_its_package_says_how_to_install_it(monkeypatch):
    # As if the package were not installed: a None entry makes its import fail.
    for name in ("opentelemetry.exporter.otlp.proto.http.trace_exporter",
                 "opentelemetry.exporter.otlp.proto.grpc.trace_exporter"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ConfigError, match=r"pip install 'taskloom\[otlp\]'"):
        otel.setup_sdk({"otel": {"exporter": "otlp"}}, install=False)


def test_console_exporter_prints_the_trace_and_an_installed_provider_is_kept(tmp_path):
    # Installing a global provider is for the whole process: do it in a fresh one.
    code = textwrap.dedent("""
        from opentelemetry import trace
        from taskloom import Engine, Task
        from taskloom_std.observability.otel import setup_sdk

        handle = setup_sdk({"otel": {"exporter": "console", "metrics": False}})
        assert handle.installed_tracer
        again = setup_sdk({"otel": {"exporter": "memory"}})
        assert not again.owns_tracer and again.tracer_provider is handle.tracer_provider
        assert trace.get_tracer_provider() is handle.tracer_provider
        Engine().run([Task("hello", fn=lambda: 1)], name="console-demo")
        handle.shutdown()
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert '"name": "task hello"' in out.stdout
    assert '"name": "run console-demo"' in out.stdout
    assert '"taskloom.task.state": "completed"' in out.stdout


def test_taskloom_run_with_the_console_exporter_prints_the_trace(tmp_path):
    (tmp_path / "jobs.py").write_text("def hello():\n    return 1\n")
    (tmp_path / "taskloom.toml").write_text(textwrap.dedent("""
        [taskloom.otel]
        exporter = "console"
        metrics = false

        [tasks.hello]
        call = "jobs:hello"
    """))
    exe = os.path.join(os.path.dirname(sys.executable), "taskloom")
    out = subprocess.run([exe, "run", str(tmp_path / "taskloom.toml")], capture_output=True,
                         text=True, timeout=60, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert '"name": "task hello"' in out.stdout
    assert '"taskloom.task.state": "completed"' in out.stdout
