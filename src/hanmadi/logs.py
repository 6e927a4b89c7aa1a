"""Log lines that nobody outside can forge: values from outside escaped and capped, or JSON lines.

Two layers. Call sites that log a value from outside (a CallSid, a frame's detail, a header) pass it through
``safe()``: control characters become visible escapes and the value is capped. And whatever a call site forgets,
the formatters installed by ``setup()`` never let a message span two lines: the text formatter escapes line
breaks in the message (a traceback still follows on its own lines, below the one-line message), the JSON
formatter writes one JSON object per line (``HANMADI_LOG_FORMAT=json``).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Literal

LogFormat = Literal["text", "json"]

MAX_VALUE_CHARS = 200
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# C0 controls, DEL, C1 controls; the Unicode line and paragraph separators, which some viewers break lines on;
# the bidirectional overrides and isolates, which can make a line read differently from what it holds.
_INVISIBLE = [*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0), 0x2028, 0x2029, *range(0x202A, 0x202F)]
_INVISIBLE += [*range(0x2066, 0x206A)]
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_ESCAPES = {
    code: (_NAMED.get(chr(code)) or f"\\x{code:02x}") if code < 0x100 else f"\\u{code:04x}" for code in _INVISIBLE
}
_SAFE_ESCAPES = {**_ESCAPES, ord("\\"): "\\\\"}
# What str.splitlines() and JSON-lines readers may take for the end of a line, beyond what json.dumps escapes.
_JSON_BREAKS = {0x85: "\\u0085", 0x2028: "\\u2028", 0x2029: "\\u2029"}


def escape_controls(text: str) -> str:
    """``text`` with every control or line-breaking character shown as an escape (``\\n``, ``\\x1b``, ``\\u2028``)."""
    return text.translate(_ESCAPES)


def safe(value: object, limit: int = MAX_VALUE_CHARS) -> str:
    """A value from outside, fit for one log line: escaped (backslashes too, so nothing can pass for an escape)
    and cut to ``limit`` characters, saying how many more there were."""
    text = value if isinstance(value, str) else str(value)
    extra = len(text) - limit
    if extra > 0:
        return text[:limit].translate(_SAFE_ESCAPES) + f"…(+{extra} chars)"
    return text.translate(_SAFE_ESCAPES)


class OneLineFormatter(logging.Formatter):
    """The text format, with the message's line breaks and control characters escaped (tracebacks below it)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        copy = logging.makeLogRecord(record.__dict__)
        copy.message = escape_controls(record.message)
        return super().formatMessage(copy)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``msg``, and ``exc`` (the traceback) if any."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str).translate(_JSON_BREAKS)


def formatter(fmt: LogFormat) -> logging.Formatter:
    """The formatter for ``HANMADI_LOG_FORMAT`` (``text`` or ``json``)."""
    return JsonFormatter() if fmt == "json" else OneLineFormatter(TEXT_FORMAT)


def setup(level: str | int = "INFO", fmt: LogFormat = "text") -> None:
    """Configure the root logger: one stderr handler with the chosen formatter (replacing any handler before).

    Run uvicorn with ``log_config=None`` so its loggers (``uvicorn.error``, ``uvicorn.access``, whose lines
    carry request paths) propagate here and get the same escaping or JSON.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(fmt))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uv = logging.getLogger(name)
        uv.handlers.clear()
        uv.propagate = True
