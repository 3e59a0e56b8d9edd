import threading

import pytest

from taskloom import (
    CycleError,
    DuplicateTaskError,
    Engine,
    Fail,
    FakeClock,
    Fallback,
    Retry,
    Task,
    TaskCancelled,
    TaskloomError,
    UnknownComponentError,
    UnknownDependencyError,
    UpstreamFailed,
    hookimpl,
    load_plugins,
)


def engine_with(*plugins, **kw):
    return Engine(plugins=load_plugins(plugins=plugins), **kw)


def test_results_flow_by_parameter_name():
    tasks = [
        Task("a", fn=lambda: 2),
        Task("b", fn=lambda: 3),
        Task("c", fn=lambda a, b: a * b, dependencies=["a", "b"]),
        Task("d", fn=lambda **kw: sorted(kw), dependencies=["a", "c"]),
    ]
    s = Engine().run(tasks)
    assert s.ok
    assert s.results == {"a": 2, "b": 3, "c": 6, "d": ["a", "c"]}


def test_context_parameter():
    seen = {}

    def body(a, context):
        seen.update(run=context.run_id, results=dict(context.results), data=context.data,
                    attempt=context.attempt.number, cancelled=context.cancelled)
        return a + 1

    s = Engine().run([Task("a", fn=lambda: 1), Task("b", fn=body, dependencies=["a"])],
                     data={"env": "test"}, run_id="r1")
    assert s.results["b"] == 2 and s.id == "r1"
    assert seen == {"run": "r1", "results": {"a": 1}, "data": {"env": "test"}, "attempt": 1,
                    "cancelled": False}


def test_async_bodies_run_on_thread_executor():
    import asyncio

    async def fetch(x=1):
        await asyncio.sleep(0)
        return "ok"

    s = Engine().run([Task("a", fn=fetch), Task("b", fn=fetch, dependencies=["a"])])
    assert s.results == {"a": "ok", "b": "ok"}


@pytest.mark.parametrize("executor", ["thread", "inline"])
def test_validation_before_anything_runs(executor):
    ran = []
    e = Engine(executor=executor)
    bad = [
        ([Task("a", fn=lambda: ran.append(1)), Task("a")], DuplicateTaskError),
        ([Task("a", fn=lambda: ran.append(1)), Task("b", dependencies=["nope"])],
         UnknownDependencyError),
        ([Task("a", fn=lambda: ran.append(1)), Task("b", dependencies=["c"]),
          Task("c", dependencies=["b"])], CycleError),
    ]
    for tasks, err in bad:
        with pytest.raises(err):
            e.run(tasks)
    assert ran == []


def test_failure_fails_dependents_naming_upstream():
    def boom():
        raise ValueError("bad input")

    tasks = [Task("a", fn=boom), Task("b", dependencies=["a"]), Task("c", dependencies=["b"]),
             Task("free", fn=lambda: 1)]
    s = Engine().run(tasks)
    assert s.status == "failed"
    a, b, c, free = tasks
    assert a.status == "failed" and a.error == "bad input" and a.error_type == "ValueError"
    assert "ValueError: bad input" in a.error_traceback
    assert b.status == "failed" and isinstance(b.exception, UpstreamFailed)
    assert b.error == "task 'b' not run: upstream task 'a' failed"
    assert c.status == "failed" and "upstream task 'b'" in c.error
    assert free.status == "completed"
    assert s.counts == {"failed": 3, "completed": 1}


def test_long_failure_cascade_needs_no_recursion():
    tasks = [Task("t0", fn=lambda: 1 / 0)] + [
        Task(f"t{i}", dependencies=[f"t{i-1}"]) for i in range(1, 5000)
    ]
    s = Engine().run(tasks)
    assert s.counts == {"failed": 5000}


@pytest.mark.parametrize(
    "rule, upstream_fails, expected",
    [
        ("all_success", False, "completed"),
        ("all_success", True, "failed"),
        ("all_done", True, "completed"),
        ("always", True, "completed"),
        ("one_failed", True, "completed"),
        ("one_failed", False, "skipped"),
    ],
)
def test_trigger_rules(rule, upstream_fails, expected):
    def up():
        if upstream_fails:
            raise RuntimeError("x")
        return 1

    t = Task("t", fn=lambda: "ran", dependencies=["up", "ok"], trigger_rule=rule)
    Engine().run([Task("up", fn=up), Task("ok", fn=lambda: 2), t])
    assert t.status == expected
    if expected == "completed":
        assert t.result == "ran"


def test_skipped_upstream_skips_all_success_dependents():
    t = Task("b", dependencies=["a"])
    s = Engine().run([Task("a", fn=lambda: None, dependencies=["x"]),
                      Task("x", fn=lambda: 1 / 0, trigger_rule="all_success"),
                      Task("skip", dependencies=["x"], trigger_rule="one_failed"),
                      Task("c", dependencies=["ok"]), Task("ok", dependencies=["x"],
                                                           trigger_rule="all_done"),
                      t])
    assert s.counts["completed"] == 3  # skip (one_failed), ok (all_done), c
    assert t.status == "failed"


def test_priority_order_with_one_worker():
    order = []
    tasks = [Task(f"p{p}", priority=p, fn=lambda p=p: order.append(p)) for p in (5, 1, 9, 3)]
    Engine(max_workers=1, executor="inline").run(tasks)
    assert order == [1, 3, 5, 9]


def test_fifo_queue_order():
    order = []
    tasks = [Task(f"p{p}", priority=p, fn=lambda p=p: order.append(p)) for p in (5, 1, 9, 3)]
    Engine(queue="fifo", executor="inline").run(tasks)
    assert order == [5, 1, 9, 3]


def test_unknown_components_list_registered_names():
    with pytest.raises(UnknownComponentError, match="no queue strategy 'prio'; registered:.*fifo"):
        Engine(queue="prio")
    with pytest.raises(UnknownComponentError, match="no executor 'gpu'; registered:.*thread"):
        Engine(executor="gpu")


def test_max_workers_respected():
    lock = threading.Lock()
    running = [0]
    peak = [0]

    def body():
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        for _ in range(2000):
            pass
        with lock:
            running[0] -= 1

    Engine(max_workers=3).run([Task(f"t{i}", fn=body) for i in range(300)])
    assert 1 <= peak[0] <= 3


def test_cancel_run_stops_new_starts_and_sets_tokens():
    started = threading.Event()
    release = threading.Event()
    seen_cancel = []

    def long(context):
        started.set()
        seen_cancel.append(context.token.wait(5))
        release.wait(5)

    engine = Engine(max_workers=2)
    run = engine.open_run()
    tasks = [Task("long", fn=long)] + [Task(f"w{i}", dependencies=["long"]) for i in range(3)]
    run.add(tasks)
    run.start()
    assert started.wait(5)
    run.cancel()
    assert all(t.status == "cancelled" for t in tasks)
    assert isinstance(tasks[0].exception, TaskCancelled)
    release.set()
    assert run.drain(5)
    s = run.close()
    assert s.status == "cancelled"
    assert seen_cancel == [True]


def test_cancel_single_task_cancels_its_dependents():
    gate = threading.Event()
    engine = Engine(max_workers=1)
    run = engine.open_run()
    a = Task("a", fn=lambda: gate.wait(5))
    b = Task("b", fn=lambda: 1)
    c = Task("c", dependencies=["b"])
    run.add([a, b, c])
    run.start()
    b.cancel()
    assert b.status == "cancelled" and c.status == "cancelled"
    gate.set()
    run.wait(5)
    assert a.status == "completed"
    assert run.close().status == "failed"


class RetryTwice:
    def __init__(self, delay=0.0):
        self.delay = delay
        self.calls = []

    @hookimpl
    def taskloom_task_error(self, task, error, attempt, run):
        self.calls.append(attempt.number)
        return Retry(self.delay) if attempt.number < 3 else None


def test_retry_decision_moves_through_retrying():
    seen = []

    class Watch:
        @hookimpl
        def taskloom_task_transition(self, task, old, new, run):
            seen.append((old.value, new.value))

    n = [0]

    def flaky():
        n[0] += 1
        if n[0] < 3:
            raise OSError("flaky")
        return "done"

    policy = RetryTwice()
    t = Task("f", fn=flaky)
    s = engine_with(policy, Watch()).run([t])
    assert s.ok and t.result == "done" and t.attempts == 3
    assert seen == [("pending", "ready"), ("ready", "running"), ("running", "retrying"),
                    ("retrying", "running"), ("running", "retrying"), ("retrying", "running"),
                    ("running", "completed")]


def test_retry_delay_waits_on_the_clock_not_a_worker():
    clock = FakeClock()
    policy = RetryTwice(delay=30)
    decided = threading.Semaphore(0)

    class Signal:
        @hookimpl
        def taskloom_task_transition(self, task, old, new, run):
            if task.name == "f" and new in ("retrying", "failed"):
                decided.release()

    t = Task("f", fn=lambda: 1 / 0)
    other = Task("other", fn=lambda: "ok")
    engine = engine_with(policy, Signal(), clock=clock, max_workers=1)
    run = engine.open_run()
    run.add([t, other])
    run.start()
    assert run.wait(5, tasks=[other])
    assert other.status == "completed"  # the only worker was free during the delay
    assert decided.acquire(timeout=5)
    assert t.status == "retrying" and t.attempts == 1
    clock.advance(29.9)
    assert t.attempts == 1  # not yet due
    clock.advance(0.1)
    assert decided.acquire(timeout=5) and t.attempts == 2
    clock.advance(30)
    assert run.wait(5)
    assert t.status == "failed" and t.attempts == 3 and policy.calls == [1, 2, 3]
    run.close()


def test_fallback_and_fail_decisions():
    class Decide:
        @hookimpl
        def taskloom_task_error(self, task, error, attempt, run):
            if task.name == "fb":
                return Fallback({"fallback": True})
            return Fail(RuntimeError("replaced"))

    fb, fl = Task("fb", fn=lambda: 1 / 0), Task("fl", fn=lambda: 1 / 0)
    s = engine_with(Decide()).run([fb, fl])
    assert fb.status == "completed" and fb.result == {"fallback": True}
    assert fb.error_type == "ZeroDivisionError"
    assert fl.status == "failed" and fl.error == "replaced"
    assert s.results == {"fb": {"fallback": True}}


def test_policy_plugin_error_fails_task_naming_plugin():
    class Broken:
        @hookimpl
        def taskloom_task_error(self, task, error, attempt, run):
            raise KeyError("oops")

    t = Task("t", fn=lambda: 1 / 0)
    engine = Engine(plugins=load_plugins(plugins=[Broken()]))
    engine.run([t])
    assert t.status == "failed" and t.error_type == "PluginError"
    assert "plugin 'Broken-0' raised in taskloom_task_error" in t.error


def test_observer_plugin_error_is_logged_and_run_goes_on(caplog):
    class Noisy:
        @hookimpl
        def taskloom_task_transition(self, task, old, new, run):
            raise RuntimeError("observer bug")

    s = Engine(plugins=load_plugins(plugins=[Noisy()])).run([Task("a", fn=lambda: 1)])
    assert s.ok
    assert "plugin 'Noisy-0' raised in taskloom_task_transition" in caplog.text


def test_fail_attempt_soft_timeout_and_overrun():
    from taskloom import TaskTimeout

    overruns = []
    started = threading.Event()
    release = threading.Event()

    class Watch:
        @hookimpl
        def taskloom_task_overrun(self, task, attempt, run):
            overruns.append((task.name, attempt.number))

    engine = Engine(plugins=load_plugins(plugins=[Watch()]), max_workers=2)
    run = engine.open_run()
    slow = Task("slow", fn=lambda: (started.set(), release.wait(5)))
    after = Task("after", fn=lambda: "ran", dependencies=["slow"], trigger_rule="all_done")
    run.add([slow, after])
    run.start()
    assert started.wait(5)
    assert run.fail_attempt(slow._attempt, TaskTimeout("slow", 1.0))
    run.wait(5, tasks=[after])
    assert slow.status == "failed" and slow.error == "task 'slow' timed out after 1s"
    assert after.status == "completed"
    release.set()
    assert run.drain(5)
    run.close()
    assert overruns == [("slow", 1)]


def test_concurrent_adds_to_a_live_run_are_thread_safe():
    engine = Engine(max_workers=4)
    run = engine.open_run()
    run.start()

    def add(k):
        for i in range(50):
            deps = [f"{k}-{i-1}"] if i else []
            run.add([Task(f"{k}-{i}", fn=lambda: 1, dependencies=deps)])

    threads = [threading.Thread(target=add, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert run.wait(10)
    s = run.close()
    assert s.counts == {"completed": 400}


def test_a_task_runs_once_per_run_and_again_in_a_new_run():
    engine = Engine()
    seen: list[tuple[str, str]] = []

    class Transitions:
        @hookimpl
        def taskloom_task_transition(self, task, old, new, run):
            seen.append((old.value, new.value))

    engine.plugins.register(Transitions())
    run = engine.open_run()
    n = [0]
    t = Task("t", fn=lambda: n.__setitem__(0, n[0] + 1) or n[0])
    run.add([t])
    run.start()
    run.wait()
    with pytest.raises(TaskloomError, match="task 't' is already in run .*new run"):
        run.add([t])
    run.close()
    seen.clear()
    summary = engine.run([t])
    assert summary.ok and t.result == 2 and t.status == "completed"
    # Back to pending through the transition table, reported like every other change.
    assert seen == [("completed", "pending"), ("pending", "ready"), ("ready", "running"),
                    ("running", "completed")]


def test_resumed_outcomes_are_transitions_too():
    engine = Engine()
    seen: list[tuple[str, str, str]] = []

    class Transitions:
        @hookimpl
        def taskloom_task_transition(self, task, old, new, run):
            seen.append((task.name, old.value, new.value))

    engine.plugins.register(Transitions())
    run = engine.open_run()
    run.restore({"a": 1}, {"f": ("boom", "ValueError")})
    b = Task("b", fn=lambda a: a + 1, dependencies=["a"])
    run.add([b, Task("a"), Task("f")])
    run.start()
    run.wait()
    assert run.close().ok is False and b.result == 2
    assert ("a", "pending", "completed") in seen and ("f", "pending", "failed") in seen


def test_resume_restored_results_skip_execution():
    ran = []
    tasks = [Task("a", fn=lambda: ran.append("a")),
             Task("b", fn=lambda a: ran.append(("b", a)), dependencies=["a"])]
    s = Engine().run(tasks, restored={"a": 41})
    assert ran == [("b", 41)] and s.ok


def test_tasks_sharing_a_body_keep_their_own_arguments():
    def f(a=None):
        return a

    def g():
        return "g"

    tasks = [Task("a", fn=lambda: 1), Task("x", fn=f), Task("y", fn=f, dependencies=["a"]),
             Task("p", fn=g), Task("q", fn=g, dependencies=["a"])]
    s = Engine().run(tasks)
    assert s.results == {"a": 1, "x": None, "y": 1, "p": "g", "q": "g"}
    assert tasks[3]._plan is tasks[4]._plan  # no arguments, no wrappers: one plan
    assert tasks[1]._plan is not tasks[2]._plan
