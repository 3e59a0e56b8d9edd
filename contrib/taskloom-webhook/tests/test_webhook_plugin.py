"""The webhook plugin end to end: a real engine, the installed entry point, a real server."""

from __future__ import annotations

import logging
import sys

import pytest

import taskloom_webhook
from taskloom import ConfigError, Engine, Task, load_plugins
from taskloom_webhook import Sender, WebhookSettings, sender_for

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def _fail(message="disk full"):
    def body():
        raise OSError(message)

    return body


def _engine(url, **section):
    return Engine(config={"webhook": {"url": url, "backoff": 0, **section}})


def _delivered(engine, server, count):
    sender = sender_for(engine.plugins)
    assert sender is not None
    assert sender.flush(10)
    return server.wait_for(count)


def test_the_entry_point_loads_the_plugin():
    ps = load_plugins()
    assert ps.infos["webhook"].distribution == "taskloom-webhook"
    assert ps.infos["webhook"].error is None
    assert "webhook" in ps.registry.config_sections()


def test_task_failure_and_run_completion_generic_payloads(webhook_server):
    engine = _engine(webhook_server.url)
    summary = engine.run([
        Task("extract", fn=lambda: 1),
        Task("load", fn=_fail(), dependencies=["extract"]),
        Task("report", dependencies=["load"]),
    ], name="nightly")
    assert summary.status == "failed"
    messages = _delivered(engine, webhook_server, 3)
    by_task = {m["task"]: m for m in messages if m["event"] == "task_failed"}
    assert set(by_task) == {"load", "report"}
    load = by_task["load"]
    assert load["run_id"] == summary.id
    assert load["run_name"] == "nightly"
    assert (load["error"], load["error_type"], load["attempts"]) == ("disk full", "OSError", 1)
    # The dependent failed because of its upstream; the message says so.
    assert by_task["report"]["error_type"] == "UpstreamFailed"
    assert "load" in by_task["report"]["error"]
    (finished,) = [m for m in messages if m["event"] == "run_finished"]
    assert finished["status"] == "failed"
    assert finished["counts"] == {"completed": 1, "failed": 2}
    assert finished["run_id"] == summary.id
    assert messages[-1]["event"] == "run_finished"
    headers = webhook_server.headers[0]
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"].startswith("taskloom-webhook/")


def test_slack_format_and_configuration_from_toml(webhook_server):
    document = tomllib.loads(f"""
        [taskloom.webhook]
        url = "{webhook_server.url}"
        format = "slack"
        events = ["task_failed"]
        timeout = 2
        retries = 0
        headers = {{ Authorization = "Bearer s3cret" }}
    """)
    engine = Engine(config=document["taskloom"])
    engine.run([Task("load", fn=_fail("no route to host")), Task("ok")], name="nightly")
    (message,) = _delivered(engine, webhook_server, 1)
    assert list(message) == ["text"]
    assert message["text"] == (":x: taskloom task `load` failed in run nightly: "
                               "OSError: no route to host")
    assert webhook_server.headers[0]["Authorization"] == "Bearer s3cret"
    assert sender_for(engine.plugins).settings.timeout == 2.0


def test_run_completion_in_slack_format(webhook_server):
    engine = _engine(webhook_server.url, format="slack", events=["run_finished"])
    engine.run([Task("a"), Task("b", dependencies=["a"])], name="hourly")
    (message,) = _delivered(engine, webhook_server, 1)
    assert message["text"].startswith(":white_check_mark: taskloom run hourly completed in ")
    assert message["text"].endswith("(2 completed)")
    # Only run events wanted: the per-task hook is not even registered.
    assert not [
        i for i in engine.plugins.hook.taskloom_task_transition.get_hookimpls()
        if i.plugin_name == "webhook.events"
    ]


def test_circuit_breaker_opening_is_posted(webhook_server):
    engine = _engine(webhook_server.url, events=["circuit_open"])
    tasks = [
        Task(f"call{i}", fn=_fail("503 from api"), tags=["api"],
             circuit_breaker={"failure_threshold": 2, "tag": "api"})
        for i in range(2)
    ]
    engine.run(tasks)
    sender = sender_for(engine.plugins)
    messages = _delivered(engine, webhook_server, 1)
    opened = [m for m in messages if m["event"] == "circuit_open"]
    assert len(opened) == 1
    assert (opened[0]["circuit"], opened[0]["old"], opened[0]["new"]) == (
        "tag:api", "closed", "open"
    )
    assert opened[0]["task"] in {"call0", "call1"}
    assert sender.sent == len(messages)


def test_circuit_change_hook_direct(webhook_server):
    """Only openings are sent; other breaker transitions are not."""
    engine = _engine(webhook_server.url, format="slack")
    engine.run([])
    hook = engine.plugins.hook.taskloom_circuit_change
    hook(key="task:sync", old="open", new="half-open", task=None)
    hook(key="task:sync", old="half-open", new="open", task=None)
    messages = _delivered(engine, webhook_server, 2)
    assert messages[-1] == {"text": ":rotating_light: taskloom circuit breaker `task:sync` opened"}
    assert len(messages) == 2  # the run's completion and the one opening


def test_kit_fixtures_configure_the_plugin(taskloom_plugins, taskloom_engine, hook_recorder,
                                           webhook_server):
    taskloom_plugins.configure({"webhook": {"url": webhook_server.url, "backoff": 0}})
    taskloom_engine.run([Task("boom", fn=_fail())])
    sender = sender_for(taskloom_plugins)
    assert sender.flush(10)
    messages = webhook_server.wait_for(2)
    assert [m["event"] for m in messages] == ["task_failed", "run_finished"]
    call = hook_recorder.getcall("taskloom_task_transition", task="boom", new="failed")
    assert "webhook.events" in call.plugins


def test_retries_server_errors_then_delivers(webhook_server):
    webhook_server.statuses = [500, 503]
    sender = Sender(WebhookSettings(url=webhook_server.url, retries=2, backoff=0))
    assert sender.submit({"event": "run_finished"})
    assert sender.close(10)
    assert webhook_server.wait_for(1) == [{"event": "run_finished"}]
    assert (sender.sent, sender.failed) == (1, 0)
    assert len(webhook_server.headers) == 3


def test_gives_up_after_retries_and_does_not_retry_client_errors(webhook_server, caplog):
    webhook_server.statuses = [500, 500, 400]
    sender = Sender(WebhookSettings(url=webhook_server.url, retries=1, backoff=0))
    with caplog.at_level(logging.WARNING, logger="taskloom.webhook"):
        sender.submit({"n": 1})  # 500, 500: gives up after 2 tries
        sender.submit({"n": 2})  # 400: not retried
        assert sender.close(10)
    assert (sender.sent, sender.failed) == (0, 2)
    assert len(webhook_server.headers) == 3
    assert "not delivered after 2 tries: HTTP 500" in caplog.text
    assert "not delivered after 1 tries: HTTP 400" in caplog.text


def test_unreachable_server_is_reported_not_raised(caplog):
    # A port nobody listens on: bind one, then close it.
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sender = Sender(WebhookSettings(url=f"http://127.0.0.1:{port}/", retries=0, backoff=0))
    with caplog.at_level(logging.WARNING, logger="taskloom.webhook"):
        sender.submit({"n": 1})
        assert sender.close(10)
    assert sender.failed == 1
    assert "not delivered after 1 tries" in caplog.text


def test_full_queue_drops_and_counts_without_blocking(webhook_server, caplog):
    webhook_server.hold.clear()  # the server sits on the first request
    sender = Sender(WebhookSettings(url=webhook_server.url, queue_size=2, timeout=10))
    with caplog.at_level(logging.WARNING, logger="taskloom.webhook"):
        assert sender.submit({"n": 0})
        assert webhook_server.arrived.wait(10)  # taken off the queue, in flight
        assert sender.submit({"n": 1})
        assert sender.submit({"n": 2})
        assert not sender.submit({"n": 3})
        assert not sender.submit({"n": 4})
        assert sender.dropped == 2
        assert sender.pending() == 3
        webhook_server.hold.set()
        assert sender.close(10)
    assert [m["n"] for m in webhook_server.wait_for(3)] == [0, 1, 2]
    assert "queue full (2 messages), 1 message(s) dropped so far" in caplog.text
    assert "2 message(s) were dropped because the queue was full" in caplog.text


def test_a_slow_webhook_never_holds_up_a_run(webhook_server):
    webhook_server.hold.clear()
    engine = _engine(webhook_server.url, queue_size=3)
    tasks = [Task(f"t{i}", fn=_fail()) for i in range(20)]
    summary = engine.run(tasks)  # returns while the server still holds the first request
    assert summary.counts == {"failed": 20}
    sender = sender_for(engine.plugins)
    assert webhook_server.requests == []
    assert sender.dropped >= 20 + 1 - 3 - 1
    webhook_server.hold.set()
    assert sender.close(10)
    assert sender.sent + sender.dropped == 21


def test_without_configuration_the_plugin_is_inert():
    ps = load_plugins()
    Engine(plugins=ps).run([Task("a", fn=_fail())])
    assert sender_for(ps) is None
    assert ps.pm.get_plugin("webhook.events") is None


def test_reconfiguring_replaces_or_removes_the_sender(webhook_server):
    engine = _engine(webhook_server.url, events=["run_finished"])
    engine.run([])
    first = sender_for(engine.plugins)
    engine.plugins.configure({"webhook": {"url": webhook_server.url, "events": ["task_failed"]}})
    engine.run([Task("x", fn=_fail())])
    second = sender_for(engine.plugins)
    assert second is not first and second.settings.events == {"task_failed"}
    assert second.flush(10)
    assert [m["event"] for m in webhook_server.wait_for(2)] == ["run_finished", "task_failed"]
    engine.plugins.configure({})
    engine.run([Task("y", fn=_fail())])
    assert sender_for(engine.plugins) is None
    assert engine.plugins.pm.get_plugin("webhook.events") is None


@pytest.mark.parametrize(
    ("section", "problems"),
    [
        ({}, ["taskloom.webhook.url: required, a string"]),
        ({"url": "ftp://x"}, ["taskloom.webhook.url: must be an http:// or https:// URL"]),
        (
            {"url": "http://h/", "events": ["task_failed", "run_done"], "format": "teams",
             "timeout": 0, "retries": -1, "queue_size": 1.5, "headers": {"X": 1}, "urll": 1},
            [
                "taskloom.webhook.urll: unknown key",
                "taskloom.webhook.events[1]: unknown event 'run_done'",
                "taskloom.webhook.format: must be one of generic, slack, got 'teams'",
                "taskloom.webhook.timeout: must be > 0, got 0",
                "taskloom.webhook.retries: must be >= 0, got -1",
                "taskloom.webhook.queue_size: must be an integer, got 1.5",
                "taskloom.webhook.headers: must be a table of strings",
            ],
        ),
    ],
)
def test_bad_configuration_lists_every_problem(section, problems):
    with pytest.raises(ConfigError) as info:
        taskloom_webhook.parse(section)
    assert len(info.value.problems) == len(problems)
    for got, want in zip(info.value.problems, problems, strict=True):
        assert got.startswith(want)


def test_bad_configuration_is_an_error_when_plugins_load():
    with pytest.raises(ConfigError, match=r"taskloom\.webhook\.url"):
        load_plugins(config={"webhook": {"url": "not a url"}})


def test_messages_queued_when_the_process_exits_are_delivered(webhook_server):
    import os
    import subprocess

    script = (
        "import sys\n"
        "from taskloom import Engine, Task\n"
        "engine = Engine(config={'webhook': {'url': sys.argv[1], 'events': ['run_finished']}})\n"
        "engine.run([Task('only')], name='last-words')\n"
    )
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    subprocess.run([sys.executable, "-c", script, webhook_server.url], env=env, check=True,
                   timeout=60)
    (message,) = webhook_server.wait_for(1)
    assert (message["event"], message["run_name"], message["status"]) == (
        "run_finished", "last-words", "completed"
    )
