"""A background sender: hooks hand it messages without waiting; one thread POSTs them.

The engine calls the hooks that produce messages on its hot path (transitions are reported
under the run's lock), so :meth:`Sender.submit` never blocks: when the bounded queue is full
the message is dropped and counted.
"""

from __future__ import annotations

import atexit
import json
import logging
import threading
import urllib.error
import urllib.request
from collections import deque
from typing import Any

from taskloom_webhook.settings import WebhookSettings

log = logging.getLogger("taskloom.webhook")

USER_AGENT = "taskloom-webhook/0.1"

Message = dict[str, Any]


class Sender:
    """Delivers JSON messages to one URL from a daemon thread.

    ``sent``, ``failed`` (gave up after the retries) and ``dropped`` (queue full) count
    messages. At interpreter exit the queue is drained for up to ``timeout`` seconds, so the
    last run's message is not lost when a command ends right after the run.
    """

    def __init__(self, settings: WebhookSettings) -> None:
        self.settings = settings
        self.sent = self.failed = self.dropped = 0
        self._queue: deque[Message] = deque()
        self._busy = 0  # messages taken but not finished
        self._cond = threading.Condition()
        self._closing = False
        self._opener = urllib.request.build_opener()
        self._thread = threading.Thread(target=self._loop, name="taskloom-webhook", daemon=True)
        self._thread.start()
        atexit.register(self._at_exit)

    # -- producer side (hooks) ---------------------------------------------------------------
    def submit(self, message: Message) -> bool:
        """Queue a message without blocking; False (and counted) when the queue is full."""
        with self._cond:
            if self._closing:
                return False
            if len(self._queue) >= self.settings.queue_size:
                self.dropped += 1
                dropped = self.dropped
            else:
                self._queue.append(message)
                self._cond.notify_all()
                return True
        # Logged outside the lock; 1, 10, 100... so a flood does not flood the log too.
        if _is_power_of_ten(dropped):
            log.warning("webhook %s: queue full (%d messages), %d message(s) dropped so far",
                        self.settings.url, self.settings.queue_size, dropped)
        return False

    def pending(self) -> int:
        with self._cond:
            return len(self._queue) + self._busy

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued message was sent or given up on; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue and not self._busy, timeout)

    def close(self, timeout: float | None = None) -> bool:
        """Send what is queued (for up to ``timeout`` seconds), then stop the thread.

        Closing again only reports whether the queue is empty.
        """
        with self._cond:
            if self._closing:
                return not self._queue and not self._busy
        drained = self.flush(timeout)
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout)
        atexit.unregister(self._at_exit)
        if self.dropped:
            log.warning("webhook %s: %d message(s) were dropped because the queue was full",
                        self.settings.url, self.dropped)
        return drained

    def _at_exit(self) -> None:
        self.close(self.settings.timeout)

    # -- consumer side (thread) --------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queue or self._closing)
                if not self._queue:
                    return
                message = self._queue.popleft()
                self._busy += 1
            try:
                self._deliver(message)
            except Exception:  # a payload json cannot encode must not kill the sender
                log.exception("webhook %s: could not send a message", self.settings.url)
                with self._cond:
                    self.failed += 1
            finally:
                with self._cond:
                    self._busy -= 1
                    self._cond.notify_all()

    def _deliver(self, message: Message) -> None:
        s = self.settings
        body = json.dumps(message, default=str).encode()
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, **s.headers}
        delay = s.backoff
        error = ""
        for attempt in range(s.retries + 1):
            if attempt:
                with self._cond:  # a closing sender stops waiting between tries
                    self._cond.wait_for(lambda: self._closing, delay)
                delay *= 2
            request = urllib.request.Request(s.url, data=body, headers=headers, method="POST")
            try:
                with self._opener.open(request, timeout=s.timeout) as response:
                    response.read()
            except urllib.error.HTTPError as exc:
                error = f"HTTP {exc.code} {exc.reason}"
                exc.close()
                if exc.code < 500 and exc.code != 429:  # the request itself is wrong
                    break
                continue
            except (OSError, ValueError) as exc:  # URLError, timeouts, refused connections
                error = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
                continue
            with self._cond:
                self.sent += 1
            return
        with self._cond:
            self.failed += 1
        log.warning("webhook %s: message not delivered after %d tries: %s",
                    s.url, attempt + 1, error)


def _is_power_of_ten(n: int) -> bool:
    while n >= 10 and n % 10 == 0:
        n //= 10
    return n == 1
