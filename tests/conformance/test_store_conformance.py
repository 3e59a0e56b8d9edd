"""What every store promises, checked on each (memory where it applies, SQLite, PostgreSQL):
a run recorded and read back, resume, results by the codec, unsigned pickles, the result
cache, schedule state, exactly-once claims across stores on one database, deleting old runs
(never a running one) and the reason an interrupted run stopped. Run-id claims and
``max_active_runs`` are in ``test_run_claim_conformance``."""

from __future__ import annotations

import pickle
import threading
from datetime import datetime

import pytest

from taskloom import Task
from taskloom.api.scheduling import ScheduleState
from taskloom.kernel.store import RunStore
from taskloom_std.stores import StoreCorruptError


class Rejected(Exception):
    pass


def _workflow(ran: list[str], fail: set[str] = frozenset()) -> list[Task]:
    def body(name: str, value: object):
        def fn() -> object:
            ran.append(name)
            if name in fail:
                raise Rejected(f"{name} refused")
            return value
        return fn

    return [
        Task("json", fn=body("json", {"rows": [1, 2], "ok": True})),
        Task("tuple", fn=body("tuple", (1, "two", 3.0))),  # not JSON-exact: a signed pickle
        Task("none", fn=body("none", None)),
        Task("when", fn=body("when", datetime(2024, 5, 1, 12, 30))),
        Task("gate", fn=body("gate", 7), dependencies=["json"]),
        Task("after", fn=body("after", "done"), dependencies=["gate", "tuple"]),
    ]


def test_every_store_is_a_run_store(store_kind):
    store = store_kind.open()
    assert isinstance(store, RunStore) and store.name == store_kind.name
    assert isinstance(store.schedule_state(), ScheduleState)


def test_a_run_is_recorded_and_read_back(store_kind):
    engine = store_kind.engine()
    ran: list[str] = []
    summary = engine.run(_workflow(ran, fail={"gate"}), run_id="r1", name="demo")
    assert summary.status == "failed"
    store = engine.store
    store.flush()
    recorded = store.summary("r1")
    assert recorded is not None and store.summary("nope") is None
    assert (recorded["id"], recorded["name"], recorded["status"]) == ("r1", "demo", "failed")
    assert recorded["counts"] == summary.counts == {"completed": 4, "failed": 2}
    assert recorded["results"] == {"json": {"rows": [1, 2], "ok": True},
                                   "tuple": (1, "two", 3.0), "none": None,
                                   "when": datetime(2024, 5, 1, 12, 30)}
    assert "gate refused" in recorded["errors"]["gate"]
    outcomes = store.outcomes("r1")
    assert outcomes["tuple"] == ("completed", True, (1, "two", 3.0), None, None)
    assert outcomes["gate"][0] == "failed" and outcomes["gate"][1] is False
    assert outcomes["gate"][4] == "Rejected"
    assert store.outcomes("nope") == {}


def test_records_outlive_the_store_that_wrote_them(persistent_kind):
    engine = persistent_kind.engine()
    assert engine.run(_workflow([]), run_id="kept").ok
    engine.close()
    again = persistent_kind.open()
    assert again.summary("kept")["results"]["tuple"] == (1, "two", 3.0)
    assert again.summary("kept")["status"] == "completed"


@pytest.mark.parametrize("durability", ["fast", "safe"])
def test_resume_reruns_exactly_the_tasks_without_a_recorded_result(store_kind, durability):
    options = {} if store_kind.name == "memory" else {"durability": durability}
    if store_kind.name == "memory" and durability == "safe":
        pytest.skip("the memory store has no durability levels")
    engine = store_kind.engine(**options)
    ran: list[str] = []
    first = engine.run(_workflow(ran, fail={"gate"}), run_id="r2")
    assert first.status == "failed" and "after" not in ran
    if store_kind.persistent:  # resumed by another process: a new store on the database
        engine.close()
        engine = store_kind.engine(**options)
    ran.clear()
    resumed = engine.resume("r2", _workflow(ran), retry_failed=True)
    assert resumed.ok, resumed.errors
    assert sorted(ran) == ["after", "gate"]
    assert resumed.results["tuple"] == (1, "two", 3.0)  # restored from the store
    assert engine.store.summary("r2")["status"] == "completed"


def test_safe_durability_commits_a_result_before_its_dependents_start(persistent_kind):
    seen: list[object] = []
    reader = persistent_kind.open()

    def check() -> None:
        seen.append(reader.outcomes("safe")["first"][:3])

    engine = persistent_kind.engine(durability="safe", flush_interval=30)
    assert engine.run([Task("first", fn=lambda: (4, 5)),
                       Task("second", fn=check, dependencies=["first"])], run_id="safe").ok
    assert seen == [("completed", True, (4, 5))]


def test_an_unsigned_pickle_is_never_loaded_and_its_task_runs_again(persistent_kind, tmp_path):
    marker = tmp_path / "ran"
    engine = persistent_kind.engine()
    assert engine.run(_workflow([], fail={"gate"}), run_id="r3").status == "failed"
    engine.close()

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    persistent_kind.plant_result("r3", "tuple", "pickle", pickle.dumps(Exploit()))
    store = persistent_kind.open()
    assert store.outcomes("r3")["tuple"][:2] == ("completed", False)
    assert not marker.exists()
    ran: list[str] = []
    resumed = persistent_kind.engine().resume("r3", _workflow(ran), retry_failed=True)
    assert resumed.ok and sorted(ran) == ["after", "gate", "tuple"]
    assert not marker.exists()


def test_damaged_json_is_reported_naming_the_task(persistent_kind):
    engine = persistent_kind.engine()
    assert engine.run(_workflow([]), run_id="r4").ok
    engine.close()
    persistent_kind.plant_result("r4", "json", "json", b"{not json")
    store = persistent_kind.open()
    with pytest.raises(StoreCorruptError, match="'json'") as info:
        store.outcomes("r4")
    assert "damaged" in str(info.value)


def test_the_result_cache(store_kind):
    store = store_kind.open()
    assert store.cache_get("k", now=100.0) == (False, None)
    store.cache_put("k", "task", (1, [2, 3]), expires=200.0)
    store.cache_put("gone", "task", "old", expires=50.0)
    assert store.cache_get("k", now=100.0) == (True, (1, [2, 3]))
    assert store.cache_get("gone", now=100.0) == (False, None)
    assert store.cache_get("k", now=250.0)[0] is False
    store.flush()
    if store_kind.persistent:
        other = store_kind.open()
        assert other.cache_get("k", now=100.0) == (True, (1, [2, 3]))
        assert other.cache_get("k", now=250.0) == (False, None)


def test_schedule_state_is_saved_and_loaded(store_kind):
    first = store_kind.open().schedule_state()
    assert first.load("job") is None
    first.save("job", {"next_fire_time": 60.0, "paused": False})
    first.save("job", {"next_fire_time": 120.0, "paused": True})
    second = store_kind.open().schedule_state() if store_kind.persistent else first
    assert second.load("job") == {"next_fire_time": 120.0, "paused": True}


def test_schedule_claims_are_exactly_once_across_two_stores(store_kind):
    first = store_kind.open()
    states = [first.schedule_state(),
              (store_kind.open() if store_kind.persistent else first).schedule_state()]
    wins: list[float] = []
    lock = threading.Lock()

    def claim(which: int) -> None:
        for t in range(60):
            if states[which].claim("job", float(t), f"scheduler-{which}"):
                with lock:
                    wins.append(float(t))

    threads = [threading.Thread(target=claim, args=(i % 2,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(wins) == [float(t) for t in range(60)]
    assert not states[1].claim("job", 5.0, "late") and not states[0].claim("job", 59.0, "late")
    assert states[0].claim("other-job", 5.0, "a")


def test_prune_deletes_old_runs_with_their_records_never_a_running_one(persistent_kind):
    engine = persistent_kind.engine()
    for run_id in ("old", "middle", "new"):
        assert engine.run([Task("a", fn=lambda: print("said") or 1)], run_id=run_id).ok
    inside, go = threading.Event(), threading.Event()

    def gate() -> int:
        inside.set()
        go.wait(30)
        return 2

    going = threading.Thread(target=engine.run, args=([Task("a", fn=gate)],),
                             kwargs={"run_id": "going"})
    going.start()
    assert inside.wait(30)
    store = persistent_kind.open()
    try:
        with pytest.raises(ValueError, match="older_than, keep or both"):
            store.prune()
        assert store.prune(keep=2, dry_run=True) == ["old", "middle"]
        assert store.summary("old") is not None  # a dry run deletes nothing
        assert store.prune(older_than=3600) == []  # all ended just now
        assert store.prune(older_than=0, keep=2, now=4e9) == ["old", "middle"]
        assert store.summary("old") is None and store.outcomes("old") == {}
        assert store.logs("old") == [] and store.summary("new") is not None
        # keep=0 and any age: everything that is not running
        assert store.prune(older_than=0, keep=0, now=4e9) == ["new"]
        assert [r.id for r in store.runs()] == ["going"]
    finally:
        go.set()
        going.join(30)
    assert store.prune(older_than=0, now=4e9) == ["going"]  # it ended


def test_an_interrupted_run_is_recorded_with_its_reason(persistent_kind):
    engine = persistent_kind.engine()
    started, release = threading.Event(), threading.Event()

    def first() -> int:
        started.set()
        release.wait(10)
        return 1

    run = engine.open_run(name="w")
    run.add([Task("first", fn=first),
             Task("second", fn=lambda first: first + 1, dependencies=["first"])])
    run.start()
    assert started.wait(10)
    run.interrupt("SIGTERM, SIGINT")
    run.cancel_task(run.tasks["second"])
    release.set()
    run.wait(10)
    assert run.close().status == "interrupted"
    store = persistent_kind.open()
    record = store.run(run.id)
    assert (record.status, record.reason) == ("interrupted", "SIGTERM, SIGINT")
    assert [r.id for r in store.runs_page(10, status="interrupted").runs] == [run.id]
