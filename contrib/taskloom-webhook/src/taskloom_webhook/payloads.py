"""Message bodies: a generic JSON object, or Slack's ``{"text": ...}``."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def task_failed(task: Any, run: Any) -> dict[str, Any]:
    return {
        "event": "task_failed",
        "run_id": getattr(run, "id", None),
        "run_name": getattr(run, "name", None),
        "task": task.name,
        "error": task.error,
        "error_type": task.error_type,
        "attempts": task.attempts,
        "timestamp": _now(),
    }


def run_finished(run: Any, summary: Any) -> dict[str, Any]:
    return {
        "event": "run_finished",
        "run_id": summary.id,
        "run_name": summary.name,
        "task": None,
        "error": None,
        "status": summary.status,
        "counts": dict(summary.counts),
        "errors": dict(summary.errors),
        "duration": round(summary.duration, 6),
        "timestamp": _now(),
    }


def circuit_open(key: str, old: str, new: str, task: Any) -> dict[str, Any]:
    run = task.run if task is not None else None
    return {
        "event": "circuit_open",
        "run_id": getattr(run, "id", None),
        "run_name": getattr(run, "name", None),
        "task": getattr(task, "name", None),
        # The breaker changes state before the task records its error: none to report yet.
        "error": None,
        "circuit": key,
        "old": old,
        "new": new,
        "timestamp": _now(),
    }


def slack(payload: dict[str, Any]) -> dict[str, Any]:
    """The same event as one line of Slack ``mrkdwn`` text (incoming-webhook format)."""
    event = payload["event"]
    run = payload.get("run_name") or payload.get("run_id")
    where = f" in run {run}" if run else ""
    if event == "task_failed":
        text = (f":x: taskloom task `{payload['task']}` failed{where}: "
                f"{payload.get('error_type') or 'error'}: {payload.get('error')}")
    elif event == "run_finished":
        icon = ":white_check_mark:" if payload["status"] == "completed" else ":warning:"
        counts = ", ".join(f"{n} {state}" for state, n in sorted(payload["counts"].items()))
        text = (f"{icon} taskloom run {run} {payload['status']} in "
                f"{payload['duration']:.2f}s ({counts or 'no tasks'})")
    else:
        text = (f":rotating_light: taskloom circuit breaker `{payload['circuit']}` opened"
                + (f" after task `{payload['task']}` failed" if payload.get("task") else ""))
    return {"text": text}
