"""The retry policy: backoff on the engine's timer, budgets, exception filters, validation."""

import random
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from taskloom import ConfigError, Engine, FakeClock, Task, TaskState, hookimpl, load_plugins
from taskloom.testing import wait_until
from taskloom_std.policies.retry import RetryPolicy, parse_policy


class Transitions:
    def __init__(self):
        self.seen = []

    @hookimpl
    def taskloom_task_transition(self, task, old, new, run):
        self.seen.append((task.name, old.value, new.value))


def flaky(failures, error=ValueError):
    calls = []

    def body():
        calls.append(1)
        if len(calls) <= failures:
            raise error(f"fail {len(calls)}")
        return f"ok after {len(calls)}"

    return body, calls


def test_retries_wait_on_the_clock_and_move_through_retrying():
    clock = FakeClock()
    rec = Transitions()
    engine = Engine(plugins=load_plugins(plugins=[rec]), clock=clock, max_workers=2)
    body, calls = flaky(2)
    task = Task("api_call", fn=body,
                retry={"max_retries": 5, "backoff": "exponential", "base_delay": 1.0,
                       "backoff_factor": 1.5})
    run = engine.open_run()
    run.add([task])
    run.start()
    wait_until(lambda: task.status is TaskState.RETRYING)
    clock.advance(0.99)
    assert len(calls) == 1 and task.status is TaskState.RETRYING
    clock.advance(0.01)  # first retry after base_delay
    wait_until(lambda: len(calls) == 2 and task.status is TaskState.RETRYING)
    clock.advance(1.49)
    assert len(calls) == 2
    clock.advance(0.01)  # second retry after base_delay * 1.5
    assert run.wait(5)
    summary = run.close()
    assert summary.ok and task.result == "ok after 3" and task.attempts == 3
    states = [(o, n) for name, o, n in rec.seen if name == "api_call"]
    assert states.count(("running", "retrying")) == 2
    assert states.count(("retrying", "running")) == 2
    assert states[-1] == ("running", "completed")


def test_exhausted_retries_fail_with_the_last_error():
    body, calls = flaky(10)
    s = Engine().run([Task("t", fn=body, retry={"max_retries": 2, "base_delay": 0})])
    task = s.tasks[0]
    assert task.status is TaskState.FAILED
    assert task.attempts == 3 and len(calls) == 3
    assert task.error == "fail 3" and task.error_type == "ValueError"


def test_a_retry_never_holds_a_worker():
    """With one worker, a task waiting for its retry lets another task run meanwhile."""
    clock = FakeClock()
    engine = Engine(clock=clock, max_workers=1)
    body, _ = flaky(1)
    slow = Task("slow", fn=body, retry={"max_retries": 1, "backoff": "fixed", "base_delay": 60})
    ran = threading.Event()
    other = Task("other", fn=ran.set, priority=2)
    run = engine.open_run()
    run.add([slow, other])
    run.start()
    assert run.wait(5, tasks=[other])  # no clock movement: the retry is still 60 s away
    assert ran.is_set() and slow.status is TaskState.RETRYING
    clock.advance(60)
    assert run.wait(5)
    assert run.close().ok and slow.attempts == 2


def test_retry_on_and_give_up_on_accept_types_and_dotted_names():
    engine = Engine()
    give_up, calls1 = flaky(5, KeyError)
    not_listed, calls2 = flaky(5, TypeError)
    listed, calls3 = flaky(1, ValueError)
    s = engine.run([
        Task("give_up", fn=give_up,
             retry={"max_retries": 3, "base_delay": 0, "give_up_on": "builtins.KeyError"}),
        Task("not_listed", fn=not_listed,
             retry={"max_retries": 3, "base_delay": 0, "retry_on": ["builtins:ValueError"]}),
        Task("listed", fn=listed,
             retry={"max_retries": 3, "base_delay": 0, "retry_on": (ValueError, OSError)}),
    ])
    assert len(calls1) == 1 and len(calls2) == 1 and len(calls3) == 2
    assert s.results == {"listed": "ok after 2"}


def test_policy_object_and_shortcuts():
    body, calls = flaky(2)
    policy = RetryPolicy(max_retries=2, backoff="fixed", base_delay=0)
    s = Engine().run([Task("obj", fn=body, retry=policy)])
    assert s.results["obj"] == "ok after 3" and len(calls) == 3
    assert parse_policy(4, "r").max_retries == 4
    assert parse_policy(True, "r") == RetryPolicy(retry_on=(Exception,))
    assert parse_policy(False, "r") is None


def test_configured_default_applies_to_tasks_without_their_own_policy():
    engine = Engine(config={"retry": {"max_retries": 2, "base_delay": 0}})
    b1, c1 = flaky(10)
    b2, c2 = flaky(10)
    b3, c3 = flaky(10)
    engine.run([
        Task("default", fn=b1),
        Task("opt_out", fn=b2, retry=False),
        Task("own", fn=b3, retry={"max_retries": 4, "base_delay": 0}),
    ])
    assert (len(c1), len(c2), len(c3)) == (3, 1, 5)


def test_bad_configured_default_is_reported():
    with pytest.raises(ConfigError, match=r"\[taskloom.retry\].backoff"):
        Engine(config={"retry": {"backoff": "sometimes"}})


@pytest.mark.parametrize(("retry", "message"), [
    ({"max_retries": -1}, "task 'load': retry.max_retries must be an integer >= 0"),
    ({"max_retries": "3"}, "task 'load': retry.max_retries must be an integer >= 0"),
    ({"backoff": "zigzag"}, "task 'load': retry.backoff must be one of"),
    ({"base_delay": -2}, "task 'load': retry.base_delay must be a number >= 0"),
    ({"backoff_factor": 0.5}, "task 'load': retry.backoff_factor must be a number >= 1"),
    ({"jitter": 3}, "task 'load': retry.jitter must be a bool or a fraction"),
    ({"retry_on": "nosuchmodule:Err"}, "task 'load': retry.retry_on: cannot import"),
    ({"give_up_on": "builtins.len"}, "task 'load': retry.give_up_on: 'builtins.len' is not"),
    ({"max_retires": 3}, "task 'load': retry.max_retires: unknown key"),
    ("often", "task 'load': retry must be a mapping"),
])
def test_invalid_configuration_names_task_and_key(retry, message):
    ran = []
    with pytest.raises(ConfigError) as info:
        Engine().run([Task("load", fn=lambda: ran.append(1), retry=retry)])
    assert message in str(info.value)
    assert ran == []


def test_a_task_run_again_gets_a_fresh_budget():
    engine = Engine()
    body, calls = flaky(2)
    task = Task("again", fn=body, retry={"max_retries": 1, "base_delay": 0})
    engine.run([task])
    assert task.status is TaskState.FAILED and len(calls) == 2
    engine.run([task])  # the same task object in a new run
    assert task.status is TaskState.COMPLETED and len(calls) == 3


def test_jitter_is_reproducible_with_a_seed_and_bounded():
    a = parse_policy({"base_delay": 1, "jitter": 0.5, "seed": 7, "max_delay": None}, "r")
    b = parse_policy({"base_delay": 1, "jitter": 0.5, "seed": 7, "max_delay": None}, "r")
    da = [a.delay(n) for n in range(1, 8)]
    assert da == [b.delay(n) for n in range(1, 8)]
    for n, d in enumerate(da, 1):
        plain = 2.0 ** (n - 1)
        assert 0.5 * plain <= d <= 1.5 * plain
    p = RetryPolicy(base_delay=10, max_delay=12, jitter=True, rng=random.Random(1))
    assert all(d <= 12 for d in (p.delay(n) for n in range(1, 20)))


@settings(max_examples=60, deadline=None)
@given(
    backoff=st.sampled_from(["fixed", "linear", "exponential"]),
    base=st.floats(0, 100),
    factor=st.floats(1, 10),
    cap=st.one_of(st.none(), st.floats(0, 1000)),
)
def test_backoff_delays_are_monotone_up_to_max_delay(backoff, base, factor, cap):
    p = parse_policy({"backoff": backoff, "base_delay": base, "backoff_factor": factor,
                      "max_delay": cap}, "r")
    delays = [p.delay(n) for n in range(1, 40)]
    assert all(d1 <= d2 for d1, d2 in zip(delays, delays[1:]))
    if cap is not None:
        assert all(d <= cap for d in delays)
    assert delays[0] == (min(base, cap) if cap is not None else base)


_engine = Engine(max_workers=4)


@settings(max_examples=25, deadline=None)
@given(failures=st.integers(0, 6), max_retries=st.integers(0, 4))
def test_attempts_never_exceed_max_retries_plus_one(failures, max_retries):
    body, calls = flaky(failures)
    task = Task("t", fn=body, retry={"max_retries": max_retries, "base_delay": 0})
    _engine.run([task])
    assert task.attempts == len(calls) <= max_retries + 1
    assert task.attempts == min(failures, max_retries) + 1
    assert (task.status is TaskState.COMPLETED) == (failures <= max_retries)
