"""A loopback HTTP proxy in front of the real Elasticsearch that fails chosen requests first.

Elasticsearch answers 429 when its write queue is full and 503 when a shard is unavailable, but
neither can be provoked on demand on a healthy single node; this proxy makes the first matching
requests fail in those ways (or drops the connection), then forwards everything unchanged.
Item-level throttling is simulated on a forwarded bulk request: "errors" answers that an item was
throttled (the short answer: errors and the failed items' type, no positions) whatever the node
said, "items-429" marks every other item of the node's answer as throttled.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import socketserver
import threading
import time
from collections import deque
from collections.abc import Iterator
from urllib.parse import urlsplit

# What Elasticsearch itself answers with these statuses (type and reason as a node writes them);
# any other status gets a body without a type, as a proxy in front of a cluster would send.
INJECTED_ERRORS = {
    400: ("illegal_argument_exception", "injected: the request is malformed"),
    403: (
        "security_exception",
        "action [indices:data/write/bulk] is unauthorized for user [flows_loader] with effective roles "
        "[flows_reader], this action is granted by the index privileges [create_doc,create,index,write,all]",
    ),
    429: ("es_rejected_execution_exception", "injected: rejected execution of coordinating operation"),
    503: ("unavailable_shards_exception", "injected: primary shard is not active"),
}


THROTTLED_SHORT_ANSWER = (
    b'{"errors":true,"items":[{"index":{"error":{"type":"es_rejected_execution_exception","reason":"injected"}}}]}'
)


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        proxy: FaultProxy = self.server.proxy  # type: ignore[attr-defined]
        request_line = self.rfile.readline().decode("latin-1").strip()
        if not request_line:
            return
        method, path, _ = request_line.split(" ", 2)
        headers = {}
        while (line := self.rfile.readline().decode("latin-1").strip()) != "":
            name, value = line.split(":", 1)
            headers[name.strip()] = value.strip()
        body = self.rfile.read(int(headers.get("Content-Length", "0") or 0))
        fault = proxy.next_fault(method, path, body)
        if fault == "drop":
            return  # connection closed without an answer
        if isinstance(fault, int):
            error_type, reason = INJECTED_ERRORS.get(fault, ("", "injected"))
            error = {"type": error_type, "reason": reason} if error_type else reason
            payload = json.dumps({"error": error, "status": fault}).encode()
            self._answer(fault, {"Content-Type": "application/json", "X-Elastic-Product": "Elasticsearch"}, payload)
            return
        with proxy.in_flight(path):
            upstream = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=60)
            forwarded = {k: v for k, v in headers.items() if k.lower() not in ("host", "connection")}
            upstream.request(method, path, body=body, headers=forwarded)
            response = upstream.getresponse()
            answer = response.read()
        if fault == "errors":
            answer = THROTTLED_SHORT_ANSWER
        elif fault == "items-429":
            answer = _throttle_every_other_item(answer)
        kept = {
            k: v
            for k, v in response.getheaders()
            if k.lower() not in ("connection", "transfer-encoding", "content-length")
        }
        self._answer(response.status, kept, answer)
        upstream.close()

    def _answer(self, status: int, headers: dict, body: bytes) -> None:
        self.wfile.write(f"HTTP/1.1 {status} {http.client.responses.get(status, '')}\r\n".encode())
        for name, value in {**headers, "Content-Length": str(len(body)), "Connection": "close"}.items():
            self.wfile.write(f"{name}: {value}\r\n".encode())
        self.wfile.write(b"\r\n" + body)


def _throttle_every_other_item(answer: bytes) -> bytes:
    result = json.loads(answer)
    for item in result["items"][::2]:
        outcome = next(iter(item.values()))
        outcome["status"] = 429
        outcome["error"] = {"type": "es_rejected_execution_exception", "reason": "injected"}
    return json.dumps({**result, "errors": True}).encode()


class FaultProxy:
    """`faults`: what the first matching requests get, in order: an HTTP status, "drop", "errors"
    or "items-429". `ids` records the document ids each request of the path carried; `peak_in_flight`
    the most requests of the path forwarded at once, each held `hold_s` before it is forwarded (so
    that requests a client sends at once do overlap)."""

    def __init__(
        self,
        upstream_url: str,
        path_contains: str,
        faults: list[int | str],
        body_contains: bytes = b"",
        hold_s: float = 0.0,
    ) -> None:
        self.upstream = urlsplit(upstream_url)
        self.path_contains = path_contains
        self.body_contains = body_contains  # and, when given, only requests whose body holds it
        self._faults = deque(faults)
        self.injected: list[int | str] = []
        self.ids: list[list[str]] = []
        self.hold_s = hold_s
        self.peak_in_flight = 0
        self._in_flight = 0
        self._lock = threading.Lock()
        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.proxy = self  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def next_fault(self, method: str, path: str, body: bytes) -> int | str | None:
        with self._lock:
            if self.path_contains in path:
                self.ids.append([i.decode() for i in re.findall(rb'"_id":"([^"]*)"', body)])
            if self.path_contains in path and self.body_contains in body and self._faults:
                fault = self._faults.popleft()
                self.injected.append(fault)
                return fault
        return None

    @contextlib.contextmanager
    def in_flight(self, path: str) -> Iterator[None]:
        """Counts a forwarded request of the path while it is held and answered upstream."""
        if self.path_contains not in path:
            yield
            return
        with self._lock:
            self._in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self._in_flight)
        try:
            time.sleep(self.hold_s)
            yield
        finally:
            with self._lock:
                self._in_flight -= 1

    def __enter__(self) -> FaultProxy:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
