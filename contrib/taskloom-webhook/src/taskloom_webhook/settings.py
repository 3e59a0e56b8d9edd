"""The ``[taskloom.webhook]`` section: declared keys and validation."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from taskloom import ConfigError
from taskloom.kernel.schema import Key

EVENTS = ("task_failed", "run_finished", "circuit_open")
FORMATS = ("generic", "slack")

#: What ``taskloom_register`` declares, so the configuration validator and the generated
#: configuration reference know the section.
KEYS: dict[str, Key] = {
    "url": Key(("string",), "where to POST the JSON messages (http or https)", required=True),
    "events": Key(("array",), "which events to send: " + ", ".join(EVENTS) + " (default: all)",
                  items="string"),
    "format": Key(("string",), 'payload shape: "generic" JSON or "slack" ({"text": ...})',
                  choices=FORMATS),
    "timeout": Key(("number",), "seconds to wait for the server per request (default 5)",
                   minimum=0),
    "retries": Key(("integer",), "extra tries after a network error or a 5xx/429 (default 2)",
                   minimum=0),
    "backoff": Key(("number",), "seconds before the first retry, doubled each time (default 0.5)",
                   minimum=0),
    "queue_size": Key(("integer",), "messages waiting to be sent; beyond it new ones are dropped "
                      "and counted (default 1000)", minimum=1),
    "headers": Key(("table",), "extra HTTP headers, e.g. an Authorization token"),
}


@dataclass(frozen=True)
class WebhookSettings:
    url: str
    events: frozenset[str] = frozenset(EVENTS)
    format: str = "generic"
    timeout: float = 5.0
    retries: int = 2
    backoff: float = 0.5
    queue_size: int = 1000
    headers: Mapping[str, str] = field(default_factory=dict)

    def __hash__(self) -> int:
        return hash((self.url, self.events, self.format, self.timeout, self.retries,
                     self.backoff, self.queue_size, tuple(sorted(self.headers.items()))))


def parse(section: Mapping[str, Any]) -> WebhookSettings:
    """Validate the section; every problem is reported at once, each with its key path."""
    problems: list[str] = []
    where = "taskloom.webhook"

    def bad(key: str, message: str) -> None:
        problems.append(f"{where}.{key}: {message}")

    for key in section:
        if key not in KEYS:
            bad(key, f"unknown key; known: {', '.join(KEYS)}")

    url = section.get("url")
    if not isinstance(url, str) or not url:
        bad("url", "required, a string")
    elif urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
        bad("url", f"must be an http:// or https:// URL, got {url!r}")

    events = section.get("events", list(EVENTS))
    if not isinstance(events, (list, tuple)) or not all(isinstance(e, str) for e in events):
        bad("events", "must be an array of strings")
        events = list(EVENTS)
    for i, e in enumerate(events):
        if e not in EVENTS:
            bad(f"events[{i}]", f"unknown event {e!r}; one of {', '.join(EVENTS)}")

    fmt = section.get("format", "generic")
    if fmt not in FORMATS:
        bad("format", f"must be one of {', '.join(FORMATS)}, got {fmt!r}")

    def number(key: str, default: float, integer: bool, minimum: float) -> Any:
        value = section.get(key, default)
        ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok_type:
            bad(key, f"must be {'an integer' if integer else 'a number'}, got {value!r}")
            return default
        if value < minimum or (key == "timeout" and value == 0):
            bad(key, f"must be {'> 0' if key == 'timeout' else f'>= {minimum:g}'}, got {value!r}")
            return default
        return value

    timeout = number("timeout", 5.0, False, 0)
    retries = number("retries", 2, True, 0)
    backoff = number("backoff", 0.5, False, 0)
    queue_size = number("queue_size", 1000, True, 1)

    headers = section.get("headers", {})
    if not isinstance(headers, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        bad("headers", "must be a table of strings")
        headers = {}

    if problems:
        raise ConfigError(problems)
    return WebhookSettings(
        url=str(url), events=frozenset(events), format=str(fmt), timeout=float(timeout),
        retries=int(retries), backoff=float(backoff), queue_size=int(queue_size),
        headers=dict(headers),
    )
