"""W1 with OpenTelemetry: the price of tracing, and of the otel plugin when nothing traces.

* Tracing on: an SDK tracer provider with a BatchSpanProcessor and an exporter that drops
  what it is given, handed to the plugin through its configuration (``otel.tracer_provider``)
  so no global provider is installed and the other suites are unaffected. Every attempt is a
  span (the queue is large enough that none is dropped before export), and each run is timed
  until its spans are exported. Against floor B-cb, in the same rounds.
* API only: the OpenTelemetry API imported, no SDK anywhere; the otel plugin loaded against
  the same engine with the plugin disabled. Both have every other default plugin.
* Tracing's cost per task in parts: a traced run minus the same run untraced, against the
  SDK's own cost for one span (start, current, detached, ended); the rest is the plugin's.
  The plugin's part is also measured directly: the same run traced by a provider whose
  spans record nothing (the plugin makes every call it makes under the SDK, and the API's
  context switching is all that answers them).
"""

from __future__ import annotations

import functools
import sys

from common import Row, Stat, compare, interleaved
from workloads import fan_out, floor_b_cb, taskloom_runner


def _tracer_provider(n: int):
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    class Discard(SpanExporter):
        def export(self, spans):  # type: ignore[no-untyped-def]
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Discard(), max_queue_size=2 * n + 16))
    return provider


def _traced_vs_floor(graph: dict, rounds: int) -> Row:
    n = len(graph)
    provider = _tracer_provider(n)
    run = taskloom_runner(workers=2, config={"otel": {"tracer_provider": provider}})

    def traced() -> None:
        run(graph)
        provider.force_flush()

    times = interleaved({"traced": traced, "B-cb": functools.partial(floor_b_cb, graph)},
                        rounds)
    provider.shutdown()
    return compare(f"W1 fan-out {n:,}, Engine.run, tracing on (SDK, batch processor)", n,
                   times["traced"], times["B-cb"], "B-cb", target=">= 0.35x", min_ratio=0.35,
                   note="a span per task, exported to a discarding exporter")


def _api_only_vs_disabled(graph: dict, rounds: int) -> Row:
    import opentelemetry.trace  # noqa: F401  (an application that uses the API, no SDK)

    n = len(graph)
    with_plugin = taskloom_runner(workers=2)
    without = taskloom_runner(workers=2, config={"disable_plugins": ["otel"]})
    times = interleaved({"on": functools.partial(with_plugin, graph),
                         "off": functools.partial(without, graph)}, rounds)
    return compare(f"W1 fan-out {n:,}, Engine.run, otel plugin with the API only (no SDK)", n,
                   times["on"], times["off"], "otel plugin disabled", target=">= 0.9x",
                   min_ratio=0.9)


class _NullTracer:
    """A tracer whose spans record nothing: what the plugin costs without an SDK's work."""

    def __init__(self) -> None:
        from opentelemetry.trace import INVALID_SPAN_CONTEXT, NonRecordingSpan

        self.span = NonRecordingSpan(INVALID_SPAN_CONTEXT)

    def start_span(self, name, context=None, kind=None, attributes=None,  # type: ignore[no-untyped-def]
                   links=None, start_time=None, record_exception=True,
                   set_status_on_exception=True):
        return self.span


class _NullProvider:
    def get_tracer(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return _NullTracer()


def _parts(graph: dict, rounds: int) -> Row:
    """Where tracing's per-task cost goes: a traced run minus the same run untraced (every
    other plugin on in both), against an SDK span alone (started with the plugin's five
    attributes, made current, detached, given its state, ended: what the plugin asks of the
    SDK per attempt) with the same provider."""
    from opentelemetry import context, trace

    n = len(graph)
    provider = _tracer_provider(n)
    traced_run = taskloom_runner(workers=2, config={"otel": {"tracer_provider": provider}})
    plain_run = taskloom_runner(workers=2)
    null_run = taskloom_runner(workers=2, config={"otel": {"tracer_provider": _NullProvider()}})
    tracer = provider.get_tracer("bench")
    names = [f"task {name}" for name in graph]

    def traced() -> None:
        traced_run(graph)
        provider.force_flush()

    def spans() -> None:
        for name in names:
            attrs = {"taskloom.task.name": name, "taskloom.task.id": "0123456789ab",
                     "taskloom.task.priority": 1, "taskloom.task.executor": "thread",
                     "taskloom.task.attempt": 1}
            span = tracer.start_span(name, attributes=attrs)
            token = context.attach(trace.set_span_in_context(span))
            context.detach(token)
            span.set_attribute("taskloom.task.state", "completed")
            span.end()
        provider.force_flush()

    times = interleaved({"traced": traced, "plain": functools.partial(plain_run, graph),
                         "null": functools.partial(null_run, graph), "spans": spans}, rounds)
    provider.shutdown()

    def per_task(a: str, b: str) -> list[float]:
        return [1e6 * (x - y) / n for x, y in zip(times[a], times[b], strict=True)]

    total = per_task("traced", "plain")
    sdk = [1e6 * t / n for t in times["spans"]]
    plugin = Stat.of([t - s for t, s in zip(total, sdk, strict=True)])
    direct = Stat.of(per_task("null", "plain"))
    under = Stat.of(per_task("traced", "null"))
    return Row(f"W1 fan-out {n:,}, tracing cost per task (traced - untraced run)", "us/task",
               Stat.of(total), Stat.of(sdk), "SDK span alone", higher_is_better=False,
               note=f"the plugin's own part: {plugin.fmt(1)} us/task (per round: total - SDK); "
                    f"measured directly (spans that record nothing - untraced): "
                    f"{direct.fmt(1)} us/task; the SDK's part under the plugin (traced - "
                    f"spans that record nothing): {under.fmt(1)} us/task")


def rows(quick: bool) -> list[Row]:
    rounds = 3 if quick else 9
    graph = fan_out(2_000 if quick else 10_000)
    return [_api_only_vs_disabled(graph, rounds), _traced_vs_floor(graph, rounds),
            _parts(graph, rounds)]


if __name__ == "__main__":
    for row in rows("--quick" in sys.argv):
        print(f"{row.workload}: {row.taskloom.fmt()} vs {row.baseline_name} "
              f"{row.baseline.fmt() if row.baseline else '-'} -> {row.ratio_text()} "
              f"(target {row.target}: {row.status()}) {row.note}")
