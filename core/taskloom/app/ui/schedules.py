"""The Schedules page's data: each ``[[schedules]]`` job, its trigger in words, and its next
fire times in the job's zone, computed by the registered trigger components themselves (so
the page says what ``taskloom schedule`` would do, DST rules included)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from taskloom.app.config import Config, Schedule
from taskloom.kernel.errors import TaskloomError

FIRES = 10
#: How many of a job's newest skipped fires (misfires, overlaps) the page shows.
SKIPS = 10


def _zone(entry: Schedule) -> tzinfo:
    name = entry.timezone or entry.options.get("timezone")
    if isinstance(name, str):
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            return timezone.utc
    return timezone.utc


def _local(ts: float, zone: tzinfo) -> str:
    return datetime.fromtimestamp(float(ts), timezone.utc).astimezone(zone).isoformat()


def in_words(entry: Schedule) -> str:
    """The trigger as a person reads it."""
    zone = entry.timezone or entry.options.get("timezone") or "UTC"
    if entry.trigger == "cron":
        return f"cron '{entry.options.get('expression', entry.cron)}' in {zone}"
    if entry.trigger == "interval":
        seconds = float(entry.options.get("seconds", entry.interval or 0))
        return f"every {timedelta(seconds=seconds)} (h:mm:ss)"
    if entry.trigger == "date":
        return f"once at {entry.options.get('run_date', entry.at)} ({zone})"
    options = ", ".join(f"{k}={v!r}" for k, v in sorted(entry.options.items()))
    return f"{entry.trigger} trigger ({options})" if options else f"{entry.trigger} trigger"


def next_fires(trigger: Any, now: datetime, count: int, zone: tzinfo) -> list[dict[str, Any]]:
    """The next ``count`` fire times after ``now``, in ``zone``; ``dst`` marks a fire whose
    UTC offset differs from the one before it (a daylight-saving change in between)."""
    first = getattr(trigger, "first_fire_time", None)
    when = first(now) if first is not None else trigger.next_fire_time(now)
    out: list[dict[str, Any]] = []
    previous = now.astimezone(zone).utcoffset()
    while when is not None and len(out) < count:
        local = when.astimezone(zone)
        offset = local.utcoffset()
        out.append({"at": local.isoformat(), "utc": when.astimezone(timezone.utc).isoformat(),
                    "dst": offset != previous, "offset": local.strftime("%z")})
        previous = offset
        when = trigger.next_fire_time(when)
    return out


def schedules(config: Config, plugins: Any, state: Any | None,
              now: datetime | None = None) -> list[dict[str, Any]]:
    """Every job of ``config`` with its next fire times; ``state``: the store's schedule
    state (last fire times), or None."""
    now = now or datetime.now(timezone.utc)
    out = []
    for entry in config.schedules:
        zone = _zone(entry)
        job: dict[str, Any] = {
            "id": entry.id, "task": entry.task, "trigger": entry.trigger,
            "words": in_words(entry), "zone": str(getattr(zone, "key", zone)),
            "coalesce": entry.coalesce, "max_instances": entry.max_instances,
            "misfire_grace_time": entry.misfire_grace_time, "jitter": entry.jitter,
            "next": [], "problem": None, "last_fire_time": None, "skips": [],
        }
        if entry.trigger == "conditional":
            job["problem"] = "fires when its condition holds: no fixed times"
        else:
            try:
                trigger = plugins.registry.create("trigger", entry.trigger, **entry.options)
                job["next"] = next_fires(trigger, now, FIRES, zone)
            except (TaskloomError, TypeError, ValueError) as exc:
                job["problem"] = str(exc)
        saved = state.load(entry.id) if state is not None else None
        if saved and saved.get("last_fire_time") is not None:
            last = datetime.fromtimestamp(float(saved["last_fire_time"]), timezone.utc)
            job["last_fire_time"] = last.astimezone(zone).isoformat()
        # A schedule state that keeps no skipped fires (the memory store's) shows none.
        skips = getattr(state, "skips", None)
        job["skips_kept"] = callable(skips)
        if callable(skips):
            job["skips"] = [{
                "kind": s["kind"], "detail": s["detail"],
                "scheduled_for": _local(s["scheduled_for"], zone),
                "recorded": _local(s["recorded"], zone),
            } for s in skips(entry.id, SKIPS)]
        out.append(job)
    return out
