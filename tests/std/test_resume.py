"""Resume and idempotency: recorded outcomes are kept, the rest runs again."""

from __future__ import annotations

from collections import Counter

import pytest

from taskloom import Engine, Task, TaskloomError


@pytest.fixture(params=["sqlite", "memory"])
def engine(request, tmp_path):
    options = {"path": str(tmp_path / "t.db")} if request.param == "sqlite" else {}
    e = Engine(max_workers=2, store=request.param, store_options=options)
    yield e
    e.close()


class Workflow:
    """a -> b -> c, and d alone; ``b`` fails while ``broken`` is set. Counts executions."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.broken = True

    def tasks(self, order: str = "abcd") -> list[Task]:
        def a():
            self.calls["a"] += 1
            return {"a": 1}

        def b(a):
            self.calls["b"] += 1
            if self.broken:
                raise RuntimeError("b is broken")
            return a["a"] + 1

        def c(b):
            self.calls["c"] += 1
            return b * 10

        def d():
            self.calls["d"] += 1
            return "d"

        made = {
            "a": Task("a", fn=a), "b": Task("b", fn=b, dependencies=["a"]),
            "c": Task("c", fn=c, dependencies=["b"]), "d": Task("d", fn=d),
        }
        return [made[n] for n in order]


def test_failed_tasks_stay_failed_unless_retry_failed(engine):
    wf = Workflow()
    first = engine.run(wf.tasks(), run_id="r")
    assert first.status == "failed" and first.results == {"a": {"a": 1}, "d": "d"}

    wf.broken = False
    again = engine.resume("r", wf.tasks())
    assert again.status == "failed"
    assert again.errors["b"] == "b is broken"
    assert again.counts == {"completed": 2, "failed": 2}
    assert wf.calls == {"a": 1, "b": 1, "d": 1}

    fixed = engine.resume("r", wf.tasks(), retry_failed=True)
    assert fixed.ok and fixed.results == {"a": {"a": 1}, "b": 2, "c": 20, "d": "d"}
    assert wf.calls == {"a": 1, "b": 2, "c": 1, "d": 1}


def test_a_completed_run_id_is_not_run_again(engine):
    wf = Workflow()
    wf.broken = False
    first = engine.run(wf.tasks(), run_id="once", name="wf")
    second = engine.run(wf.tasks(), run_id="once", name="wf")
    assert first.ok and second.ok
    assert second.results == first.results
    assert second.id == "once" and second.name == "wf"
    assert wf.calls == {"a": 1, "b": 1, "c": 1, "d": 1}
    assert engine.resume("once", wf.tasks()).results == first.results
    assert wf.calls == {"a": 1, "b": 1, "c": 1, "d": 1}


def test_an_unfinished_run_id_is_resumed_by_run(engine):
    wf = Workflow()
    engine.run(wf.tasks(), run_id="k")
    wf.broken = False
    again = engine.run(wf.tasks(), run_id="k")  # resume without retrying failures
    assert again.status == "failed"
    assert wf.calls == {"a": 1, "b": 1, "d": 1}


def test_resume_takes_tasks_in_any_order(engine):
    wf = Workflow()
    engine.run(wf.tasks(), run_id="o")
    wf.broken = False
    summary = engine.resume("o", wf.tasks(order="cdba"), retry_failed=True)
    assert summary.ok and summary.results["c"] == 20
    assert wf.calls == {"a": 1, "b": 2, "c": 1, "d": 1}


def test_resume_of_an_unknown_run_is_an_error(engine):
    with pytest.raises(TaskloomError, match="no recorded run 'nope'"):
        engine.resume("nope", [Task("a")])


def test_resume_needs_a_store():
    engine = Engine(max_workers=1, store="memory")
    engine.close()
    with pytest.raises(TaskloomError, match="need an engine with a store"):
        engine.resume("r", [Task("a")])


def test_a_result_the_store_could_not_keep_runs_again(tmp_path):
    engine = Engine(max_workers=2, store="sqlite",
                    store_options={"path": str(tmp_path / "t.db")})
    calls: Counter[str] = Counter()

    def lock():
        import threading

        calls["lock"] += 1
        return threading.Lock()  # neither JSON nor picklable

    def after(lock):
        calls["after"] += 1
        raise RuntimeError("fails once")

    tasks = lambda: [Task("lock", fn=lock), Task("after", fn=after, dependencies=["lock"])]  # noqa: E731
    try:
        engine.run(tasks(), run_id="u")
        engine.resume("u", tasks(), retry_failed=True)
    finally:
        engine.close()
    assert calls == {"lock": 2, "after": 2}


def test_new_tasks_in_the_rebuilt_workflow_run(engine):
    wf = Workflow()
    engine.run(wf.tasks(), run_id="n")
    wf.broken = False
    extra = Task("e", fn=lambda d: d + "!", dependencies=["d"])
    summary = engine.resume("n", [*wf.tasks(), extra], retry_failed=True)
    assert summary.ok and summary.results["e"] == "d!"


def test_store_none_records_nothing_and_runs_every_time():
    engine = Engine(max_workers=1, store="none")
    calls: Counter[str] = Counter()

    def a():
        calls["a"] += 1

    assert engine.store is None
    engine.run([Task("a", fn=a)], run_id="same")
    engine.run([Task("a", fn=a)], run_id="same")
    assert calls == {"a": 2}


class BrokenStore:
    """A store whose writes fail the way a full disk makes them fail."""

    name = "broken"

    def __init__(self, fail_commit: bool = False) -> None:
        self.fail_commit = fail_commit
        self.committed: list[str] = []

    def record_run_start(self, run):
        pass

    def record_run_finish(self, run, summary):
        raise OSError(28, "No space left on device")

    def commit_result(self, task, attempt, run):
        if self.fail_commit and task.name == "b":
            raise OSError(28, "No space left on device")
        self.committed.append(task.name)

    def summary(self, run_id):
        return None

    def outcomes(self, run_id):
        return {}

    def cache_get(self, key, now):
        return False, None

    def cache_put(self, key, task, value, expires):
        pass

    def flush(self):
        pass

    def close(self):
        pass


def _broken_engine(**options):
    from taskloom import load_plugins
    from taskloom.kernel.store import RunStore

    plugins = load_plugins()
    plugins.registry.add("store", "broken", BrokenStore)
    engine = Engine(max_workers=1, plugins=plugins, store="broken", store_options=options)
    assert isinstance(engine.store, RunStore)
    return engine


def test_a_store_failure_fails_the_run_and_is_not_an_ignored_plugin_error(caplog):
    engine = _broken_engine()
    wf = Workflow()
    wf.broken = False
    summary = engine.run(wf.tasks(), run_id="s")
    assert summary.status == "failed" and not summary.ok
    assert summary.store_error == "store 'broken': [Errno 28] No space left on device"
    assert summary.counts == {"completed": 4}
    assert "ignored" not in caplog.text  # not the observers' boundary
    assert engine.plugins.pm.get_plugin("store") is None  # not a plugin at all


def test_a_result_that_cannot_be_committed_is_not_completed(caplog):
    engine = _broken_engine(fail_commit=True)
    wf = Workflow()
    wf.broken = False
    summary = engine.run(wf.tasks("abcd"), run_id="c")
    states = {t.name: t.status.value for t in summary.tasks}
    assert states["a"] == "completed" and states["b"] == "cancelled"
    assert states["c"] == "cancelled"  # nothing starts after the failed commit
    assert "result not recorded" in summary.errors["b"]
    assert summary.status == "failed" and "No space left" in (summary.store_error or "")
    assert "b" not in engine.store.committed and "c" not in engine.store.committed
