"""W1 with OpenTelemetry: the price of tracing, and of the otel plugin when nothing traces.

* Tracing on: an SDK tracer provider with a BatchSpanProcessor and an exporter that drops
  what it is given, handed to the plugin through its configuration (``otel.tracer_provider``)
  so no global provider is installed and the other suites are unaffected. Every attempt is a
  span (the queue is large enough that none is dropped before export), and each run is timed
  until its spans are exported. Against floor B-cb, in the same rounds.
* API only: the OpenTelemetry API imported, no SDK anywhere; the otel plugin loaded against
  the same engine with the plugin disabled. Both have every other default plugin.
"""

from __future__ import annotations

import functools
import sys

from common import Row, compare, interleaved
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


def rows(quick: bool) -> list[Row]:
    rounds = 3 if quick else 9
    graph = fan_out(2_000 if quick else 10_000)
    return [_api_only_vs_disabled(graph, rounds), _traced_vs_floor(graph, rounds)]


if __name__ == "__main__":
    for row in rows("--quick" in sys.argv):
        print(f"{row.workload}: {row.taskloom.fmt()} vs {row.baseline_name} "
              f"{row.baseline.fmt() if row.baseline else '-'} -> {row.ratio_text()} "
              f"(target {row.target}: {row.status()})")
