"""Waiting steps: signals, approvals with a schema, timeouts and durable timers."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest

from taskloom import Engine, FakeClock, Task, TaskState
from taskloom.api.signals import PayloadInvalid, parse_wait, sleep, wait_for, wait_until
from taskloom.kernel.errors import ConfigError, TaskloomError


def _until(condition, limit: float = 30.0) -> None:
    """Wait for a condition another thread makes true (never for an amount of time)."""
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.002)


def test_a_waiting_step_holds_no_worker_and_takes_the_payload():
    other_done = threading.Event()

    def other():
        other_done.set()
        return "done"

    engine = Engine(max_workers=1)
    run = engine.open_run(run_id="w1")
    run.add([
        wait_for("approve", "approval", schema={"approved": "bool", "note?": "str"}),
        Task("other", fn=other),
        Task("publish", fn=lambda approve: approve["approved"], dependencies=["approve"]),
    ])
    run.start()
    assert other_done.wait(30)  # the only worker was free while approve waited
    _until(lambda: engine.store.waits("w1"))
    assert engine.store.waits("w1")[0]["signal"] == "approval"
    with pytest.raises(PayloadInvalid, match="'approved' must be bool"):
        engine.signal("w1", "approval", {"approved": "yes"})
    engine.signal("w1", "approval", {"approved": True})
    with pytest.raises(TaskloomError, match="already received signal 'approval'"):
        engine.signal("w1", "approval", {"approved": False})
    assert run.wait(30)
    summary = run.close()
    assert summary.ok, summary.errors
    assert summary.results["approve"] == {"approved": True}
    assert summary.results["publish"] is True
    assert engine.store.waits("w1") == []
    assert [s["name"] for s in engine.store.signals("w1")] == ["approval"]


def test_a_signal_sent_before_the_step_begins_is_taken_or_refused_by_its_schema():
    engine = Engine()
    engine.signal("early", "go", {"n": 1})
    summary = engine.run([wait_for("w", "go")], run_id="early")
    assert summary.results["w"] == {"n": 1}
    engine.signal("bad", "go", {"n": "one"})
    summary = engine.run([wait_for("w", "go", schema={"n": "int"})], run_id="bad")
    assert summary.errors["w"] == "payload refused: 'n' must be int, got 'one'"


def test_a_wait_that_times_out_fails_and_its_dependents_follow():
    clock = FakeClock()
    engine = Engine(clock=clock)
    run = engine.open_run(run_id="t1")
    run.add([wait_for("approve", "approval", timeout=3600),
             Task("after", fn=lambda approve: approve, dependencies=["approve"]),
             Task("anyway", dependencies=["approve"], trigger_rule="all_done")])
    run.start()
    _until(lambda: clock.pending_timers() == 1)
    clock.advance(3599)
    assert run.tasks["approve"].status is TaskState.RUNNING
    clock.advance(1)
    assert run.wait(30)
    summary = run.close()
    assert summary.errors["approve"] == "task 'approve': no signal 'approval' within 3600s"
    assert run.tasks["after"].status is TaskState.FAILED
    assert run.tasks["anyway"].status is TaskState.COMPLETED


def test_sleep_and_wait_until_end_at_their_time():
    clock = FakeClock(start=1_700_000_000.0)
    engine = Engine(clock=clock)
    run = engine.open_run(run_id="s1", params={"at": "2023-11-14T23:00:00+00:00"})
    run.add([sleep("nap", 90), wait_until("later", "{params.at}")])
    run.start()
    _until(lambda: clock.pending_timers() == 2)
    clock.advance(90)
    _until(lambda: run.tasks["nap"].status is TaskState.COMPLETED)
    assert run.tasks["later"].status is TaskState.RUNNING
    clock.set(dt.datetime(2023, 11, 14, 23, 0, tzinfo=dt.timezone.utc))
    assert run.wait(30)
    summary = run.close()
    assert summary.ok
    assert summary.results["nap"] == dt.datetime.fromtimestamp(1_700_000_090, dt.timezone.utc)
    assert summary.results["later"] == dt.datetime(2023, 11, 14, 23, tzinfo=dt.timezone.utc)


def test_cancelling_a_run_cancels_its_waiting_step():
    engine = Engine()
    run = engine.open_run(run_id="c1")
    run.add([wait_for("approve", "approval")])
    run.start()
    _until(lambda: engine.store.waits("c1"))
    run.cancel()
    assert run.wait(30)
    assert run.close().status == "cancelled"


def test_wait_declarations_are_checked():
    with pytest.raises(ConfigError) as caught:
        parse_wait({"signal": "a", "sleep": 3, "timeout": -1, "schema": {"x": "decimal"},
                    "wat": 1})
    assert caught.value.problems == [
        "wait.wat: unknown key; known: signal, timeout, schema, sleep, until",
        "wait: give one of signal, sleep or until (got signal, sleep)",
        "wait.timeout: expected seconds >= 0, got -1",
        "wait.schema.x: type must be one of str, int, float, bool, list, table, any, "
        "got 'decimal'",
    ]
    with pytest.raises(ConfigError, match="wait.until: expected an ISO date"):
        parse_wait({"until": "tomorrow"})
    summary = Engine(store="none").run([wait_for("w", "go")])
    assert "needs a store that records signals" in summary.errors["w"]


def test_a_signal_to_an_engine_whose_store_records_none_names_the_store():
    with pytest.raises(TaskloomError, match="^store 'none' records no signals$"):
        Engine(store="none").signal("r1", "go")
