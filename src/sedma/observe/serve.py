"""An HTTP server on its own daemon thread, closed by a ``with`` block.

Covers: :class:`ServerThread`, what the metrics endpoint and the dashboard share once their
server is listening: the address, the URL, closing (stop serving, release the socket, join
the thread). Does not cover: what they serve (see :mod:`sedma.observe.prom` and
:mod:`sedma.observe.dashboard`).
"""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager
from typing import Protocol

__all__ = ["ServerThread"]


class _Server(Protocol):
    def shutdown(self) -> None: ...

    def server_close(self) -> None: ...


class ServerThread(AbstractContextManager["ServerThread"]):
    """``server`` serving on ``thread`` at ``http://host:port{path}`` until :meth:`close`."""

    def __init__(
        self, server: _Server, thread: threading.Thread, host: str, port: int, path: str
    ) -> None:
        self._server, self._thread = server, thread
        self.host, self.port, self._path = host, port, path

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{self._path}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __exit__(self, *exc: object) -> None:
        self.close()
