"""The dashboard's HTTP server: one static page and the JSON it polls; no Grafana, no CDN.

Covers: :class:`DashboardServer`, a standard-library ``ThreadingHTTPServer`` on its own
daemon thread serving ``/`` (``observe/static/dashboard.html``: plain JavaScript drawing
SVG, nothing fetched from elsewhere), ``/api/state`` (the source's snapshot: cluster, plan,
one point per interval, decisions) and ``/api/cluster``; :class:`Source`, what it serves
from (:class:`~sedma.observe.state.LiveState` during a run,
:class:`~sedma.observe.store_view.StoreView` over a store). Does not cover: building the
picture (those two modules) or the Prometheus endpoint (see :mod:`sedma.observe.prom`).

It binds 127.0.0.1 unless told otherwise: the page shows the cluster's layout and
decisions, which need not be public.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.resources import files
from typing import Any, Protocol

from sedma.errors import SedmaError
from sedma.observe.serve import ServerThread

__all__ = ["DashboardServer", "Source", "json_safe"]

log = logging.getLogger(__name__)


class Source(Protocol):
    def snapshot(self) -> dict[str, Any]: ...


def json_safe(v: Any) -> Any:
    """``v`` with non-finite floats as None (JSON has no NaN or infinity)."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {str(k): json_safe(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [json_safe(x) for x in v]
    return v


def _page() -> bytes:
    return files("sedma.observe").joinpath("static/dashboard.html").read_bytes()


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        try:
            if path in ("/", "/index.html"):
                self._send(200, "text/html; charset=utf-8", self.server.page)
            elif path == "/api/state":
                self._json(self.server.source.snapshot())
            elif path == "/api/cluster":
                self._json(self.server.source.snapshot().get("cluster"))
            elif path == "/favicon.ico":
                self._send(204, "image/x-icon", b"")
            else:
                self._send(404, "text/plain", b"not found: / and /api/state\n")
        except SedmaError as e:
            self._send(503, "application/json", json.dumps({"error": str(e)}).encode())

    def _json(self, data: Any) -> None:
        body = json.dumps(json_safe(data), allow_nan=False).encode()
        self._send(200, "application/json", body)

    def _send(self, code: int, ctype: str, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("dashboard: " + format, *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    source: Source
    page: bytes


class DashboardServer(ServerThread):
    """Serve ``source`` at ``http://host:port/`` until closed (port 0: a free one)."""

    def __init__(self, source: Source, host: str = "127.0.0.1", port: int = 0) -> None:
        try:
            httpd = _Server((host, port), _Handler)
        except OSError as e:
            raise SedmaError(f"--dashboard: cannot listen on {host}:{port} ({e})") from None
        httpd.source = source
        httpd.page = _page()
        thread = threading.Thread(target=httpd.serve_forever, name="sedma-dashboard", daemon=True)
        thread.start()
        super().__init__(httpd, thread, host, httpd.server_address[1], "/")
