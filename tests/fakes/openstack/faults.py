"""Fault injection and the request log of the simulator.

Endpoint keys name one API each: `identity.tokens`, `compute.versions`, `compute.servers`, `network.subnets`,
`network.ports`, `network.networks`; `*` applies to every endpoint. Randomness (error rates) comes from a
seeded RNG so a run can be reproduced.
"""

from __future__ import annotations

import random
import time
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field

ENDPOINTS = (
    "identity.tokens",
    "compute.versions",
    "compute.servers",
    "network.subnets",
    "network.ports",
    "network.networks",
)


@dataclass(frozen=True)
class Fault:
    status: int = 503
    retry_after: str | None = None  # header value, verbatim (seconds or an HTTP date)
    drop: bool = False  # close the connection without a response


@dataclass
class Faults:
    seed: int | None = None
    latency: dict[str, float] = field(default_factory=dict)
    error_rates: dict[str, tuple[float, int]] = field(default_factory=dict)
    looping_pagination: set[str] = field(default_factory=set)
    _queued: dict[str, deque[Fault]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def set_latency(self, endpoint: str, seconds: float) -> None:
        self.latency[endpoint] = seconds

    def fail_next(self, endpoint: str, n: int = 1, status: int = 503, retry_after: str | None = None) -> None:
        self._queued.setdefault(endpoint, deque()).extend([Fault(status, retry_after)] * n)

    def throttle_next(self, endpoint: str, n: int = 1, retry_after: str | None = "1") -> None:
        self.fail_next(endpoint, n, 429, retry_after)

    def drop_next(self, endpoint: str, n: int = 1) -> None:
        self._queued.setdefault(endpoint, deque()).extend([Fault(drop=True)] * n)

    def set_error_rate(self, endpoint: str, rate: float, status: int = 500) -> None:
        self.error_rates[endpoint] = (rate, status)

    def loop_pagination(self, endpoint: str) -> None:
        """Make the endpoint answer every marker with the first page again (a looping server)."""
        self.looping_pagination.add(endpoint)

    def clear(self) -> None:
        self.latency.clear()
        self.error_rates.clear()
        self.looping_pagination.clear()
        self._queued.clear()

    def delay_for(self, endpoint: str) -> float:
        return self.latency.get(endpoint, self.latency.get("*", 0.0))

    def take(self, endpoint: str) -> Fault | None:
        for key in (endpoint, "*"):
            queue = self._queued.get(key)
            if queue:
                return queue.popleft()
        for key in (endpoint, "*"):
            if key in self.error_rates:
                rate, status = self.error_rates[key]
                if self.rng.random() < rate:
                    return Fault(status)
        return None


@dataclass(frozen=True)
class RequestRecord:
    endpoint: str
    method: str
    path: str
    query: tuple[tuple[str, str], ...]
    status: int  # 0 for a dropped connection
    at: float
    microversion: str | None = None  # the compute microversion header the request carried (never the token)


class RequestLog:
    """Every request the simulator saw, in order (tests count calls per endpoint with it)."""

    def __init__(self) -> None:
        self.records: list[RequestRecord] = []

    def record(
        self,
        endpoint: str,
        method: str,
        path: str,
        query: tuple[tuple[str, str], ...],
        status: int,
        microversion: str | None = None,
    ) -> None:
        self.records.append(RequestRecord(endpoint, method, path, query, status, time.monotonic(), microversion))

    def __iter__(self) -> Iterator[RequestRecord]:
        return iter(list(self.records))

    def __len__(self) -> int:
        return len(self.records)

    def clear(self) -> None:
        self.records.clear()

    def count(self, endpoint: str | None = None) -> int:
        return sum(1 for r in self.records if endpoint is None or r.endpoint == endpoint)

    def counts(self) -> Counter[str]:
        return Counter(r.endpoint for r in self.records)

    def for_endpoint(self, endpoint: str) -> list[RequestRecord]:
        return [r for r in self.records if r.endpoint == endpoint]
