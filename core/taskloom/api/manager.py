"""TaskManager: the documented high-level API, on one long-lived engine run."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Any

from taskloom.kernel.clock import Clock
from taskloom.kernel.engine import Engine, Run
from taskloom.kernel.errors import TaskloomError, TaskNotFoundError
from taskloom.kernel.pluginmanager import PluginSet
from taskloom.kernel.states import TERMINAL, TaskState
from taskloom.kernel.task import Task


class TaskManager:
    """Create, submit, run and inspect tasks.

    All tasks of a manager live in one engine run that stays open, so a task submitted later
    can depend (by name) on one that already ran: it receives its result. Dependencies that
    have not completed are run first by :meth:`execute_task`.
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
        **engine_options: Any,
    ) -> None:
        self.engine = engine or Engine(
            max_workers=max_workers, queue=queue, executor=executor, plugins=plugins,
            config=config, clock=clock, **engine_options,
        )
        self.plugins = self.engine.plugins
        self.max_workers = self.engine.create_executor(None).max_workers
        self._tasks: dict[str, Task] = {}  # by id
        self._by_name: dict[str, Task] = {}
        self._lock = threading.RLock()
        self._run: Run | None = None

    # -- creating and finding ---------------------------------------------------------------
    def create_task(self, name: str, **kwargs: Any) -> Task:
        """Create a task (``Task`` arguments) and register it; it runs when executed."""
        task = Task(name, **kwargs)
        self._register(task)
        return task

    def _register(self, task: Task) -> None:
        with self._lock:
            have = self._by_name.get(task.name)
            if have is not None and have is not task:
                raise TaskloomError(f"a task named {task.name!r} already exists (id {have.id})")
            self._tasks[task.id] = task
            self._by_name[task.name] = task

    def get_task(self, task_id: str) -> Task | None:
        """The task with this id (or name), or None."""
        return self._tasks.get(task_id) or self._by_name.get(task_id)

    def _get(self, task_id: str) -> Task:
        task = self.get_task(task_id)
        if task is None:
            raise TaskNotFoundError(task_id)
        return task

    def get_all_tasks(self) -> list[Task]:
        return list(self._tasks.values())

    def list_tasks(self, status: str | None = None) -> list[Task]:
        if status is None:
            return self.get_all_tasks()
        state = TaskState(status)
        return [t for t in self._tasks.values() if t.status is state]

    def get_task_status(self, task_id: str) -> str:
        return self._get(task_id).status.value

    def get_task_result(self, task_id: str) -> Any:
        return self._get(task_id).result

    # -- running ------------------------------------------------------------------------------
    @property
    def run(self) -> Run:
        """The manager's engine run (opened on first use)."""
        with self._lock:
            if self._run is None:
                self._run = self.engine.open_run(name="manager")
                self._run.start()
            return self._run

    def _closure(self, roots: Iterable[Task]) -> list[Task]:
        """The roots plus every dependency, transitively, that has not completed."""
        out: dict[str, Task] = {}
        stack = list(roots)
        while stack:
            t = stack.pop()
            if t.name in out:
                continue
            out[t.name] = t
            for dep in t.dependencies:
                d = self._by_name.get(dep)
                if d is None:
                    if dep in self.run.tasks:
                        continue
                    raise TaskloomError(f"task {t.name!r} depends on unknown task {dep!r}")
                if d.status is not TaskState.COMPLETED and d.name not in out:
                    stack.append(d)
        return list(reversed(out.values()))

    def _launch(self, roots: Iterable[Task]) -> list[Task]:
        roots = list(roots)
        with self._lock:
            for t in roots:
                self._register(t)
            run = self.run
            closure = self._closure(roots)
            batch = [
                t for t in closure
                if t.status in TERMINAL or t._run is None or t.status is TaskState.RETRYING
            ]
            # Completed dependencies the run does not know (it was closed by shutdown() and
            # a new one opened) come along with their results, so dependents receive them.
            carried: dict[str, Any] = {}
            for t in closure:
                for dep in t.dependencies:
                    d = self._by_name.get(dep)
                    if (d is not None and d.status is TaskState.COMPLETED
                            and run.tasks.get(dep) is not d and dep not in carried):
                        carried[dep] = d.result
                        batch.insert(0, d)
            run.add(batch, restored=carried or None)
        return roots

    def submit_task(self, task: Task) -> str:
        """Start ``task`` (and its unfinished dependencies) in the background; return its id."""
        self._launch([task])
        return task.id

    def execute_task(self, task_id: str) -> Any:
        """Run the task and whatever it depends on that has not completed; return its result.

        Raises the task's error when it fails.
        """
        task = self._get(task_id)
        self._launch([task])
        return self.wait_for_task(task.id)

    def execute_workflow(self, tasks: Iterable[Task]) -> dict[str, Any]:
        """Run tasks in dependency order; return ``{name: result}`` of those that completed."""
        tasks = self._launch(tasks)
        self.run.wait(tasks=tasks)
        return {t.name: t.result for t in tasks if t.status is TaskState.COMPLETED}

    def wait_for_task(self, task_id: str, timeout: float | None = None) -> Any:
        """Wait for a task to finish; return its result, raise its error, or TimeoutError."""
        task = self._get(task_id)
        if task._run is None:
            raise TaskloomError(f"task {task.name!r} was never submitted")
        if not task._run.wait(timeout, tasks=[task]):
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
        """Run a failed or cancelled task again (in the background)."""
        task = self._get(task_id)
        if task.status not in (TaskState.FAILED, TaskState.CANCELLED):
            raise TaskloomError(
                f"task {task.name!r} is {task.status.value}; only failed or cancelled tasks "
                "can be retried"
            )
        # Like execute_task: dependencies that did not complete (the failure that failed
        # this task, say) run again first.
        self._launch([task])

    def get_performance_stats(self, task_name: str | None = None) -> dict[str, Any]:
        """Attempt statistics of one task name, or of every task this manager's plugins saw
        (the ``stats`` component): the keys of :meth:`Task.get_performance_stats`."""
        stats: dict[str, Any] = self.plugins.registry.first("stats").performance(task_name)
        return stats

    def shutdown(self) -> None:
        """Close the manager's run: wait for running tasks and stop the workers."""
        with self._lock:
            if self._run is not None:
                self._run.wait()
                self._run.close()
                self._run = None

    def __enter__(self) -> TaskManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
