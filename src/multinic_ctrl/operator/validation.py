"""Validators for attacker-written MultiNicOperator fields (pure).

Invariants:

* **closed grammars** - every string that ends up in an object name, label, image, quantity, schedule, URL or
  environment variable is matched whole (`re.fullmatch`, ASCII classes only, so no trailing newline or Unicode
  look-alike slips through) against the grammar Kubernetes itself enforces, or a stricter one; the CRD's OpenAPI
  patterns (manifests/crds/multinic.example.com_multinicoperators.yaml) are the same expressions, and a unit test
  keeps them in step;
* **errors name the field** - a `SpecError` message starts with the field path (`spec.controller.image: ...`) so
  status tells the user what to fix;
* **nothing secret leaks** - offending values are echoed only for non-secret fields, truncated and `repr`-escaped
  (no control characters reach status, events or logs); secret values are wrapped in `SecretValue`, whose
  `repr`/`str` never show them.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping
from typing import Any, NoReturn
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# RFC 1123 label / subdomain, as in k8s.io/apimachinery/pkg/util/validation.
DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_SUBDOMAIN = rf"{DNS1123_LABEL}(\.{DNS1123_LABEL})*"
# distribution/reference: [domain[:port]/]path[:tag][@digest]
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
IMAGE_REFERENCE = (
    rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*(?::[0-9]+)?/)?"
    rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?"
)
MAX_IMAGE_LENGTH = 512
ENV_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
CONFIG_KEY = r"[-._a-zA-Z0-9]+"
HTTP_PATH = r"/[A-Za-z0-9/_.~-]*"
HTTP_URL = r"https?://[^\s/@]+(/\S*)?"
SQL_IDENTIFIER = r"[A-Za-z0-9_]{1,64}"
SQL_USER = r"[A-Za-z0-9_]{1,32}"
DURATION_DHM = r"([0-9]+d)?([0-9]+h)?([0-9]+m)?"
DURATION_HMS = r"([0-9]+h)?([0-9]+m)?([0-9]+s)?"
TIMEZONE = r"[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9][A-Za-z0-9_+-]*){0,2}"
K8S_VERBS = ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection")

_SHOWN = 64


class SpecError(ValueError):
    """The MultiNicOperator spec cannot be acted on; the message names the field (shown in status)."""


class SecretValue:
    """A secret string that never shows itself in `repr`, `str` or formatting; `reveal()` is explicit."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "SecretValue('[REDACTED]')"

    def __str__(self) -> str:
        return "[REDACTED]"

    def __format__(self, spec: str) -> str:
        return "[REDACTED]"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SecretValue):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(("SecretValue", self._value))


def show(value: object) -> str:
    """A non-secret value for an error message: repr-escaped and truncated."""
    text = repr(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 4] + "...'"


def fail(path: str, problem: str) -> NoReturn:
    raise SpecError(f"{path}: {problem}")


def full(pattern: str, text: str) -> bool:
    return re.fullmatch(pattern, text, flags=re.ASCII) is not None


# ---------------------------------------------------------------- structure


def mapping(value: Any, path: str, known: frozenset[str] | set[str], *, required: bool = False) -> Mapping[str, Any]:
    """An object with only known keys (`None` means absent: an empty mapping unless required)."""
    if value is None:
        if required:
            fail(path, "is required")
        return {}
    if not isinstance(value, Mapping):
        fail(path, "must be an object")
    unknown = sorted(str(k) for k in value if k not in known)
    if unknown:
        fail(f"{path}.{unknown[0]}" if full(r"[A-Za-z0-9_]{1,64}", unknown[0]) else path, "is not a known field")
    return value


def string(value: Any, path: str, *, default: str | None = None, max_length: int = 253) -> str:
    if value is None:
        if default is None:
            fail(path, "is required")
        return default
    if not isinstance(value, str):
        fail(path, "must be a string")
    if not value:
        fail(path, "must not be empty")
    if len(value) > max_length:
        fail(path, f"is longer than {max_length} characters")
    return value


def optional_string(value: Any, path: str, *, max_length: int = 253) -> str | None:
    return None if value is None else string(value, path, max_length=max_length)


def boolean(value: Any, path: str, *, default: bool) -> bool:
    if value is None:
        return default
    if not isinstance(value, bool):
        fail(path, "must be true or false")
    return value


def integer(value: Any, path: str, *, default: int, minimum: int, maximum: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        fail(path, "must be an integer")
    if not minimum <= value <= maximum:
        fail(path, f"{value} is out of range ({minimum}-{maximum})")
    return value


# ---------------------------------------------------------------- Kubernetes grammars


def dns_label(value: Any, path: str, *, default: str | None = None) -> str:
    text = string(value, path, default=default, max_length=63)
    if not full(DNS1123_LABEL, text):
        fail(path, f"{show(text)} is not a DNS-1123 label (lower-case letters, digits and '-', at most 63)")
    return text


def dns_subdomain(value: Any, path: str, *, default: str | None = None, max_length: int = 253) -> str:
    text = string(value, path, default=default, max_length=max_length)
    if not full(DNS1123_SUBDOMAIN, text):
        fail(path, f"{show(text)} is not a DNS-1123 subdomain (lower-case letters, digits, '-' and '.')")
    return text


def image(value: Any, path: str, *, default: str) -> str:
    text = string(value, path, default=default, max_length=MAX_IMAGE_LENGTH)
    if not full(IMAGE_REFERENCE, text) or len(text.split("@")[0].rsplit(":", 1)[0]) > 255:
        fail(path, f"{show(text)} is not a valid image reference ([registry/]name[:tag][@digest])")
    return text


def config_key(value: Any, path: str, *, default: str | None = None) -> str:
    text = string(value, path, default=default)
    if not full(CONFIG_KEY, text) or text in (".", ".."):
        fail(path, f"{show(text)} is not a valid Secret/ConfigMap key (letters, digits, '-', '_' and '.')")
    return text


def env_name(value: Any, path: str) -> str:
    text = string(value, path, max_length=128)
    if not full(ENV_NAME, text):
        fail(path, f"{show(text)} is not a valid environment variable name (letters, digits and '_')")
    return text


def http_path(value: Any, path: str, *, default: str) -> str:
    text = string(value, path, default=default, max_length=256)
    if not full(HTTP_PATH, text) or "//" in text or "/../" in text + "/":
        fail(path, f"{show(text)} is not a plain absolute HTTP path")
    return text


def http_url(value: Any, path: str) -> str | None:
    if value is None:
        return None
    text = string(value, path, max_length=2048)
    if not full(HTTP_URL, text):
        fail(path, "must be an http(s) URL without credentials or whitespace")
    parts = urlsplit(text)
    if not parts.hostname:
        fail(path, "must name a host")
    try:
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        fail(path, "has an invalid port")
    return text


def sql_identifier(value: Any, path: str, *, default: str, pattern: str = SQL_IDENTIFIER) -> str:
    text = string(value, path, default=default, max_length=64)
    if not full(pattern, text) or text.isdigit():
        fail(path, f"{show(text)} must be letters, digits and '_' (not only digits)")
    return text


def duration_minutes(value: Any, path: str, *, minimum: int = 1, maximum: int = 3650 * 1440) -> int | None:
    """`7d`, `36h`, `1d12h`, `90m` → minutes."""
    if value is None:
        return None
    text = string(value, path, max_length=32)
    match = re.fullmatch(DURATION_DHM, text, flags=re.ASCII)
    if not match or not text:
        fail(path, f"{show(text)} is not a duration like 7d, 36h or 90m")
    days, hours, minutes = (int(g[:-1]) if g else 0 for g in match.groups())
    total = days * 1440 + hours * 60 + minutes
    if not minimum <= total <= maximum:
        fail(path, f"{show(text)} is out of range")
    return total


def duration_hms(value: Any, path: str) -> str | None:
    if value is None:
        return None
    text = string(value, path, max_length=32)
    match = re.fullmatch(DURATION_HMS, text, flags=re.ASCII)
    if not match or not text or all(int(g[:-1]) == 0 for g in match.groups() if g):
        fail(path, f"{show(text)} is not a positive duration like 15m or 1h30m")
    return text


def timezone(value: Any, path: str) -> str | None:
    """An IANA zone name (checked against the zone database; the apiserver checks CronJob zones the same way)."""
    if value is None:
        return None
    text = string(value, path, max_length=64)
    if not full(TIMEZONE, text):
        fail(path, f"{show(text)} is not an IANA time zone name like UTC or Europe/Berlin")
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        fail(path, f"{show(text)} is not a known time zone")
    return text
