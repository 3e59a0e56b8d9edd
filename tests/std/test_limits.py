"""Per-tag concurrency limits and rate limits, in the limiter and through real engine runs."""

from __future__ import annotations

import threading
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from taskloom import ConfigError, Engine, FakeClock, Task, TaskState, hookimpl, load_plugins
from taskloom_std.limits import TagLimiter, normalise_limits


@pytest.fixture(scope="module")
def plugins() -> Any:
    return load_plugins()


def ready(name: str, *tags: str) -> Task:
    t = Task(name, tags=tags)
    t._move(TaskState.READY)  # what a run does before offering a task to the limiter
    return t


class Gauge:
    """Counts bodies running at once, from inside the bodies."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.peak = 0

    def __enter__(self) -> None:
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)

    def __exit__(self, *exc: object) -> None:
        with self.lock:
            self.now -= 1


# -- through the engine ------------------------------------------------------------------------
def test_a_tag_limit_holds_under_2000_tasks_while_untagged_tasks_flow(plugins: Any):
    db = Gauge()
    untagged_done = threading.Event()
    count_lock = threading.Lock()
    untagged_left = [1000]

    def db_body() -> None:
        with db:
            # The first db tasks hold their slots until every untagged task has finished:
            # if parked db tasks blocked the queue, this would never happen.
            assert untagged_done.wait(30)

    def plain_body() -> None:
        with count_lock:
            untagged_left[0] -= 1
            if untagged_left[0] == 0:
                untagged_done.set()

    # db tasks have the better priority, so the queue offers them first.
    tasks = [Task(f"db{i}", priority=1, tags=["db"], fn=db_body) for i in range(1000)]
    tasks += [Task(f"plain{i}", priority=5, fn=plain_body) for i in range(1000)]
    engine = Engine(limits={"db": 2}, max_workers=8, plugins=plugins)
    run = engine.open_run()
    run.add(tasks)
    run.start()
    assert run.wait(timeout=60)
    summary = run.close()
    assert summary.ok, summary.errors
    assert summary.counts == {"completed": 2000}
    assert db.peak == 2  # never more than two db bodies at once
    assert run._limiter.peak == {"db": 2}
    assert run._limiter.running == {"db": 0}
    assert not run._limiter.parked["db"]


def test_tasks_with_two_limited_tags_respect_both(plugins: Any):
    db, api = Gauge(), Gauge()

    def body(*gauges: Gauge) -> Any:
        def run() -> None:
            for g in gauges:
                g.__enter__()
            try:
                pass
            finally:
                for g in gauges:
                    g.__exit__()
        return run

    tasks = []
    for i in range(300):
        kind = i % 3
        if kind == 0:
            tasks.append(Task(f"b{i}", tags=["db", "api"], fn=body(db, api)))
        elif kind == 1:
            tasks.append(Task(f"d{i}", tags=["db"], fn=body(db)))
        else:
            tasks.append(Task(f"a{i}", tags=["api"], fn=body(api)))
    summary = Engine(limits={"db": 2, "api": 1}, max_workers=6, plugins=plugins).run(tasks)
    assert summary.ok
    assert db.peak <= 2
    assert api.peak <= 1


def test_a_parked_task_cancelled_does_not_stall_the_tag(plugins: Any):
    gate = threading.Event()
    first = Task("first", tags=["db"], fn=lambda: gate.wait(30))
    parked = Task("parked", tags=["db"])
    last = Task("last", tags=["db"])
    run = Engine(limits={"db": 1}, max_workers=4, plugins=plugins).open_run()
    run.add([first, parked, last])
    run.start()
    assert [t.name for t in run._limiter.parked["db"]] == ["parked", "last"]
    run.cancel_task(parked)
    gate.set()
    assert run.wait(timeout=30)
    summary = run.close()
    assert summary.counts == {"completed": 2, "cancelled": 1}
    assert last.status == "completed"


def test_a_retried_task_releases_its_slot_for_each_attempt(plugins: Any):
    from taskloom import Retry

    attempts = []

    class RetryOnce:
        @hookimpl
        def taskloom_task_error(self, task: Any, error: Any, attempt: Any, run: Any) -> Any:
            return Retry(0) if attempt.number == 1 else None

    ps = load_plugins(plugins=[RetryOnce()])

    def flaky() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("first try fails")
        return "ok"

    tasks = [Task("flaky", tags=["db"], fn=flaky)] + [
        Task(f"t{i}", tags=["db"]) for i in range(20)
    ]
    run = Engine(limits={"db": 1}, max_workers=4, plugins=ps).open_run()
    run.add(tasks)
    run.start()
    assert run.wait(timeout=30)
    summary = run.close()
    assert summary.ok
    assert len(attempts) == 2
    assert run._limiter.running == {"db": 0}


def test_no_limits_means_no_limiter(plugins: Any):
    assert Engine(plugins=plugins).create_limiter() is None


# -- rate limits on a fake clock -----------------------------------------------------------------
class StartTimes:
    """Records the clock's time at every move to ``running``."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.starts: dict[str, float] = {}

    @hookimpl
    def taskloom_task_transition(self, task: Any, old: Any, new: Any, run: Any) -> None:
        if new == "running":
            self.starts[task.name] = self.clock.monotonic()


def test_rate_limit_spaces_starts_on_the_clock():
    clock = FakeClock()
    rec = StartTimes(clock)
    ps = load_plugins(plugins=[rec])
    engine = Engine(rate_limits={"api": {"n": 2, "period": 1.0}}, max_workers=4,
                    plugins=ps, clock=clock)
    tasks = [Task(f"call{i}", tags=["api"]) for i in range(6)]
    free = Task("free")  # untagged: not limited
    run = engine.open_run()
    run.add([*tasks, free])
    run.start()
    for step in range(4):
        assert run.wait(timeout=10, tasks=[t for t in tasks if t.name in rec.starts])
        clock.advance(0.5)
        del step
    assert run.wait(timeout=10)
    run.close()
    # A bucket of 2 tokens refilled at 2 a second: a burst of two, then one every 0.5 s.
    assert [rec.starts[t.name] for t in tasks] == [0.0, 0.0, 0.5, 1.0, 1.5, 2.0]
    assert rec.starts["free"] == 0.0
    assert clock.pending_timers() == 0


def test_rate_limit_is_shared_by_every_task_of_the_tag_and_refills():
    clock = FakeClock()
    rec = StartTimes(clock)
    engine = Engine(rate_limits={"api": (1, 2.0)}, plugins=load_plugins(plugins=[rec]),
                    clock=clock, max_workers=2)
    run = engine.open_run()
    run.start()
    run.add([Task("a", tags=["api"])])
    assert run.wait(timeout=10)
    clock.advance(10)  # the bucket refills, but holds at most one token
    run.add([Task("b", tags=["api"]), Task("c", tags=["api"])])
    clock.advance(2)
    assert run.wait(timeout=10)
    run.close()
    assert rec.starts == {"a": 0.0, "b": 10.0, "c": 12.0}


def test_a_rate_limited_task_cancelled_while_waiting_gives_its_token_back():
    clock = FakeClock()
    rec = StartTimes(clock)
    engine = Engine(rate_limits={"api": (1, 1.0)}, plugins=load_plugins(plugins=[rec]),
                    clock=clock, max_workers=2)
    run = engine.open_run()
    a, b, c = (Task(n, tags=["api"]) for n in "abc")
    run.add([a, b])
    run.start()  # a starts; b waits for the token at 1.0
    run.cancel_task(b)
    clock.advance(1.0)  # b's timer fires: the reserved token is returned
    run.add([c])
    assert run.wait(timeout=10)
    run.close()
    assert rec.starts == {"a": 0.0, "c": 1.0}


def test_rate_and_concurrency_limits_together():
    clock = FakeClock()
    rec = StartTimes(clock)
    gate = threading.Event()
    engine = Engine(limits={"db": 1}, rate_limits={"db": (10, 1.0)},
                    plugins=load_plugins(plugins=[rec]), clock=clock, max_workers=4)
    first = Task("first", tags=["db"], fn=lambda: gate.wait(30))
    second = Task("second", tags=["db"])
    run = engine.open_run()
    run.add([first, second])
    run.start()
    # second waits for the slot, not for a token: waiting holds no token.
    assert [t.name for t in run._limiter.parked["db"]] == ["second"]
    gate.set()
    assert run.wait(timeout=10)
    run.close()
    assert rec.starts == {"first": 0.0, "second": 0.0}
    assert run._limiter.buckets["db"].tokens == 8.0


# -- the limiter on its own --------------------------------------------------------------------------
def test_limiter_parks_then_wakes_the_oldest_waiting_task():
    lim = TagLimiter({"db": 1}, {}, clock=FakeClock())
    a, b, c = ready("a", "db"), ready("b", "db"), ready("c", "db")
    assert lim.admit(a) is True
    assert lim.admit(b) is False
    assert lim.admit(c) is False
    lim.release(a)
    assert list(lim.woken) == [b]
    # The freed slot is kept for b: a newcomer is parked behind c.
    d = ready("d", "db")
    assert lim.admit(d) is False
    assert lim.admit(lim.woken.popleft()) is True
    assert lim.running == {"db": 1}
    assert list(lim.parked["db"]) == [c, d]


def test_limiter_passes_a_slot_on_when_the_woken_task_was_cancelled():
    lim = TagLimiter({"db": 1}, {}, clock=FakeClock())
    a, b, c = ready("a", "db"), ready("b", "db"), ready("c", "db")
    lim.admit(a)
    lim.admit(b)
    lim.admit(c)
    lim.release(a)
    woken = lim.woken.popleft()
    assert woken is b
    b._move(TaskState.CANCELLED)
    lim.discard(b)
    assert list(lim.woken) == [c]


def test_limiter_skips_parked_tasks_that_are_no_longer_ready():
    lim = TagLimiter({"db": 1}, {}, clock=FakeClock())
    a, b, c = ready("a", "db"), ready("b", "db"), ready("c", "db")
    lim.admit(a)
    lim.admit(b)
    lim.admit(c)
    b._move(TaskState.CANCELLED)
    lim.release(a)
    assert list(lim.woken) == [c]


def test_limiter_woken_task_blocked_by_another_tag_passes_its_slot_on():
    lim = TagLimiter({"db": 1, "gpu": 1}, {}, clock=FakeClock())
    gpu = ready("gpu", "gpu")
    db = ready("db", "db")
    both = ready("both", "db", "gpu")
    other = ready("other", "db")
    assert lim.admit(gpu) is True
    assert lim.admit(db) is True
    assert lim.admit(both) is False  # parked under db
    assert lim.admit(other) is False
    lim.release(db)
    assert lim.admit(lim.woken.popleft()) is False  # now parked under gpu
    assert list(lim.woken) == [other]
    assert lim.admit(lim.woken.popleft()) is True


def test_limiter_counts_overlapping_attempts_of_one_task():
    lim = TagLimiter({"db": 2}, {}, clock=FakeClock())
    t = ready("t", "db")
    assert lim.admit(t) is True
    assert lim.admit(t) is True  # a retry while the timed-out attempt still runs
    assert lim.running == {"db": 2}
    lim.release(t)
    lim.release(t)
    lim.release(t)  # one release too many is ignored
    assert lim.running == {"db": 0}


def test_limiter_reserves_tokens_across_all_rate_limited_tags():
    clock = FakeClock()
    lim = TagLimiter({}, {"a": (1, 1.0), "b": (1, 4.0)}, clock=clock)
    first = ready("first", "a", "b")
    second = ready("second", "a", "b")
    assert lim.admit(first) is True
    assert lim.admit(second) == pytest.approx(4.0)  # the slower bucket decides
    clock.advance(4.0)
    assert lim.admit(second) is True  # its reserved tokens are due


# -- validation ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("limits", "rates", "problem"),
    [
        ({"db": 0}, None, "limits.db: must be an integer >= 1, got 0"),
        ({"db": True}, None, "limits.db: must be an integer >= 1, got True"),
        ({"db": "2"}, None, "limits.db: must be an integer >= 1, got '2'"),
        ([("db", 2)], None, "limits: expected a table of tag = value"),
        ({"": 1}, None, "limits: a tag must be a non-empty string, got ''"),
        (None, {"api": {"n": 0}}, "rate_limits.api: n must be an integer >= 1, got 0"),
        (None, {"api": {"n": 5, "period": 0}}, "rate_limits.api: period must be a number"),
        (None, {"api": {"n": 5, "per": 2}}, "rate_limits.api: unknown key 'per'"),
        (None, {"api": {"period": 2}}, "rate_limits.api: missing n"),
        (None, {"api": (1, 2, 3)}, "rate_limits.api: expected [n, period]"),
        (None, {"api": "10/s"}, "rate_limits.api: expected {n = N, period = SECONDS}"),
        (None, {"api": (True, 1.0)}, "rate_limits.api: n must be an integer >= 1"),
        (None, 5, "rate_limits: expected a table of tag = value"),
    ],
)
def test_bad_limits_are_config_errors_naming_the_key(limits: Any, rates: Any, problem: str,
                                                     plugins: Any):
    with pytest.raises(ConfigError) as err:
        Engine(limits=limits, rate_limits=rates, plugins=plugins)
    assert len(err.value.problems) == 1
    assert err.value.problems[0].startswith(problem)


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as err:
        normalise_limits({"db": 0, "io": 1, "gpu": -1}, {"api": {"n": 0}})
    assert [p.split(":")[0] for p in err.value.problems] == [
        "limits.db", "limits.gpu", "rate_limits.api",
    ]


def test_rate_forms_are_normalised():
    limits, rates = normalise_limits(
        {"db": 2}, {"a": {"n": 10}, "b": {"n": 3, "period": 0.5}, "c": [4, 2], "d": 7}
    )
    assert limits == {"db": 2}
    assert rates == {"a": (10, 1.0), "b": (3, 0.5), "c": (4, 2.0), "d": (7, 1.0)}


# -- the limiter against random traffic ------------------------------------------------------------
LIMITS = {"a": 1, "b": 2}


class LimiterTraffic(RuleBasedStateMachine):
    """Drive a limiter the way a run does, with random arrivals, finishes and cancels.

    Safety: no tag ever runs more than its limit. Liveness: a ready task never waits in a
    tag's lane while that tag has a slot nobody holds.
    """

    def __init__(self) -> None:
        super().__init__()
        self.lim = TagLimiter(LIMITS, {}, clock=FakeClock())
        self.queue: list[Task] = []
        self.running: list[Task] = []
        self.count = 0

    @rule(tags=st.sampled_from([{"a"}, {"a"}, {"b"}, {"a", "b"}, {"a", "c"}, set()]))
    def arrive(self, tags: set[str]) -> None:
        self.count += 1
        self.queue.append(ready(f"t{self.count}", *sorted(tags)))

    @rule()
    def offer(self) -> None:
        """One step of the engine's dispatch loop: woken tasks first, then the queue."""
        if self.lim.woken:
            task = self.lim.woken.popleft()
        elif self.queue:
            task = self.queue.pop(0)
        else:
            return
        if task.status is not TaskState.READY:
            self.lim.discard(task)
            return
        if self.lim.admit(task) is True:
            task._move(TaskState.RUNNING)
            self.running.append(task)

    @precondition(lambda self: self.running)
    @rule(data=st.data())
    def finish(self, data: st.DataObject) -> None:
        task = data.draw(st.sampled_from(self.running))
        self.running.remove(task)
        task._move(TaskState.COMPLETED)
        self.lim.release(task)

    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        waiting = [t for lane in self.lim.parked.values() for t in lane] + list(self.lim.woken)
        waiting = [t for t in waiting if t.status is TaskState.READY]
        if waiting:
            data.draw(st.sampled_from(waiting))._move(TaskState.CANCELLED)

    @precondition(lambda self: self.lim.woken)
    @rule()
    def cancel_a_woken_task(self) -> None:
        """Cancelled after a freed slot woke it, before its turn: the slot must pass on."""
        task = self.lim.woken[-1]
        if task.status is TaskState.READY:
            task._move(TaskState.CANCELLED)

    @invariant()
    def within_limits(self) -> None:
        for tag, limit in LIMITS.items():
            now = sum(1 for t in self.running if tag in t.tags)
            assert self.lim.running[tag] == now <= limit

    @invariant()
    def no_idle_slot_while_a_ready_task_waits(self) -> None:
        for tag, limit in LIMITS.items():
            lane_ready = [
                t for t in self.lim.parked[tag]
                if t.status is TaskState.READY and id(t) not in self.lim._tickets
            ]
            if lane_ready:
                assert self.lim.running[tag] + self.lim._held[tag] >= limit

    def teardown(self) -> None:
        # Drain: finish everything; every task that was not cancelled must get to run.
        for _ in range(10 * self.count + 10):
            if self.running:
                task = self.running.pop()
                task._move(TaskState.COMPLETED)
                self.lim.release(task)
            self.offer()
        assert not self.running and not self.queue and not self.lim.woken
        for lane in self.lim.parked.values():
            assert all(t.status is not TaskState.READY for t in lane)
        assert self.lim.running == {"a": 0, "b": 0}
        assert self.lim._held == {"a": 0, "b": 0}


TestLimiterTraffic = settings(max_examples=100, stateful_step_count=40, deadline=None)(
    LimiterTraffic
).TestCase
