"""The thread executor's dispatcher: the thread waiting on a run runs bodies measured as short,
workers run the rest, and a body that turns out slow never stalls the others."""

import functools
import itertools
import threading

import pytest

from taskloom import Engine, Task

#: Every measured body counts as short and only a body held for half a second counts as
#: stalled, so the tests do not depend on the machine's speed or load.
ALWAYS_INLINE = {"inline_below": 10.0, "stall_after": 0.5}
#: Tasks per run: a worker may run the first few hundred before the waiting thread, which
#: becomes the dispatcher, gets the interpreter.
N = 4000


def engine(workers: int = 2, **options) -> Engine:
    return Engine(max_workers=workers, queue="priority",
                  executor_options={**ALWAYS_INLINE, **options})


def test_short_bodies_run_in_the_waiting_thread_once_measured():
    threads = []

    def body():
        threads.append(threading.current_thread())

    # Any measured body counts as short here: a loaded machine may stretch this one past
    # the default 0.5 ms.
    summary = engine(**ALWAYS_INLINE).run([Task(f"t{i}", fn=body) for i in range(N)])
    assert summary.ok
    waiting = threading.current_thread()
    # The first attempts run on workers (the body is not measured yet), then in this thread.
    assert threads[0] is not waiting
    assert waiting in threads


def test_the_dispatcher_can_be_turned_off():
    threads = set()
    e = engine(inline_below=0)
    assert e.run([Task(f"t{i}", fn=lambda: threads.add(threading.current_thread()))
                  for i in range(100)]).ok
    assert threading.current_thread() not in threads


@pytest.mark.parametrize("options", [{"inline_below": -1}, {"stall_after": 0}])
def test_bad_dispatcher_options_are_refused(options):
    with pytest.raises(ValueError, match=next(iter(options))):
        engine(**options)


def test_a_body_that_turns_slow_does_not_stall_the_others():
    """The first call the dispatcher makes after a hundred calls blocks until every other task
    has finished: only possible when a worker takes the dispatcher's queue over while the
    dispatcher is stuck in that call."""
    calls, lock, dispatcher = itertools.count(), threading.Lock(), threading.current_thread()
    gate, finished, slow = threading.Event(), [0], []

    def body():
        with lock:
            blocks = not slow and next(calls) > 100 and threading.current_thread() is dispatcher
            if blocks:
                slow.append(True)
        if blocks:
            assert gate.wait(30), "the other tasks were stalled behind a slow body"
            return "slow"
        with lock:
            finished[0] += 1
            if finished[0] == N - 1:
                gate.set()
        return "fast"

    summary = engine(workers=4).run([Task(f"t{i}", fn=body) for i in range(N)])
    assert summary.ok, summary.errors
    assert slow == [True]  # the dispatcher ran the call that blocked
    assert sorted(summary.results.values()).count("slow") == 1


def test_a_failing_inline_body_goes_through_the_policies():
    attempts = itertools.count()

    def flaky():
        if next(attempts) == N - 10:
            raise ValueError("boom")

    summary = engine().run([Task(f"t{i}", fn=flaky) for i in range(N)])
    assert summary.counts == {"completed": N - 1, "failed": 1}
    assert list(summary.errors.values()) == ["boom"]


def test_priority_order_holds_with_inline_execution():
    order = []
    body = functools.partial  # each task's body records its name
    tasks = [Task(f"warm{i}", fn=lambda: None, priority=1) for i in range(N)]
    mixed = [(f"p{k}", 2 + (k * 7) % 9) for k in range(90)]
    tasks += [Task(name, fn=body(order.append, name), priority=p) for name, p in mixed]
    assert engine(workers=1).run(tasks).ok
    assert order == [name for name, _ in sorted(mixed, key=lambda m: m[1])]


def test_waiting_for_some_tasks_returns_before_the_run_is_idle():
    release = threading.Event()
    held = Task("held", fn=lambda: release.wait(30))
    quick = Task("quick", fn=lambda: 1)
    run = engine().open_run()
    run.add([held, quick])
    try:
        assert run.wait(tasks=[quick])
        assert quick.result == 1 and held.status == "running"
    finally:
        release.set()
        run.wait()
        assert run.close().ok
