"""A local HTTP server standing in for Slack (webhooks and the Web API), shared by the Slack
alert tests and the reliability suite (imported by name: pytest imports
from ``tests/``, the folder of the top-level conftest)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

WEBHOOK_PATH = "/services/T000/B000/XXXX"


class FakeSlack:
    """A local HTTP server that answers like Slack (webhook: ``ok``; Web API: ``{"ok": true}``)
    or fails with ``status``; it keeps every request it got."""

    def __init__(self):
        self.requests: list[tuple[str, dict]] = []
        self.status = 200
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                fake.requests.append((self.path, json.loads(body or b"{}")))
                api = "chat.postMessage" in self.path
                reply = json.dumps({"ok": True, "channel": "C1", "ts": "1.1"}).encode() if api else b"ok"
                if fake.status != 200:
                    reply = b"internal_error"
                self.send_response(fake.status)
                self.send_header("Content-Type", "application/json" if api else "text/plain")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def payloads(self, path: str = WEBHOOK_PATH) -> list[dict]:
        return [body for p, body in self.requests if p == path]

    def close(self):
        self.server.shutdown()
        self.server.server_close()
