"""A loopback proxy that presents the OpenSearch test node to the Elasticsearch client.

There is no Elasticsearch node in tests (only OpenSearch comes from Maven Central), and the
Elasticsearch 8 client refuses a server that does not say it is Elasticsearch. This proxy
rewrites only the envelope: the client's `compatible-with=8` media types to plain JSON on
the way in, and on the way out the `X-Elastic-Product` header and the version the root
endpoint reports. Every request body and answer passes through unchanged, so the
Elasticsearch adapter's calls (names, parameters, bodies) run against a real engine. It does
not prove Elasticsearch-only behaviour; the two APIs share every call the backend makes.
"""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

REPORTED_VERSION = "8.17.0"
_MEDIA_TYPES = {
    "application/vnd.elasticsearch+json; compatible-with=8": "application/json",
    "application/vnd.elasticsearch+x-ndjson; compatible-with=8": "application/x-ndjson",
}


def _handler(upstream: str) -> type[BaseHTTPRequestHandler]:
    target = urlparse(upstream)

    class Facade(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {
                k: _MEDIA_TYPES.get(v, v)
                for k, v in self.headers.items()
                if k.lower() not in ("host", "content-length", "connection")
            }
            connection = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
            try:
                connection.request(self.command, self.path, body=body, headers=headers)
                response = connection.getresponse()
                payload = response.read()
            except OSError:
                self.send_error(502)
                return
            finally:
                connection.close()
            if self.command == "GET" and urlparse(self.path).path == "/" and response.status == 200:
                info = json.loads(payload)
                info["version"].pop("distribution", None)
                info["version"]["number"] = REPORTED_VERSION
                payload = json.dumps(info).encode()
            self.send_response(response.status)
            for key, value in response.getheaders():
                if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                    self.send_header(key, value)
            self.send_header("X-Elastic-Product", "Elasticsearch")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward

        def log_message(self, format: str, *args: object) -> None:
            pass  # quiet: pytest shows the test's own output

    return Facade


@contextmanager
def elasticsearch_facade(upstream: str) -> Iterator[str]:
    """Serve the facade on a free loopback port for the block; yield its URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(upstream))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
