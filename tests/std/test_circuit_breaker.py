"""Circuit breakers: closed -> open -> half-open -> closed on the engine's clock."""

import threading
import time

import pytest

from taskloom import (
    CircuitOpenError,
    ConfigError,
    Engine,
    Fail,
    FakeClock,
    Retry,
    Task,
    TaskManager,
    TaskState,
    hookimpl,
    load_plugins,
)
from taskloom_std.policies.circuit_breaker import breaker_state


class Changes:
    def __init__(self):
        self.seen = []

    @hookimpl
    def taskloom_circuit_change(self, key, old, new, task):
        self.seen.append((key, old, new, task.name if task is not None else None))


class Service:
    """A dependency that is down until told otherwise."""

    def __init__(self):
        self.up = False
        self.calls = 0

    def __call__(self):
        self.calls += 1
        if not self.up:
            raise ConnectionError("service unavailable")
        return "response"


def setup(**engine_kw):
    clock = FakeClock()
    changes = Changes()
    engine = Engine(plugins=load_plugins(plugins=[changes]), clock=clock, **engine_kw)
    return engine, clock, changes


def test_documented_scenario_opens_fails_fast_and_recovers():
    engine, clock, changes = setup()
    service = Service()
    breaker = {"failure_threshold": 3, "recovery_timeout": 30}

    def call():
        task = Task("external_service_call", fn=service, circuit_breaker=breaker)
        engine.run([task])
        return task

    for _ in range(3):
        assert call().status is TaskState.FAILED
    key = "task:external_service_call"
    assert breaker_state(engine.plugins, key) == "open" and service.calls == 3

    fast = call()  # fails fast: the service is not called
    assert isinstance(fast.exception, CircuitOpenError) and service.calls == 3
    assert "circuit task:external_service_call is open" in fast.error

    clock.advance(29)
    assert isinstance(call().exception, CircuitOpenError) and service.calls == 3
    clock.advance(1)
    service.up = True
    assert call().result == "response"  # the half-open trial succeeds
    assert breaker_state(engine.plugins, key) == "closed"
    assert changes.seen == [
        (key, "closed", "open", "external_service_call"),
        (key, "open", "half-open", "external_service_call"),
        (key, "half-open", "closed", "external_service_call"),
    ]


def test_success_while_closed_resets_the_count():
    engine, _, _ = setup()
    service = Service()
    opts = {"failure_threshold": 3}
    for up in (False, False, True, False, False):
        service.up = up
        engine.run([Task("svc", fn=service, circuit_breaker=opts)])
    assert breaker_state(engine.plugins, "task:svc") == "closed"
    engine.run([Task("svc", fn=service, circuit_breaker=opts)])
    assert breaker_state(engine.plugins, "task:svc") == "open"


def test_failed_trial_opens_again_and_restarts_the_recovery_time():
    engine, clock, changes = setup()
    service = Service()
    opts = {"failure_threshold": 1, "recovery_timeout": 10, "half_open_trials": 2}
    engine.run([Task("svc", fn=service, circuit_breaker=opts)])
    clock.advance(10)
    engine.run([Task("svc", fn=service, circuit_breaker=opts)])  # trial fails
    assert breaker_state(engine.plugins, "task:svc") == "open"
    clock.advance(9)
    engine.run([Task("svc", fn=service, circuit_breaker=opts)])
    assert service.calls == 2
    clock.advance(1)
    service.up = True
    engine.run([Task("svc", fn=service, circuit_breaker=opts)])
    assert breaker_state(engine.plugins, "task:svc") == "half-open"  # 1 of 2 trials
    engine.run([Task("svc", fn=service, circuit_breaker=opts)])
    assert breaker_state(engine.plugins, "task:svc") == "closed"
    assert [c[1:3] for c in changes.seen] == [
        ("closed", "open"), ("open", "half-open"), ("half-open", "open"),
        ("open", "half-open"), ("half-open", "closed"),
    ]


def test_breaker_shared_by_tag_across_tasks_and_runs():
    engine, _, _ = setup()
    service = Service()
    opts = {"tag": "db", "failure_threshold": 2, "recovery_timeout": 60}
    engine.run([Task("q1", fn=service, tags=["db"], circuit_breaker=opts)])
    engine.run([Task("q2", fn=service, tags=["db"], circuit_breaker=opts)])
    assert breaker_state(engine.plugins, "tag:db") == "open"
    other = Task("q3", fn=service, tags=["db"], circuit_breaker=opts)
    engine.run([other])
    assert isinstance(other.exception, CircuitOpenError) and service.calls == 2


def test_breakers_from_configuration_cover_every_task_with_the_tag():
    clock = FakeClock()
    config = {"circuit_breaker": {"tags": {"api": {"failure_threshold": 1}}}}
    engine = Engine(config=config, clock=clock)
    service = Service()
    engine.run([Task("a", fn=service, tags=["api"])])
    b = Task("b", fn=service, tags=["api"])
    untagged = Task("c", fn=lambda: "fine")
    s = engine.run([b, untagged])
    assert isinstance(b.exception, CircuitOpenError) and s.results == {"c": "fine"}


def test_state_is_per_plugin_set():
    engine1, _, _ = setup()
    engine2, _, _ = setup()
    service = Service()
    engine1.run([Task("svc", fn=service, circuit_breaker={"failure_threshold": 1})])
    assert breaker_state(engine1.plugins, "task:svc") == "open"
    assert breaker_state(engine2.plugins, "task:svc") is None


def test_every_failure_counts_even_when_retried():
    engine, _, _ = setup()
    service = Service()
    task = Task("svc", fn=service, circuit_breaker={"failure_threshold": 3},
                retry={"max_retries": 5, "base_delay": 0})
    engine.run([task])
    # Three real calls open the breaker; the fourth attempt fails fast and is not retried.
    assert service.calls == 3 and task.attempts == 4
    assert isinstance(task.exception, CircuitOpenError)


def test_wait_mode_defers_the_task_until_recovery():
    engine, clock, _ = setup(max_workers=2)
    service = Service()
    opts = {"failure_threshold": 1, "recovery_timeout": 20, "wait": True}
    engine.run([Task("svc", fn=service, circuit_breaker=opts)])
    service.up = True
    task = Task("svc", fn=service, circuit_breaker=opts)
    run = engine.open_run()
    run.add([task])
    run.start()
    deadline = time.monotonic() + 5
    while task.status is not TaskState.RETRYING:
        assert time.monotonic() < deadline
        threading.Event().wait(0.001)
    assert service.calls == 1
    clock.advance(20)
    assert run.wait(5)
    assert run.close().ok and task.result == "response" and service.calls == 2


def test_state_carries_across_manager_submissions():
    clock = FakeClock()
    manager = TaskManager(clock=clock)
    service = Service()
    opts = {"failure_threshold": 2, "recovery_timeout": 5}
    for i in range(3):
        t = manager.create_task(f"call{i}", fn=service, tags=["svc"],
                                circuit_breaker=dict(opts, tag="svc"))
        with pytest.raises((ConnectionError, CircuitOpenError)):
            manager.execute_task(t.id)
    assert service.calls == 2
    manager.shutdown()


@pytest.mark.parametrize(("opts", "message"), [
    ({"failure_threshold": 0}, "circuit_breaker.failure_threshold must be an integer >= 1"),
    ({"recovery_timeout": -1}, "circuit_breaker.recovery_timeout must be a number >= 0"),
    ({"half_open_trials": 0}, "circuit_breaker.half_open_trials must be an integer >= 1"),
    ({"wait": "yes"}, "circuit_breaker.wait must be true or false"),
    ({"threshold": 3}, "circuit_breaker.threshold: unknown key"),
    ("on", "circuit_breaker must be true or a mapping"),
])
def test_invalid_configuration_names_task_and_key(opts, message):
    with pytest.raises(ConfigError) as info:
        Engine().run([Task("load", fn=lambda: 1, circuit_breaker=opts)])
    assert f"task 'load': {message}" in str(info.value)


def test_tasks_sharing_a_breaker_must_agree():
    engine = Engine()
    engine.run([Task("a", fn=lambda: 1, circuit_breaker={"tag": "x", "failure_threshold": 2})])
    with pytest.raises(ConfigError, match="breaker tag:x already exists"):
        engine.run([Task("b", fn=lambda: 1, circuit_breaker={"tag": "x", "failure_threshold": 9})])


def test_a_timed_out_attempt_counts_as_a_failure():
    engine, clock, _ = setup()
    started = threading.Event()

    def hangs(context):
        started.set()
        context.token.wait(5)

    task = Task("slow", fn=hangs, timeout=5, circuit_breaker={"failure_threshold": 1})
    run = engine.open_run()
    run.add([task])
    run.start()
    assert started.wait(5)
    clock.advance(5)
    assert run.wait(5)
    run.close()
    assert breaker_state(engine.plugins, "task:slow") == "open"


@pytest.mark.parametrize(("section", "message"), [
    ({"tagz": {}}, "[taskloom.circuit_breaker].tagz: unknown key"),
    ({"tags": {"api": {"failure_threshold": -1}}},
     "[taskloom.circuit_breaker].tags.api.failure_threshold must be an integer >= 1"),
])
def test_invalid_section_is_reported(section, message):
    with pytest.raises(ConfigError) as info:
        Engine(config={"circuit_breaker": section})
    assert message in str(info.value)


class DecidesFirst:
    """A third-party policy that answers every connection failure before anyone else."""

    def __init__(self, decision):
        self.decision = decision
        self.answered = 0

    @hookimpl(tryfirst=True)
    def taskloom_task_error(self, task, error, attempt, run):
        if not isinstance(error, ConnectionError):
            return None
        self.answered += 1
        return self.decision


@pytest.mark.parametrize("decision", [Fail(), Retry(0.0)], ids=["fail", "retry"])
def test_a_policy_that_decides_first_cannot_stop_the_breaker_counting(decision):
    first = DecidesFirst(decision)
    engine = Engine(plugins=load_plugins(plugins=[first]), clock=FakeClock())
    service = Service()
    opts = {"failure_threshold": 3}
    runs = 3 if isinstance(decision, Fail) else 1  # a Retry runs the task again in its run
    tasks = [Task("svc", fn=service, circuit_breaker=opts) for _ in range(runs)]
    for task in tasks:
        engine.run([task])
    assert first.answered == 3 and service.calls == 3
    assert breaker_state(engine.plugins, "task:svc") == "open"
    # Open: the next attempt fails fast with the breaker's error, which nobody retries.
    assert isinstance(tasks[-1].exception, CircuitOpenError) == isinstance(decision, Retry)


def test_the_error_and_the_hook_belong_to_the_plugin():
    from taskloom.kernel import errors, hookspecs
    from taskloom_std.policies import circuit_breaker

    assert CircuitOpenError is circuit_breaker.CircuitOpenError  # found through the registry
    assert not hasattr(errors, "CircuitOpenError")
    assert not hasattr(hookspecs, "taskloom_circuit_change")
    without = load_plugins(disable=["circuit_breaker"])
    assert not without.hook.taskloom_circuit_change.has_spec()
    assert without.infos["webhook"].error is None  # its optional implementation still loads
