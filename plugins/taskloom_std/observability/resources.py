"""CPU time and memory per task attempt, with psutil (the ``resources`` plugin).

Off unless ``[taskloom.resources] enabled = true``: a run that does not enable it gives no
task a wrapper, so attempts pay nothing. When on, each attempt is measured around its body
and the figures are kept on the task and the attempt (``task.stash[USAGE]``,
``attempt.stash[USAGE]``) and added to the attempt's span when it is traced:

* ``cpu_user``, ``cpu_system``, ``cpu_time`` (seconds): the **process's** CPU time during
  the attempt. Threads share a process: with several attempts running at once each one's
  figure includes the others' work. ``thread_cpu_time`` is the CPU time of the thread that
  ran the attempt, exact for the thread executor (and for one attempt at a time).
* ``rss`` and ``rss_delta`` (bytes): the process's resident memory after the attempt and its
  change during it. Memory freed by another thread, or kept by the allocator after the body
  released it, shows here too: read it as a trend, not an exact cost.
* With the process executor the wrapper runs in the parent (its dispatcher thread), so the
  figures describe the parent, not the child that ran the body; the asyncio executor runs
  many attempts on one thread, so its ``thread_cpu_time`` overlaps as well.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import Any

from taskloom import ConfigError, StashKey, hookimpl

#: ``Run.stash``: the run's monitor, or False when the run is not measured.
RUN_KEY: StashKey[Any] = StashKey()
#: ``Task.stash`` and ``Attempt.stash``: the figures of the (task's last) attempt.
USAGE: StashKey[dict[str, Any]] = StashKey()


class ResourceMonitor:
    """The wrapper measuring each attempt of a run."""

    def __init__(self) -> None:
        try:
            import psutil
        except ImportError as exc:  # psutil is a dependency; a broken install says so
            raise ConfigError("the resources plugin needs psutil: pip install psutil") from exc
        self._process = psutil.Process()

    def sample(self) -> tuple[float, float, int, float]:
        cpu = self._process.cpu_times()
        return cpu.user, cpu.system, self._process.memory_info().rss, time.thread_time()

    def usage(self, before: tuple[float, float, int, float], attempt: Any) -> dict[str, Any]:
        user, system, rss, thread = self.sample()
        usage = {
            "attempt": attempt.number,
            "cpu_user": max(0.0, user - before[0]),
            "cpu_system": max(0.0, system - before[1]),
            "thread_cpu_time": max(0.0, thread - before[3]),
            "rss": rss,
            "rss_delta": rss - before[2],
        }
        usage["cpu_time"] = usage["cpu_user"] + usage["cpu_system"]
        return usage

    def _finish(self, before: tuple[float, float, int, float], attempt: Any) -> None:
        usage = self.usage(before, attempt)
        attempt.stash[USAGE] = usage
        attempt.task.stash[USAGE] = usage
        if "opentelemetry.trace" in sys.modules:
            from opentelemetry import trace

            # The attempt's span is current here when the otel plugin traces the run.
            span = trace.get_current_span()
            if span.is_recording():
                span.set_attributes({f"taskloom.resources.{k}": v for k, v in usage.items()
                                     if k != "attempt"})

    def __call__(self, call: Any, attempt: Any) -> Any:
        before = self.sample()
        try:
            return call()
        finally:
            self._finish(before, attempt)

    async def acall(self, acall: Any, attempt: Any) -> Any:
        before = self.sample()
        try:
            return await acall()
        finally:
            self._finish(before, attempt)


def _monitor(run: Any) -> ResourceMonitor | bool:
    section = run.plugins.config.get("resources") or {}
    if not isinstance(section, Mapping):
        raise ConfigError(f"[taskloom.resources] must be a table, got {section!r}")
    if section.get("enabled", False) is not True:
        return False
    return ResourceMonitor()


@hookimpl
def taskloom_register(registry: Any) -> None:
    from taskloom.kernel.schema import Key

    registry.add_config_section("resources", {
        "enabled": Key(("boolean",), "true: measure CPU time and memory of every attempt"),
    })


@hookimpl
def taskloom_run_wrappers(run: Any) -> Any:
    monitor = run.stash[RUN_KEY] = _monitor(run)
    return monitor or None
