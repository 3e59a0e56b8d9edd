"""The stats plugin: the documented get_performance_stats() and get_debug_report()."""

import math
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from taskloom import (
    Engine,
    FakeClock,
    Retry,
    Task,
    TaskloomError,
    TaskManager,
    hookimpl,
    load_plugins,
)
from taskloom_std.observability.stats import StatsCollector

KEYS = {"execution_count", "average_duration", "min_duration", "max_duration", "error_rate",
        "total_duration", "last_execution"}


class RetryOnce:
    @hookimpl(tryfirst=True)
    def taskloom_task_error(self, task, error, attempt, run):
        return Retry(0) if attempt.number == 1 and task.name.startswith("flaky") else None


def timed(clock, seconds, fail=False):
    """A body that takes ``seconds`` of the fake clock, then returns or raises."""

    def body():
        clock.advance(seconds)
        if fail:
            raise ValueError(f"failed after {seconds}")
        return seconds

    return body


def test_no_executions_before_any_attempt():
    assert Task("fresh").get_performance_stats() == {"status": "no_executions"}
    with TaskManager(max_workers=1) as manager:
        assert manager.get_performance_stats() == {"status": "no_executions"}
        assert manager.get_performance_stats("nothing") == {"status": "no_executions"}


def test_stats_per_task_and_per_manager_on_the_fake_clock():
    clock = FakeClock()
    with TaskManager(max_workers=1, clock=clock) as manager:
        ok = manager.create_task("load", fn=timed(clock, 0.25))
        assert manager.execute_task(ok.id) == 0.25
        ok.fn = timed(clock, 0.75)
        assert manager.execute_task(ok.id) == 0.75  # a finished task runs again
        bad = manager.create_task("bad", fn=timed(clock, 1.0, fail=True))
        with pytest.raises(ValueError):
            manager.execute_task(bad.id)

        load = ok.get_performance_stats()
        assert load == manager.get_performance_stats("load")
        assert set(load) == KEYS
        assert load["execution_count"] == 2
        assert load["min_duration"] == 0.25 and load["max_duration"] == 0.75
        assert load["total_duration"] == 1.0 and load["average_duration"] == 0.5
        assert load["error_rate"] == 0.0
        # The last attempt started 0.75 s before it finished, on the fake clock.
        assert load["last_execution"] == clock.time() - 1.0 - 0.75

        assert bad.get_performance_stats()["error_rate"] == 1.0
        every = manager.get_performance_stats()
        assert every["execution_count"] == 3
        assert every["error_rate"] == pytest.approx(1 / 3)
        assert every["total_duration"] == 2.0 and every["max_duration"] == 1.0
        assert every["last_execution"] == clock.time() - 1.0


def test_failed_attempts_that_are_retried_count():
    clock = FakeClock()
    calls = []

    def flaky():
        calls.append(1)
        clock.advance(0.5)
        if len(calls) == 1:
            raise ConnectionError("reset")
        return "ok"

    task = Task("flaky", fn=flaky)
    Engine(plugins=load_plugins(plugins=[RetryOnce()]), clock=clock).run([task])
    stats = task.get_performance_stats()
    assert stats["execution_count"] == 2 and stats["error_rate"] == 0.5


def test_debug_report_has_the_documented_fields():
    clock = FakeClock()
    calls = []

    def flaky():
        calls.append(1)
        clock.advance(0.125)
        if len(calls) == 1:
            raise ConnectionError("reset by peer")
        return "ok"

    task = Task("flaky-api", fn=flaky, config={"url": "https://example.org"})
    assert task.get_debug_report() == {
        "task_name": "flaky-api", "debug_info": [], "config": {"url": "https://example.org"},
        "status": "pending",
    }
    Engine(plugins=load_plugins(plugins=[RetryOnce()]), clock=clock).run([task])
    report = task.get_debug_report()
    assert set(report) == {"task_name", "debug_info", "config", "status"}
    assert report["status"] == "completed" and report["config"] == {"url": "https://example.org"}
    info = report["debug_info"]
    assert info[0] == "2 attempt(s), 1 failed"
    assert "attempt 1" in info[1]
    assert "failed after 0.125000s: ConnectionError: reset by peer" in info[1]
    assert "attempt 2" in info[2] and info[2].endswith("completed in 0.125000s")

    doomed = Task("doomed", fn=lambda: 1 / 0)
    Engine(plugins=load_plugins(), clock=clock).run([doomed])
    report = doomed.get_debug_report()
    assert report["status"] == "failed"
    assert report["debug_info"][-1] == "final error: ZeroDivisionError: division by zero"


def test_a_clear_error_when_the_stats_plugin_is_disabled():
    ps = load_plugins(config={"disable_plugins": ["stats"]})
    task = Task("a", fn=lambda: 1)
    Engine(plugins=ps).run([task])
    with pytest.raises(TaskloomError, match="no loaded plugin registers a statistics "
                                            "component .kind 'stats'.; is the plugin"):
        task.get_performance_stats()
    with pytest.raises(TaskloomError, match="kind 'stats'"):
        task.get_debug_report()
    with TaskManager(plugins=ps) as manager, pytest.raises(TaskloomError, match="'stats'"):
        manager.get_performance_stats()


def test_each_plugin_set_has_its_own_figures():
    a, b = load_plugins(), load_plugins()
    Engine(plugins=a).run([Task("x", fn=lambda: 1)])
    assert a.registry.first("stats").performance("x")["execution_count"] == 1
    assert b.registry.first("stats").performance("x") == {"status": "no_executions"}


attempts = st.lists(
    st.tuples(st.sampled_from("abc"), st.floats(0, 1e4, allow_nan=False), st.booleans()),
    min_size=1, max_size=60,
)


@given(attempts)
def test_figures_agree_with_the_attempts(recorded):
    collector = StatsCollector()
    for i, (name, duration, failed) in enumerate(recorded):
        collector.record(name, 1, float(i), duration, ValueError("x") if failed else None)
    every = collector.performance()
    durations = [d for _, d, _ in recorded]
    assert every["execution_count"] == len(recorded)
    assert every["total_duration"] == pytest.approx(math.fsum(durations))
    assert every["min_duration"] == min(durations) and every["max_duration"] == max(durations)
    assert 0.0 <= every["error_rate"] <= 1.0
    assert every["error_rate"] == sum(f for *_, f in recorded) / len(recorded)
    assert every["min_duration"] <= every["average_duration"] * (1 + 1e-9) + 1e-9
    assert every["average_duration"] <= every["max_duration"] * (1 + 1e-9) + 1e-9
    assert every["last_execution"] == float(len(recorded) - 1)
    for name in "abc":
        mine = [r for r in recorded if r[0] == name]
        stats = collector.performance(name)
        if not mine:
            assert stats == {"status": "no_executions"}
        else:
            assert stats["execution_count"] == len(mine)
            assert len(collector.debug_info(name)) <= 2 + 10


def test_folding_never_runs_in_the_recording_thread():
    """A worker that records the record that reaches FOLD_AT only starts a fold: with the
    collector's lock held (a reader folding), recording still returns at once."""
    collector = StatsCollector()
    collector.FOLD_AT = 100
    collector.CHUNK = 7
    returned = threading.Event()

    def worker():
        for i in range(250):
            collector.record("t", 1, float(i), 0.5, None, "run")
        returned.set()

    with collector._lock:  # a fold inside record() would wait here for ever
        thread = threading.Thread(target=worker)
        thread.start()
        assert returned.wait(30), "record() waited for a fold"
    thread.join()
    stats = collector.performance("t")  # folds what the folding thread left
    assert stats["execution_count"] == 250 and stats["total_duration"] == 125.0


def test_figures_are_kept_for_at_most_max_names_names_the_first_seen_dropped():
    engine = Engine(max_workers=1, config={"stats": {"max_names": 3}})
    engine.run([Task(f"t{i}", fn=lambda: None) for i in range(5)])
    collector = engine.plugins.registry.first("stats")
    assert collector.max_names == 3
    kept = [n for n in (f"t{i}" for i in range(5))
            if collector.performance(n) != {"status": "no_executions"}]
    assert kept == ["t2", "t3", "t4"]
    assert collector.performance()["execution_count"] == 3
    engine.run([Task("t0", fn=lambda: None)])  # a dropped name starts again
    assert collector.performance("t0")["execution_count"] == 1
    assert collector.performance("t2") == {"status": "no_executions"}


@pytest.mark.parametrize("bad", [0, -1, "10", 2.5, True])
def test_a_bad_max_names_is_a_configuration_error_naming_the_key(bad):
    from taskloom import ConfigError

    with pytest.raises(ConfigError, match="stats.max_names"):
        Engine(config={"stats": {"max_names": bad}})
