"""Compute API microversions: read what the endpoint offers once, pick the one we need (pure + a small cache).

Why: without microversion 2.69 Nova silently leaves out servers whose cell does not answer
(`[api] list_records_by_skipping_down_cells`, on by default), so a VM looks deleted while it runs. From 2.69
on, an *unfiltered, unpaged* `GET /servers` returns such servers as partial records
(`{"id", "status": "UNKNOWN", "links"}`, no name). Nova turns that off again as soon as the request has a
filter other than `all_tenants` or a paging/sorting parameter (`servers.py`, `_is_cell_down_supported`), so
the name queries never see partial records whatever microversion they send; `compute.py` therefore asks for
2.69 only on the one unfiltered listing that can return them.

Negotiation: `GET <compute base>/` (the version document of `/v2.1`, unauthenticated in Nova) says
`min_version`/`version` (max). We ask for 2.69 itself (or the endpoint's minimum, if that is higher): the
oldest version with partial records, so later microversions cannot change the fields we read. An endpoint
whose maximum is below 2.69, or that has no usable version document, gets no microversion header at all,
and its listings count as possibly incomplete.
"""

from __future__ import annotations

import asyncio
import functools
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import structlog

log = structlog.get_logger(__name__)

VERSION_CACHE_TTL = 3600.0
"""Seconds a version document is trusted: an upgraded (or downgraded) Nova is noticed within the hour."""

_VERSION = re.compile(r"^\s*(\d+)\.(\d+)\s*$")
_BASE = re.compile(r"^(.*?/v2(?:\.1)?)(?:/[^/]+)?/?$")


@dataclass(frozen=True, order=True)
class Microversion:
    major: int
    minor: int

    @classmethod
    def parse(cls, text: Any) -> Microversion | None:
        """`"2.69"` → Microversion(2, 69); anything else (empty, `"latest"`, garbage) → None."""
        match = _VERSION.match(text) if isinstance(text, str) else None
        return cls(int(match.group(1)), int(match.group(2))) if match else None

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"

    def headers(self) -> dict[str, str]:
        """Both spellings: `OpenStack-API-Version` (Nova >= 2.27) and the legacy header older Novas read."""
        return {"OpenStack-API-Version": f"compute {self}", "X-OpenStack-Nova-API-Version": str(self)}


PARTIAL_SERVERS = Microversion(2, 69)
"""The first microversion that returns servers of unreachable cells as partial records."""


@dataclass(frozen=True)
class VersionRange:
    minimum: Microversion | None
    maximum: Microversion | None


def version_document_url(compute_url: str) -> str:
    """The version document of a compute endpoint: `…/v2.1/` (a legacy `…/v2.1/<project>` loses its project)."""
    parts = urlsplit(compute_url)
    match = _BASE.match(parts.path)
    path = str(match.group(1)) if match else parts.path.rstrip("/")
    return urlunsplit((parts.scheme, parts.netloc, path + "/", "", ""))


def parse_version_document(body: Any) -> VersionRange | None:
    """`{"version": {...}}` (`GET /v2.1/`) or `{"versions": [...]}` (`GET /`): the v2.1 range, else None."""
    if not isinstance(body, Mapping):
        return None
    candidates: list[Any] = []
    if isinstance(body.get("version"), Mapping):
        candidates.append(body["version"])
    if isinstance(body.get("versions"), list):
        listed = [v for v in body["versions"] if isinstance(v, Mapping)]
        # Prefer the CURRENT version, then v2.1: the root document also lists the deprecated v2.0.
        listed.sort(key=lambda v: (v.get("status") != "CURRENT", v.get("id") != "v2.1"))
        candidates.extend(listed)
    for doc in candidates:
        maximum = Microversion.parse(doc.get("version"))
        if maximum is not None or "version" in doc:
            return VersionRange(Microversion.parse(doc.get("min_version")), maximum)
    return None


def negotiate(offered: VersionRange | None, wanted: Microversion = PARTIAL_SERVERS) -> Microversion | None:
    """`wanted` (or the endpoint's minimum when that is higher), if the endpoint offers it; else None."""
    if offered is None or offered.maximum is None:
        return None
    chosen = max(wanted, offered.minimum) if offered.minimum is not None else wanted
    return chosen if chosen <= offered.maximum else None


def echoed(headers: Mapping[str, str]) -> Microversion | None:
    """The compute microversion a response says it was served with (Nova echoes it in both headers)."""
    value = headers.get("OpenStack-API-Version")
    if isinstance(value, str):
        service, _, version = value.strip().partition(" ")
        if service.lower() == "compute":
            return Microversion.parse(version)
    return Microversion.parse(headers.get("X-OpenStack-Nova-API-Version"))


Fetch = Callable[[str], Awaitable[VersionRange | None]]


class MicroversionCache:
    """The negotiated microversion per version-document URL, for `ttl` seconds; one fetch in flight per URL.

    A failed fetch (transient: the caller retries later) is not cached; "no usable document" is, like an
    answer, so an endpoint without one is not asked on every reconcile.
    """

    def __init__(self, *, ttl: float = VERSION_CACHE_TTL, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self._clock = clock
        self._cache: dict[str, tuple[float, Microversion | None]] = {}
        self._inflight: dict[str, asyncio.Task[Microversion | None]] = {}

    async def get(self, url: str, fetch: Fetch) -> Microversion | None:
        cached = self._cache.get(url)
        if cached is not None and self._clock() < cached[0]:
            return cached[1]
        task = self._inflight.get(url)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._negotiate(url, fetch))
            self._inflight[url] = task
            task.add_done_callback(functools.partial(self._finish, url))
        return await asyncio.shield(task)

    async def _negotiate(self, url: str, fetch: Fetch) -> Microversion | None:
        offered = await fetch(url)
        chosen = negotiate(offered)
        log.info(
            "Compute microversion negotiated",
            endpoint=url,
            offered_min=str(offered.minimum) if offered and offered.minimum else None,
            offered_max=str(offered.maximum) if offered and offered.maximum else None,
            chosen=str(chosen) if chosen else None,
        )
        return chosen

    def _finish(self, url: str, task: asyncio.Task[Microversion | None]) -> None:
        if self._inflight.get(url) is task:
            del self._inflight[url]
        if not task.cancelled() and task.exception() is None:
            self._cache[url] = (self._clock() + self._ttl, task.result())

    def invalidate(self, url: str) -> None:
        self._cache.pop(url, None)
