"""The ``cache`` policy: hits skip the body, expire on the run's clock, survive restarts."""

from __future__ import annotations

from collections import Counter

import pytest

from taskloom import ConfigError, Engine, FakeClock, Task
from taskloom_std.policies.cache import CACHE_HIT

calls: Counter[str] = Counter()


def by_region(task, deps):
    """A key function named in configuration: only the region matters."""
    return task.config["region"]


@pytest.fixture(autouse=True)
def _reset():
    calls.clear()


def _tasks(value=1, region="north", cache=None):
    def source():
        calls["source"] += 1
        return value

    def costly(source):
        calls["costly"] += 1
        return source * 100

    return [
        Task("source", fn=source),
        Task("costly", fn=costly, dependencies=["source"], config={"region": region},
             cache=cache if cache is not None else {"ttl": 60}),
    ]


@pytest.fixture(params=["memory", "sqlite"])
def engine(request, tmp_path):
    clock = FakeClock()
    options = {"path": str(tmp_path / "t.db")} if request.param == "sqlite" else {}
    e = Engine(max_workers=2, store=request.param, store_options=options, clock=clock)
    yield e
    e.close()


def test_a_hit_skips_the_body_and_is_recorded(engine):
    first = engine.run(_tasks())
    tasks = _tasks()
    second = engine.run(tasks)
    assert first.results["costly"] == second.results["costly"] == 100
    assert calls == {"source": 2, "costly": 1}
    assert tasks[1].stash[CACHE_HIT] is True and CACHE_HIT not in tasks[0].stash
    if hasattr(engine.store, "detail"):
        recorded = {t.name: t for t in engine.store.detail(second.id).tasks}
        assert recorded["costly"].cache_hit and not recorded["source"].cache_hit


def test_other_dependency_results_or_config_miss(engine):
    engine.run(_tasks(value=1))
    engine.run(_tasks(value=2))
    engine.run(_tasks(value=2, region="south"))
    assert calls["costly"] == 3


def test_entries_expire_on_the_runs_clock(engine):
    engine.run(_tasks())
    engine.clock.advance(59)
    engine.run(_tasks())
    assert calls["costly"] == 1
    engine.clock.advance(2)
    engine.run(_tasks())
    assert calls["costly"] == 2


@pytest.mark.parametrize("key", ["test_cache:by_region", by_region])
def test_a_key_function_decides_what_is_the_same(engine, key):
    engine.run(_tasks(value=1, cache={"key": key}))
    engine.run(_tasks(value=2, cache={"key": key}))  # same region: a hit despite the input
    assert calls["costly"] == 1


@pytest.mark.parametrize("option", [True, 30, 0.5])
def test_short_forms(engine, option):
    engine.run(_tasks(cache=option))
    engine.run(_tasks(cache=option))
    assert calls["costly"] == 1


def test_the_sqlite_cache_survives_a_restart(tmp_path):
    options = {"path": str(tmp_path / "t.db")}
    first = Engine(max_workers=2, store="sqlite", store_options=options)
    first.run(_tasks(value=1))
    first.close()
    second = Engine(max_workers=2, store="sqlite", store_options=options)
    try:
        tasks = _tasks(value=1)
        assert second.run(tasks).results["costly"] == 100
    finally:
        second.close()
    assert calls["costly"] == 1 and tasks[1].stash[CACHE_HIT]


def test_a_failed_attempt_is_not_cached(engine):
    def flaky():
        calls["flaky"] += 1
        raise ValueError("no")

    for _ in range(2):
        engine.run([Task("flaky", fn=flaky, cache=True)])
    assert calls["flaky"] == 2


@pytest.mark.parametrize(("option", "message"), [
    ({"ttl": 0}, r"task 'costly': cache.ttl must be a number > 0"),
    ({"ttl": 5, "size": 3}, r"task 'costly': cache.size: unknown key"),
    ({"key": "nomodule_xyz:fn"}, r"task 'costly': cache.key: cannot import"),
    ({"key": 42}, r"cache.key must be a callable or 'module:function'"),
    (-1, r"task 'costly': cache must be a number >= 0"),
])
def test_bad_options_reject_the_run(engine, option, message):
    with pytest.raises(ConfigError, match=message):
        engine.run(_tasks(cache=option))
    assert calls == {}
