"""W1 with OpenTelemetry: the price of tracing, and of the otel plugin when nothing traces.

* Tracing on: an SDK tracer provider with a BatchSpanProcessor and an exporter that drops
  what it is given, handed to the plugin through its configuration (``otel.tracer_provider``)
  so no global provider is installed and the other suites are unaffected. Every attempt is a
  span (the queue is large enough that none is dropped before export). Against floor B.
* API only: the OpenTelemetry API imported, no SDK anywhere; the otel plugin loaded against
  the same engine with the plugin disabled. Both have every other default plugin.
"""

from __future__ import annotations

import functools
import sys

from common import Row, paired, rate
from workloads import fan_out, floor_b, taskloom_runner


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


def _traced_vs_floor(graph: dict, reps: int) -> Row:
    n = len(graph)
    provider = _tracer_provider(n)
    run = taskloom_runner(workers=2, config={"otel": {"tracer_provider": provider}})

    def traced() -> None:
        run(graph)
        provider.force_flush()  # the spans of this run are exported inside its time

    t_tl, t_b = paired(traced, functools.partial(floor_b, graph), reps)
    provider.shutdown()
    return Row("W1 fan-out, tracing on (SDK, batch processor)", "tasks/s", rate(n, t_tl),
               rate(n, t_b), "floor B", target=">= 0.3x",
               note="a span per task, exported to a discarding exporter; the SDK's span "
                    "(and the garbage it leaves) is most of the cost")


def _api_only_vs_disabled(graph: dict, reps: int) -> Row:
    import opentelemetry.trace  # noqa: F401  (an application that uses the API, no SDK)

    n = len(graph)
    with_plugin = taskloom_runner(workers=2)
    without = taskloom_runner(workers=2, config={"disable_plugins": ["otel"]})
    t_on, t_off = paired(functools.partial(with_plugin, graph),
                         functools.partial(without, graph), reps)
    return Row("W1 fan-out, otel plugin with the API only (no SDK)", "tasks/s", rate(n, t_on),
               rate(n, t_off), "otel plugin disabled", target=">= 0.9x")


def rows(quick: bool) -> list[Row]:
    reps = 3 if quick else 5
    graph = fan_out(2_000 if quick else 10_000)
    return [_api_only_vs_disabled(graph, reps), _traced_vs_floor(graph, reps)]


if __name__ == "__main__":
    for row in rows("--quick" in sys.argv):
        print(f"{row.workload}: {row.taskloom.fmt()} vs {row.baseline_name} "
              f"{row.baseline.fmt() if row.baseline else '-'} -> {row.ratio:.2f}x "
              f"(target {row.target})")
