"""The standard triggers: ``date``, ``interval``, ``cron``, ``conditional``.

A plugin adds a trigger type by registering a factory of kind ``trigger``; the scheduler
needs only ``next_fire_time(after) -> datetime | None`` (aware UTC) from what it builds
(see :class:`taskloom.scheduler.Trigger`).
"""

from __future__ import annotations

from typing import Any

from taskloom import hookimpl
from taskloom.plugins.triggers.conditional import ConditionalTrigger
from taskloom.plugins.triggers.cron import CronTrigger
from taskloom.plugins.triggers.simple import DateTrigger, IntervalTrigger

__all__ = ["ConditionalTrigger", "CronTrigger", "DateTrigger", "IntervalTrigger"]


@hookimpl
def taskloom_register(registry: Any) -> None:
    registry.add("trigger", "date", DateTrigger)
    registry.add("trigger", "interval", IntervalTrigger)
    registry.add("trigger", "cron", CronTrigger)
    registry.add("trigger", "conditional", ConditionalTrigger)
