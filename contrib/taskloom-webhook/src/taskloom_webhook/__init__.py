"""taskloom-webhook: post task failures, finished runs and opened circuit breakers to a webhook.

Configured in TOML::

    [taskloom.webhook]
    url = "https://hooks.slack.com/services/..."
    format = "slack"                     # or "generic"
    events = ["task_failed", "run_finished", "circuit_open"]
    timeout = 5
    retries = 2

Without a ``[taskloom.webhook]`` section the plugin does nothing and costs nothing: it adds
its per-task hook only to plugin sets configured with a URL, when their first run starts.
Messages go through a bounded queue to one background thread, so the engine never waits for
the network; a full queue drops messages and counts them (``sender.dropped``).
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

from taskloom import PluginSet, StashKey, TaskState, hookimpl
from taskloom_webhook import payloads
from taskloom_webhook.sender import Sender
from taskloom_webhook.settings import EVENTS, KEYS, WebhookSettings, parse

__all__ = ["EVENTS", "Sender", "WebhookSettings", "attach", "parse", "sender_for"]
__version__ = "0.1.0"

SECTION = "webhook"
_PLUGIN_NAME = "webhook.events"
_FAILED = TaskState.FAILED

#: ``PluginSet.stash``: the events plugin attached to that plugin set.
ATTACHED: StashKey[_Events] = StashKey()
_attach_lock = threading.Lock()


class _Events:
    """The hooks that turn engine events into messages, for one configured plugin set."""

    def __init__(self, sender: Sender) -> None:
        self.sender = sender
        self.events = sender.settings.events
        self.slack = sender.settings.format == "slack"

    def send(self, payload: dict[str, Any]) -> None:
        self.sender.submit(payloads.slack(payload) if self.slack else payload)

    @hookimpl
    def taskloom_run_finish(self, run: Any, summary: Any) -> None:
        if "run_finished" in self.events:
            self.send(payloads.run_finished(run, summary))

    @hookimpl(optionalhook=True)  # declared by the circuit_breaker plugin, which may be off
    def taskloom_circuit_change(self, key: str, old: str, new: str, task: Any) -> None:
        if new == "open" and "circuit_open" in self.events:
            self.send(payloads.circuit_open(key, old, new, task))


class _TaskEvents(_Events):
    """Adds the per-task hook, only when task failures are wanted."""

    @hookimpl
    def taskloom_task_transition(self, task: Any, old: Any, new: Any, run: Any) -> None:
        if new is _FAILED:  # called under the run's lock: build a dict and queue it, no more
            self.send(payloads.task_failed(task, run))


def attach(plugins: PluginSet) -> Sender | None:
    """Start sending for ``plugins`` as its ``[taskloom.webhook]`` section says.

    Called on every run start; it is a no-op when nothing changed. Returns the sender, or
    ``None`` when the section is missing (a sender attached earlier is then stopped).
    """
    section = plugins.config.get(SECTION)
    with _attach_lock:
        current = plugins.stash.get(ATTACHED, None)
        settings = parse(section) if section else None
        if current is not None and settings == current.sender.settings:
            return current.sender
        if current is not None:
            _detach(plugins, current)
        if settings is None:
            return None
        sender = Sender(settings)
        events = (_TaskEvents if "task_failed" in settings.events else _Events)(sender)
        plugins.register(events, name=_PLUGIN_NAME)
        plugins.stash[ATTACHED] = events
        # A plugin set that goes away stops its thread once the queue is sent. Not at exit:
        # there the sender's own handler drains the queue first.
        weakref.finalize(plugins, sender.close, 0).atexit = False
        return sender


def _detach(plugins: PluginSet, events: _Events) -> None:
    if plugins.get_plugin(_PLUGIN_NAME) is events:
        plugins.unregister(_PLUGIN_NAME)
    del plugins.stash[ATTACHED]
    events.sender.close(events.sender.settings.timeout)


def sender_for(plugins: PluginSet) -> Sender | None:
    """The sender attached to ``plugins``, if a run started with a webhook configured."""
    events = plugins.stash.get(ATTACHED, None)
    return events.sender if events is not None else None


# -- the plugin's own hooks (this module is the entry point) -------------------------------------
@hookimpl
def taskloom_register(registry: Any) -> None:
    registry.add_config_section(SECTION, KEYS)


@hookimpl
def taskloom_configure(config: Any) -> None:
    section = config.get(SECTION)
    if section:
        parse(section)  # a bad section is reported when the configuration is read


@hookimpl
def taskloom_run_start(run: Any) -> None:
    attach(run.plugins)
