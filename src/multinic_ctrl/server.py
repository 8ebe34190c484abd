"""Embedded aiohttp server: /healthz, /readyz, /metrics, plus routes the domain layers add (/trigger, ...).

Liveness and readiness are deliberately different questions. `/healthz` fails only when the process can no
longer do its job by itself (a supervised task has died), so the kubelet restarts it. `/readyz` fails while a
dependency is unavailable (MariaDB down, caches not synced), which takes the pod out of Service endpoints but
must not restart it: restarting does not bring MariaDB back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from multinic_ctrl.metrics import REGISTRY

log = structlog.get_logger(__name__)

ReadinessCheck = Callable[[], Awaitable[None]]
"""Raises when not ready: `NotReady` with words fit for anyone, or any exception (whose text is logged only)."""
LivenessProbe = Callable[[], Iterable[str]]
"""Returns the names of things that are dead (e.g. supervised tasks that exited); empty means alive."""

CHECK_TIMEOUT = 3.0


class NotReady(Exception):
    """A readiness failure whose message is our own words and safe to show without authentication.

    `/readyz` is unauthenticated (the kubelet calls it), so any other exception's text - a database host and
    user, a driver's error, an address - is written to the log for the admin and replaced by a generic phrase.
    """


@dataclass
class _Check:
    name: str
    check: ReadinessCheck


class ProbeServer:
    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.app = web.Application(client_max_size=1024 * 1024)
        self._checks: list[_Check] = []
        self._liveness: list[LivenessProbe] = []
        self._details: dict[str, Callable[[], str]] = {}
        self._last_logged: dict[str, str] = {}
        self._runner: web.AppRunner | None = None
        self.app.router.add_get("/healthz", self._healthz)
        self.app.router.add_get("/readyz", self._readyz)
        self.app.router.add_get("/metrics", self._metrics)

    def add_readiness_check(self, name: str, check: ReadinessCheck) -> None:
        self._checks.append(_Check(name, check))

    def add_liveness_probe(self, probe: LivenessProbe) -> None:
        self._liveness.append(probe)

    def add_detail(self, name: str, describe: Callable[[], str]) -> None:
        """Informational state shown in `/readyz` (e.g. leader or standby) that never fails readiness."""
        self._details[name] = describe

    @property
    def bound_port(self) -> int:
        """The actual port (differs from `port` when 0 was asked for, as tests do)."""
        assert self._runner is not None
        for site in self._runner.sites:
            server = getattr(site, "_server", None)
            if server is not None and server.sockets:
                return int(server.sockets[0].getsockname()[1])
        return self.port

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False, shutdown_timeout=5.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        log.info("Probe server listening", address=self.host, port=self.bound_port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _healthz(self, _request: web.Request) -> web.Response:
        dead = sorted(name for probe in self._liveness for name in probe())
        if dead:
            return web.json_response({"status": "failed", "dead": dead}, status=503)
        return web.json_response({"status": "ok"})

    async def _run_check(self, check: _Check) -> tuple[str, str | None]:
        try:
            await asyncio.wait_for(check.check(), CHECK_TIMEOUT)
        except TimeoutError:
            return check.name, f"timed out after {CHECK_TIMEOUT:.0f}s"
        except NotReady as exc:
            return check.name, str(exc) or "not ready"
        except Exception as exc:
            detail = str(exc) or type(exc).__name__
            if self._last_logged.get(check.name) != detail:  # once per distinct error, not every probe
                log.warning("Readiness check failing", check=check.name, error=detail)
                self._last_logged[check.name] = detail
            return check.name, "failing; the details are in the log"
        self._last_logged.pop(check.name, None)
        return check.name, None

    async def _readyz(self, _request: web.Request) -> web.Response:
        results = await asyncio.gather(*(self._run_check(c) for c in self._checks))
        checks = {name: (error or "ok") for name, error in results}
        failing = [name for name, error in results if error is not None]
        body: dict[str, object] = {"status": "not ready" if failing else "ready", "checks": checks}
        if failing:
            body["failing"] = failing
        if self._details:
            body["details"] = {name: describe() for name, describe in self._details.items()}
        return web.json_response(body, status=503 if failing else 200)

    async def _metrics(self, _request: web.Request) -> web.Response:
        body = generate_latest(REGISTRY)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
