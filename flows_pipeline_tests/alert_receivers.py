"""Real receivers for the alert tests: an HTTP server recording JSON POSTs, an SMTP server (aiosmtpd)."""

from __future__ import annotations

import json
import threading
from email import message_from_bytes, policy
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller

from flows_pipeline_tests.support import free_port


class WebhookReceiver:
    """An HTTP server on 127.0.0.1 that records every POSTed JSON body; `statuses` answers the first ones."""

    def __init__(self, statuses: list[int] | None = None):
        self.bodies: list[dict] = []
        self.paths: list[str] = []
        self.statuses = list(statuses or [])
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                if status == 200:
                    receiver.bodies.append(body)
                    receiver.paths.append(self.path)
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok" if status == 200 else b"no_service")

            def log_message(self, *args):  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/services/T0/B0/secret-token"

    def __enter__(self) -> WebhookReceiver:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Collect:
    def __init__(self, messages: list[Message]):
        self.messages = messages

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"


class SmtpReceiver:
    """A real SMTP server (aiosmtpd) on 127.0.0.1 keeping every message it accepts."""

    def __init__(self):
        self.messages: list[Message] = []
        self.port = free_port()
        self.controller = Controller(_Collect(self.messages), hostname="127.0.0.1", port=self.port)

    def __enter__(self) -> SmtpReceiver:
        self.controller.start()
        return self

    def __exit__(self, *exc) -> None:
        self.controller.stop()

    def env(self, to: str = "noc@example.org") -> dict[str, str]:
        return {
            "FLOWS_ALERT_SMTP_HOST": "127.0.0.1",
            "FLOWS_ALERT_SMTP_PORT": str(self.port),
            "FLOWS_ALERT_EMAIL_TO": to,
        }
