"""structlog configuration with secret redaction applied to every event.

Redaction runs last in the chain (after exception formatting), so a password that reaches a log line by
any path - a keyword argument, an exception message, a nested dict - is replaced before rendering. Two rules:
values under keys that look secret (`password`, `token`, `secret`, `authorization`, ...) are masked, and
any occurrence of a registered secret value is masked wherever it appears. Secrets learnt at run time (a
Keystone password read from a Kubernetes Secret) are registered with `register_secret`.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import Iterable, MutableMapping
from typing import Any

import structlog

REDACTED = "[REDACTED]"
_SECRET_KEY = re.compile(r"pass(word|wd)?$|passw|token|secret|authorization|api[_-]?key|credential|cookie", re.I)
_MIN_SECRET_LEN = 4  # masking "a" or "ab" everywhere would make logs unreadable and protects nothing

_lock = threading.Lock()
_secrets: frozenset[str] = frozenset()


def register_secret(value: str | None) -> None:
    """Mask `value` in every future log event (idempotent; short values are ignored)."""
    global _secrets
    if value and len(value) >= _MIN_SECRET_LEN and value not in _secrets:
        with _lock:
            _secrets = _secrets | {value}


def clear_secrets() -> None:
    """Forget registered secrets (tests start from a clean registry; the process never needs this)."""
    global _secrets
    with _lock:
        _secrets = frozenset()


def redact_text(text: str) -> str:
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: _redact_item(k, v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_redact_value(v) for v in value)
    if isinstance(value, (bool, int, float)) or value is None:
        return value
    return redact_text(str(value))


def _redact_item(key: object, value: Any) -> Any:
    if (
        isinstance(key, str)
        and _SECRET_KEY.search(key)
        and value not in (None, "", True, False)
        and not isinstance(value, (int, float))
        and not key.lower().endswith(("ref", "file", "name"))  # a reference names a Secret; it is not one
    ):
        return REDACTED
    return _redact_value(value)


def redact_processor(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        event_dict[key] = _redact_item(key, event_dict[key])
    return event_dict


class _Stderr:
    """Writes to whatever `sys.stderr` is at the time (test runners swap it), not what it was at start-up."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(log_format: str = "console", level: str = "info", secrets: Iterable[str] = ()) -> None:
    for secret in secrets:
        register_secret(secret)
    numeric_level = logging.getLevelName(level.upper())
    renderer: Any = (
        structlog.processors.JSONRenderer() if log_format == "json" else structlog.dev.ConsoleRenderer(colors=False)
    )
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        redact_processor,
        renderer,
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=structlog.PrintLoggerFactory(file=_Stderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )
    # Libraries (aiohttp, kubernetes_asyncio) log through stdlib logging; keep them at warning and
    # route them through the same redaction by formatting with structlog's ProcessorFormatter.
    handler = logging.StreamHandler(_Stderr())
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                redact_processor,
                renderer,
            ],
            foreign_pre_chain=[
                structlog.stdlib.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(numeric_level, logging.WARNING))
