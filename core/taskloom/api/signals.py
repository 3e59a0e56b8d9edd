"""Waiting steps: a task that waits for a named signal (an approval, an outside event) or
for a time (a durable timer), without holding a worker.

A waiting step runs on the ``wait`` executor (standard plugins): its attempt holds no worker
thread and does not count against ``max_workers``; it completes when the signal arrives (its
payload is the result), when the time comes (the result is the time waited until, UTC), or
fails with :class:`WaitTimedOut` after its timeout. The store records the wait (the run reads
``waiting``), its due time and every signal sent, so a process may exit or be killed while a
step waits: ``taskloom resume RUN`` continues the run, the same wait goes on until the same
due time, and a signal sent meanwhile is taken at once. Nothing that completed runs again.

Signals are sent with ``taskloom signal RUN NAME --data JSON``, ``engine.signal(run_id,
name, payload)`` or the store's ``send_signal`` (what a dashboard calls). The first signal of
a name is kept; a later one of the same name is refused. A payload ``schema`` maps field
names to types (``str``, ``int``, ``float``, ``bool``, ``list``, ``table``, ``any``); a
field name ending in ``?`` is optional. A payload that does not match is refused when sent
to a step already waiting, and fails the step when it was sent before the step began.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from taskloom.api.params import substitute
from taskloom.kernel.errors import ConfigError, TaskloomError
from taskloom.kernel.task import Task

#: The executor waiting steps run on, and the task option that says what they wait for.
EXECUTOR = "wait"
OPTION = "wait"
SCHEMA_TYPES = ("str", "int", "float", "bool", "list", "table", "any")
_CHECKS: dict[str, Any] = {
    "str": str, "int": int, "float": (int, float), "bool": bool, "list": list,
    "table": dict,
}


class WaitTimedOut(TaskloomError):
    """A waiting step's timeout passed before its signal arrived."""


class PayloadInvalid(TaskloomError):
    """A signal's payload does not match the waiting step's schema."""


@dataclass(frozen=True)
class Wait:
    """What a step waits for: a ``signal`` (with an optional ``timeout`` in seconds and a
    payload ``schema``), ``sleep`` seconds from when it first began, or ``until`` a time (a
    timezone-aware datetime, an ISO string, or ``"{params.NAME}"``)."""

    signal: str | None = None
    timeout: float | None = None
    schema: Mapping[str, str] | None = None
    sleep: float | None = None
    until: Any = None

    @property
    def kind(self) -> str:
        return "signal" if self.signal is not None else "timer"

    def due_at(self, started: float, params: Mapping[str, Any]) -> float | None:
        """When the wait ends by itself (POSIX seconds): the sleep's or the timeout's end,
        the ``until`` time; None for a signal without a timeout."""
        if self.sleep is not None:
            return started + self.sleep
        if self.until is not None:
            return _instant(substitute(self.until, params))
        if self.timeout is not None:
            return started + self.timeout
        return None


def _instant(value: Any) -> float:
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day)
    if not isinstance(value, dt.datetime):
        raise ConfigError([f"wait_until: expected a date and time, got {value!r}"])
    if value.tzinfo is None:
        value = value.astimezone()  # a naive time is local time
    return float(value.timestamp())


def parse_wait(value: Any, where: str = "wait") -> Wait:
    """The ``wait`` task option as a :class:`Wait`; :class:`ConfigError` naming the key."""
    if isinstance(value, Wait):
        return value
    if not isinstance(value, Mapping):
        raise ConfigError([f"{where}: expected a table, got {value!r}"])
    known = ("signal", "timeout", "schema", "sleep", "until")
    problems = [f"{where}.{k}: unknown key; known: {', '.join(known)}"
                for k in value if k not in known]
    signal, timeout = value.get("signal"), value.get("timeout")
    schema, sleep, until = value.get("schema"), value.get("sleep"), value.get("until")
    given = [k for k in ("signal", "sleep", "until") if value.get(k) is not None]
    if len(given) != 1:
        problems.append(f"{where}: give one of signal, sleep or until (got "
                        f"{', '.join(given) or 'none'})")
    if signal is not None and (not isinstance(signal, str) or not signal):
        problems.append(f"{where}.signal: expected a signal name, got {signal!r}")
    for key, number in (("timeout", timeout), ("sleep", sleep)):
        if number is not None and (isinstance(number, bool) or not isinstance(
                number, (int, float)) or number < 0):
            problems.append(f"{where}.{key}: expected seconds >= 0, got {number!r}")
    if timeout is not None and signal is None:
        problems.append(f"{where}.timeout: only a signal wait has a timeout")
    if schema is not None:
        problems += schema_problems(schema, f"{where}.schema")
    if until is not None and not isinstance(until, (str, dt.date)):
        problems.append(f"{where}.until: expected a date and time, got {until!r}")
    if isinstance(until, str) and not until.startswith("{params."):
        try:
            dt.datetime.fromisoformat(until)
        except ValueError:
            problems.append(f"{where}.until: expected an ISO date and time or "
                            f"\"{{params.NAME}}\", got {until!r}")
    if problems:
        raise ConfigError(problems)
    return Wait(signal, None if timeout is None else float(timeout), schema,
                None if sleep is None else float(sleep), until)


def schema_problems(schema: Any, where: str = "schema") -> list[str]:
    if not isinstance(schema, Mapping):
        return [f"{where}: expected a table of field = type, got {schema!r}"]
    return [f"{where}.{field}: type must be one of {', '.join(SCHEMA_TYPES)}, got {kind!r}"
            for field, kind in schema.items() if kind not in SCHEMA_TYPES]


def check_payload(schema: Mapping[str, str] | None, payload: Any) -> None:
    """:class:`PayloadInvalid` naming each field of ``payload`` that ``schema`` refuses."""
    if not schema:
        return
    if not isinstance(payload, Mapping):
        raise PayloadInvalid(f"the payload must be an object with {', '.join(schema)}, "
                             f"got {payload!r:.80}")
    problems = []
    for field, kind in schema.items():
        name = field.rstrip("?")
        if name not in payload:
            if not field.endswith("?"):
                problems.append(f"{name!r} is missing")
            continue
        check = _CHECKS.get(kind)
        value = payload[name]
        if check is not None and (not isinstance(value, check) or (
                kind in ("int", "float") and isinstance(value, bool))):
            problems.append(f"{name!r} must be {kind}, got {value!r:.40}")
    if problems:
        raise PayloadInvalid("payload refused: " + "; ".join(problems))


def wait_for(name: str, signal: str, *, timeout: float | None = None,
             schema: Mapping[str, str] | None = None, **task: Any) -> Task:
    """A step that waits for ``signal`` (its payload becomes the result)."""
    wait = parse_wait({"signal": signal, "timeout": timeout, "schema": schema})
    return Task(name, executor=EXECUTOR, options={OPTION: wait}, **task)


def sleep(name: str, seconds: float, **task: Any) -> Task:
    """A step that waits ``seconds`` from when it first began, across restarts."""
    return Task(name, executor=EXECUTOR, options={OPTION: parse_wait({"sleep": seconds})},
                **task)


def wait_until(name: str, when: Any, **task: Any) -> Task:
    """A step that waits until ``when`` (a datetime, ISO text or ``"{params.NAME}"``)."""
    return Task(name, executor=EXECUTOR, options={OPTION: parse_wait({"until": when})},
                **task)
