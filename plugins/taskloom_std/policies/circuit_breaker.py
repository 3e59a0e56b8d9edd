"""Circuit breaker: stop calling what keeps failing, try again after a while.

Task option ``circuit_breaker``: ``True`` (defaults) or a mapping with
``failure_threshold`` (5 consecutive failures open it), ``recovery_timeout`` (60 s open before
trial calls are let through), ``half_open_trials`` (1: that many trial calls must succeed to
close it again; one failed trial opens it again), ``wait`` (false: while open the task fails
fast with :class:`CircuitOpenError`; true: it is retried when the recovery time is
up, on the engine's timer) and ``tag`` (share the breaker of every task that names the same
tag instead of one per task).

The ``[taskloom.circuit_breaker.tags.NAME]`` tables put a breaker on every task carrying tag
``NAME`` without any task option.

Breakers are keyed ``task:NAME`` or ``tag:NAME`` and live as long as the plugin set (one per
engine or ``TaskManager``), so their state carries across runs. Every change of state fires
``taskloom_circuit_change``, a hook this plugin declares. Time is the run's clock. A success
while closed resets the failure count; every failure of a guarded task counts, whether it is
retried or not: failures are counted in the ``taskloom_attempt_failed`` observer, so a policy
that decides first cannot hide them from the breaker.

:class:`CircuitOpenError` is this plugin's error; ``from taskloom import CircuitOpenError``
finds it through the plugin registry.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import pluggy

from taskloom import ConfigError, Retry, Stash, StashKey, Task, TaskloomError, hookimpl
from taskloom.kernel.hookspecs import observer
from taskloom_std.policies._common import integer, number

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"


class CircuitOpenError(TaskloomError):
    """A circuit breaker is open: the task fails fast without running.

    ``key``: the breaker (``task:NAME``, ``tag:NAME``). ``retry_after``: seconds until the
    breaker lets a trial call through.
    """

    def __init__(self, message: str, key: str | None = None, retry_after: float = 0.0) -> None:
        super().__init__(message)
        self.key = key
        self.retry_after = retry_after


class HookSpecs:
    """The hooks this plugin declares (added to a plugin set by ``taskloom_addhooks``)."""

    @staticmethod
    @observer
    def taskloom_circuit_change(key: str, old: str, new: str, task: Task | None) -> None:
        """A circuit breaker changed state.

        When: on every breaker transition (``closed``, ``open``, ``half-open``). Declared by
        the ``circuit_breaker`` plugin: an implementation in another plugin should be marked
        ``@hookimpl(optionalhook=True)`` so it loads when that plugin is disabled.

        ``key``: the breaker's key (``task:NAME`` or ``tag:NAME``). ``old``, ``new``: states.
        ``task``: the task whose attempt caused the change, or ``None``.

        Return: ignored (observer).
        """


@dataclasses.dataclass(frozen=True)
class BreakerSettings:
    failure_threshold: int = 5
    recovery_timeout: float = 60.0
    half_open_trials: int = 1
    wait: bool = False
    tag: str | None = None


_FIELDS = {f.name for f in dataclasses.fields(BreakerSettings)}


def parse_settings(value: Any, where: str) -> BreakerSettings:
    if value is True:
        return BreakerSettings()
    if isinstance(value, BreakerSettings):
        fields = dataclasses.asdict(value)
    elif isinstance(value, Mapping):
        fields = dict(value)
    else:
        raise ConfigError(f"{where} must be true or a mapping, got {value!r}")
    unknown = sorted(set(fields) - _FIELDS)
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown key; known: {', '.join(sorted(_FIELDS))}")
    s = BreakerSettings(**fields)
    integer(s.failure_threshold, f"{where}.failure_threshold", minimum=1)
    number(s.recovery_timeout, f"{where}.recovery_timeout")
    integer(s.half_open_trials, f"{where}.half_open_trials", minimum=1)
    if not isinstance(s.wait, bool):
        raise ConfigError(f"{where}.wait must be true or false, got {s.wait!r}")
    if s.tag is not None and (not isinstance(s.tag, str) or not s.tag):
        raise ConfigError(f"{where}.tag must be a non-empty string, got {s.tag!r}")
    return s


class Breaker:
    """One breaker's state. Methods return the state changes to announce (outside the lock)."""

    def __init__(self, key: str, settings: BreakerSettings) -> None:
        self.key = key
        self.settings = settings
        self.state = CLOSED
        self.failures = 0
        self.opened_at = 0.0
        self.trials = 0  # trial calls in flight while half-open
        self.successes = 0  # successful trials since half-open
        self._lock = threading.Lock()

    def admit(self, now: float, changes: list[tuple[str, str]]) -> bool:
        """Let a call through (True when it is a half-open trial) or raise CircuitOpenError."""
        s = self.settings
        with self._lock:
            if self.state == OPEN and now >= self.opened_at + s.recovery_timeout:
                self._move(HALF_OPEN, changes)
                self.trials = self.successes = 0
            if self.state == CLOSED:
                return False
            if self.state == HALF_OPEN and self.trials < s.half_open_trials:
                self.trials += 1
                return True
            if self.state == OPEN:
                wait = self.opened_at + s.recovery_timeout - now
                message = f"circuit {self.key} is open; next trial in {wait:g}s"
            else:
                wait = s.recovery_timeout
                message = f"circuit {self.key} is half-open and its trial calls are busy"
        raise CircuitOpenError(message, self.key, max(0.0, wait))

    def success(self, trial: bool, changes: list[tuple[str, str]]) -> None:
        with self._lock:
            if trial and self.state == HALF_OPEN:
                self.trials -= 1
                self.successes += 1
                if self.successes >= self.settings.half_open_trials:
                    self._move(CLOSED, changes)
                    self.failures = 0
            elif self.state == CLOSED:
                self.failures = 0

    def failure(self, trial: bool, now: float, changes: list[tuple[str, str]]) -> None:
        with self._lock:
            if self.state == HALF_OPEN:
                if trial:
                    self.trials -= 1
                self._open(now, changes)
            elif self.state == CLOSED:
                self.failures += 1
                if self.failures >= self.settings.failure_threshold:
                    self._open(now, changes)
            else:  # a call admitted before it opened failed late: the open period restarts
                self.opened_at = now

    def release_trial(self) -> None:
        with self._lock:
            if self.state == HALF_OPEN and self.trials > 0:
                self.trials -= 1

    def _open(self, now: float, changes: list[tuple[str, str]]) -> None:
        self.opened_at = now
        self.trials = self.successes = 0
        if self.state != OPEN:
            self._move(OPEN, changes)

    def _move(self, new: str, changes: list[tuple[str, str]]) -> None:
        changes.append((self.state, new))
        self.state = new


class Board:
    """The breakers of one plugin set."""

    def __init__(self) -> None:
        self.breakers: dict[str, Breaker] = {}
        self.tag_settings: dict[str, BreakerSettings] = {}
        self.config: Any = None
        self._lock = threading.Lock()

    def breaker(self, key: str, settings: BreakerSettings, where: str) -> Breaker:
        with self._lock:
            b = self.breakers.get(key)
            if b is None:
                b = self.breakers[key] = Breaker(key, settings)
            elif b.settings != settings:
                raise ConfigError(
                    f"{where}: breaker {key} already exists with other settings "
                    f"({b.settings}); tasks sharing a breaker must agree"
                )
            return b

    def configure(self, config: Any) -> None:
        if self.config is config:
            return
        self.tag_settings = parse_config(config)
        self.config = config


def parse_config(config: Any) -> dict[str, BreakerSettings]:
    section = config.get("circuit_breaker") or {}
    where = "[taskloom.circuit_breaker]"
    if not isinstance(section, Mapping):
        raise ConfigError(f"{where} must be a table")
    unknown = sorted(set(section) - {"tags"})
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown key; known: tags")
    tags = section.get("tags") or {}
    if not isinstance(tags, Mapping):
        raise ConfigError(f"{where}.tags must be a table of tag names")
    out = {}
    for tag, value in tags.items():
        s = parse_settings(value, f"{where}.tags.{tag}")
        out[tag] = dataclasses.replace(s, tag=tag)
    return out


#: ``PluginSet.stash``: the breakers of that plugin set.
BOARD: StashKey[Board] = StashKey()
#: ``Attempt.stash``: breaker key -> whether the attempt is one of its half-open trials.
TRIALS: StashKey[dict[str, bool]] = StashKey()
_boards_lock = threading.Lock()


def board(plugins: Any) -> Board:
    """The breakers of a plugin set (``engine.plugins``, ``manager.plugins``)."""
    stash: Stash = plugins.stash
    b = stash.get(BOARD, None)
    if b is None:
        with _boards_lock:
            b = stash.get(BOARD, None)
            if b is None:
                b = stash[BOARD] = Board()
    b.configure(plugins.config)
    return b


def breaker_state(plugins: Any, key: str) -> str | None:
    """State of breaker ``key`` (``task:NAME`` / ``tag:NAME``), None if it does not exist."""
    b = board(plugins).breakers.get(key)
    return None if b is None else b.state


def _breakers_for(task: Any, run: Any) -> list[Breaker]:
    bd = board(run.plugins)
    out = []
    where = f"task {task.name!r}: circuit_breaker"
    value = task.options.get("circuit_breaker") if task.options else None
    if value is not None and value is not False:
        s = parse_settings(value, where)
        key = f"tag:{s.tag}" if s.tag else f"task:{task.name}"
        out.append(bd.breaker(key, s, where))
    for tag in sorted(task.tags):
        by_tag = bd.tag_settings.get(tag)
        if by_tag is not None and all(b.key != f"tag:{tag}" for b in out):
            out.append(bd.breaker(f"tag:{tag}", by_tag, where))
    return out


def _announce(run: Any, breaker: Breaker, changes: list[tuple[str, str]], task: Any) -> None:
    for old, new in changes:
        run.hook.taskloom_circuit_change(key=breaker.key, old=old, new=new, task=task)


class BreakerWrapper:
    """Fails fast while a breaker is open; records successes (failures: in the error hook)."""

    __slots__ = ("breakers",)

    def __init__(self, breakers: list[Breaker]) -> None:
        self.breakers = breakers

    def _admit(self, attempt: Any) -> None:
        run, task = attempt.run, attempt.task
        now = run.clock.monotonic()
        trials: dict[str, bool] = {}
        attempt.stash[TRIALS] = trials
        for b in self.breakers:
            changes: list[tuple[str, str]] = []
            try:
                trials[b.key] = b.admit(now, changes)
            except CircuitOpenError:
                self._release(attempt)
                raise
            finally:
                _announce(run, b, changes, task)

    def _succeeded(self, attempt: Any) -> None:
        if attempt.token.cancelled:  # timed out or cancelled: not a success
            self._release(attempt)
            return
        trials = attempt.stash.pop(TRIALS, None) or {}
        for b in self.breakers:
            changes: list[tuple[str, str]] = []
            b.success(trials.get(b.key, False), changes)
            _announce(attempt.run, b, changes, attempt.task)

    def _release(self, attempt: Any) -> None:
        trials = attempt.stash.pop(TRIALS, None) or {}
        for b in self.breakers:
            if trials.get(b.key):
                b.release_trial()

    def __call__(self, call: Callable[[], Any], attempt: Any) -> Any:
        self._admit(attempt)
        try:
            value = call()
        except BaseException:
            _release_later(attempt)
            raise
        self._succeeded(attempt)
        return value

    async def acall(self, acall: Callable[[], Awaitable[Any]], attempt: Any) -> Any:
        self._admit(attempt)
        try:
            value = await acall()
        except BaseException:
            _release_later(attempt)
            raise
        self._succeeded(attempt)
        return value


def _release_later(attempt: Any) -> None:
    """A raising attempt keeps its trial slots for the error hook, which records the failure.

    If the error hook is not consulted (the run is being cancelled), the slots stay marked on
    the attempt and the next admission of the breaker reclaims nothing; so release them now
    when the attempt is no longer the task's current one.
    """
    if not attempt.current:
        trials = attempt.stash.pop(TRIALS, None) or {}
        for b in _wrapper_breakers(attempt):
            if trials.get(b.key):
                b.release_trial()


def _wrapper_breakers(attempt: Any) -> list[Breaker]:
    for w in attempt.plan.wrappers:
        if isinstance(w, BreakerWrapper):
            return w.breakers
    return []


@hookimpl
def taskloom_register(registry: Any) -> None:
    from taskloom.kernel.schema import Key

    keys = {"tags": Key(("table",), "a breaker per tag: {api = {failure_threshold = 3, "
                        "recovery_timeout = 30, half_open_trials = 1, wait = false}}")}
    registry.add_config_section("circuit_breaker", keys)
    registry.add_error(CircuitOpenError)
    # Checked in taskloom_task_prepare, against the breakers other tasks already share.
    registry.add_task_option("circuit_breaker", (bool, dict),
                             "{failure_threshold, recovery_timeout, half_open_trials, wait, tag}")


@hookimpl
def taskloom_configure(config: Any) -> None:
    parse_config(config)


@hookimpl
def taskloom_task_prepare(task: Any, run: Any) -> None:
    if "circuit_breaker" in task.options:
        _breakers_for(task, run)


@hookimpl
def taskloom_task_wrappers(task: Any, run: Any) -> Any:
    if not (task.options and "circuit_breaker" in task.options) and not (
        task.tags and board(run.plugins).tag_settings
    ):
        return None
    breakers = _breakers_for(task, run)
    return BreakerWrapper(breakers) if breakers else None


@hookimpl
def taskloom_addhooks(pluginmanager: pluggy.PluginManager) -> None:
    pluginmanager.add_hookspecs(HookSpecs)


@hookimpl(tryfirst=True)
def taskloom_task_error(error: BaseException, attempt: Any) -> Any:
    """While open, a breaker configured to ``wait`` retries the task when it may try again."""
    if not isinstance(error, CircuitOpenError) or error.key is None:
        return None
    breakers = _wrapper_breakers(attempt)
    settings = next((b.settings for b in breakers if b.key == error.key), None)
    if settings is not None and settings.wait:
        return Retry(float(error.retry_after))
    return None


@hookimpl
def taskloom_attempt_failed(task: Any, error: BaseException, attempt: Any, run: Any) -> None:
    if isinstance(error, CircuitOpenError):
        return
    breakers = _wrapper_breakers(attempt)
    if not breakers:
        return
    trials = attempt.stash.pop(TRIALS, None) or {}
    now = run.clock.monotonic()
    for b in breakers:
        changes: list[tuple[str, str]] = []
        b.failure(trials.get(b.key, False), now, changes)
        _announce(run, b, changes, task)
