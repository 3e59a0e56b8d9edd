"""Setting up the OpenTelemetry SDK for the CLI (and anyone who wants it done for them).

Exporters: ``console`` (spans and metrics printed to stdout), ``otlp`` (needs the
``opentelemetry-exporter-otlp`` package, the ``otlp`` extra), ``memory`` (kept in memory, for
tests) and ``none``. Choice, first match wins: ``[taskloom.otel] exporter``, then the standard
``OTEL_TRACES_EXPORTER`` / ``OTEL_METRICS_EXPORTER`` (comma-separated lists allowed), then
``none``. ``metrics_exporter`` picks the metrics exporter separately and ``metrics = false``
turns metrics off. The service name is ``service_name``, else ``OTEL_SERVICE_NAME``, else
``taskloom``; every other ``OTEL_*`` variable (sampler, endpoint, headers, intervals) is read
by the SDK itself. ``OTEL_SDK_DISABLED=true`` sets up nothing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
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
        application's own providers are only flushed."""
        if self.owns_tracer and self.tracer_provider is not None:
            self.tracer_provider.shutdown()
        elif self.tracer_provider is not None:
            self.tracer_provider.force_flush()
        if self.owns_meter and self.meter_provider is not None:
            self.meter_provider.shutdown()
        elif self.meter_provider is not None:
            self.meter_provider.force_flush()
        self.owns_tracer = self.owns_meter = False
        self.tracer_provider = self.meter_provider = None

    def __enter__(self) -> SdkHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


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
    options = {"endpoint": section["endpoint"]} if section.get("endpoint") else {}
    try:
        if _otlp_protocol("TRACES") == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                OTLPSpanExporter,
            )
    except ImportError as exc:
        raise ConfigError(_INSTALL_OTLP) from exc
    return BatchSpanProcessor(OTLPSpanExporter(**options))


def _metric_reader(name: str, section: Mapping[str, Any], handle: SdkHandle) -> Any:
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    if name == "memory":
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader

        handle.memory_metrics = InMemoryMetricReader()
        return handle.memory_metrics
    if name == "console":
        from opentelemetry.sdk.metrics.export import ConsoleMetricExporter

        return PeriodicExportingMetricReader(ConsoleMetricExporter())
    options = {"endpoint": section["endpoint"]} if section.get("endpoint") else {}
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
    return PeriodicExportingMetricReader(OTLPMetricExporter(**options))


def setup(section: Mapping[str, Any], *, install: bool = True) -> SdkHandle:
    """Build (and with ``install``, install globally) the providers ``section`` asks for."""
    handle = SdkHandle()
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

            provider = TracerProvider(resource=resource)
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
            mp = MeterProvider(resource=resource, metric_readers=readers)
            handle.meter_provider, handle.owns_meter = mp, True
            if install:
                metrics_api.set_meter_provider(mp)
                handle.installed_meter = True
    return handle
