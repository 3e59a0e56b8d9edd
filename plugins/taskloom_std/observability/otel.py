"""OpenTelemetry traces and metrics of runs (the ``otel`` plugin).

The plugin only speaks the OpenTelemetry API and costs next to nothing until an SDK is
configured: when a run starts it looks once for a real tracer or meter provider (the global
ones, or providers handed in as ``config["otel"]["tracer_provider"]`` /
``["meter_provider"]``); with none, the run is not observed and no task gets a wrapper.
``opentelemetry`` is not even imported unless some code imported it first.

The trace of a run::

    run <name>                      from the run's first task to taskloom_run_finish
    ├── task <name>                 one span per attempt, current where the body runs
    │   └── <spans the task opens>  nest under the attempt (threads, processes, asyncio)
    ├── task <name>                 a retry: a new span, linked to the first attempt's
    └── task <name>                 zero length: skipped, cancelled, or failed upstream

A span ends when its attempt's outcome is known: when the body returns, or, after a failure,
when the error policies have decided (``retrying``, ``failed``, or ``completed`` by a
fallback). Tasks that never ran are added when the run finishes (for a ``TaskManager``, whose
run lasts as long as the manager, at ``shutdown()``), at the time they ended. The plugin
implements no per-task hook besides the wrapper, so a traced task costs its span and little
more.

Attempt spans carry ``taskloom.task.{name,id,priority,tags,executor,attempt,state}``; a
failed attempt records its exception and has status ERROR. Metrics: ``taskloom.tasks``
(final states), ``taskloom.task.retries``, ``taskloom.task.duration`` (attempts, seconds),
``taskloom.circuit.changes``, ``taskloom.schedule.lateness``, ``taskloom.schedule.misfires``,
``taskloom.schedule.overlaps`` (runs skipped at ``max_instances``) and the observable gauges
``taskloom.queue.depth`` and ``taskloom.tasks.running``.

Scheduler fires and circuit-breaker changes happen outside a run: they use the global
providers, or the providers of the most recently configured plugin set.

:func:`setup_sdk` installs an SDK with the exporter chosen in ``[taskloom.otel]`` or by the
standard ``OTEL_*`` variables (the CLI calls it; the registry offers it as the ``exporter``
component ``otel``). It never replaces a provider the application installed itself.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
import time
import weakref
from collections.abc import Mapping
from typing import Any

from taskloom import ConfigError, Fallback, Retry, StashKey, TaskState, hookimpl
from taskloom._version import __version__

COMPLETED, FAILED = TaskState.COMPLETED, TaskState.FAILED
CANCELLED, SKIPPED = TaskState.CANCELLED, TaskState.SKIPPED
_FINAL = frozenset({COMPLETED, FAILED, CANCELLED, SKIPPED})

#: ``Run.stash``: the run's :class:`_Traced`, or False when the run is not observed.
RUN_KEY: StashKey[_Traced | bool] = StashKey()
#: ``Task.stash``: (run state, span context) of the task's first attempt in that run.
FIRST_KEY: StashKey[tuple[_Traced, Any]] = StashKey()
#: ``Task.stash``: (run state, state) of the task's last span, so none is told twice.
LAST_KEY: StashKey[tuple[_Traced, str]] = StashKey()

EXPORTERS = ("compact", "console", "otlp", "memory", "none")


def config_keys() -> dict[str, Any]:
    from taskloom.kernel.schema import Key

    return {
        "exporter": Key(("string",), "where the CLI sends spans (and metrics)", choices=EXPORTERS),
        "metrics_exporter": Key(("string",), "where metrics go, when not where spans go",
                                choices=EXPORTERS),
        "service_name": Key(("string",), 'service.name of the traces (else OTEL_SERVICE_NAME, '
                                         'else "taskloom")'),
        "endpoint": Key(("string",), "OTLP endpoint (else OTEL_EXPORTER_OTLP_ENDPOINT)"),
        "enabled": Key(("boolean",), "false: never trace or measure, whatever is installed"),
        "shutdown_timeout": Key(("number",), "seconds the CLI waits for the last exports "
                                             "at exit (default 5)", minimum=0),
        "traces": Key(("boolean",), "false: no spans"),
        "metrics": Key(("boolean",), "false: no metrics"),
        "tracer_provider": Key(("any",), "a TracerProvider object to use (from Python only)"),
        "meter_provider": Key(("any",), "a MeterProvider object to use (from Python only)"),
    }


_lock = threading.Lock()
_telemetry: dict[tuple[int, int], _Telemetry] = {}
# The otel section of the most recently configured plugin set, for hooks outside a run.
_last_section: Mapping[str, Any] = {}


# -- finding a provider -----------------------------------------------------------------------
def _section(config: Mapping[str, Any] | None) -> Mapping[str, Any]:
    section = (config or {}).get("otel") or {}
    if not isinstance(section, Mapping):
        raise ConfigError(f"[taskloom.otel] must be a table, got {section!r}")
    return section


#: Per OpenTelemetry API module: the section's on/off key, the key of an injected provider,
#: the variable that names a provider class, and the API's getter.
_SIGNALS = {
    "trace": ("traces", "tracer_provider", "OTEL_PYTHON_TRACER_PROVIDER", "get_tracer_provider"),
    "metrics": ("metrics", "meter_provider", "OTEL_PYTHON_METER_PROVIDER", "get_meter_provider"),
}


def _provider(section: Mapping[str, Any], api: str) -> Any | None:
    switch, key, env, getter = _SIGNALS[api]
    if section.get(switch, True) is False:
        return None
    injected = section.get(key)
    if injected is not None:
        return injected
    module = f"opentelemetry.{api}"
    # Nobody can have installed a provider without importing the API first.
    if module not in sys.modules and not os.environ.get(env):
        return None
    provider = getattr(importlib.import_module(module), getter)()
    # The API's own providers (proxy, no-op) live in the API module; an SDK's elsewhere.
    return None if type(provider).__module__.startswith(module) else provider


def tracer_provider(section: Mapping[str, Any]) -> Any | None:
    """The tracer provider to use, or None when only the API (no SDK) is there."""
    return _provider(section, "trace")


def meter_provider(section: Mapping[str, Any]) -> Any | None:
    """The meter provider to use, or None when only the API (no SDK) is there."""
    return _provider(section, "metrics")


def _telemetry_for(tp: Any | None, mp: Any | None) -> _Telemetry | None:
    if tp is None and mp is None:
        return None
    key = (id(tp), id(mp))
    with _lock:
        tel = _telemetry.get(key)
        if tel is None or tel.tracer_provider is not tp or tel.meter_provider is not mp:
            tel = _telemetry[key] = _Telemetry(tp, mp)
        return tel


def _ns(when: Any) -> int:
    timestamp = getattr(when, "timestamp", None)
    return int(timestamp() * 1e9) if timestamp is not None else time.time_ns()


# -- instruments, one set per provider pair ---------------------------------------------------
_OK = {"taskloom.outcome": "ok"}
_ERROR = {"taskloom.outcome": "error"}
_FINAL_ATTRS = {s.value: {"taskloom.task.state": s.value} for s in _FINAL}


class _Telemetry:
    """A tracer and the instruments of one (tracer provider, meter provider) pair."""

    def __init__(self, tp: Any | None, mp: Any | None) -> None:
        self.tracer_provider = tp
        self.meter_provider = mp
        self.runs: weakref.WeakSet[Any] = weakref.WeakSet()
        self.tracer: Any = None
        if tp is not None:
            from opentelemetry import context, trace

            self.tracer = tp.get_tracer("taskloom", __version__)
            self.attach = context.attach
            self.detach = context.detach
            self.set_span_in_context = trace.set_span_in_context
            self.get_current_span = trace.get_current_span
            self.link = trace.Link
            self.status = trace.Status
            self.error_code = trace.StatusCode.ERROR
        self.tasks: Any = None
        self.retries: Any = None
        self.duration: Any = None
        self.circuit: Any = None
        self.lateness: Any = None
        self.misfires: Any = None
        self.overlaps: Any = None
        if mp is not None:
            self._instruments(mp)

    def _instruments(self, mp: Any) -> None:
        from opentelemetry.metrics import Observation

        meter = mp.get_meter("taskloom", __version__)
        self.tasks = meter.create_counter(
            "taskloom.tasks", unit="{task}", description="Tasks that reached a final state"
        )
        self.retries = meter.create_counter(
            "taskloom.task.retries", unit="{retry}", description="Attempts that will be retried"
        )
        self.duration = meter.create_histogram(
            "taskloom.task.duration", unit="s", description="Duration of task attempts"
        )
        self.circuit = meter.create_counter(
            "taskloom.circuit.changes", unit="{change}",
            description="Circuit breaker state changes",
        )
        self.lateness = meter.create_histogram(
            "taskloom.schedule.lateness", unit="s",
            description="How late a scheduled job started",
        )
        self.misfires = meter.create_counter(
            "taskloom.schedule.misfires", unit="{fire}",
            description="Scheduled runs skipped as too late",
        )
        self.overlaps = meter.create_counter(
            "taskloom.schedule.overlaps", unit="{fire}",
            description="Scheduled runs skipped because max_instances runs were still going",
        )
        runs = self.runs

        def by_run(value: Any) -> Any:
            def observe(_options: Any) -> list[Any]:
                totals: dict[str, int] = {}
                for run in list(runs):
                    name = run.name or "run"
                    totals[name] = totals.get(name, 0) + value(run)
                return [Observation(v, {"taskloom.run.name": k}) for k, v in totals.items()]

            return observe

        meter.create_observable_gauge(
            "taskloom.queue.depth", [by_run(lambda run: run.queued)], unit="{task}",
            description="Ready tasks waiting for a worker",
        )
        meter.create_observable_gauge(
            "taskloom.tasks.running", [by_run(lambda run: run.inflight)], unit="{task}",
            description="Attempts handed to executors and not yet returned",
        )


# -- one observed run ---------------------------------------------------------------------------
def task_attributes(task: Any, run: Any, executor: str | None = None) -> dict[str, Any]:
    """A task's span attributes; ``executor``: the run's executor's name, when known."""
    # Each attribute costs the SDK a validation per span: the run's id is on the parent span,
    # and tags only when there are some.
    attrs = {
        "taskloom.task.name": task.name,
        "taskloom.task.id": task.id,
        "taskloom.task.priority": task.priority,
        "taskloom.task.executor": task.executor or executor or run.executor.name,
    }
    if task.tags:
        attrs["taskloom.task.tags"] = sorted(task.tags)
    return attrs


class _Traced:
    """The span and instruments of one observed run.

    An attempt's span ends as soon as its outcome is known, by whoever learns it first: the
    wrapper when the body returned (or was abandoned), the policy decision after a failure
    (retrying, failed, or completed by a fallback), or the end of the run for anything left.
    Tasks that ended without running (skipped, cancelled, failed upstream) become zero-length
    spans when the run finishes. No per-task hook is needed for any of it.
    """

    def __init__(self, telemetry: _Telemetry, run: Any) -> None:
        self.telemetry = telemetry
        self.run = weakref.proxy(run)
        self.span: Any = None
        self.context: Any = None
        # Attempts whose span has not ended yet, with it (True: metrics only). Kept here, not
        # in each attempt's stash: a stash made per attempt costs more than the dict entry.
        self.open: dict[Any, Any] = {}
        self.executor: str = run.executor.name
        # The wrapper of every task of the run: one object, not one per task (a long-lived
        # object per task, with its attributes, is more for the garbage collector to visit).
        self.wrapper = AttemptSpan(self)
        if telemetry.tracer is not None:
            self.span = telemetry.tracer.start_span(
                f"run {run.name or run.id}",
                attributes={"taskloom.run.id": run.id, "taskloom.run.name": run.name or ""},
            )
            self.context = telemetry.set_span_in_context(self.span)

    def close_attempt(self, attempt: Any, state: str) -> None:
        """End the attempt's span with the state it led to (once: the first caller wins)."""
        span = self.open.pop(attempt, None)
        if span is None:
            return
        if state != "completed":
            # Remembered for the sweep; a completed task is never told again anyway.
            attempt.task.stash[LAST_KEY] = (self, state)
        if span is not True:
            span.set_attribute("taskloom.task.state", state)
            span.end()
        counter = self.telemetry.tasks
        if counter is not None and state in _FINAL_ATTRS:
            counter.add(1, _FINAL_ATTRS[state])

    def decided(self, attempt: Any, error: BaseException, decision: Any) -> None:
        """The error policies decided about a failed (or timed-out) attempt."""
        span = self.open.get(attempt)
        if attempt.finished is None and span is not None and span is not True:
            # Failed from outside (a timeout) while the body still runs: the wrapper has not
            # seen the error, and the span ends now.
            tel = self.telemetry
            span.record_exception(error)
            span.set_status(tel.status(tel.error_code, f"{type(error).__name__}: {error}"))
            self.remember_first(attempt, span)
        if isinstance(decision, Retry) and not self.run.cancelling:
            retries = self.telemetry.retries
            if retries is not None:
                retries.add(1)
            self.close_attempt(attempt, "retrying")
        elif isinstance(decision, Fallback):
            self.close_attempt(attempt, "completed")
        else:
            self.close_attempt(attempt, "failed")

    def remember_first(self, attempt: Any, span: Any) -> None:
        """A retry links to the task's first attempt in the run. Only a failure leads to a
        retry, so only failed attempts remember their span (none is kept per success)."""
        td = attempt.task.stash
        first = td.get(FIRST_KEY, None)
        if first is None or first[0] is not self:
            td[FIRST_KEY] = (self, span.get_span_context())

    def mark(self, task: Any, state: TaskState) -> None:
        """A zero-length span for a task that reached ``state`` without a running attempt."""
        tel = self.telemetry
        attrs = task_attributes(task, self.run, self.executor)
        attrs["taskloom.task.state"] = state.value
        at = int(task.completed * 1e9) if task.completed else time.time_ns()
        span = tel.tracer.start_span(
            f"task {task.name}", context=self.context, attributes=attrs, start_time=at
        )
        if state is FAILED:
            span.set_status(tel.status(tel.error_code, task.error or "an upstream task failed"))
        span.end(end_time=at)

    def sweep(self) -> None:
        """End what is still open and account for the tasks that never ran."""
        for attempt in list(self.open):
            self.close_attempt(attempt, attempt.task.status.value)
        tel = self.telemetry
        for task in list(self.run.tasks.values()):
            status = task.status
            if status not in _FINAL:
                continue
            if status is COMPLETED:
                continue  # its attempt's span says so, or it was restored from an earlier run
            last = task.stash.get(LAST_KEY, None)
            if last is not None and last[0] is self and last[1] == status.value:
                continue  # told already
            task.stash[LAST_KEY] = (self, status.value)
            if tel.tracer is not None:
                self.mark(task, status)
            if tel.tasks is not None:
                tel.tasks.add(1, _FINAL_ATTRS[status.value])

    def finish(self, summary: Any) -> None:
        self.sweep()
        span = self.span
        if span is not None:
            attrs: dict[str, Any] = {"taskloom.run.status": summary.status}
            for state, count in summary.counts.items():
                attrs[f"taskloom.run.tasks.{state}"] = count
            span.set_attributes(attrs)
            if summary.status != "completed":
                tel = self.telemetry
                span.set_status(tel.status(tel.error_code, f"run {summary.status}"))
            span.end()


class AttemptSpan:
    """Wraps each attempt of a run's tasks: a span current where the body runs, its duration.

    One per run (:attr:`_Traced.wrapper`): a span's name and attributes are made when its
    attempt starts, and handed to the SDK, which keeps its own copy. The path of an attempt
    that completes has no call of the plugin's own besides the SDK's (start, make current,
    detach, state, end), and the clock is read only when a duration histogram takes it.
    """

    __slots__ = ("traced",)

    def __init__(self, traced: _Traced) -> None:
        self.traced = traced

    def _open(self, attempt: Any) -> Any:
        """The attempt's span, started and registered: None when it is not current (cancelled
        or timed out before it started), True when only metrics are taken."""
        if not attempt.current:
            return None
        traced = self.traced
        tel = traced.telemetry
        if tel.tracer is None:
            traced.open[attempt] = True  # metrics only: the outcome is still counted
            return True
        task = attempt.task
        attrs = task_attributes(task, traced.run, traced.executor)
        number = attrs["taskloom.task.attempt"] = attempt.number
        links = None
        if number != 1:
            first = task.stash.get(FIRST_KEY, None)
            if first is not None and first[0] is traced:
                links = (tel.link(first[1]),)
        span = tel.tracer.start_span(
            f"task {task.name}", context=traced.context, attributes=attrs, links=links
        )
        traced.open[attempt] = span
        return span

    def _close(self, attempt: Any, span: Any, error: BaseException | None) -> None:
        """After the body (the span, if any, no longer current): end the span unless the
        error policies are to decide the attempt's outcome."""
        if span is None:
            return
        traced = self.traced
        if error is not None and span is not True:
            self._failed(attempt, span, error)
        if not attempt.current:
            # Ended from outside while it ran: cancelled, or failed by a timeout (whose
            # decision normally ended the span already).
            token = attempt.token
            traced.close_attempt(attempt, "failed" if token.reason == "timeout" else "cancelled")
        elif error is None:
            traced.close_attempt(attempt, "completed")
        elif traced.run.cancelling:
            traced.close_attempt(attempt, "failed")  # no policy is asked while cancelling
        # Otherwise the policies' decision ends the span (taskloom_task_error below).

    def _failed(self, attempt: Any, span: Any, error: BaseException) -> None:
        tel = self.traced.telemetry
        if span.is_recording():
            span.record_exception(error)
            span.set_status(tel.status(tel.error_code, f"{type(error).__name__}: {error}"))
        self.traced.remember_first(attempt, span)

    def __call__(self, call: Any, attempt: Any) -> Any:
        traced = self.traced
        tel = traced.telemetry
        histogram = tel.duration
        span = self._open(attempt)
        started = time.perf_counter() if histogram is not None else 0.0
        token = None if span is None or span is True else tel.attach(
            tel.set_span_in_context(span))
        try:
            result = call()
        except BaseException as exc:
            if histogram is not None:
                histogram.record(time.perf_counter() - started, _ERROR)
            if token is not None:
                tel.detach(token)
            self._close(attempt, span, exc)
            raise
        if histogram is not None:
            histogram.record(time.perf_counter() - started, _OK)
        if token is not None:
            tel.detach(token)
            if attempt.current:  # the usual end, inline: close_attempt's "completed" case
                if traced.open.pop(attempt, None) is not None:
                    span.set_attribute("taskloom.task.state", "completed")
                    span.end()
                    if tel.tasks is not None:
                        tel.tasks.add(1, _FINAL_ATTRS["completed"])
                return result
        self._close(attempt, span, None)
        return result

    async def acall(self, acall: Any, attempt: Any) -> Any:
        tel = self.traced.telemetry
        histogram = tel.duration
        span = self._open(attempt)
        started = time.perf_counter() if histogram is not None else 0.0
        token = None if span is None or span is True else tel.attach(
            tel.set_span_in_context(span))
        try:
            result = await acall()
        except BaseException as exc:
            if histogram is not None:
                histogram.record(time.perf_counter() - started, _ERROR)
            if token is not None:
                tel.detach(token)
            self._close(attempt, span, exc)
            raise
        if histogram is not None:
            histogram.record(time.perf_counter() - started, _OK)
        if token is not None:
            tel.detach(token)
        self._close(attempt, span, None)
        return result


def traced(run: Any) -> _Traced | None:
    """The run's tracing state, decided once per run (None: the run is not observed)."""
    state = run.stash.get(RUN_KEY, None)
    if state is None:
        state = _activate(run)
    return state or None


_activation_lock = threading.Lock()


def _activate(run: Any) -> _Traced | bool:
    with _activation_lock:
        state = run.stash.get(RUN_KEY, None)
        if state is not None:
            return state  # type: ignore[no-any-return]
        section = _section(run.plugins.config)
        tel = None
        if section.get("enabled", True) is not False:
            tel = _telemetry_for(tracer_provider(section), meter_provider(section))
        if tel is None:
            run.stash[RUN_KEY] = False
            return False
        state = _Traced(tel, run)
        tel.runs.add(run)
        run.stash[RUN_KEY] = state
        return state


def _ambient(task: Any = None) -> _Telemetry | None:
    """Telemetry for events outside a run: the task's run's, else the configured providers."""
    run = task.run if task is not None else None
    state = run.stash.get(RUN_KEY, None) if run is not None else None
    if state:
        return state.telemetry  # type: ignore[no-any-return]
    section = _last_section
    if section.get("enabled", True) is False:
        return None
    return _telemetry_for(tracer_provider(section), meter_provider(section))


# -- hooks ------------------------------------------------------------------------------------
@hookimpl
def taskloom_register(registry: Any) -> None:
    registry.add_config_section("otel", config_keys())
    registry.add("exporter", "otel", setup_sdk)


@hookimpl
def taskloom_configure(config: Any) -> None:
    global _last_section
    section = _section(config)
    for key in ("exporter", "metrics_exporter"):
        value = section.get(key)
        if value is not None and value not in EXPORTERS:
            raise ConfigError(
                f"otel.{key}: unknown exporter {value!r}; one of {', '.join(EXPORTERS)}"
            )
    _last_section = section


@hookimpl
def taskloom_run_start(run: Any) -> None:
    traced(run)  # a run that starts empty (TaskManager) gets its span now


@hookimpl(tryfirst=True)
def taskloom_run_wrappers(run: Any) -> Any:
    state = traced(run)
    return state.wrapper if state else None


@hookimpl
def taskloom_run_finish(run: Any, summary: Any) -> None:
    state = run.stash.get(RUN_KEY, None)
    if not state:
        return
    state.finish(summary)
    state.telemetry.runs.discard(run)


@hookimpl(wrapper=True)
def taskloom_task_error(task: Any, error: BaseException, attempt: Any, run: Any) -> Any:
    # Sees the policies' decision (it changes nothing) to end the failed attempt's span.
    decision = yield
    state = run.stash.get(RUN_KEY, None)
    if state:
        state.decided(attempt, error, decision)
    return decision


def _job_fields(job: Any, scheduled_for: Any, fired_at: Any) -> dict[str, Any]:
    task = getattr(job, "task", None)
    attrs: dict[str, Any] = {
        "taskloom.job.id": str(getattr(job, "id", job)),
        "taskloom.job.task": str(getattr(task, "name", task)),
        "taskloom.schedule.scheduled_for": str(scheduled_for),
    }
    trigger = getattr(job, "trigger", None)
    if trigger is not None:
        attrs["taskloom.job.trigger"] = str(trigger)
    return attrs


def _lateness(scheduled_for: Any, fired_at: Any) -> float:
    try:
        return max(0.0, float((fired_at - scheduled_for).total_seconds()))
    except (TypeError, AttributeError):
        return 0.0


@hookimpl(optionalhook=True)
def taskloom_schedule_fire(job: Any, scheduled_for: Any, fired_at: Any) -> None:
    tel = _ambient()
    if tel is None:
        return
    lateness = _lateness(scheduled_for, fired_at)
    attrs = _job_fields(job, scheduled_for, fired_at)
    if tel.lateness is not None:
        tel.lateness.record(lateness, {"taskloom.job.id": attrs["taskloom.job.id"]})
    if tel.tracer is not None:
        attrs["taskloom.schedule.lateness"] = lateness
        at = _ns(fired_at)
        span = tel.tracer.start_span(
            f"schedule {attrs['taskloom.job.id']}", attributes=attrs, start_time=at
        )
        span.end(end_time=at)


@hookimpl(optionalhook=True)
def taskloom_schedule_misfire(job: Any, scheduled_for: Any, fired_at: Any) -> None:
    tel = _ambient()
    if tel is None:
        return
    attrs = _job_fields(job, scheduled_for, fired_at)
    if tel.misfires is not None:
        tel.misfires.add(1, {"taskloom.job.id": attrs["taskloom.job.id"]})
    if tel.tracer is not None:
        attrs["taskloom.schedule.misfire"] = True
        attrs["taskloom.schedule.lateness"] = _lateness(scheduled_for, fired_at)
        at = _ns(fired_at)
        span = tel.tracer.start_span(
            f"schedule {attrs['taskloom.job.id']}", attributes=attrs, start_time=at
        )
        span.set_status(tel.status(tel.error_code, "misfire: too late to run"))
        span.end(end_time=at)


@hookimpl(optionalhook=True)
def taskloom_schedule_overlap(job: Any, scheduled_for: Any, fired_at: Any, running: int) -> None:
    tel = _ambient()
    if tel is None:
        return
    attrs = _job_fields(job, scheduled_for, fired_at)
    if tel.overlaps is not None:
        tel.overlaps.add(1, {"taskloom.job.id": attrs["taskloom.job.id"]})
    if tel.tracer is not None:
        attrs["taskloom.schedule.overlap"] = True
        attrs["taskloom.schedule.running"] = running
        at = _ns(fired_at)
        span = tel.tracer.start_span(
            f"schedule {attrs['taskloom.job.id']}", attributes=attrs, start_time=at
        )
        span.set_status(tel.status(tel.error_code, "skipped: max_instances runs still going"))
        span.end(end_time=at)


@hookimpl(optionalhook=True)
def taskloom_circuit_change(key: str, old: str, new: str, task: Any) -> None:
    tel = _ambient(task)
    if tel is None:
        return
    if tel.circuit is not None:
        tel.circuit.add(1, {"taskloom.circuit.key": key, "taskloom.circuit.state": new})
    if tel.tracer is not None:
        # The attempt that caused the change still has its span open.
        attempt = task.current_attempt if task is not None else None
        state = attempt.run.stash.get(RUN_KEY, None) if attempt is not None else None
        span = state.open.get(attempt) if state else None
        if span is None or span is True:
            span = tel.get_current_span()
        if span.is_recording():
            span.add_event(
                "taskloom.circuit_change",
                {"taskloom.circuit.key": key, "taskloom.circuit.old": old,
                 "taskloom.circuit.new": new},
            )


def setup_sdk(config: Mapping[str, Any] | None = None, *, install: bool = True) -> Any:
    """Set up an OpenTelemetry SDK from ``[taskloom.otel]`` and the ``OTEL_*`` variables.

    ``config`` is the ``[taskloom]`` table. Returns an :class:`~._sdk.SdkHandle`: call
    ``flush()`` at the end of a run and ``shutdown()`` at exit. With ``install`` (default) the
    providers become the global ones, unless the application already installed its own, which
    is then used and never replaced.
    """
    from taskloom_std.observability._sdk import setup

    return setup(_section(config), install=install)
