"""Setting up the OpenTelemetry SDK for the CLI (and anyone who wants it done for them).

Exporters: ``compact`` (one line per span, as an indented tree, printed when the command
ends; no metrics), ``console`` (the SDK's JSON of every span and metric, printed to stdout),
``otlp`` (needs the ``opentelemetry-exporter-otlp`` package, the ``otlp`` extra), ``memory``
(kept in memory, for tests) and ``none``. Choice, first match wins: ``[taskloom.otel]
exporter``, then the standard ``OTEL_TRACES_EXPORTER`` / ``OTEL_METRICS_EXPORTER`` (comma-
separated lists allowed), then ``none``. ``metrics_exporter`` picks the metrics exporter
separately and ``metrics = false`` turns metrics off. The service name is ``service_name``,
else ``OTEL_SERVICE_NAME``, else ``taskloom``; every other ``OTEL_*`` variable (sampler,
endpoint, headers, intervals) is read by the SDK itself. ``OTEL_SDK_DISABLED=true`` sets up
nothing.

Shutting down is bounded: exporting what is left gets ``shutdown_timeout`` seconds (default
5) in all, and a collector that cannot be reached is reported once on stderr, naming the
endpoint and how many exports failed, instead of the exporter's retry messages.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from taskloom import ConfigError

_INSTALL_OTLP = (
    "the 'otlp' exporter needs the OpenTelemetry OTLP exporter, which is not installed: "
    "pip install 'taskloom[otlp]' (or opentelemetry-exporter-otlp)"
)


@dataclass
class SdkHandle:
    """What :func:`setup` set up: providers to flush at the end and shut down at exit.

    ``installed_tracer`` / ``installed_meter`` say whether the providers are ours (installed
    as the global ones) or the application's, which are flushed but never shut down here.
    """

    tracer_provider: Any = None
    meter_provider: Any = None
    span_exporters: list[str] = field(default_factory=list)
    metric_exporters: list[str] = field(default_factory=list)
    owns_tracer: bool = False
    owns_meter: bool = False
    installed_tracer: bool = False
    installed_meter: bool = False
    memory_spans: Any = None
    memory_metrics: Any = None
    compact: Any = None
    shutdown_timeout: float = 5.0
    #: OTLP exports that failed, by endpoint (filled by :class:`_Watched`).
    failures: dict[str, int] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.tracer_provider is not None or self.meter_provider is not None

    def spans(self) -> list[Any]:
        """Finished spans kept by the ``memory`` exporter."""
        if self.memory_spans is None:
            raise RuntimeError("spans are kept only with exporter = 'memory'")
        return list(self.memory_spans.get_finished_spans())

    def metrics(self) -> Any:
        """Metrics collected now by the ``memory`` exporter's reader."""
        if self.memory_metrics is None:
            raise RuntimeError("metrics are kept only with exporter = 'memory'")
        return self.memory_metrics.get_metrics_data()

    def flush(self, timeout_millis: int = 10_000) -> None:
        """Export everything finished so far (spans in batches, pending metrics).

        Console metrics are cumulative: they print once, at :meth:`shutdown`, not per flush.
        """
        providers = [self.tracer_provider]
        if self.metric_exporters != ["console"]:
            providers.append(self.meter_provider)
        for provider in providers:
            force_flush = getattr(provider, "force_flush", None)
            if force_flush is not None:
                force_flush(timeout_millis)

    def shutdown(self) -> None:
        """Shut down the providers set up here, which exports what they still hold; the
        application's own providers are only flushed. Waits at most ``shutdown_timeout``
        seconds; an unreachable collector is reported once on stderr."""
        tracer, meter = self.tracer_provider, self.meter_provider
        owns_tracer, owns_meter = self.owns_tracer, self.owns_meter
        self.owns_tracer = self.owns_meter = False
        self.tracer_provider = self.meter_provider = None

        def finish() -> None:
            for provider, owned in ((tracer, owns_tracer), (meter, owns_meter)):
                if provider is not None:
                    provider.shutdown() if owned else provider.force_flush()

        # A collector that is down makes the exporters retry with backoff: let them try in a
        # daemon thread and stop waiting at the deadline, so a finished run exits promptly.
        worker = threading.Thread(target=finish, name="taskloom-otel-shutdown", daemon=True)
        worker.start()
        worker.join(self.shutdown_timeout)
        if self.compact is not None:
            self.compact.print_tree()
        if self.failures or worker.is_alive():
            where = ", ".join(sorted(self.failures)) or "the OTLP endpoint"
            failed = sum(self.failures.values())
            detail = f"{failed} export(s) failed" if failed else "no answer"
            timed = (f"; gave up after {self.shutdown_timeout:g}s" if worker.is_alive()
                     else "")
            sys.stderr.write(
                f"taskloom: OpenTelemetry collector unreachable at {where} ({detail}{timed}): "
                "this run's spans and metrics were not exported\n"
            )

    def __enter__(self) -> SdkHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


class _CompactTrace:
    """A span exporter that keeps spans and prints them as an indented tree at the end:
    ``name  duration  status``, one line each, children under their parent."""

    def __init__(self) -> None:
        self.spans: list[Any] = []
        self._lock = threading.Lock()

    def export(self, spans: Sequence[Any]) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        with self._lock:
            self.spans.extend(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True

    def lines(self) -> list[str]:
        with self._lock:
            spans = sorted(self.spans, key=lambda s: s.start_time or 0)
        ids = {s.context.span_id for s in spans}
        children: dict[Any, list[Any]] = {}
        for span in spans:
            parent = span.parent.span_id if span.parent is not None else None
            children.setdefault(parent if parent in ids else None, []).append(span)
        out: list[str] = []

        def walk(parent: Any, depth: int) -> None:
            for span in children.get(parent, []):
                ms = ((span.end_time or span.start_time) - span.start_time) / 1e6
                status = span.status.status_code.name.lower()
                status = "ok" if status == "unset" else status
                out.append(f"{'  ' * depth}{span.name}  {ms:.1f} ms  {status}")
                walk(span.context.span_id, depth + 1)

        walk(None, 0)
        return out

    def print_tree(self) -> None:
        lines = self.lines()
        if lines:
            sys.stdout.write("trace:\n" + "".join(f"  {line}\n" for line in lines))
            sys.stdout.flush()


class _Watched:
    """Wraps an OTLP exporter to count failed exports by endpoint, for one report at exit."""

    def __init__(self, exporter: Any, endpoint: str, handle: SdkHandle) -> None:
        self.exporter, self.endpoint, self.handle = exporter, endpoint, handle

    def _count(self, result: Any) -> Any:
        if getattr(result, "name", "") == "FAILURE":
            failures = self.handle.failures
            failures[self.endpoint] = failures.get(self.endpoint, 0) + 1
        return result

    def export(self, batch: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return self._count(self.exporter.export(batch, *args, **kwargs))
        except Exception:
            failures = self.handle.failures
            failures[self.endpoint] = failures.get(self.endpoint, 0) + 1
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self.exporter, name)


def _otlp_endpoint(section: Mapping[str, Any], signal: str) -> str:
    return str(
        section.get("endpoint")
        or os.environ.get(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or "http://localhost:4318"
    )


def _otlp_options(section: Mapping[str, Any], handle: SdkHandle) -> dict[str, Any]:
    # One export may not outlast the shutdown budget; the exporter's own retry messages are
    # replaced by the single report SdkHandle.shutdown prints.
    logging.getLogger("opentelemetry.exporter.otlp").setLevel(logging.CRITICAL)
    options: dict[str, Any] = {"timeout": max(1, int(handle.shutdown_timeout))}
    if section.get("endpoint"):
        options["endpoint"] = section["endpoint"]
    return options


def _choice(section: Mapping[str, Any], key: str, env: str) -> list[str]:
    from taskloom_std.observability.otel import EXPORTERS

    raw = section.get(key)
    where = f"[taskloom.otel] {key}"
    if raw is None:
        raw = os.environ.get(env, "")
        where = env
    names = [n.strip().lower() for n in str(raw).split(",") if n.strip()]
    for name in names:
        if name not in EXPORTERS:
            raise ConfigError(f"{where}: unknown exporter {name!r}; one of {', '.join(EXPORTERS)}")
    return [n for n in names if n != "none"]


def _resource(section: Mapping[str, Any]) -> Any:
    from opentelemetry.sdk.resources import Resource

    attrs: dict[str, Any] = {}
    name = section.get("service_name")
    if name:
        attrs["service.name"] = name
    elif not os.environ.get("OTEL_SERVICE_NAME"):
        attrs["service.name"] = "taskloom"
    return Resource.create(attrs)


def _otlp_protocol(signal: str) -> str:
    return (
        os.environ.get(f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip().lower()


def _span_processor(name: str, section: Mapping[str, Any], handle: SdkHandle) -> Any:
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    if name == "memory":
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        handle.memory_spans = InMemorySpanExporter()
        return SimpleSpanProcessor(handle.memory_spans)
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return BatchSpanProcessor(ConsoleSpanExporter())
    if name == "compact":
        handle.compact = _CompactTrace()
        return SimpleSpanProcessor(handle.compact)
    options = _otlp_options(section, handle)
    try:
        if _otlp_protocol("TRACES") == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                OTLPSpanExporter,
            )
    except ImportError as exc:
        raise ConfigError(_INSTALL_OTLP) from exc
    exporter: Any = _Watched(OTLPSpanExporter(**options), _otlp_endpoint(section, "TRACES"), handle)
    return BatchSpanProcessor(exporter)


def _metric_reader(name: str, section: Mapping[str, Any], handle: SdkHandle) -> Any:
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    if name == "memory":
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader

        handle.memory_metrics = InMemoryMetricReader()
        return handle.memory_metrics
    if name == "console":
        from opentelemetry.sdk.metrics.export import ConsoleMetricExporter

        return PeriodicExportingMetricReader(ConsoleMetricExporter())
    options = _otlp_options(section, handle)
    try:
        if _otlp_protocol("METRICS") == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
                OTLPMetricExporter,
            )
        else:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
                OTLPMetricExporter,
            )
    except ImportError as exc:
        raise ConfigError(_INSTALL_OTLP) from exc
    exporter: Any = _Watched(
        OTLPMetricExporter(**options), _otlp_endpoint(section, "METRICS"), handle
    )
    return PeriodicExportingMetricReader(exporter)


def setup(section: Mapping[str, Any], *, install: bool = True) -> SdkHandle:
    """Build (and with ``install``, install globally) the providers ``section`` asks for."""
    handle = SdkHandle()
    timeout = section.get("shutdown_timeout", 5.0)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout < 3600:
        raise ConfigError(
            f"otel.shutdown_timeout: expected seconds between 0 and 3600, got {timeout!r}"
        )
    handle.shutdown_timeout = float(timeout)
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return handle
    if section.get("enabled", True) is False:
        return handle
    spans = [] if section.get("traces", True) is False else (
        _choice(section, "exporter", "OTEL_TRACES_EXPORTER")
    )
    if section.get("metrics", True) is False:
        metrics: list[str] = []
    elif section.get("metrics_exporter") is not None or section.get("exporter") is None:
        metrics = _choice(section, "metrics_exporter", "OTEL_METRICS_EXPORTER")
    else:
        metrics = _choice(section, "exporter", "OTEL_METRICS_EXPORTER")
    metrics = [m for m in metrics if m != "compact"]  # a compact trace has no metrics part
    handle.span_exporters, handle.metric_exporters = spans, metrics
    if not spans and not metrics:
        return handle
    from opentelemetry import metrics as metrics_api
    from opentelemetry import trace

    from taskloom_std.observability.otel import meter_provider, tracer_provider

    resource = _resource(section)
    if spans:
        existing = tracer_provider({}) if install else None
        if existing is not None:
            handle.tracer_provider = existing  # the application's: used, never replaced
        else:
            from opentelemetry.sdk.trace import TracerProvider

            # SdkHandle.shutdown ends it (within its time bound), not an exit handler.
            provider = TracerProvider(resource=resource, shutdown_on_exit=False)
            for name in spans:
                provider.add_span_processor(_span_processor(name, section, handle))
            handle.tracer_provider, handle.owns_tracer = provider, True
            if install:
                trace.set_tracer_provider(provider)
                handle.installed_tracer = True
    if metrics:
        existing = meter_provider({}) if install else None
        if existing is not None:
            handle.meter_provider = existing
        else:
            from opentelemetry.sdk.metrics import MeterProvider

            readers = [_metric_reader(name, section, handle) for name in metrics]
            mp = MeterProvider(resource=resource, metric_readers=readers, shutdown_on_exit=False)
            handle.meter_provider, handle.owns_meter = mp, True
            if install:
                metrics_api.set_meter_provider(mp)
                handle.installed_meter = True
    return handle
