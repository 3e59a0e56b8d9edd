"""Signals and waits on every store: the first signal of a name is kept, a waiting step's
schema refuses a payload, a step waiting in one store takes a signal sent through another
store on the same database (PostgreSQL without polling), a run stopped while a step waits is
recorded ``waiting`` and its resume takes a stored signal, and a durable timer goes on after
a restart until the same time."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from taskloom import Engine, FakeClock, Task, TaskState
from taskloom.api.signals import PayloadInvalid, sleep, wait_for
from taskloom.kernel.errors import TaskloomError


def _until(condition: Any, limit: float = 30.0) -> None:
    """Wait for a condition another thread makes true (never for an amount of time)."""
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.005)


def test_the_first_signal_of_a_name_is_kept_and_listed(store_kind):
    store = store_kind.open()
    assert store.received("r", "go") == (False, None)
    store.send_signal("r", "go", {"n": 1}, "cli")
    with pytest.raises(TaskloomError, match="run r already received signal 'go'"):
        store.send_signal("r", "go", {"n": 2})
    store.send_signal("r", "stop")
    store.send_signal("other", "go", [1, 2])
    reader = store_kind.open() if store_kind.persistent else store
    assert reader.received("r", "go") == (True, {"n": 1})
    assert reader.received("r", "stop") == (True, None)
    sent = reader.signals("r")
    assert [(s["name"], s["payload"], s["sent_by"]) for s in sent] == [
        ("go", {"n": 1}, "cli"), ("stop", None, "api")]
    assert all(isinstance(s["sent"], float) for s in sent)


def test_a_wait_is_recorded_and_its_schema_refuses_a_payload(store_kind):
    store = store_kind.open()
    store.begin_wait("r", "approve", "signal", "approval", 100.0, 3700.0,
                     {"approved": "bool"})
    reader = store_kind.open() if store_kind.persistent else store
    assert reader.open_wait("r", "approve") == {
        "run_id": "r", "task": "approve", "kind": "signal", "signal": "approval",
        "started": 100.0, "due": 3700.0, "schema": {"approved": "bool"}}
    assert [w["task"] for w in reader.waits("r")] == ["approve"]
    with pytest.raises(PayloadInvalid, match="'approved' must be bool"):
        reader.send_signal("r", "approval", {"approved": "yes"})
    assert store.received("r", "approval") == (False, None)
    reader.send_signal("r", "approval", {"approved": True})
    store.end_wait("r", "approve")
    assert store.open_wait("r", "approve") is None and reader.waits("r") == []


def test_a_step_waiting_in_one_store_takes_a_signal_sent_through_another(store_kind):
    # PostgreSQL wakes the step through LISTEN/NOTIFY: with an hour between polls, only the
    # notification can deliver the signal sent by the other store within the test's limit.
    poll = 3600 if store_kind.name == "postgres" else 0.05
    engine = Engine(max_workers=1, store=store_kind.name, store_options=store_kind.options,
                    executors={"wait": {"poll": poll}})
    store_kind.opened.append(engine)
    run = engine.open_run(run_id="w1", name="approval")
    run.add([wait_for("approve", "approval", schema={"approved": "bool"}),
             Task("publish", fn=lambda approve: approve["approved"],
                  dependencies=["approve"])])
    run.start()
    _until(lambda: engine.store.waits("w1"))
    sender = store_kind.open() if store_kind.persistent else engine.store
    if store_kind.persistent:
        assert sender.run("w1").status == "waiting"
        assert sender.waits("w1")[0]["signal"] == "approval"
    sender.send_signal("w1", "approval", {"approved": True}, "cli")
    assert run.wait(30)
    summary = run.close()
    assert summary.ok, summary.errors
    assert summary.results["approve"] == {"approved": True}
    assert engine.store.waits("w1") == []
    if store_kind.persistent:
        assert sender.run("w1").status == "completed"


def test_a_run_stopped_while_waiting_is_waiting_and_its_resume_takes_the_signal(
        persistent_kind):
    ran: list[str] = []

    def prepare() -> str:
        ran.append("prepare")
        return "draft"

    def publish(prepare: str, approve: dict[str, Any]) -> str:
        ran.append("publish")
        return f"{prepare} {approve['approved']}"

    def workflow() -> list[Task]:
        return [Task("prepare", fn=prepare),
                wait_for("approve", "approval", dependencies=["prepare"]),
                Task("publish", fn=publish, dependencies=["prepare", "approve"])]

    engine = persistent_kind.engine()
    run = engine.open_run(run_id="k1", name="flow")
    run.add(workflow())
    run.start()
    _until(lambda: engine.store.waits("k1"))
    run.interrupt("SIGTERM")  # the process stops with the step waiting
    run.cancel()
    run.wait(30)
    assert run.close().status == "interrupted"
    engine.close()
    other = persistent_kind.open()
    assert other.run("k1").status == "waiting"
    assert other.prune(older_than=0, keep=0, now=4e9) == []  # it may still be resumed
    other.send_signal("k1", "approval", {"approved": True}, "cli")
    resumed = persistent_kind.engine().resume("k1", workflow())
    assert resumed.ok, resumed.errors
    assert resumed.results["publish"] == "draft True"
    assert ran == ["prepare", "publish"]  # nothing that completed ran again
    assert persistent_kind.open().run("k1").status == "completed"


def test_a_durable_timer_goes_on_after_a_restart_until_the_same_time(persistent_kind):
    clock = FakeClock(start=1_700_000_000.0)
    engine = Engine(clock=clock, store=persistent_kind.name,
                    store_options=persistent_kind.options)
    persistent_kind.opened.append(engine)
    run = engine.open_run(run_id="nap")
    run.add([sleep("nap", 3600)])
    run.start()
    _until(lambda: clock.pending_timers() == 1)
    clock.advance(1000)
    run.interrupt("SIGTERM")
    run.cancel()
    run.wait(30)
    assert run.close().status == "interrupted"
    (wait,) = engine.store.waits("nap")
    assert (wait["kind"], wait["due"]) == ("timer", 1_700_003_600.0)
    engine.close()
    later = FakeClock(start=1_700_002_000.0)  # a new process, 2,000 s after the start
    engine = Engine(clock=later, store=persistent_kind.name,
                    store_options=persistent_kind.options)
    persistent_kind.opened.append(engine)
    run = engine.open_resumed_run("nap")
    run.add([sleep("nap", 3600)])
    run.start()
    _until(lambda: later.pending_timers() == 1)
    later.advance(1599)
    assert run.tasks["nap"].status is TaskState.RUNNING
    later.advance(1)
    assert run.wait(30)
    summary = run.close()
    assert summary.ok
    assert summary.results["nap"].timestamp() == 1_700_003_600.0


def test_two_senders_at_once_one_signal_is_kept(store_kind):
    stores = [store_kind.open() for _ in range(2)] if store_kind.persistent else [
        store_kind.open()] * 2
    kept: list[int] = []
    refused: list[int] = []
    lock = threading.Lock()

    def send(i: int) -> None:
        try:
            stores[i % 2].send_signal("race", "go", i)
        except TaskloomError:
            with lock:
                refused.append(i)
        else:
            with lock:
                kept.append(i)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(kept) == 1 and len(refused) == 7
    assert stores[0].received("race", "go") == (True, kept[0])
