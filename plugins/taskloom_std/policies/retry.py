"""Retry policy: run a failed task again after a backoff delay, on the engine's timer.

Task option ``retry``: a :class:`RetryPolicy`, a mapping of its fields, an int (just
``max_retries``) or ``False`` (never retry, even with a configured default). The
``[taskloom.retry]`` table gives a default for every task without its own option.

Delays, for the n-th retry (n from 1): ``fixed`` = ``base_delay``; ``linear`` =
``base_delay * n``; ``exponential`` = ``base_delay * backoff_factor ** (n - 1)``; all capped at
``max_delay``. ``jitter`` (``True`` = 0.25, or a fraction in (0, 1]) multiplies the delay by a
random factor in ``[1 - jitter, 1 + jitter]`` (still capped); pass ``rng`` (a seeded
:class:`random.Random`) or the ``seed`` key for reproducible jitter.

``retry_on`` (default: any :class:`Exception`) and ``give_up_on`` take exception types or
dotted names (``"requests:ConnectionError"``, ``"builtins.ValueError"``). An open circuit
(:class:`~taskloom_std.policies.circuit_breaker.CircuitOpenError`) and a cancellation are
never retried.

``max_retries`` counts the retries this policy grants in one go of a task: a task run again
later (a new run, ``retry_task``) starts with the full budget.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping
from typing import Any

from taskloom import ConfigError, Retry, Stash, StashKey, TaskCancelled, hookimpl
from taskloom_std.policies._common import integer, number, resolve_exception_types
from taskloom_std.policies.circuit_breaker import CircuitOpenError

BACKOFFS = ("fixed", "linear", "exponential")
DEFAULT_JITTER = 0.25
_NEVER_RETRY = (CircuitOpenError, TaskCancelled)


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """How often and how soon to retry. Exception fields accept types or dotted names."""

    max_retries: int = 3
    backoff: str = "exponential"
    backoff_factor: float = 2.0
    base_delay: float = 1.0
    max_delay: float | None = 60.0
    jitter: bool | float = False
    retry_on: Any = (Exception,)
    give_up_on: Any = ()
    rng: random.Random | None = dataclasses.field(default=None, compare=False, repr=False)

    def delay(self, n: int) -> float:
        """Seconds to wait before the ``n``-th retry (1-based), jitter and cap applied."""
        if self.backoff == "fixed":
            d = self.base_delay
        elif self.backoff == "linear":
            d = self.base_delay * n
        else:
            try:
                d = self.base_delay * self.backoff_factor ** (n - 1)
            except OverflowError:
                d = float("inf")
        fraction = DEFAULT_JITTER if self.jitter is True else float(self.jitter or 0.0)
        if fraction and d:
            rng = self.rng or random
            d *= 1.0 + rng.uniform(-fraction, fraction)
        if self.max_delay is not None:
            d = min(d, self.max_delay)
        return max(0.0, d)

    def should_retry(self, error: BaseException) -> bool:
        if isinstance(error, _NEVER_RETRY):
            return False
        if self.give_up_on and isinstance(error, self.give_up_on):
            return False
        return isinstance(error, self.retry_on)


_FIELDS = {f.name for f in dataclasses.fields(RetryPolicy)} | {"seed"}


def parse_policy(value: Any, where: str) -> RetryPolicy | None:
    """A validated :class:`RetryPolicy` from an option value; None means never retry.

    ``where`` names the place for errors (``task 'load': retry``).
    """
    if value is None or value is False:
        return None
    if isinstance(value, bool):
        return _validated(RetryPolicy(), where)
    if isinstance(value, int):
        return _validated(RetryPolicy(max_retries=value), where)
    if isinstance(value, RetryPolicy):
        return _validated(value, where)
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"{where} must be a mapping, a RetryPolicy, an integer or false, got {value!r}"
        )
    unknown = sorted(set(value) - _FIELDS)
    if unknown:
        raise ConfigError(
            f"{where}.{unknown[0]}: unknown key; known: {', '.join(sorted(_FIELDS))}"
        )
    fields = dict(value)
    seed = fields.pop("seed", None)
    if seed is not None:
        fields["rng"] = random.Random(seed)
    return _validated(RetryPolicy(**fields), where)


def _validated(p: RetryPolicy, where: str) -> RetryPolicy:
    integer(p.max_retries, f"{where}.max_retries")
    if p.backoff not in BACKOFFS:
        raise ConfigError(f"{where}.backoff must be one of {', '.join(BACKOFFS)}, "
                          f"got {p.backoff!r}")
    number(p.backoff_factor, f"{where}.backoff_factor", minimum=1.0)
    number(p.base_delay, f"{where}.base_delay")
    number(p.max_delay, f"{where}.max_delay", allow_none=True)
    jitter = p.jitter
    if not isinstance(jitter, bool):
        number(jitter, f"{where}.jitter")
        if jitter > 1:
            raise ConfigError(f"{where}.jitter must be a bool or a fraction in [0, 1], "
                              f"got {jitter!r}")
    retry_on = resolve_exception_types(p.retry_on, f"{where}.retry_on")
    give_up_on = resolve_exception_types(p.give_up_on, f"{where}.give_up_on")
    return dataclasses.replace(p, retry_on=retry_on, give_up_on=give_up_on)


#: ``Task.stash``: the parsed policy, reused while the task's option is the same object.
PARSED: StashKey[tuple[Any, RetryPolicy | None]] = StashKey()
#: ``PluginSet.stash``: the configured default, reused while the configuration is the same.
DEFAULT: StashKey[tuple[Any, RetryPolicy | None]] = StashKey()
#: ``Task.stash``: retries granted so far in the task's current go (marked by run and start).
GRANTED: StashKey[list[Any]] = StashKey()


def policy_for(task: Any, run: Any) -> RetryPolicy | None:
    raw = task.options.get("retry") if task.options else None
    if raw is None:
        return _default_for(run.plugins)
    stash: Stash = task.stash
    cached = stash.get(PARSED, None)
    if cached is not None and cached[0] is raw:
        return cached[1]
    key = _content_key(raw)
    policy = _by_content.get(key) if key is not None else None
    if policy is None:
        policy = parse_policy(raw, f"task {task.name!r}: retry")
        if key is not None and policy is not None and len(_by_content) < 1024:
            _by_content[key] = policy
    stash[PARSED] = (raw, policy)
    return policy


# Many tasks carry equal option mappings (one per task, same content): parse each once.
_by_content: dict[Any, RetryPolicy] = {}


def _content_key(raw: Any) -> Any:
    if not isinstance(raw, Mapping) or "seed" in raw or "rng" in raw:
        return None  # a seeded generator must not be shared between tasks
    try:
        key = tuple(sorted((k, type(v), v) for k, v in raw.items()))
        hash(key)
    except TypeError:
        return None
    return key


def _default_for(plugins: Any) -> RetryPolicy | None:
    config = plugins.config
    stash: Stash = plugins.stash
    cached = stash.get(DEFAULT, None)
    if cached is not None and cached[0] is config:
        return cached[1]
    policy = parse_policy(config.get("retry"), "[taskloom.retry]")
    stash[DEFAULT] = (config, policy)
    return policy


def _config_keys() -> dict[str, Any]:
    from taskloom.kernel.schema import Key

    return {
        "max_retries": Key(("integer",), "retries after the first attempt", minimum=0),
        "backoff": Key(("string",), "how delays grow", choices=BACKOFFS),
        "backoff_factor": Key(("number",), "exponential growth per retry", minimum=1),
        "base_delay": Key(("number",), "seconds before the first retry", minimum=0),
        "max_delay": Key(("number",), "cap on any delay, in seconds", minimum=0),
        "jitter": Key(("boolean", "number"), "random spread: true (0.25) or a fraction"),
        "retry_on": Key(("string", "array"), 'exception names to retry ("builtins.OSError")'),
        "give_up_on": Key(("string", "array"), "exception names never retried"),
        "seed": Key(("integer",), "seed of the jitter's random generator"),
    }


@hookimpl
def taskloom_register(registry: Any) -> None:
    # The default policy of every task without its own; checked again in taskloom_configure.
    registry.add_config_section("retry", _config_keys())
    # Checked in taskloom_task_prepare, where the parsed policy is kept for the task.
    registry.add_task_option("retry", (int, dict),
                             "retries: a count or {max_retries, backoff, ...}")


@hookimpl
def taskloom_configure(config: Any) -> None:
    parse_policy(config.get("retry"), "[taskloom.retry]")


@hookimpl
def taskloom_task_prepare(task: Any, run: Any) -> None:
    if "retry" in task.options:
        policy_for(task, run)


@hookimpl
def taskloom_task_error(task: Any, error: BaseException, run: Any) -> Any:
    policy = policy_for(task, run)
    if policy is None or not policy.should_retry(error):
        return None
    marker = (id(run), task.started)
    state = task.stash.get(GRANTED, None)
    if state is None or state[0] != marker:
        state = [marker, 0]
        task.stash[GRANTED] = state
    if state[1] >= policy.max_retries:
        return None
    state[1] += 1
    return Retry(policy.delay(state[1]))
