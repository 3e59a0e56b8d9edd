"""TaskManager: the documented high-level API; every execute call is an engine run of its own."""

from __future__ import annotations

import queue as queues
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from taskloom.api.mapping import MappedTask
from taskloom.api.workflows import Flow
from taskloom.kernel.clock import Clock
from taskloom.kernel.engine import Engine, Run
from taskloom.kernel.errors import TaskloomError, TaskNotFoundError
from taskloom.kernel.pluginmanager import PluginSet
from taskloom.kernel.states import TERMINAL, TaskState
from taskloom.kernel.task import Task

#: Finished tasks a manager remembers by default (see :class:`TaskManager`).
DEFAULT_RETENTION = 10_000
#: Most threads closing runs handed to ``close_when_done`` at once.
CLOSERS = 8


def fresh_copy(task: Task) -> Task:
    """A new task with ``task``'s name, body and options and none of its state."""
    if isinstance(task, MappedTask):
        return MappedTask(task.name, map=task.map, description=task.description,
                          priority=task.priority, dependencies=list(task.dependencies),
                          config=task.config, fn=task.fn, tags=task.tags,
                          trigger_rule=task.trigger_rule, options=task.options)
    # A subclass overriding execute: the copy's body is the original's bound execute.
    body = task.execute if type(task).execute is not Task.execute else task.fn
    return Task(task.name, task.description, task.priority, list(task.dependencies),
                task.config, fn=body, tags=task.tags, trigger_rule=task.trigger_rule,
                options=task.options)


class TaskManager:
    """Create, submit, run and inspect tasks.

    Every :meth:`execute_task`, :meth:`submit_task`, :meth:`retry_task` and
    :meth:`execute_workflow` call is an engine run of its own (trigger ``api``, workflow
    ``name``), recorded by the engine's store like any run. Tasks created earlier can be
    dependencies of tasks executed later, by name:

    * a dependency that **completed** in an earlier run of this manager is satisfied from its
      recorded result: it is not run again, its dependents receive that result;
    * one that did not complete (never run, failed, cancelled, skipped) runs in the new run,
      before its dependents;
    * one **still running** in another run of this manager is waited for (the call returns
      once it finished), never run twice.

    A mapped task (:mod:`taskloom.api.mapping`: :class:`~taskloom.api.mapping.MappedTask`,
    :func:`~taskloom.api.mapping.map_task`) runs as one instance per element once what it
    maps over is known, in the same run; its name then stands for its gather task (the
    results in element order): :meth:`get_task`, :meth:`wait_for_task`,
    :meth:`execute_task` and dependents see that task, and its instances are found by their
    names (``proc[0]``...).

    Memory is bounded by ``retention``: the manager remembers up to that many finished tasks
    (the most recently finished). An older finished task is forgotten: :meth:`get_task` no
    longer finds it, and a task executed later that depends on its name fails with "depends
    on unknown task" (create it again, or keep it by raising ``retention``). Tasks not
    finished are never forgotten. Finished runs are closed and dropped at once (the store
    keeps their history).

    Each run claims its id in the engine's store before it opens (as :meth:`Engine.run`
    does, see :meth:`Engine.claim`): a ``taskloom resume`` of it elsewhere waits while it
    runs, and the engine's ``max_active_runs`` counts the manager's runs of one workflow
    name across the processes sharing the store (over the limit, a call waits for a place
    or is refused, per ``on_limit``).
    """

    def __init__(
        self,
        max_workers: int | None = None,
        *,
        queue: str = "priority",
        executor: str = "thread",
        plugins: PluginSet | None = None,
        config: Mapping[str, Any] | None = None,
        clock: Clock | None = None,
        engine: Engine | None = None,
        retention: int = DEFAULT_RETENTION,
        name: str = "manager",
        **engine_options: Any,
    ) -> None:
        if isinstance(retention, bool) or not isinstance(retention, int) or retention < 0:
            raise TaskloomError(f"retention must be an integer >= 0, got {retention!r}")
        self.engine = engine or Engine(
            max_workers=max_workers, queue=queue, executor=executor, plugins=plugins,
            config=config, clock=clock, **engine_options,
        )
        self.plugins = self.engine.plugins
        self.max_workers = self.engine.create_executor(None).max_workers
        #: How many finished tasks the manager remembers.
        self.retention = retention
        #: The workflow name of the manager's runs (a call can give its own).
        self.name = name
        self._by_name: dict[str, Task] = {}
        # By id, filled on a lookup that misses: an id is made only when someone asks for it.
        self._ids: dict[str, Task] = {}
        self._finished: OrderedDict[str, None] = OrderedDict()  # task names, oldest first
        self._lock = threading.RLock()
        self._live: dict[str, Run] = {}  # runs not closed yet, by id
        self._releases: dict[str, Callable[[], None]] = {}  # their claims in the store
        self._last: Run | None = None
        self._closers: list[threading.Thread] = []
        self._to_close: queues.Queue[Run | None] = queues.Queue()
        # Runs with mapped tasks: a thread adds each mapped task's instances (the flow).
        self._drivers: dict[str, threading.Thread] = {}
        # The tasks of a run with mapped tasks, by name, until its flow added them all (a
        # mapped task: until its run ended), and each mapped task's gather task.
        self._mapping: dict[str, Run] = {}
        self._gathered: dict[str, Task] = {}
        self._closing_later: set[str] = set()  # run ids the closing threads will close
        self._closing_busy = 0  # closing threads busy with a run

    # -- creating and finding ---------------------------------------------------------------
    def create_task(self, name: str, **kwargs: Any) -> Task:
        """Create a task (``Task`` arguments) and register it; it runs when executed."""
        task = Task(name, **kwargs)
        self.add_task(task)
        return task

    def add_task(self, task: Task) -> Task:
        """Register a task made elsewhere, so later tasks can depend on it by name."""
        # One atomic dict step, no lock per task created; whoever reads the whole table
        # copies it in one step too (list(...values())).
        have = self._by_name.setdefault(task.name, task)
        if have is not task:
            raise TaskloomError(f"a task named {task.name!r} already exists (id {have.id})")
        return task

    _register = add_task

    def get_task(self, task_id: str) -> Task | None:
        """The task with this id (or name), or None (a mapped task: its gather task once its
        run made it, see the class docs)."""
        task = self._find(task_id)
        if isinstance(task, MappedTask):
            return self._gathered.get(task.name, task)
        return task

    def _find(self, task_id: str) -> Task | None:
        task = self._by_name.get(task_id)
        if task is not None:
            return task
        task = self._ids.get(task_id)
        if task is None or self._by_name.get(task.name) is not task:
            with self._lock:
                self._ids = {t._id: t for t in list(self._by_name.values()) if t._id is not None}
            task = self._ids.get(task_id)
        return task

    def _get(self, task_id: str) -> Task:
        task = self.get_task(task_id)
        if task is None:
            raise TaskNotFoundError(task_id)
        return task

    def _runnable(self, task_id: str) -> Task:
        """The task to run for ``task_id``: a mapped task itself, not its last gather task."""
        task = self._get(task_id)
        origin = self._by_name.get(task.name)
        return origin if isinstance(origin, MappedTask) else task

    def get_all_tasks(self) -> list[Task]:
        return list(self._by_name.values())

    def list_tasks(self, status: str | None = None) -> list[Task]:
        if status is None:
            return self.get_all_tasks()
        state = TaskState(status)
        return [t for t in list(self._by_name.values()) if t.status is state]

    def get_task_status(self, task_id: str) -> str:
        return self._get(task_id).status.value

    def get_task_result(self, task_id: str) -> Any:
        return self._get(task_id).result

    # -- running ------------------------------------------------------------------------------
    @property
    def run(self) -> Run | None:
        """The manager's most recent run (None before the first)."""
        return self._last

    @property
    def runs(self) -> list[Run]:
        """The manager's runs still going (finished runs are closed and dropped)."""
        with self._lock:
            return list(self._live.values())

    def _closure(
        self, roots: list[Task], fresh: bool
    ) -> tuple[list[Task], dict[str, Any], list[Task]]:
        """What a run of ``roots`` needs: the tasks to run, the results of completed
        dependencies by name, and dependencies still running elsewhere. (Any order: a run
        admits a batch whatever its order.)

        With ``fresh`` every dependency runs again, as a copy (a scheduled fire)."""
        batch = {t.name: t for t in roots}
        restored: dict[str, Any] = {}
        busy: dict[str, Task] = {}
        stack = list(roots)
        while stack:
            task = stack.pop()
            if isinstance(task, MappedTask):
                over = task.map.over
                if over is not None and over not in task.dependencies and (
                        over in batch or over in self._by_name):
                    task.dependencies.append(over)  # mapped over a task: it runs first
            for dep in task.dependencies:
                if dep in batch or dep in restored or dep in busy:
                    continue
                d = self._by_name.get(dep)
                if isinstance(d, MappedTask) and not fresh:
                    gathered = self._gathered.get(dep)
                    if gathered is not None and gathered.status is TaskState.COMPLETED:
                        restored[dep] = gathered.result
                        continue
                if d is None:
                    owner = next(t.name for t in batch.values() if dep in t.dependencies)
                    raise TaskloomError(f"task {owner!r} depends on unknown task {dep!r}")
                if fresh:
                    d = fresh_copy(d)
                elif d.status is TaskState.COMPLETED:
                    restored[dep] = d.result
                    continue
                elif d.status not in TERMINAL and (d.run is not None or dep in self._mapping):
                    busy[dep] = d  # running, or held by the flow of another run
                    continue
                batch[dep] = d
                stack.append(d)
        return list(batch.values()), restored, list(busy.values())

    def submit_run(
        self,
        tasks: Iterable[Task],
        *,
        name: str | None = None,
        trigger: str = "api",
        reuse_upstream: bool = True,
        register: bool = True,
        claim: Mapping[str, Any] | None = None,
    ) -> Run:
        """Start a run of ``tasks`` and the dependencies they need; return it (it is closed
        by the manager once finished).

        ``reuse_upstream`` (default) satisfies dependencies that completed earlier from their
        results; without it every dependency runs afresh, as a copy, in this run. With
        ``register`` the tasks become the manager's (found by name later). A task still
        running in another run of this manager is not run again.

        The run's id is claimed in the store first (:meth:`Engine.claim`; ``claim``
        overrides the engine's ``max_active_runs``/``on_limit``/``on_conflict``): this call
        waits for a place, or raises the store's error when the limit refuses it.
        """
        roots = list(tasks)
        name = name or self.name
        import uuid  # per run; loading the manager skips uuid (and platform)

        run_id, release = self.engine.claim(uuid.uuid4().hex[:12], name, **(claim or {}))
        try:
            run, flow = self._open(roots, name, trigger, reuse_upstream, register, run_id,
                                   release)
        except BaseException:
            release()
            raise
        if flow is None:
            run.start()
            return run
        try:
            flow.start()
        except BaseException:
            self._forget_mapping(run)
            run.cancel()
            self._close(run)
            raise
        driver = threading.Thread(target=self._drive, args=(run, flow),
                                  name=f"taskloom-manager-flow-{run.id}", daemon=True)
        with self._lock:
            self._drivers[run.id] = driver
        driver.start()
        return run

    def _open(self, roots: list[Task], name: str, trigger: str, reuse_upstream: bool,
              register: bool, run_id: str | None, release: Callable[[], None],
              ) -> tuple[Run, Flow | None]:
        """Open the run (not started) and, when the batch maps, the flow that drives it."""
        mapped: list[Task] = []
        while True:
            with self._lock:
                self._reap()
                if register:
                    known = self._by_name
                    for t in roots:
                        if known.get(t.name) is not t:
                            self.add_task(t)
                # A root still going in another run is not run twice: its caller waits for it.
                mapping = self._mapping
                todo = [t for t in roots if (t._status in TERMINAL or t._run is None)
                        and not (t._run is None and mapping and t.name in mapping)]
                batch, restored, busy = self._closure(todo, fresh=not reuse_upstream)
                if not busy:
                    run = self.engine.open_run(run_id=run_id, name=name, trigger=trigger)
                    carried = []
                    for dep in restored:
                        stand_in = fresh_copy(self.get_task(dep) or self._by_name[dep])
                        stand_in.dependencies = []
                        carried.append(stand_in)
                    mapped = [t for t in batch if isinstance(t, MappedTask)]
                    if mapped:  # the flow adds the rest as what they map over is known
                        run.add(carried, restored=restored or None)
                        flow = Flow(run, batch)
                        for t in batch:
                            self._mapping[t.name] = run
                        for t in mapped:
                            self._gathered.pop(t.name, None)
                    else:
                        run.add([*carried, *batch], restored=restored or None)
                    self._live[run.id] = run
                    self._releases[run.id] = release
                    self._last = run
                    break
            # A dependency running in another run: wait for it, then look again.
            for d in busy:
                self._await(d)
        return run, (flow if mapped else None)

    def _drive(self, run: Run, flow: Flow) -> None:
        try:
            while not flow.step(None):
                pass
        except BaseException:
            run.cancel()
            raise
        finally:
            with self._lock:
                mapped = [n for n, r in self._mapping.items() if r is run
                          and isinstance(self._by_name.get(n), MappedTask)]
                for name in mapped:
                    if name in run.tasks:
                        self._gathered[name] = run.tasks[name]
                prefixes = tuple(f"{n}[" for n in mapped)
                for name, task in run.tasks.items():  # the instances, found by name
                    if prefixes and name.startswith(prefixes):
                        self._by_name[name] = task
                self._forget_mapping(run)

    def _forget_mapping(self, run: Run) -> None:
        with self._lock:
            for name in [n for n, r in self._mapping.items() if r is run]:
                del self._mapping[name]

    def _await(self, task: Task, timeout: float | None = None) -> bool:
        """Wait for ``task`` (or a mapped task's run) to finish; False when ``timeout``
        passed first."""
        run = self._mapping.get(task.name) if task.run is None else task.run
        if run is None:
            return True
        driver = self._drivers.get(run.id)
        if driver is not None:
            driver.join(timeout)
            return not driver.is_alive()
        return run.wait(timeout, tasks=[task])

    def _reap(self) -> None:
        """Close finished runs (with the lock held); those handed to :meth:`close_when_done`
        are left to its threads, so that starting a run never waits for another run's end
        to be recorded."""
        # Only started runs: one being opened by another caller is idle until it starts.
        for run in [r for r in self._live.values() if r.status == "idle" and r.inflight == 0
                    and not self._driving(r) and r.id not in self._closing_later]:
            self._close(run)

    def _driving(self, run: Run) -> bool:
        driver = self._drivers.get(run.id)
        return driver is not None and driver.is_alive()

    def _close(self, run: Run) -> None:
        with self._lock:
            if self._live.pop(run.id, None) is None:
                return
            release = self._releases.pop(run.id, None)
            driver = self._drivers.pop(run.id, None)
        if driver is not None and driver is not threading.current_thread():
            driver.join()
        try:
            run.close()
        finally:
            if release is not None:
                release()
        with self._lock:
            finished, known = self._finished, self._by_name.get
            for name, t in run.tasks.items():
                if known(name) is t and t._status in TERMINAL:
                    if name in finished:
                        finished.move_to_end(name)
                    else:
                        finished[name] = None
            while len(finished) > self.retention:
                task_id, _ = finished.popitem(last=False)
                gone = known(task_id)
                if gone is not None and gone.status in TERMINAL:
                    del self._by_name[task_id]

    def _finish(self, run: Run) -> None:
        """Wait for ``run`` and close it."""
        driver = self._drivers.get(run.id)
        if driver is not None:
            driver.join()
        run.wait()
        self._close(run)

    def close_when_done(self, run: Run) -> None:
        """Close ``run`` (one of :meth:`submit_run`'s) once finished, on the manager's
        closing threads: its ``taskloom_run_finish`` then fires and the store records it.

        Up to :data:`CLOSERS` runs are closed at once: a store that commits a run's end
        before the close returns commits the ends of runs closed together in one round."""
        with self._lock:
            self._closing_later.add(run.id)
            self._closers = [t for t in self._closers if t.is_alive()]
            waiting = self._closing_busy + self._to_close.qsize() + 1
            if len(self._closers) < min(CLOSERS, waiting):
                closer = threading.Thread(target=self._close_loop,
                                          name="taskloom-manager-close", daemon=True)
                self._closers.append(closer)
                closer.start()
        self._to_close.put(run)

    def _close_loop(self) -> None:
        while True:
            run = self._to_close.get()
            if run is None:
                return
            with self._lock:
                self._closing_busy += 1
            try:
                self._finish(run)
            finally:
                with self._lock:
                    self._closing_busy -= 1
                    self._closing_later.discard(run.id)

    def submit_task(self, task: Task) -> str:
        """Start ``task`` (and its unfinished dependencies) in a run of its own in the
        background; return its id."""
        run = self.submit_run([task])
        self.close_when_done(run)
        return task.id

    def execute_task(self, task_id: str) -> Any:
        """Run the task and whatever it depends on that has not completed; return its result.

        Raises the task's error when it fails.
        """
        task = self._runnable(task_id)
        self._finish(self.submit_run([task]))
        return self.wait_for_task(task.name if isinstance(task, MappedTask) else task.id)

    def execute_workflow(
        self, tasks: Iterable[Task], *, name: str | None = None
    ) -> dict[str, Any]:
        """Run tasks in dependency order, as one run (workflow ``name``, default the
        manager's); return ``{name: result}`` of those that completed."""
        tasks = list(tasks)
        self._finish(self.submit_run(tasks, name=name))
        completed = TaskState.COMPLETED
        if not any(isinstance(t, MappedTask) for t in tasks):
            return {t.name: t.result for t in tasks if t._status is completed}
        ran = [self.get_task(t.name) if isinstance(t, MappedTask) else t for t in tasks]
        return {t.name: t.result for t in ran if t is not None and t.status is completed}

    def wait_for_task(self, task_id: str, timeout: float | None = None) -> Any:
        """Wait for a task to finish; return its result, raise its error, or TimeoutError."""
        task = self._get(task_id)
        if task.run is None and task.name in self._mapping:  # not added by its flow yet
            if not self._await(task, timeout):
                raise TimeoutError(f"task {task.name!r} still running after {timeout}s")
            task = self._get(task_id)
        run = task.run
        if run is None:
            raise TaskloomError(f"task {task.name!r} was never submitted")
        if task.status not in TERMINAL and not run.wait(timeout, tasks=[task]):
            raise TimeoutError(f"task {task.name!r} still {task.status.value} after {timeout}s")
        if task.status is TaskState.COMPLETED:
            return task.result
        if task.exception is not None:
            raise task.exception
        if task.error is None:
            raise TaskloomError(f"task {task.name!r} ended {task.status.value} (not run)")
        raise TaskloomError(f"task {task.name!r} ended {task.status.value}: {task.error}")

    def cancel_task(self, task_id: str) -> None:
        self._get(task_id).cancel()

    def retry_task(self, task_id: str) -> None:
        """Run a failed or cancelled task again, in a new run (in the background)."""
        task = self._get(task_id)
        if task.status not in (TaskState.FAILED, TaskState.CANCELLED):
            raise TaskloomError(
                f"task {task.name!r} is {task.status.value}; only failed or cancelled tasks "
                "can be retried"
            )
        # Like execute_task: dependencies that did not complete (the failure that failed
        # this task, say) run again first.
        self.submit_task(self._runnable(task_id))

    def get_performance_stats(self, task_name: str | None = None) -> dict[str, Any]:
        """Attempt statistics of one task name, or of every task this manager's plugins saw
        (the ``stats`` component): the keys of :meth:`Task.get_performance_stats`."""
        stats: dict[str, Any] = self.plugins.registry.first("stats").performance(task_name)
        return stats

    def shutdown(self) -> None:
        """Wait for the manager's runs and close them (their workers stop)."""
        while True:
            with self._lock:
                live = list(self._live.values())
            if not live:
                break
            for run in live:
                self._finish(run)
        with self._lock:
            closers, self._closers = self._closers, []
        closers = [t for t in closers if t.is_alive()]
        for _ in closers:
            self._to_close.put(None)
        for closer in closers:
            closer.join()

    def __enter__(self) -> TaskManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
