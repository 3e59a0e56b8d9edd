"""A real HTTP server on 127.0.0.1 that records what the plugin posts."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


class WebhookServer:
    """Records JSON bodies; ``fail_next`` answers with an error status, ``hold`` blocks."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.headers: list[dict[str, str]] = []
        self.statuses: list[int] = []  # status to answer, consumed per request
        self.hold = threading.Event()
        self.hold.set()
        self.arrived = threading.Event()
        self.received = threading.Condition()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                server.arrived.set()
                server.hold.wait(10)
                status = server.statuses.pop(0) if server.statuses else 200
                with server.received:
                    server.headers.append(dict(self.headers))
                    if status == 200:
                        server.requests.append(json.loads(body))
                    server.received.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        # A short poll interval only makes shutdown() return sooner.
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.01,),
                                       daemon=True)
        self.thread.start()

    def wait_for(self, count: int, timeout: float = 10) -> list[dict]:
        """Block until ``count`` messages were accepted; the messages."""
        with self.received:
            assert self.received.wait_for(lambda: len(self.requests) >= count, timeout), (
                f"got {len(self.requests)} of {count} messages"
            )
            return list(self.requests)

    def close(self) -> None:
        self.hold.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def webhook_server(monkeypatch):
    # A proxy from the environment must not intercept requests to 127.0.0.1.
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
                "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    server = WebhookServer()
    yield server
    server.close()
