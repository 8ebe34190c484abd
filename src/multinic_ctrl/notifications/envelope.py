"""Decoding oslo.messaging notification bodies.

On the wire (RabbitMQ driver, message format 2.0) a notification is a JSON object
`{"oslo.version": "2.0", "oslo.message": "<the notification, itself JSON-encoded as a string>"}`; older
publishers send the notification object itself. The notification has `event_type`, `payload`, `publisher_id`,
`priority`, `timestamp` and the caller's request context flattened into `_context_*` keys - which can include
`_context_auth_token`, a live Keystone token on some releases. So a body is never logged, whole or in part:
errors say what is wrong, not what was there.
"""

from __future__ import annotations

import json
from typing import Any

MAX_BODY = 1 << 20
"""Bodies above 1 MiB are refused undecoded (Nova's largest versioned payloads are a few tens of KiB)."""


class MalformedNotification(ValueError):
    """The body is not an oslo.messaging notification; the message names the problem, never the content."""


def decode(body: bytes) -> dict[str, Any]:
    """The notification object inside `body` (envelope 2.0 or a bare notification)."""
    if len(body) > MAX_BODY:
        raise MalformedNotification(f"body of {len(body)} bytes exceeds {MAX_BODY}")
    outer = _load(body, "body")
    inner = outer.get("oslo.message")
    if inner is None:
        return outer  # a publisher without the envelope
    if not isinstance(inner, str):
        raise MalformedNotification("oslo.message is not a string")
    return _load(inner, "oslo.message")


def _load(text: str | bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        # The position only: json's message quotes no input, but keep it short and content-free regardless.
        position = getattr(exc, "pos", None)
        raise MalformedNotification(
            f"{what} is not JSON" + (f" (at character {position})" if position is not None else "")
        ) from None
    if not isinstance(value, dict):
        raise MalformedNotification(f"{what} is not a JSON object")
    return value
