"""One log format for every server process: the role first, then the time, level, logger and message.

Text (the default), one line per record, the time in UTC to the millisecond::

    OBS-A 2026-12-02T16:49:10.123Z INFO servers.obs: recovered sequence 48213 (...)

or, with ``[logging] format = "json"`` (``EXCHANGE__LOGGING__FORMAT=json``), one JSON object
per line with the same fields, ``role``, ``time``, ``level``, ``logger``, ``message`` (and
``exception``, the traceback, when there is one), for a log shipper. ``python main.py up``
passes the setting on to every process it starts, so the exchange's processes write one format.
"""

import json
import logging
import sys
import time

QUIET = ("alembic",)
"""Libraries whose INFO lines say how they work, not what the server did: only their warnings are logged."""


class TextFormatter(logging.Formatter):
    def __init__(self, role: str) -> None:
        super().__init__()
        self.role = role

    def format(self, record: logging.LogRecord) -> str:
        line = f"{self.role} {_utc(record.created)} {record.levelname} {record.name}: {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    def __init__(self, role: str) -> None:
        super().__init__()
        self.role = role

    def format(self, record: logging.LogRecord) -> str:
        fields = {"role": self.role, "time": _utc(record.created), "level": record.levelname,
                  "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            fields["exception"] = self.formatException(record.exc_info)
        return json.dumps(fields)


def configure(role: str, kind: str = "text", stream=None) -> None:
    """Log INFO and above to ``stream`` (standard error) in ``kind`` ("text" or "json") as
    ``role`` (spaces become dashes: ``OBS A`` logs as ``OBS-A``), unless logging is set up already."""
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler(stream or sys.stderr)
    tag = role.replace(" ", "-")
    handler.setFormatter(JsonFormatter(tag) if kind == "json" else TextFormatter(tag))
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)


def _utc(created: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(created % 1 * 1000):03d}Z"
