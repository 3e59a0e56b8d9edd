"""The scheduler: jobs in a heap by next fire time, fired through a :class:`TaskManager`.

Triggers are plugins (kind ``trigger``: ``date``, ``interval``, ``cron``, ``conditional``);
the scheduler needs only ``next_fire_time(after)`` from them (:class:`Trigger`).

Choices worth knowing:

* **Times.** Every time the scheduler hands out is an aware UTC datetime. A naive
  ``schedule_time`` is read as the machine's local time.
* **What runs.** Each fire is a run of its own (workflow: the job id, trigger ``schedule``)
  through the :class:`TaskManager`. It runs the job's own :class:`Task` object, so the object
  you scheduled shows the latest fire's status and result, together with fresh copies of its
  upstream tasks: every fire computes its upstream afresh (a daily ``report`` depending on
  ``extract`` gets that day's extract). With the job option ``reuse_upstream=True`` upstream
  tasks that completed before (in an earlier fire or an earlier manager call) are not run
  again: their recorded results are used, as the manager does for its own calls. When
  ``max_instances > 1`` lets a fire overlap a run still in progress, that fire runs a copy of
  the task (a task with dependencies cannot overlap). A failed fire is a failed run
  (``taskloom_run_finish`` reports it).
* **Heap.** Entries are ``(due, seq, job id)``; a job knows the ``seq`` of its live entry,
  removing, pausing or rescheduling it forgets that entry, and stale entries are dropped when
  they reach the top (lazy deletion), so add and reschedule are O(log n) and the next due job
  is read in O(1).
* **Late runs.** A due time later than ``misfire_grace_time`` is skipped and reported through
  ``taskloom_schedule_misfire``. ``None`` grace means "run however late".
* **Coalescing.** With ``coalesce`` (default) the missed runs of one job found in one pass
  make one run: the **latest** missed due time runs (within grace), every earlier one is
  dropped, and a warning names how many were dropped and their first and last due times.
* **Catch-up.** Without ``coalesce`` each missed run runs, in due order and **one after
  another** (each waits for the job's runs before it to finish, so they are never skipped
  as overlaps of each other), on a thread of the job's own so other jobs keep their times.
  Runs falling due while a catch-up is going join its end.
* **Overlaps.** A due run that finds ``max_instances`` runs of its job still going is skipped
  on the background thread and reported through ``taskloom_schedule_overlap``
  (:meth:`run_pending` waits instead).
* **Claims.** Each fire claims its run id in the engine's store before it starts
  (:meth:`Engine.claim`, as :meth:`Engine.run` does; the workflow is the job id), so a
  ``taskloom resume`` of it elsewhere waits while it runs. ``max_active_runs`` (per job;
  default the engine's ``[taskloom] max_active_runs``) bounds the job's runs going at once
  **across the processes sharing the store** (``max_instances`` counts only this
  scheduler's). A fire over it is handled as an overlap: skipped on the background thread
  and reported through ``taskloom_schedule_overlap`` (``Job.skipped_by`` names the limit),
  waited for by :meth:`run_pending`. The background thread never waits for a place, so
  ``on_limit = "wait"`` does not hold up the other jobs. Misfires and overlaps are also kept
  in the schedule state when it offers ``record_skip(job_id, kind, scheduled_for, detail)``
  (the SQLite and PostgreSQL stores' do; the dashboard shows them).
* **Durable state.** Each job's next due time is saved in a :class:`ScheduleState` before it
  fires; a scheduler restarted on the same state resumes from it (missed runs are handled as
  late runs), and :meth:`ScheduleState.claim` makes sure two schedulers sharing the state
  never fire the same run twice. A catch-up saves its missed runs (``missed``) together with
  the next due time before the first starts, claims each just before it starts and removes
  it when it is done, so a scheduler restarted after a crash runs the missed runs never
  claimed and reports (a warning) the one claimed but never finished, instead of running it
  twice. Job ids are stable (the task name by default) so the state finds its job again
  after a restart. A state offering ``claim_and_save(fires, owner)`` (the PostgreSQL
  store's) gets every plain fire of one pass at once, ``(job id, trigger time, state)``
  each, and returns the fires won, having saved their states in the same commit: a pass
  costs one round trip to the database instead of two per fire.
* **Stopping.** :meth:`stop` returns promptly whatever the background thread is doing: it
  never waits for a due time.
"""

from __future__ import annotations

import enum
import itertools
import logging
import random
import threading
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta, timezone
from heapq import heappop, heappush
from typing import Any, ClassVar, Protocol, runtime_checkable

from taskloom.api.manager import TaskManager, fresh_copy
from taskloom.api.scheduling import MemoryScheduleState, ScheduleState
from taskloom.kernel.clock import Clock, system_clock
from taskloom.kernel.engine import Engine
from taskloom.kernel.errors import (
    ConfigError,
    PluginError,
    TaskloomError,
    UnknownComponentError,
)
from taskloom.kernel.pluginmanager import PluginSet
from taskloom.kernel.states import TERMINAL
from taskloom.kernel.task import Task
from taskloom_std.stores.claims import RunClaimedError

log = logging.getLogger("taskloom.scheduler")

UTC = timezone.utc


class _Unset(enum.Enum):
    DEFAULT = "default"


_DEFAULT = _Unset.DEFAULT


#: Most missed runs of one job replayed in one pass without coalescing; beyond this the job
#: jumps to its next future time (a one-second job down for a week is not replayed 600k times).
MAX_CATCH_UP = 1000

_RESOLUTION = 1e-6

_INTERVAL_KEYS = frozenset({"start", "end", "jitter", "rng"})


@runtime_checkable
class Trigger(Protocol):
    """What the scheduler needs from a trigger.

    Optional extras the scheduler uses when present: ``first_fire_time(now)`` (the first due
    time of a new job; default ``next_fire_time(now)``), ``next_fire_ts(after: float)`` (a
    float fast path), ``jitter`` (seconds; each fire is delayed by a random ``[0, jitter)``
    drawn from ``rng``), ``check() -> bool`` (asked at each due time; the task runs only if
    True, which is how ``conditional`` polls; such a fire is claimed by its due time like any
    other) and ``once`` (remove the job after it fires).
    A trigger class may offer ``shared(interval)``, returning one unchangeable instance per
    argument for many jobs to hold; :meth:`TaskScheduler.schedule_recurring` uses it.
    """

    def next_fire_time(self, after: datetime) -> datetime | None:
        """The first fire instant strictly after ``after`` (aware UTC), or None when done."""


class Job:
    """A scheduled task: its trigger, run control and next fire time."""

    __slots__ = (
        "_backlog",
        "_base",
        "_catchup",
        "_due",
        "_entry",
        "_instances",
        "_scheduler",
        "coalesce",
        "id",
        "max_active_runs",
        "max_instances",
        "misfire_grace_time",
        "paused",
        "reuse_upstream",
        "skipped_by",
        "task",
        "trigger",
    )

    def __init__(
        self,
        scheduler: TaskScheduler,
        job_id: str,
        task: Task,
        trigger: Any,
        misfire_grace_time: float | None,
        coalesce: bool,
        max_instances: int,
        base: float | None = None,
        due: float | None = None,
        paused: bool = False,
        reuse_upstream: bool = False,
        max_active_runs: int | None = None,
    ) -> None:
        self._scheduler = scheduler
        #: Runs of this job going at once across processes sharing the store (None: the
        #: engine's ``max_active_runs``, if any).
        self.max_active_runs = max_active_runs
        #: The limit that made the latest skipped fire skip: ``"max_instances N"`` or
        #: ``"max_active_runs N"`` (read by ``taskloom_schedule_overlap`` implementations).
        self.skipped_by: str | None = None
        #: Upstream tasks that completed before are not run again by a fire (their results
        #: are reused); by default each fire runs them afresh.
        self.reuse_upstream = reuse_upstream
        self.id = job_id
        self.task = task
        self.trigger = trigger
        self.misfire_grace_time = misfire_grace_time
        self.coalesce = coalesce
        self.max_instances = max_instances
        self.paused = paused
        self._base = base  # the trigger's time (before jitter)
        self._due = due  # when it runs (base + jitter)
        self._entry = 0  # the sequence number of its live heap entry; 0: none
        # Made on the first fire: ten thousand idle jobs need no ten thousand empty lists.
        self._instances: list[Task] | None = None
        # Missed runs (trigger time, due time) still to run, in order; None: no catch-up.
        self._backlog: list[tuple[float, float]] | None = None
        self._catchup: threading.Thread | None = None

    @property
    def name(self) -> str:
        name: str = self.task.name
        return name

    @property
    def next_fire_time(self) -> datetime | None:
        """When the job runs next (aware UTC); None when paused or finished."""
        if self.paused or self._due is None:
            return None
        return datetime.fromtimestamp(self._due, UTC)

    @property
    def running(self) -> int:
        """Runs of this job still in progress."""
        if not self._instances:
            return 0
        self._instances = [t for t in self._instances if t.status not in TERMINAL]
        return len(self._instances)

    def pause(self) -> None:
        self._scheduler.pause_job(self.id)

    def resume(self) -> None:
        self._scheduler.resume_job(self.id)

    def remove(self) -> None:
        self._scheduler.remove_job(self.id)

    def __repr__(self) -> str:
        nxt = self.next_fire_time
        when = "paused" if self.paused else (nxt.isoformat() if nxt else "done")
        return f"<Job {self.id!r} {self.trigger!r} next={when}>"


def _checked_grace(value: object, where: str) -> float | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                              or not value >= 0):
        raise ConfigError(f"{where}: misfire_grace_time must be >= 0, got {value!r} "
                          "(seconds, or None for no limit)")
    return value


def _checked_instances(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not value >= 1:
        raise ConfigError(f"{where}: max_instances must be >= 1, got {value!r} "
                          "(a whole number)")
    return value


def _checked_active(value: object, where: str) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                              or not value >= 1):
        raise ConfigError(f"{where}: max_active_runs must be >= 1 or None, got {value!r} "
                          "(a whole number)")
    return value


def _checked_coalesce(value: object, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: coalesce must be true or false, got {value!r}")
    return value


def _where(task: Any) -> str:
    """How an error names the task (made only when there is an error to report)."""
    return f"task {getattr(task, 'name', task)!r}"


def _to_utc(value: datetime, what: str = "schedule_time") -> datetime:
    if not isinstance(value, datetime):
        raise ConfigError(f"{what}: expected a datetime, got {type(value).__name__} {value!r}")
    try:
        if value.tzinfo is None:
            value = value.astimezone()  # naive: the machine's local time (documented)
        return value.astimezone(UTC)
    except (OverflowError, ValueError, OSError):
        raise ConfigError(f"{what}: {value.isoformat()} is too close to the ends of the "
                          "calendar") from None


def _ts_dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


class TaskScheduler:
    """Runs tasks at times, at intervals, on cron expressions or when conditions hold.

    ``manager`` (or ``engine``, wrapped in a manager) runs the fired tasks; without either a
    manager with the default engine is made. ``clock`` (default: the engine's) tells the time
    and does the waiting, so a :class:`~taskloom.FakeClock` drives it in tests. ``plugins``
    supplies the triggers and receives the ``taskloom_schedule_*`` hooks (default: the
    engine's). ``state`` keeps job progress across restarts (default: the engine's store's
    ``schedule_state()``, else in memory).
    """

    #: The job type, so ``taskloom.Job`` resolves through the registered scheduler.
    job_class: ClassVar[type[Job]] = Job

    def __init__(
        self,
        clock: Clock | None = None,
        engine: Engine | None = None,
        manager: TaskManager | None = None,
        plugins: PluginSet | None = None,
        state: ScheduleState | None = None,
        *,
        misfire_grace_time: float | None = None,
        coalesce: bool = True,
        max_instances: int = 1,
        owner: str | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._owns_manager = manager is None
        self._owns_engine = manager is None and engine is None
        if manager is None:
            manager = TaskManager(engine=engine, plugins=plugins, clock=clock)
        self.manager = manager
        self.engine = manager.engine
        self.plugins = plugins or self.engine.plugins
        self.clock: Clock = clock or self.engine.clock or system_clock()
        if state is None:
            # The engine's store keeps schedule state when it can (sqlite: across restarts
            # and across schedulers sharing the database).
            factory = getattr(getattr(self.engine, "store", None), "schedule_state", None)
            state = factory() if callable(factory) else MemoryScheduleState()
        self.state: ScheduleState = state
        self.owner = owner or uuid.uuid4().hex
        self.misfire_grace_time = misfire_grace_time
        self.coalesce = coalesce
        self.max_instances = max_instances
        self.rng = rng or random.Random()
        self._jobs: dict[str, Job] = {}
        # Entries are (due, sequence, job id): no object references, so the collector drops
        # them from its lists and a big heap costs it nothing. An entry is live while its
        # job's ``_entry`` is its sequence number; stale ones are skipped when they surface.
        self._heap: list[tuple[float, int, str]] = []
        self._seq = itertools.count(1)
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._active: list[Task] = []
        # Jobs with missed runs to run one after another and nobody running them yet.
        self._backlogged: dict[str, Job] = {}
        self._save_lock = threading.Lock()
        self._interval: tuple[Callable[..., Any], Callable[..., Any]] | None = None

    # -- run-control defaults: checked when set, so add_job need not check them per job ------
    @property
    def misfire_grace_time(self) -> float | None:
        """Default seconds a run may start late before it is skipped (None: no limit)."""
        return self._misfire_grace_time

    @misfire_grace_time.setter
    def misfire_grace_time(self, value: float | None) -> None:
        self._misfire_grace_time = _checked_grace(value, "scheduler")

    @property
    def max_instances(self) -> int:
        """Default number of runs of one job allowed at once."""
        return self._max_instances

    @max_instances.setter
    def max_instances(self, value: int) -> None:
        self._max_instances = _checked_instances(value, "scheduler")

    # -- adding jobs ------------------------------------------------------------------------
    def add_job(
        self,
        task: Task,
        trigger: Any,
        *,
        id: str | None = None,
        misfire_grace_time: float | _Unset | None = _Unset.DEFAULT,
        coalesce: bool | None = None,
        max_instances: int | None = None,
        reuse_upstream: bool = False,
        max_active_runs: int | None = None,
        **trigger_options: Any,
    ) -> Job:
        """Schedule ``task`` on ``trigger``: a trigger object, or a registered trigger name
        (``"cron"``, ``"interval"``, ...) built with ``trigger_options``.

        ``id`` (default: the task's name, made unique) names the job in the durable state.
        Run control defaults to the scheduler's settings. Each fire runs the task's upstream
        tasks afresh unless ``reuse_upstream``. ``max_active_runs`` bounds the job's runs
        going at once across the processes sharing the engine's store (see the module's
        notes).
        """
        if not isinstance(task, Task):
            raise ConfigError(f"{_where(task)}: expected a Task to schedule, got "
                              f"{type(task).__name__}")
        if isinstance(trigger, str):
            trigger = self._make_trigger(task, trigger, trigger_options)
        elif trigger_options:
            raise TypeError(f"options {sorted(trigger_options)} given with a trigger object")
        if not callable(getattr(trigger, "next_fire_time", None)):
            raise TypeError(f"{trigger!r} is not a trigger (no next_fire_time)")
        if id is not None and (not isinstance(id, str) or not id):
            raise ConfigError(f"{_where(task)}: id must be a non-empty string, got {id!r}")
        # The scheduler's defaults were checked when set; only explicit options are checked here.
        if misfire_grace_time is _DEFAULT:
            grace = self._misfire_grace_time
        else:
            grace = _checked_grace(misfire_grace_time, _where(task))
        if max_instances is None:
            instances = self._max_instances
        else:
            instances = _checked_instances(max_instances, _where(task))
        if coalesce is not None:
            _checked_coalesce(coalesce, _where(task))
        _checked_active(max_active_runs, _where(task))
        if not isinstance(reuse_upstream, bool):
            raise ConfigError(f"{_where(task)}: reuse_upstream must be true or false, got "
                              f"{reuse_upstream!r}")
        if instances > 1 and task.dependencies:
            raise ConfigError(
                f"task {task.name!r}: max_instances > 1 needs a task without dependencies "
                "(overlapping runs run alone)"
            )
        with self._lock:
            job_id = id or task.name
            if job_id in self._jobs:
                job_id = self._unique_id(job_id, explicit=id is not None)
            saved = self.state.load(job_id)
            base: float | None
            due: float | None
            paused = False
            missed = saved.get("missed") if saved is not None else None
            if saved is not None and saved.get("next_fire_time") is not None:
                base = float(saved["next_fire_time"])
                due = float(saved.get("due") or base)
                paused = bool(saved.get("paused", False))
            elif missed:
                base = due = None  # only its catch-up is left to run
            else:
                fast = getattr(trigger, "first_fire_ts", None)
                base = fast(self.clock.time()) if fast is not None else self._first_base(trigger)
                due = base
                if base is not None and getattr(trigger, "jitter", None):
                    due = self._jittered(trigger, base)
            job = Job(self, job_id, task, trigger, grace,
                      self.coalesce if coalesce is None else coalesce, instances,
                      base, due, paused, reuse_upstream, max_active_runs)
            self._jobs[job_id] = job
            if missed:
                # A catch-up a stopped (or crashed) scheduler left unfinished: resumed first.
                job._backlog = [(float(b), float(d)) for b, d in missed]
                if not paused:
                    self._backlogged[job_id] = job
            if due is not None and not paused:
                job._entry = seq = next(self._seq)
                heappush(self._heap, (due, seq, job_id))
            if self._thread is not None:
                self._wake.set()
        return job

    def _make_trigger(self, task: Any, name: str, options: dict[str, Any]) -> Any:
        where = _where(task)
        try:
            factory = self.plugins.registry.get("trigger", name)
        except UnknownComponentError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        try:
            return factory(**options)
        except TypeError as exc:
            # An option the trigger does not take: name the trigger and the option.
            raise ConfigError(f"{where}: trigger {name!r}: {exc}") from None
        except PluginError as exc:
            raise ConfigError(f"{where}: {exc}") from None

    def _unique_id(self, wanted: str, explicit: bool) -> str:
        if wanted not in self._jobs:
            return wanted
        if explicit:
            raise TaskloomError(f"a job with id {wanted!r} already exists")
        for n in itertools.count(2):
            candidate = f"{wanted}#{n}"
            if candidate not in self._jobs:
                return candidate
        raise AssertionError("unreachable")

    def add_task(self, task: Task, schedule_time: datetime | None = None, **options: Any) -> Job:
        """Run ``task`` once at ``schedule_time`` (None: due now). Naive times are local."""
        at = self.clock.now() if schedule_time is None else _to_utc(
            schedule_time, f"task {getattr(task, 'name', task)!r}: schedule_time")
        return self.add_job(task, "date", at=at, **options)

    def schedule_recurring(self, task: Task, interval: timedelta | float, **options: Any) -> Job:
        """Run ``task`` every ``interval`` (a timedelta or seconds).

        Without ``start`` the runs fall on whole multiples of the interval since the epoch,
        the first at most one interval from now, so every scheduler computes the same due
        times (see :class:`~taskloom_std.scheduling.simple.IntervalTrigger`).

        ``start``, ``end`` and ``jitter`` are passed to the ``interval`` trigger.
        """
        if self._interval is None:
            factory = self.plugins.registry.get("trigger", "interval")
            # A trigger type whose instances can serve many jobs offers ``shared``; one that
            # keeps per-job state does not, and each job gets its own.
            self._interval = (factory, getattr(factory, "shared", factory))
        factory, plain = self._interval
        trigger_opts = None
        if options:
            trigger_opts = {k: options.pop(k) for k in _INTERVAL_KEYS & options.keys()}
        trigger = factory(interval, **trigger_opts) if trigger_opts else plain(interval)
        return self.add_job(task, trigger, **options)

    def schedule_cron(
        self, task: Task, expression: str, timezone: str | None = None, **options: Any
    ) -> Job:
        """Run ``task`` at the times of a cron expression in ``timezone`` (IANA, default UTC).

        Across DST changes a fixed-time expression runs a skipped local time once right after
        the gap and a repeated one once; an expression whose minute or hour field starts with
        ``*`` follows the wall clock (cron(8)'s rule, see :mod:`taskloom_std.scheduling.cron`).
        ``ambiguous`` (``"once"``/``"both"``) and ``nonexistent`` (``"shift"``/``"skip"``)
        override it.
        """
        trigger_opts = {k: options.pop(k) for k in ("ambiguous", "nonexistent", "jitter")
                        if k in options}
        return self.add_job(task, "cron", expression=expression, timezone=timezone,
                            **trigger_opts, **options)

    def add_conditional_task(
        self,
        task: Task,
        condition: Callable[[], object],
        *,
        poll: float | timedelta = 1.0,
        repeat: bool = False,
        once: bool = True,
        **options: Any,
    ) -> Job:
        """Run ``task`` when ``condition()`` becomes true, checking every ``poll`` seconds.

        By default the job runs once and is removed (as documented); ``once=False`` keeps it,
        firing on every false -> true edge (every true poll with ``repeat``).
        """
        return self.add_job(task, "conditional", condition=condition, poll=poll,
                            repeat=repeat, once=once, **options)

    # -- removing, pausing, listing ----------------------------------------------------------
    def _find(self, key: str) -> Job | None:
        job = self._jobs.get(key)
        if job is not None:
            return job
        for job in self._jobs.values():
            if job.task.id == key or job.task.name == key:
                return job
        return None

    def remove_job(self, job_id: str) -> None:
        """Remove a job by job id, task id or task name (KeyError when unknown)."""
        with self._lock:
            job = self._find(job_id)
            if job is None:
                raise KeyError(f"no scheduled job {job_id!r}")
            del self._jobs[job.id]
            job._entry = 0
        self._wake.set()

    def remove_task(self, task_id: str) -> None:
        """Unschedule every job of a task (by task id, task name or job id)."""
        with self._lock:
            found = [j for j in self._jobs.values()
                     if task_id in (j.id, j.task.id, j.task.name)]
            if not found:
                raise KeyError(f"no scheduled task {task_id!r}")
            for job in found:
                del self._jobs[job.id]
                job._entry = 0
        self._wake.set()

    def pause_job(self, job_id: str) -> None:
        """Stop firing a job until :meth:`resume_job`; its next due time is kept."""
        with self._lock:
            job = self._get(job_id)
            if job.paused:
                return
            job.paused = True
            job._entry = 0
            self._save(job)

    def resume_job(self, job_id: str) -> None:
        """Fire a paused job again. Runs due while it was paused count as late runs."""
        with self._lock:
            job = self._get(job_id)
            if not job.paused:
                return
            job.paused = False
            if job._due is not None:
                self._push(job)
            if job._backlog and job._catchup is None:
                self._backlogged[job.id] = job
            self._save(job)
        self._wake.set()

    def _get(self, job_id: str) -> Job:
        job = self._find(job_id)
        if job is None:
            raise KeyError(f"no scheduled job {job_id!r}")
        return job

    def get_job(self, job_id: str) -> Job | None:
        with self._lock:
            return self._find(job_id)

    def get_jobs(self) -> list[Job]:
        """Every job, soonest first (paused and finished ones last)."""
        with self._lock:
            jobs = list(self._jobs.values())
        inf = float("inf")
        return sorted(jobs, key=lambda j: inf if j.paused or j._due is None else j._due)

    def get_scheduled_tasks(self) -> list[Task]:
        """The tasks of every job that will still fire, soonest first."""
        return [j.task for j in self.get_jobs() if j.next_fire_time is not None]

    def next_due(self) -> Job | None:
        """The job due first (O(1) after stale heap entries are dropped)."""
        try:
            top = self._heap[0]  # a snapshot; a live top entry needs no lock
        except IndexError:
            return None
        job = self._jobs.get(top[2])
        if job is not None and job._entry == top[1] and not job.paused:
            return job
        with self._lock:
            entry = self._peek()
            return None if entry is None else entry[1]

    # -- running ----------------------------------------------------------------------------
    def run_pending(self, wait: bool = True) -> list[str]:
        """Run every job due now (per the clock); return the task names run, in due order.

        With ``wait`` (default) it returns when those runs have finished, and a job at its
        ``max_instances`` waits for a run to end; without, such a run is skipped (and logged).
        """
        fired = self._fire_due(block=wait)
        if wait:
            self.wait_for(fired)
        return [t.name for t in fired]

    def check_conditions(self) -> list[str]:
        """Evaluate every conditional job now and run those whose condition holds.

        Returns the names of the tasks run (after they finished).
        """
        fired: list[Task] = []
        now = self.clock.time()
        with self._lock:
            jobs = [j for j in self._jobs.values()
                    if not j.paused and callable(getattr(j.trigger, "check", None))]
        for job in jobs:
            if job.trigger.check():
                task = self._start(job, now, now, block=True)
                if task is not None:
                    fired.append(task)
                if getattr(job.trigger, "once", False):
                    self._finish(job)
        self.wait_for(fired)
        return [t.name for t in fired]

    def wait_for(self, tasks: Iterable[Task], timeout: float | None = None) -> bool:
        """Wait until the given fired runs have finished; False on timeout."""
        ok = True
        for task in tasks:
            run = task.run
            if run is not None and not run.wait(timeout, tasks=[task]):
                ok = False
        return ok

    def _fire_due(self, block: bool) -> list[Task]:
        fired: list[Task] = []
        # Due times shown as datetimes are rounded to the microsecond; a clock set to one
        # must find the job due.
        now = self.clock.time()
        limit = now + _RESOLUTION
        # A state that claims many fires at once gets every plain fire of this pass in one
        # call (see _fire_batch); others are claimed one by one as they are found.
        batch: list[tuple[Job, float, float]] | None = (
            [] if callable(getattr(self.state, "claim_and_save", None)) else None)
        while True:
            with self._lock:
                entry = self._peek()
                if entry is None or entry[0] > limit:
                    break
                heappop(self._heap)
                job = entry[1]
                runs = self._collect_due(job, now)
                queued = bool(runs) and (len(runs) > 1 or job._backlog is not None)
                if queued:
                    # Several missed runs, or a run due while a catch-up is going: they run
                    # in order, one after another (see _catch_up).
                    job._backlog = [*(job._backlog or []), *runs]
                    if job._catchup is None:
                        self._backlogged[job.id] = job
            if queued:
                self._save(job)  # the missed runs are on record before the first starts
                continue
            if batch is not None and runs and not callable(getattr(job.trigger, "check", None)):
                batch.append((job, *runs[0]))
                continue
            for base, due in runs:
                task = self._fire_one(job, base, due, now, block)
                if task is not None:
                    fired.append(task)
        if batch:
            fired.extend(self._fire_batch(batch, now, block))
        with self._lock:
            pending = list(self._backlogged.values())
            self._backlogged.clear()
            for job in pending:
                if not block:
                    job._catchup = threading.Thread(
                        target=self._catch_up, args=(job, False),
                        name=f"taskloom-catch-up:{job.id}", daemon=True)
        for job in pending:
            if block:
                fired.extend(self._catch_up(job, True))
            else:
                assert job._catchup is not None
                job._catchup.start()
        return fired

    def _catch_up(self, job: Job, block: bool) -> list[Task]:
        """Run ``job``'s missed runs in order, each after the job's earlier runs finished.

        Each is claimed just before it starts and dropped from the saved ``missed`` list
        when it is done. On the background thread (``block`` False) a stop leaves the rest
        on record for the next start.
        """
        fired: list[Task] = []
        try:
            while True:
                with self._lock:
                    if (not job._backlog or job.paused or self._jobs.get(job.id) is not job
                            or (not block and self._stopping.is_set())):
                        return fired
                    base, due = job._backlog[0]
                if not self.state.claim(job.id, base, self.owner):
                    log.warning("job %r: missed run due %s was claimed before (by another "
                                "scheduler, or by one stopped before it finished it); not "
                                "run again", job.id, _ts_dt(due).isoformat())
                    task = None
                else:
                    # One after another: this run starts when the job's earlier runs are done.
                    self.wait_for(list(job._instances or []))
                    task = self._start(job, due, self.clock.time(), block=False)
                    if task is not None:
                        fired.append(task)
                        self.wait_for([task])
                with self._lock:
                    if job._backlog:
                        job._backlog.pop(0)
                self._save(job, last=due if task is not None else None)
        except Exception:
            log.exception("job %r: catch-up failed; its missed runs stay on record", job.id)
            return fired
        finally:
            with self._lock:
                job._catchup = None
                if not job._backlog:
                    job._backlog = None
                elif not job.paused and self._jobs.get(job.id) is job:
                    # Stopped (or failed) half-way: the next pass, or start(), resumes it.
                    self._backlogged[job.id] = job

    def _collect_due(self, job: Job, now: float) -> list[tuple[float, float]]:
        """Advance ``job`` past ``now``; return the runs to start as (trigger time, due time):
        coalesced, and without those later than the grace time."""
        assert job._due is not None and job._base is not None
        missed: list[tuple[float, float]] = [(job._base, job._due)]
        base: float | None = job._base
        polled = callable(getattr(job.trigger, "check", None))
        while True:
            base = self._next_base(job.trigger, base)  # type: ignore[arg-type]
            if base is None:
                job._base = job._due = None
                break
            due = self._jittered(job.trigger, base)
            if due > now + _RESOLUTION:
                job._base, job._due = base, due
                break
            if polled:  # a poll that is already late is simply the next poll
                continue
            missed.append((base, due))
            if len(missed) >= MAX_CATCH_UP:
                base = self._next_base(job.trigger, now)
                job._base = base
                job._due = None if base is None else self._jittered(job.trigger, base)
                break
        if job.coalesce and len(missed) > 1:
            log.warning("job %r: %d missed runs coalesced into one: the run due %s runs, "
                        "the %d due from %s to %s are dropped", job.id, len(missed),
                        _ts_dt(missed[-1][1]).isoformat(), len(missed) - 1,
                        _ts_dt(missed[0][1]).isoformat(), _ts_dt(missed[-2][1]).isoformat())
            missed = missed[-1:]
        runnable = []
        grace = job.misfire_grace_time
        for base, due in missed:
            if grace is not None and now - due > grace:
                log.warning("job %r: run due %s skipped, %.3fs late (grace %gs)",
                            job.id, _ts_dt(due).isoformat(), now - due, grace)
                self._record_skip(job, "misfire", due,
                                  f"{now - due:.3f}s late (misfire grace {grace:g}s)")
                self.plugins.hook.taskloom_schedule_misfire(
                    job=job, scheduled_for=_ts_dt(due), fired_at=_ts_dt(now))
                continue
            runnable.append((base, due))
        if not runnable and not polled:
            self._save(job)
        if job._due is not None:
            if not job.paused:
                self._push(job)
        elif self._jobs.get(job.id) is job:
            del self._jobs[job.id]  # finished: its trigger has no further time
        return runnable

    def _fire_one(self, job: Job, base: float, due: float, now: float,
                  block: bool) -> Task | None:
        check = getattr(job.trigger, "check", None)
        if callable(check):
            # A condition holds in every process that polls it; claiming the poll time makes
            # one of them fire. Nothing is saved: a condition has no next time to resume.
            if not check():
                return None
            if not self.state.claim(job.id, base, self.owner):
                log.info("job %r: poll at %s already fired by another scheduler",
                         job.id, _ts_dt(base).isoformat())
                return None
        elif not self.state.claim(job.id, base, self.owner):
            # Claimed by trigger time, not the jittered time, which differs per scheduler.
            log.info("job %r: run due %s already claimed by another scheduler",
                     job.id, _ts_dt(due).isoformat())
            return None
        else:
            self._save(job, last=due)
        task = self._start(job, due, now, block)
        if getattr(job.trigger, "once", False) and task is not None:
            self._finish(job)
        return task

    def _fire_batch(self, batch: list[tuple[Job, float, float]], now: float,
                    block: bool) -> list[Task]:
        """Claim the fires of one pass together and start those won, in due order.

        Each job's state is saved with its claim (``last_fire_time``, the next due time) in
        the state's one transaction, so a pass costs one commit, not two per fire.
        """
        with self._save_lock:
            fires = []
            for job, base, due in batch:
                state: dict[str, Any] = {"next_fire_time": job._base, "due": job._due,
                                         "paused": job.paused, "last_fire_time": due}
                if job._backlog:
                    state["missed"] = [list(run) for run in job._backlog]
                fires.append((job.id, base, state))
            won = self.state.claim_and_save(fires, self.owner)  # type: ignore[attr-defined]
        fired: list[Task] = []
        for job, base, due in sorted(batch, key=lambda item: item[2]):
            if (job.id, base) not in won:
                # Claimed by trigger time, not the jittered time, which differs per scheduler.
                log.debug("job %r: run due %s already claimed by another scheduler",
                          job.id, _ts_dt(due).isoformat())
                continue
            task = self._start(job, due, now, block)
            if task is None:
                continue
            fired.append(task)
            if getattr(job.trigger, "once", False):
                self._finish(job)
        return fired

    def _finish(self, job: Job) -> None:
        with self._lock:
            if self._jobs.get(job.id) is job:
                del self._jobs[job.id]
            job._entry = 0
            job._due = job._base = None

    def _save(self, job: Job, last: float | None = None) -> None:
        # One writer at a time: a catch-up thread and the scheduler thread both save a job,
        # and the later snapshot must be the one kept.
        with self._save_lock:
            state: dict[str, Any] = {"next_fire_time": job._base, "due": job._due,
                                     "paused": job.paused}
            backlog = job._backlog
            if backlog:
                state["missed"] = [list(run) for run in backlog]
            if last is not None:
                state["last_fire_time"] = last
            self.state.save(job.id, state)

    def _record_skip(self, job: Job, kind: str, due: float, detail: str) -> None:
        """Keep a skipped fire in the schedule state when it keeps them (the SQLite and
        PostgreSQL stores' do, for the dashboard's Schedules page); the hook reports it
        either way."""
        record = getattr(self.state, "record_skip", None)
        if record is None:
            return
        try:
            record(job.id, kind, due, detail)
        except Exception as exc:  # the state's own errors (a locked or damaged database)
            # A skip not written down must not stop the job's next fires; it was logged above.
            log.error("job %r: the skipped run due %s was not recorded: %s",
                      job.id, _ts_dt(due).isoformat(), exc)

    def _start(self, job: Job, due: float, now: float, block: bool) -> Task | None:
        running = job.running
        if running >= job.max_instances:
            if not block:
                self._skip(job, due, running, f"max_instances {job.max_instances}")
                return None
            self.wait_for((job._instances or [])[:1])
        task = job.task
        own = task.status in TERMINAL or task.run is None
        if not own:
            task = fresh_copy(task)  # overlapping a run of the job's task still going
        # The scheduler thread never waits for a place under max_active_runs (see the notes).
        claim = {"max_active_runs": job.max_active_runs, "on_limit": None if block else "refuse"}
        try:
            run = self.manager.submit_run([task], name=job.id, trigger="schedule",
                                          reuse_upstream=job.reuse_upstream, register=own,
                                          claim=claim)
        except RunClaimedError as exc:
            if exc.busy is None or exc.busy.kind != "limit":
                raise
            limit = job.max_active_runs or self.engine.claim_options.get("max_active_runs")
            self._skip(job, due, int(limit or len(exc.busy.holders)),
                       f"max_active_runs {limit}", exc)
            return None
        self.manager.close_when_done(run)
        if job._instances is None:
            job._instances = [task]
        else:
            job._instances.append(task)
        with self._lock:
            self._active = [t for t in self._active if t.status not in TERMINAL]
            self._active.append(task)
        fired_at = self.clock.now()
        log.info("fired job %r (task %r) due %s", job.id, task.name, _ts_dt(due).isoformat())
        self.plugins.hook.taskloom_schedule_fire(job=job, scheduled_for=_ts_dt(due),
                                                 fired_at=fired_at)
        return task

    def _skip(self, job: Job, due: float, running: int, limit: str,
              refused: Exception | None = None) -> None:
        job.skipped_by = limit
        log.warning("job %r: run due %s skipped, %d run(s) still going (%s)%s", job.id,
                    _ts_dt(due).isoformat(), running, limit, f": {refused}" if refused else "")
        self._record_skip(job, "overlap", due, f"{running} run(s) still going ({limit})")
        self.plugins.hook.taskloom_schedule_overlap(
            job=job, scheduled_for=_ts_dt(due), fired_at=self.clock.now(), running=running)

    # -- the heap ---------------------------------------------------------------------------
    def _push(self, job: Job) -> None:
        assert job._due is not None
        job._entry = seq = next(self._seq)
        heappush(self._heap, (job._due, seq, job.id))

    def _peek(self) -> tuple[float, Job] | None:
        """The first live entry's due time and job, dropping stale entries above it."""
        heap = self._heap
        jobs = self._jobs
        while heap:
            due, seq, job_id = heap[0]
            job = jobs.get(job_id)
            if job is not None and job._entry == seq and not job.paused:
                return due, job
            heappop(heap)
        return None

    def _first_base(self, trigger: Any) -> float | None:
        """A new job's first trigger time, for triggers without ``first_fire_ts`` (which
        :meth:`add_job` calls itself)."""
        now = self.clock.now()
        first = getattr(trigger, "first_fire_time", None)
        when = first(now) if callable(first) else trigger.next_fire_time(now)
        return None if when is None else _to_utc(when).timestamp()

    @staticmethod
    def _next_base(trigger: Any, base: float) -> float | None:
        fast = getattr(trigger, "next_fire_ts", None)
        if fast is not None:
            nxt: float | None = fast(base)
            return nxt
        when = trigger.next_fire_time(_ts_dt(base))
        return None if when is None else _to_utc(when).timestamp()

    def _jittered(self, trigger: Any, base: float) -> float:
        jitter = getattr(trigger, "jitter", 0.0)
        if not jitter:
            return base
        rng = getattr(trigger, "rng", None) or self.rng
        return base + rng.uniform(0.0, jitter)

    # -- the background thread ---------------------------------------------------------------
    def start(self) -> None:
        """Fire jobs on a background thread until :meth:`stop` (idempotent)."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stopping.clear()
            self._thread = threading.Thread(target=self._loop, name="taskloom-scheduler",
                                            daemon=True)
            self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self._fire_due(block=False)
            except Exception:
                log.exception("scheduler pass failed")
            with self._lock:
                entry = self._peek()
                timeout = None if entry is None else max(0.0, entry[0] - self.clock.time())
                self._wake.clear()
            # stop() sets the flag before the wake-up event: a wake-up cleared just now was
            # stop's, and the flag tells.
            if self._stopping.is_set():
                break
            if timeout is None or timeout > 0:
                self.clock.wait(self._wake, timeout)

    def stop(self, wait: bool = True, cancel_running: bool = False) -> None:
        """Stop the background thread (idempotent).

        With ``wait`` the fired runs still going are waited for; ``cancel_running`` cancels
        them instead.
        """
        with self._lock:
            thread = self._thread
            self._stopping.set()
            self._wake.set()
            self._thread = None
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        with self._lock:
            active = [t for t in self._active if t.status not in TERMINAL]
            catching_up = [j._catchup for j in self._jobs.values() if j._catchup is not None]
        if cancel_running:
            for task in active:
                task.cancel()
        if wait:
            self.wait_for(active)
        if wait or cancel_running:
            # Each stops before its next missed run; what is left stays on record.
            for worker in catching_up:
                if worker.ident is not None and worker is not threading.current_thread():
                    worker.join()

    def shutdown(self, cancel_running: bool = False) -> None:
        """Stop, then close the manager's run and the engine if this scheduler made them."""
        self.stop(wait=True, cancel_running=cancel_running)
        if self._owns_manager:
            self.manager.shutdown()
        if self._owns_engine:
            close = getattr(self.engine, "close", None)
            if callable(close):
                close()

    def __enter__(self) -> TaskScheduler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
