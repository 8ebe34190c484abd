"""Process lifecycle: wires settings, logging, the probe server, the database and the domain loops.

Every long-lived task is started through a supervisor-like set here: when one dies unexpectedly, `/healthz`
reports it and the process exits non-zero instead of running on as a zombie that does nothing. SIGTERM and
SIGINT start a graceful shutdown: stop taking work, let in-flight work finish within a deadline, close pools.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from typing import Protocol

import structlog

from multinic_ctrl import __version__
from multinic_ctrl.db import Database, DatabaseUnavailable
from multinic_ctrl.db.migrations import migrate
from multinic_ctrl.server import ProbeServer
from multinic_ctrl.settings import Settings

log = structlog.get_logger(__name__)

SHUTDOWN_GRACE_SECONDS = 20.0


def install_stop_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _on_signal, stop, sig)


def _on_signal(stop: asyncio.Event, sig: signal.Signals) -> None:
    log.info("Shutdown requested", signal=sig.name)
    stop.set()


async def run_migrate(settings: Settings) -> int:
    try:
        applied = await migrate(settings.database)
    except DatabaseUnavailable as exc:
        log.error("Migration failed: database unavailable", error=str(exc))
        return 1
    log.info("Database schema is up to date", database=settings.database.name, applied=applied)
    return 0


class Service(Protocol):
    """A process body: installs its routes/probes on the server, then runs until `stop` is set."""

    def install(self, server: ProbeServer) -> None: ...

    async def run(self, stop: asyncio.Event) -> None: ...


async def run_service(settings: Settings, make: Callable[[Settings, Database], Service], *, component: str) -> int:
    """Run a database-backed service next to the probe server until a stop signal, then shut down gracefully."""
    database = Database(settings.database)
    server = ProbeServer(settings.probe_address, settings.probe_port)
    server.add_readiness_check("database", database.ping)
    service = make(settings, database)
    try:
        return await _serve(
            service,
            server,
            component=component,
            database=database.address,
            database_name=database.name,
            namespaces=list(settings.namespaces) or "all",
        )
    finally:
        await database.close()


async def _serve(service: Service, server: ProbeServer, *, component: str, **startup: object) -> int:
    """The process lifecycle every command shares: signals, probes, the service until stopped or failed, then a
    graceful shutdown bounded by `SHUTDOWN_GRACE_SECONDS`; returns the exit code."""
    stop = asyncio.Event()
    install_stop_signals(stop)
    service.install(server)
    log.info("Starting", component=component, version=__version__, **startup)
    await server.start()
    main: asyncio.Task[None] = asyncio.ensure_future(service.run(stop))
    stopper = asyncio.ensure_future(stop.wait())
    exit_code = 0
    try:
        done, _ = await asyncio.wait({main, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if main in done and not stop.is_set():
            exc = main.exception()
            if exc is not None:
                log.error("Component failed; exiting", component=component, error=str(exc), exc_info=exc)
                exit_code = 1
            else:
                log.info("Component finished", component=component)
        else:
            try:
                await asyncio.wait_for(asyncio.shield(main), SHUTDOWN_GRACE_SECONDS)
            except TimeoutError:
                log.warning("Graceful shutdown deadline passed; cancelling", component=component)
                main.cancel()
            except Exception as exc:
                log.error("Component failed during shutdown", component=component, error=str(exc))
                exit_code = 1
    finally:
        stopper.cancel()
        if not main.done():
            main.cancel()
        await asyncio.gather(main, stopper, return_exceptions=True)
        await server.stop()
        log.info("Stopped", component=component, exit_code=exit_code)
    return exit_code


async def run_controller(settings: Settings) -> int:
    from multinic_ctrl.controller.service import ControllerService

    return await run_service(settings, ControllerService, component="controller")


async def run_plan(settings: Settings, filename: str, namespace: str | None, as_json: bool) -> int:
    import sys
    from pathlib import Path

    from multinic_ctrl.controller.plan import PlanError, plan, render
    from multinic_ctrl.controller.spec import CredentialsError, SpecError
    from multinic_ctrl.db import DatabaseError
    from multinic_ctrl.openstack import OpenStackError

    try:
        target, diff, missing = await plan(settings, Path(filename), namespace)
    except (PlanError, SpecError, CredentialsError, OpenStackError, DatabaseError) as exc:
        sys.stderr.write(f"multinic-ctrl plan: {exc}\n")
        return 1
    render(target, diff, missing, sys.stdout, as_json=as_json)
    return 0


async def run_operator(settings: Settings) -> int:
    """`multinic-ctrl operator`: like `run_service`, but without a database (the operator never connects to one)."""
    from multinic_ctrl.operator.service import OperatorService

    return await _serve(
        OperatorService(settings),
        ProbeServer(settings.probe_address, settings.probe_port),
        component="operator",
        namespaces=list(settings.operator.namespaces) or "all",
        leader_elect=settings.operator.leader_elect,
    )
