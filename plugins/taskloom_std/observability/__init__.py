"""Observability plugins: OpenTelemetry traces and metrics (``otel``), structured log records
(``logging``), CPU and memory per attempt (``resources``) and the documented performance
statistics (``stats``). Each module is its own entry point, so each can be disabled alone."""
