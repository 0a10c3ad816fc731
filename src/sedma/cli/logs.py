"""How the command line sets up logging: readable lines for people, JSON lines for machines.

Covers: :func:`configure_logging` (``-v``/``-vv`` and ``--log-format rich|json``, on stderr)
and :class:`JsonLineFormatter` (one JSON object per record: time, level, logger, message and
any ``extra`` fields the library attached). Does not cover: what the library logs (each
module has its own logger; the decision log is :mod:`sedma.control.decision_log`) or the
options themselves (see :mod:`sedma.cli.app`). The library never configures logging; this
module is the one place that does, and only the CLI calls it.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any, Literal

from rich.console import Console
from rich.logging import RichHandler

__all__ = ["LOG_FORMATS", "JsonLineFormatter", "LogFormat", "configure_logging"]

LogFormat = Literal["rich", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("rich", "json")

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(
    set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}
)


class JsonLineFormatter(logging.Formatter):
    """A record as one line of JSON: ``ts`` (ISO 8601, UTC), ``level``, ``logger``, ``msg``.

    Fields passed with ``extra=`` are kept under their own names when JSON can hold them
    (others as their ``str``); an exception adds ``exc`` with its formatted traceback.
    """

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in line:
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def configure_logging(verbose: int, log_format: LogFormat, console: Console) -> None:
    """Log to stderr at WARNING (``verbose`` 0), INFO (1) or DEBUG (2+), in ``log_format``.

    ``rich`` writes through ``console`` (aligned, coloured when a terminal); ``json`` writes
    one :class:`JsonLineFormatter` line per record to the same stream, plain.
    """
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    handler: logging.Handler
    if log_format == "json":
        handler = logging.StreamHandler(console.file)
        handler.setFormatter(JsonLineFormatter())
    else:
        handler = RichHandler(console=console, show_path=False)
    logging.basicConfig(level=level, format="%(message)s", force=True, handlers=[handler])
