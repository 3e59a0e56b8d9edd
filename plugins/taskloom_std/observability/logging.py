"""Structured log records of the lifecycle (the ``logging`` plugin).

One record per event through the ``taskloom.events`` logger (a child of ``taskloom``), at
INFO by default (``[taskloom.logging] level = "DEBUG"`` to change it). The event and its
fields are in the record's ``extra``: ``record.event`` is one of ``run.start``,
``run.finish``, ``task.<state>`` (every state change), ``attempt.finish``,
``attempt.overrun``, ``schedule.fire``, ``schedule.misfire``, ``circuit.change``; then
``run_id``, ``task``, ``task_id``, ``state``, ``old_state``, ``attempt``, ``duration``,
``error``, ``error_type`` where they apply.

Quiet by default: the logger is checked once when a run starts, and per-task observers are
only registered while a run is logged, so a run whose logger is not enabled pays nothing per
task. A run's tasks that were queued before it started are counted in ``run.start``
(``counts``) rather than logged one by one.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from taskloom import ConfigError, StashKey, hookimpl
from taskloom_std.observability import _observers

log = logging.getLogger("taskloom.events")

#: ``Run.stash``: the level this run logs at, when it is logged.
RUN_KEY: StashKey[int] = StashKey()
OBSERVER = "logging-tasks"


def _level(config: Mapping[str, Any]) -> int | None:
    section = config.get("logging") or {}
    if not isinstance(section, Mapping):
        raise ConfigError(f"[taskloom.logging] must be a table, got {section!r}")
    if section.get("enabled", True) is False:
        return None
    name = section.get("level", "INFO")
    level = logging.getLevelName(str(name).upper()) if not isinstance(name, int) else name
    if not isinstance(level, int):
        raise ConfigError(f"logging.level: unknown level {name!r}")
    return level


def _task_fields(task: Any, run: Any) -> dict[str, Any]:
    return {
        "run_id": getattr(run, "id", None),
        "task": task.name,
        "task_id": task.id,
    }


class _TaskEvents:
    """Per-task events, registered only while a logged run is going."""

    @hookimpl
    def taskloom_task_transition(self, task: Any, old: Any, new: Any, run: Any) -> None:
        level = run.stash.get(RUN_KEY, None) if run is not None else None
        if level is None:
            return
        extra = _task_fields(task, run)
        extra.update(event=f"task.{new.value}", state=new.value, old_state=old.value,
                     attempt=task.attempts)
        if task.error is not None and new.value in ("failed", "retrying", "cancelled"):
            extra.update(error=task.error, error_type=task.error_type)
            log.log(level, "task %s: %s -> %s (%s)", task.name, old.value, new.value,
                    task.error, extra=extra)
            return
        log.log(level, "task %s: %s -> %s", task.name, old.value, new.value, extra=extra)

    @hookimpl
    def taskloom_attempt_finish(
        self, task: Any, attempt: Any, error: BaseException | None, run: Any
    ) -> None:
        level = run.stash.get(RUN_KEY, None)
        if level is None:
            return
        extra = _task_fields(task, run)
        extra.update(event="attempt.finish", attempt=attempt.number, duration=attempt.duration)
        if error is None:
            log.log(level, "task %s: attempt %d finished in %.6fs", task.name, attempt.number,
                    attempt.duration or 0.0, extra=extra)
            return
        extra.update(error=str(error) or type(error).__name__, error_type=type(error).__name__)
        log.log(level, "task %s: attempt %d failed after %.6fs: %s: %s", task.name,
                attempt.number, attempt.duration or 0.0, type(error).__name__, error,
                extra=extra)

    @hookimpl
    def taskloom_task_overrun(self, task: Any, attempt: Any, run: Any) -> None:
        level = run.stash.get(RUN_KEY, None)
        if level is None:
            return
        extra = _task_fields(task, run)
        extra.update(event="attempt.overrun", attempt=attempt.number)
        log.log(level, "task %s: attempt %d returned after it was abandoned", task.name,
                attempt.number, extra=extra)


_TASK_EVENTS = _TaskEvents()


@hookimpl
def taskloom_register(registry: Any) -> None:
    from taskloom.kernel.schema import Key

    registry.add_config_section("logging", {
        "enabled": Key(("boolean",), "false: never log lifecycle events"),
        "level": Key(("string",), 'level of the event records ("INFO", "DEBUG", ...)'),
    })


@hookimpl
def taskloom_configure(config: Any) -> None:
    _level(config)  # a bad level is a configuration error, before any run


@hookimpl
def taskloom_run_start(run: Any) -> None:
    level = _level(run.plugins.config)
    if level is None or not log.isEnabledFor(level):
        return
    run.stash[RUN_KEY] = level
    _observers.acquire(run.plugins, OBSERVER, _TASK_EVENTS)
    counts: dict[str, int] = {}
    for task in list(run.tasks.values()):
        counts[task.status.value] = counts.get(task.status.value, 0) + 1
    log.log(level, "run %s started with %d tasks", run.name or run.id, len(run.tasks),
            extra={"event": "run.start", "run_id": run.id, "run_name": run.name,
                   "tasks": len(run.tasks), "counts": counts})


@hookimpl
def taskloom_run_finish(run: Any, summary: Any) -> None:
    level = run.stash.pop(RUN_KEY, None)
    if level is None:
        return
    _observers.release(run.plugins, OBSERVER)
    log.log(level, "run %s %s in %.3fs: %s", run.name or run.id, summary.status,
            summary.duration, summary.counts,
            extra={"event": "run.finish", "run_id": run.id, "run_name": run.name,
                   "status": summary.status, "counts": dict(summary.counts),
                   "duration": summary.duration, "errors": dict(summary.errors)})


def _enabled() -> bool:
    return log.isEnabledFor(logging.INFO)


@hookimpl(optionalhook=True)
def taskloom_schedule_fire(job: Any, scheduled_for: Any, fired_at: Any) -> None:
    if not _enabled():
        return
    job_id = str(getattr(job, "id", job))
    log.info("job %s fired (due %s, started %s)", job_id, scheduled_for, fired_at,
             extra={"event": "schedule.fire", "job_id": job_id,
                    "scheduled_for": scheduled_for, "fired_at": fired_at})


@hookimpl(optionalhook=True)
def taskloom_schedule_misfire(job: Any, scheduled_for: Any, fired_at: Any) -> None:
    if not _enabled():
        return
    job_id = str(getattr(job, "id", job))
    log.info("job %s misfired: due %s, noticed %s", job_id, scheduled_for, fired_at,
             extra={"event": "schedule.misfire", "job_id": job_id,
                    "scheduled_for": scheduled_for, "fired_at": fired_at})


@hookimpl(optionalhook=True)
def taskloom_circuit_change(key: str, old: str, new: str, task: Any) -> None:
    if not _enabled():
        return
    extra: dict[str, Any] = {"event": "circuit.change", "key": key, "old_state": old,
                             "state": new}
    if task is not None:
        extra.update(task=task.name, task_id=task.id)
    log.info("circuit %s: %s -> %s", key, old, new, extra=extra)
