"""The shared recording layer's cheap paths: event batches (both stored formats), the state
letters queued per change, the run's task fingerprint, and stash reads that make no stash."""

from __future__ import annotations

import base64
import gc
import json
import sys
import time
from array import array

import pytest
from hypothesis import given
from hypothesis import strategies as st

from taskloom import Task, TaskState
from taskloom_std.stores.recording import (
    EVENT_FIELDS,
    RESULT_FIELDS,
    FlatRecorder,
    QueuedRecorder,
)
from taskloom_std.stores.schema import STATE_LETTER, dump_events, load_events

STATES = list(TaskState)


@given(st.lists(st.tuples(st.text(min_size=1, max_size=20), st.sampled_from(STATES),
                          st.floats(min_value=0, max_value=4e9)), min_size=1, max_size=60))
def test_a_batch_reads_back_as_it_was_queued(changes):
    queued = [("r1", name, STATE_LETTER[id(state)], t) for name, state, t in changes]
    assert load_events("r1", dump_events(queued)) == [
        ("r1", name, state.value, t) for name, state, t in changes]


def test_states_given_as_members_or_values_are_stored_the_same():
    now = time.time()
    letters = [("r", "a", "y", now), ("r", "a", "c", now + 1)]
    members = [("r", "a", TaskState.READY, now), ("r", "a", TaskState.COMPLETED, now + 1)]
    values = [("r", "a", "ready", now), ("r", "a", "completed", now + 1)]
    assert dump_events(letters) == dump_events(members) == dump_events(values)


def test_each_name_is_stored_once_per_batch():
    changes = [("r", f"task-{i % 3}", "y", float(i)) for i in range(30)]
    names, *_ = json.loads(dump_events(changes))
    assert names == ["task-0", "task-1", "task-2"]


def test_batches_of_the_earlier_format_are_read():
    times = array("d", [1.5, 2.5])
    if sys.byteorder == "big":  # stored little-endian
        times.byteswap()
    old = json.dumps([["a", "b"], ["running", "completed"],
                      base64.b64encode(times.tobytes()).decode()])
    assert load_events("r", old) == [("r", "a", "running", 1.5), ("r", "b", "completed", 2.5)]


@pytest.mark.parametrize("data", [
    json.dumps([["a"], base64.b64encode(array("I", [3]).tobytes()).decode(), "c",
                base64.b64encode(array("d", [1.0]).tobytes()).decode()]),  # index past names
    json.dumps([["a"], base64.b64encode(array("I", [0]).tobytes()).decode(), "?",
                base64.b64encode(array("d", [1.0]).tobytes()).decode()]),  # unknown letter
    json.dumps([["a"], base64.b64encode(array("I", [0, 0]).tobytes()).decode(), "c",
                base64.b64encode(array("d", [1.0]).tobytes()).decode()]),  # lengths differ
    json.dumps([[1], "", "", ""]),
    json.dumps([["a"], 5, "c", ""]),
])
def test_a_damaged_batch_is_a_value_error(data):
    with pytest.raises(ValueError):
        load_events("r", data)


def test_queued_changes_hold_no_object_the_collector_must_visit():
    recorder = QueuedRecorder()
    queued: list[tuple[object, ...]] = []
    recorder._events_append = queued.append
    recorder._results_append = queued.append

    class R:
        id = "r1"

    task = Task("a", fn=lambda: None)
    for state in (TaskState.READY, TaskState.RUNNING):
        recorder.record_transition(task, None, state, R())
    gc.collect()
    assert queued and not any(gc.is_tracked(item) for item in queued)


def test_recording_a_completion_makes_no_stash():
    recorder = QueuedRecorder()
    queued: list[tuple[object, ...]] = []
    recorder._events_append = recorder._results_append = queued.append

    class R:
        id = "r1"

    task = Task("a", fn=lambda: None)
    recorder.record_transition(task, None, TaskState.COMPLETED, R())
    assert queued[-1][-1] is False  # no cache hit
    with pytest.raises(AttributeError):
        task._stash  # noqa: B018 - no stash was made for the lookup


def test_the_run_fingerprint_follows_the_tasks():
    recorder = QueuedRecorder()
    recorder.config_path = None

    def fingerprint(tasks: list[Task]) -> str:
        return recorder._config_hash(
            ((t.name, tuple(t.dependencies), t.config, t.fn)
             for t in sorted(tasks, key=lambda t: t.name)), ordered=True)

    def body() -> None:
        return None

    one = [Task("b", fn=body, dependencies=["a"]), Task("a", fn=body, config={"k": 1})]
    again = [Task("a", fn=body, config={"k": 1}), Task("b", fn=body, dependencies=["a"])]
    other = [Task("a", fn=body, config={"k": 2}), Task("b", fn=body, dependencies=["a"])]
    assert fingerprint(one) == fingerprint(again) != fingerprint(other)
    unsorted = [(t.name, tuple(t.dependencies), t.config, t.fn) for t in again]
    assert recorder._config_hash(unsorted) == fingerprint(one)


def test_stash_get_reads_what_was_set():
    from taskloom import StashKey

    key: StashKey[int] = StashKey()
    task = Task("a", fn=lambda: None)
    assert task.stash_get(key, 0) == 0
    task.stash[key] = 5
    assert task.stash_get(key, 0) == 5


def _flat_recorder() -> tuple[FlatRecorder, list[object], list[object], list[object]]:
    recorder = FlatRecorder()
    events: list[object] = []
    results: list[object] = []
    errors: list[object] = []
    recorder._events_extend = events.extend
    recorder._results_extend = results.extend
    recorder._errors_append = errors.append
    return recorder, events, results, errors


def test_flat_queues_hold_no_object_per_record():
    recorder, events, results, _ = _flat_recorder()

    class R:
        id = "r1"

    task = Task("a", fn=lambda: None)
    for state in (TaskState.READY, TaskState.RUNNING, TaskState.COMPLETED):
        recorder.record_transition(task, None, state, R())
    assert len(events) == 3 * EVENT_FIELDS and len(results) == RESULT_FIELDS
    assert events[:EVENT_FIELDS][:3] == ["r1", "a", "y"]
    assert results[:4] == ["r1", "a", None, events[-1]] and results[4] is False
    assert not any(gc.is_tracked(item) for item in events + results)


def test_a_failure_is_queued_with_its_error():
    recorder, events, results, errors = _flat_recorder()

    class R:
        id = "r1"

    task = Task("a", fn=lambda: None)
    recorder.record_transition(task, None, TaskState.FAILED, R())
    assert len(events) == EVENT_FIELDS and not results
    assert len(errors) == 1 and errors[0][:3] == ("r1", "a", TaskState.FAILED)


def test_taking_from_a_flat_queue_while_others_add_loses_and_splits_nothing():
    import threading

    queue: list[object] = []
    taken: list[object] = []
    stop = threading.Event()

    def add(who: str) -> None:
        for i in range(20_000):
            queue.extend((who, i, "y", 1.0))

    def take() -> None:
        while not stop.is_set() or queue:
            rows = FlatRecorder._take(queue, EVENT_FIELDS)
            assert len(rows) % EVENT_FIELDS == 0
            taken.extend(rows)

    adders = [threading.Thread(target=add, args=(w,)) for w in "ab"]
    taker = threading.Thread(target=take)
    taker.start()
    for t in adders:
        t.start()
    for t in adders:
        t.join()
    stop.set()
    taker.join()
    records = [tuple(taken[i:i + EVENT_FIELDS]) for i in range(0, len(taken), EVENT_FIELDS)]
    for who in "ab":
        assert [r[1] for r in records if r[0] == who] == list(range(20_000))


def test_the_fingerprint_of_task_objects_is_that_of_their_tuples():
    recorder = QueuedRecorder()
    recorder.config_path = None

    def body() -> None:
        return None

    tasks = [Task("b", fn=body, dependencies=["a", "c"]), Task("a", fn=body),
             Task("c", fn=None, config={"k": 1})]
    as_tuples = [(t.name, tuple(t.dependencies), t.config, t.fn) for t in tasks]
    assert recorder._tasks_hash(tasks) == recorder._config_hash(as_tuples)
    # The dependencies' grouping counts, not only their sequence.
    moved = [Task("b", fn=body, dependencies=["a"]), Task("a", fn=body),
             Task("c", fn=None, config={"k": 1}, dependencies=["b"])]
    assert recorder._tasks_hash(moved) != recorder._tasks_hash(tasks)
