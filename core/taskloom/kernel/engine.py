"""The engine: runs a set of tasks to completion along their dependency graph. Each execution
is a run (run.py, admission.py, recording.py, attempt.py); their public names import from here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from taskloom.kernel.attempt import Attempt, Plan, TaskContext, _signature, unfilled_parameters
from taskloom.kernel.clock import Clock, system_clock
from taskloom.kernel.errors import PluginError, TaskloomError
from taskloom.kernel.executor import Executor
from taskloom.kernel.limiter import Limiter
from taskloom.kernel.recording import TRIGGERS, ResultsView, RunSummary, recorded_outcomes
from taskloom.kernel.run import Run
from taskloom.kernel.task import Task

if TYPE_CHECKING:
    from taskloom.kernel.pluginmanager import PluginSet

__all__ = ["TRIGGERS", "Attempt", "Engine", "Plan", "ResultsView", "Run", "RunSummary",
           "TaskContext", "_signature", "unfilled_parameters"]


class Engine:
    """Runs tasks. Holds the plugin set, the settings and the clock; each run is a :class:`Run`.

    ``queue``: queue strategy name (``priority`` default). ``executor``: executor name
    (``thread`` default) and ``executor_options`` its options; ``max_workers`` is a shortcut
    for ``executor_options["max_workers"]``. ``executors`` gives options for executors that
    tasks ask for by name. ``limits``/``rate_limits``: per-tag concurrency (``{"db": 2}``)
    and start rates (``{"api": (10, 1.0)}``: 10 starts a second).

    ``store``: where runs are recorded (``memory`` default, ``sqlite``, ``none``; or the
    config's ``store``), ``store_options`` its options. With a store, a run id is an idempotency key
    (:meth:`run`) and a recorded run can be resumed (:meth:`resume`).
    """

    def __init__(
        self, *, max_workers: int | None = None, queue: str = "priority",
        executor: str = "thread", executor_options: Mapping[str, Any] | None = None,
        executors: Mapping[str, Mapping[str, Any]] | None = None,
        limits: Mapping[str, int] | None = None, rate_limits: Mapping[str, Any] | None = None,
        plugins: PluginSet | None = None, config: Mapping[str, Any] | None = None,
        clock: Clock | None = None, store: str | None = None,
        store_options: Mapping[str, Any] | None = None,
    ) -> None:
        if plugins is None:
            from taskloom.kernel.pluginmanager import load_plugins

            plugins = load_plugins(config=config)
        self.plugins = plugins
        self.clock: Clock = clock or system_clock()
        self.queue_name = queue
        self.executor_name = executor
        self.executor_options = dict(executor_options or {})
        if max_workers is not None:
            self.executor_options["max_workers"] = max_workers
        self.executors_options = {k: dict(v) for k, v in (executors or {}).items()}
        # Checked by the limiter component when it is built (below), not here.
        self.limits: Any = {} if limits is None else limits
        self.rate_limits: Any = {} if rate_limits is None else rate_limits
        # Fail fast on unknown names and bad options, before any run.
        plugins.registry.get("queue", queue)
        self.create_executor(None).shutdown()
        self.create_limiter()
        self.store: Any = self._create_store(store, store_options, config or {})
        self.claim_options = {k: v for k, v in (config or {}).items()
                              if k in ("on_conflict", "max_active_runs", "on_limit")}

    def _create_store(
        self, name: str | None, options: Mapping[str, Any] | None, config: Mapping[str, Any]
    ) -> Any:
        if name is None:
            name = config.get("store")
        if options is None:
            options = config.get("store_options") or {}
        registry = self.plugins.registry
        if name == "none":
            return None
        if name is None:
            if ("store", "memory") not in registry:  # a plugin set without the stores plugin
                return None
            name = "memory"
        # Not registered as a plugin: the run calls it directly (kernel/store.py).
        return registry.create("store", name, **dict(options))

    def signal(self, run_id: str, name: str, payload: Any = None) -> None:
        """Send signal ``name`` to run ``run_id``: the store keeps it for the step waiting."""
        if not hasattr(self.store, "send_signal"):  # memory, sqlite and postgres keep them
            raise TaskloomError(f"store {getattr(self.store, 'name', 'none')!r} records no signals")
        self.store.send_signal(run_id, name, payload)

    def close(self) -> None:
        """Release the store (commit what it has queued); the engine runs nothing after."""
        store, self.store = self.store, None
        if store is not None:
            store.close()

    def create_queue(self) -> Any:
        return self.plugins.registry.create("queue", self.queue_name)

    def create_executor(self, name: str | None) -> Executor:
        if name is None:
            name, options = self.executor_name, self.executor_options
        else:
            options = self.executors_options.get(name, {})
        ex = self.plugins.registry.create("executor", name, **options)
        if not isinstance(ex, Executor):
            raise PluginError(f"executor {name!r} is not a taskloom.Executor")
        return ex

    def create_limiter(self) -> Limiter | None:
        """The per-tag limiter component (kind ``limiter``), or None when nothing is limited."""
        if all(isinstance(t, Mapping) and not t for t in (self.limits, self.rate_limits)):
            return None
        limiter: Limiter = self.plugins.registry.create(
            "limiter", "tags", limits=self.limits, rate_limits=self.rate_limits, clock=self.clock
        )
        return limiter

    def open_run(
        self, *, run_id: str | None = None, name: str | None = None,
        data: Mapping[str, Any] | None = None, trigger: str | None = None,
        parent_id: str | None = None, params: Mapping[str, Any] | None = None,
    ) -> Run:
        """A new run of this engine: add tasks, :meth:`Run.start`, :meth:`Run.wait`,
        :meth:`Run.close`. ``trigger`` says what started it (:data:`TRIGGERS`),
        ``parent_id`` the run it continues; both are recorded by the store."""
        return Run(self, run_id=run_id, name=name, data=data, trigger=trigger,
                   parent_id=parent_id, params=params)

    def run(
        self, tasks: Iterable[Task], *, run_id: str | None = None, name: str | None = None,
        data: Mapping[str, Any] | None = None, restored: Mapping[str, Any] | None = None,
        timeout: float | None = None, trigger: str | None = "api",
        on_conflict: str | None = None, params: Mapping[str, Any] | None = None,
    ) -> RunSummary:
        """Run ``tasks`` to completion and return the summary (``trigger``: what started
        it, recorded by the store).

        The graph is validated first (duplicate names, unknown dependencies, cycles).
        With ``timeout``, a run still going after that many seconds is cancelled.

        ``run_id`` is an idempotency key when the engine has a store: a run the store has
        recorded as completed is not run again (its stored summary is returned), and one
        recorded as unfinished is resumed (:meth:`resume`), each claimed first (:meth:`claim`).
        """
        run_id, release = self.claim(run_id, name, on_conflict)
        try:
            if run_id is not None and self.store is not None and restored is None:
                recorded = self.store.summary(run_id)
                if recorded is not None:
                    if recorded["status"] == "completed":
                        return RunSummary(**recorded)
                    return self.resume(run_id, tasks, name=name, data=data, timeout=timeout,
                                       params=params)
            run = self.open_run(run_id=run_id, name=name, data=data, trigger=trigger,
                                params=params)
            return self._execute(run, tasks, restored, timeout)
        finally:
            release()

    def claim(self, run_id: str | None, name: str | None, on_conflict: str | None = None,
              **overrides: Any) -> tuple[str | None, Callable[[], None]]:
        """Claim ``run_id`` and a place under ``max_active_runs`` of workflow ``name`` in the
        store: ``(run id, release)``. docs/stores.md: ``on_conflict``, ``on_limit``;
        ``overrides`` replace the engine's claim settings (None values are ignored)."""
        overrides["on_conflict"] = on_conflict
        options = dict(self.claim_options, **{k: v for k, v in overrides.items() if v is not None})
        claim_run = getattr(self.store, "claim_run", None)
        if claim_run is None or (run_id is None and not options.get("max_active_runs")):
            return run_id, lambda: None
        import uuid  # per run, not per task; loading the engine skips uuid (and platform)
        run_id = run_id or uuid.uuid4().hex[:12]
        return run_id, claim_run(run_id, name, **options)

    def resume(
        self, run_id: str, tasks: Iterable[Task], *, retry_failed: bool = False,
        name: str | None = None, data: Mapping[str, Any] | None = None,
        timeout: float | None = None, on_conflict: str | None = None,
        params: Mapping[str, Any] | None = None) -> RunSummary:
        """Finish a recorded run (claimed first): only what did not complete runs again.

        ``tasks`` is the run's workflow, rebuilt. A task recorded as completed (result stored)
        keeps that result; one running when its process died runs again (at-least-once); a
        failed one stays failed unless ``retry_failed``. A completed run is returned as is.
        """
        _, release = self.claim(run_id, name or self.recorded(run_id).name, on_conflict)
        try:
            recorded = self.recorded(run_id)
            if recorded.status == "completed":
                return recorded
            run = self.open_resumed_run(run_id, retry_failed=retry_failed,
                                        name=name or recorded.name, data=data, params=params)
            return self._execute(run, tasks, None, timeout)
        finally:
            release()

    def recorded(self, run_id: str) -> RunSummary:
        """The store's summary of a recorded run (``TaskloomError`` when there is none)."""
        store = self.store
        if store is None:
            raise TaskloomError("recorded runs need an engine with a store (Engine(store=...))")
        recorded = store.summary(run_id)
        if recorded is None:
            raise TaskloomError(f"no recorded run {run_id!r}")
        return RunSummary(**recorded)

    def open_resumed_run(
        self, run_id: str, *, retry_failed: bool = False, name: str | None = None,
        data: Mapping[str, Any] | None = None, params: Mapping[str, Any] | None = None,
    ) -> Run:
        """A run with the id of a recorded one whose recorded outcomes are restored
        (:meth:`Run.restore`): add the workflow's tasks to it to finish the run."""
        store = self.store
        if store is None:
            raise TaskloomError("resume needs an engine with a store (Engine(store=...))")
        restored, failed = recorded_outcomes(store, run_id, retry_failed)
        recorded_params = getattr(store, "recorded_params", lambda _: None)  # as it started
        run = self.open_run(run_id=run_id, name=name, data=data, trigger="resume",
                            params=recorded_params(run_id) if params is None else params)
        run.restore(restored, failed)
        return run

    def _execute(self, run: Run, tasks: Iterable[Task], restored: Mapping[str, Any] | None,
                 timeout: float | None) -> RunSummary:
        try:
            run.add(tasks, restored=restored)
            run.start()
            if not run.wait(timeout):
                run.cancel()
                run.wait()
        except BaseException:
            run.cancel()
            run.close()
            raise
        return run.close()
