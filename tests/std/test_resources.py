"""The resources plugin: CPU time and memory per attempt, only when enabled."""

import asyncio
import time

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from taskloom import Engine, Task, load_plugins
from taskloom_std.observability.resources import USAGE, ResourceMonitor

ON = {"resources": {"enabled": True}}
MB = 1 << 20


def burn(cpu_seconds=0.03):
    """Spend CPU time in this thread (not wall time: it does not sleep)."""
    start = time.thread_time()
    n = 0
    while time.thread_time() - start < cpu_seconds:
        n += 1
    return n


def allocate():
    # Written bytes, so the pages are really resident; returned, so they stay alive
    # until the attempt has been measured.
    return b"x" * (32 * MB)


def test_off_by_default_no_wrapper_and_nothing_on_the_task():
    task = Task("burn", fn=burn)
    Engine(plugins=load_plugins()).run([task])
    assert not any(isinstance(w, ResourceMonitor) for w in task._plan.wrappers)
    assert USAGE not in task.stash


def test_cpu_and_memory_of_each_attempt_are_on_the_task():
    burner, grower = Task("burn", fn=burn), Task("grow", fn=allocate)
    summary = Engine(plugins=load_plugins(config=ON), max_workers=1).run([burner, grower])
    assert summary.ok
    cpu = burner.stash[USAGE]
    assert cpu["attempt"] == 1
    assert cpu["thread_cpu_time"] >= 0.03
    assert cpu["cpu_time"] >= cpu["thread_cpu_time"] * 0.5  # process time, coarser ticks
    assert cpu["cpu_time"] == cpu["cpu_user"] + cpu["cpu_system"]
    mem = grower.stash[USAGE]
    assert mem["rss_delta"] >= 16 * MB
    assert mem["rss"] >= mem["rss_delta"]


def test_usage_is_a_span_attribute_when_traced():
    exporter = InMemorySpanExporter()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    config = {**ON, "otel": {"tracer_provider": tp}}
    Engine(plugins=load_plugins(config=config)).run([Task("burn", fn=burn)])
    [span] = [s for s in exporter.get_finished_spans() if s.name == "task burn"]
    assert span.attributes["taskloom.resources.thread_cpu_time"] >= 0.03
    assert "taskloom.resources.rss_delta" in span.attributes


def test_coroutines_on_the_asyncio_executor_are_measured():
    plugins = load_plugins(config=ON)

    async def work():
        await asyncio.sleep(0)
        return burn(0.01)

    task = Task("async", fn=work)
    assert Engine(plugins=plugins, executor="asyncio").run([task]).ok
    assert task.stash[USAGE]["thread_cpu_time"] >= 0.01
