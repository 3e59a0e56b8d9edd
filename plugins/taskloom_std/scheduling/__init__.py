"""Scheduling: the ``standard`` scheduler and the triggers ``date``, ``interval``, ``cron``,
``conditional``.

A plugin adds a trigger type by registering a factory of kind ``trigger``; the scheduler
needs only ``next_fire_time(after) -> datetime | None`` (aware UTC) from what it builds
(see :class:`taskloom_std.scheduling.scheduler.Trigger`).
"""

from __future__ import annotations

from typing import Any

from taskloom import hookimpl
from taskloom_std.scheduling.conditional import ConditionalTrigger
from taskloom_std.scheduling.cron import CronTrigger
from taskloom_std.scheduling.hookspecs import HookSpecs
from taskloom_std.scheduling.scheduler import TaskScheduler
from taskloom_std.scheduling.simple import DateTrigger, IntervalTrigger

__all__ = ["ConditionalTrigger", "CronTrigger", "DateTrigger", "IntervalTrigger", "TaskScheduler"]


@hookimpl
def taskloom_addhooks(pluginmanager: Any) -> None:
    pluginmanager.add_hookspecs(HookSpecs)


@hookimpl
def taskloom_register(registry: Any) -> None:
    registry.add("scheduler", "standard", TaskScheduler)
    registry.add("trigger", "date", DateTrigger)
    registry.add("trigger", "interval", IntervalTrigger)
    registry.add("trigger", "cron", CronTrigger)
    registry.add("trigger", "conditional", ConditionalTrigger)
