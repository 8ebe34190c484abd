"""An end-to-end harness: the real control plane, a fresh real MariaDB database, the OpenStack simulator,
and the controller service running in-process exactly as `multinic-ctrl run` wires it."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp
from kubernetes_asyncio import client

from multinic_ctrl.controller.service import ControllerService
from multinic_ctrl.db import Database, Repository
from multinic_ctrl.db.repository import AGENT_QUERY
from multinic_ctrl.server import ProbeServer
from multinic_ctrl.settings import ControllerSettings, Settings
from tests.fakes.openstack.fixtures import Simulator

GROUP, VERSION = "multinic.example.com", "v1alpha1"


def config_body(
    name: str,
    vm_names: list[str],
    sim: Simulator,
    *,
    subnet: str = "k8s-subnet",
    password: str | None = "admin",
    secret_ref: tuple[str, str] | None = None,
) -> dict[str, Any]:
    credentials: dict[str, Any] = {
        "authURL": sim.auth_url,
        "username": "admin",
        "projectID": "your-project-id",
        "domainName": "Default",
    }
    if secret_ref:
        credentials["passwordSecretRef"] = {"name": secret_ref[0], "key": secret_ref[1]}
    elif password is not None:
        credentials["password"] = password
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "OpenstackConfig",
        "metadata": {"name": name},
        "spec": {"vmNames": vm_names, "subnetName": subnet, "credentials": credentials},
    }


@dataclass
class Env:
    namespace: str
    api: client.ApiClient
    sim: Simulator
    database: Database
    settings: Settings
    service: ControllerService | None = None
    server: ProbeServer | None = None
    _task: asyncio.Task[None] | None = None
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api)

    @property
    def repo(self) -> Repository:
        return Repository(self.database)

    async def start(self, **controller: Any) -> None:
        settings = replace(self.settings, controller=replace(self.settings.controller, **controller))
        self._stop = asyncio.Event()
        self.service = ControllerService(settings, self.database)
        self.server = ProbeServer("127.0.0.1", 0)
        self.server.add_readiness_check("database", self.database.ping)
        self.service.install(self.server)
        await self.server.start()
        self._task = asyncio.create_task(self.service.run(self._stop))
        await wait_for(lambda: self.service is not None and self.service.synced, "informers synced")

    async def stop(self) -> None:
        if self._task is not None:
            self._stop.set()
            await asyncio.wait_for(self._task, 30)
            self._task = None
        if self.server is not None:
            await self.server.stop()
            self.server = None

    # ---------------------------------------------------------------- Kubernetes helpers
    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        return dict(
            await self.custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, "openstackconfigs", body)
        )

    async def get(self, name: str) -> dict[str, Any] | None:
        try:
            return dict(
                await self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, "openstackconfigs", name)
            )
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise

    async def patch(self, name: str, patch: dict[str, Any]) -> None:
        await self.custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            self.namespace,
            "openstackconfigs",
            name,
            patch,
            _content_type="application/merge-patch+json",
        )

    async def delete(self, name: str) -> None:
        await self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, "openstackconfigs", name)

    async def put_secret(self, name: str, data: dict[str, str]) -> None:
        core = client.CoreV1Api(self.api)
        body = {"metadata": {"name": name}, "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}
        try:
            await core.create_namespaced_secret(self.namespace, body)
        except client.ApiException as exc:
            if exc.status != 409:
                raise
            await core.replace_namespaced_secret(name, self.namespace, body)

    async def events(self, name: str) -> list[dict[str, Any]]:
        core = client.CoreV1Api(self.api)
        found = await core.list_namespaced_event(self.namespace, field_selector=f"involvedObject.name={name}")
        return [{"reason": e.reason, "message": e.message, "type": e.type} for e in found.items]

    async def status(self, name: str) -> dict[str, Any]:
        obj = await self.get(name)
        return dict((obj or {}).get("status") or {})

    async def wait_status(
        self, name: str, check: Callable[[dict[str, Any]], bool], what: str, timeout: float = 30
    ) -> dict[str, Any]:
        last: dict[str, Any] = {}

        async def probe() -> bool:
            nonlocal last
            last = await self.status(name)
            return check(last)

        await wait_for(probe, f"{name}: {what} (last status {last})", timeout)
        return last

    # ---------------------------------------------------------------- database helpers
    async def agent_rows(self, node: str) -> list[dict[str, Any]]:
        async with self.database.transaction("test") as cur:
            await cur.execute(AGENT_QUERY + " ORDER BY mi.id", (node,))
            return list(await cur.fetchall())

    async def all_interfaces(self) -> list[dict[str, Any]]:
        async with self.database.transaction("test") as cur:
            await cur.execute("SELECT * FROM multi_interface ORDER BY id")
            return list(await cur.fetchall())

    async def http(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        assert self.server is not None
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, f"http://127.0.0.1:{self.server.bound_port}{path}", **kwargs) as resp,
        ):
            return resp.status, await resp.json(content_type=None)


@contextlib.asynccontextmanager
async def leader_and_standby(
    env: Env, **controller: Any
) -> AsyncIterator[tuple[ControllerService, ControllerService, ProbeServer]]:
    """`env`'s controller restarted with leader election and leading, plus a second in-process replica that is
    a synced standby with its own probe server; yields (leader, standby, standby's server). `controller`:
    further ControllerSettings for both replicas."""
    await env.stop()
    await env.start(leader_elect=True, **controller)
    leader = env.service
    assert leader is not None
    await wait_for(lambda: leader.elector is not None and leader.elector.is_leader, "first replica leads")
    settings = replace(env.settings, controller=replace(env.settings.controller, leader_elect=True, **controller))
    standby = ControllerService(settings, env.database)
    server = ProbeServer("127.0.0.1", 0)
    standby.install(server)
    await server.start()
    stop_standby = asyncio.Event()
    task = asyncio.create_task(standby.run(stop_standby))
    try:
        await wait_for(lambda: standby.synced and standby.elector is not None, "second replica synced")
        yield leader, standby, server
    finally:
        stop_standby.set()
        await asyncio.wait_for(task, 30)
        await server.stop()


async def wait_for(check: Callable[[], bool | Awaitable[bool]], what: str, timeout: float = 30) -> None:
    """Poll `check` until it holds. A 429 from the apiserver while polling ("storage is (re)initializing", right
    after another test on this control plane updated a CRD) is an answer to try again, as clients do."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
            if not isinstance(result, bool):
                result = await result
        except client.ApiException as exc:
            if exc.status != 429:
                raise
            result = False
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def controller_env(
    namespace: str, api: client.ApiClient, sim: Simulator, database: Database, kubeconfig: str, **controller: Any
) -> AsyncIterator[Env]:
    settings = Settings(
        database=database.settings,
        probe_port=0,
        probe_address="127.0.0.1",
        namespaces=(namespace,),
        kubeconfig=kubeconfig,  # type: ignore[arg-type]
        controller=ControllerSettings(
            workers=2,
            leader_elect=False,
            leader_election_namespace=namespace,
            error_retry_seconds=2.0,
            trigger_token="e2e-token-0123456789",
        ),
    )
    env = Env(namespace, api, sim, database, settings)
    await env.start(**controller)
    try:
        yield env
    finally:
        await env.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ControllerProcess:
    """`python -m multinic_ctrl run` as its own process, as it runs in a pod (leader election on, JSON logs)."""

    proc: subprocess.Popen[bytes]
    probe_port: int
    log_path: Path

    @classmethod
    def start(
        cls,
        *,
        database: Database,
        kubeconfig: Path,
        namespace: str,
        token_file: Path,
        log_path: Path,
        **extra_env: str,
    ) -> ControllerProcess:
        db = database.settings
        probe = free_port()
        env = {
            **os.environ,
            "DB_HOST": db.host,
            "DB_PORT": str(db.port),
            "DB_USER": db.user,
            "DB_PASSWORD": db.password,
            "DB_NAME": db.name,
            "KUBECONFIG": str(kubeconfig),
            "WATCH_NAMESPACES": namespace,
            "PROBE_PORT": str(probe),
            "PROBE_ADDRESS": "127.0.0.1",
            "LOG_FORMAT": "json",
            "LEADER_ELECT": "true",
            "LEADER_ELECTION_NAMESPACE": namespace,
            "TRIGGER_TOKEN_FILE": str(token_file),
            **extra_env,
        }
        with log_path.open("wb") as log_file:
            proc = subprocess.Popen(
                [sys.executable, "-m", "multinic_ctrl", "run"], env=env, stdout=log_file, stderr=subprocess.STDOUT
            )
        return cls(proc, probe, log_path)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.probe_port}"

    async def readyz(self) -> tuple[int, dict[str, Any]]:
        try:
            async with aiohttp.ClientSession() as session, session.get(f"{self.url}/readyz") as resp:
                return resp.status, await resp.json()
        except aiohttp.ClientError as exc:
            return 0, {"error": repr(exc)}

    async def leadership(self) -> str | None:
        code, body = await self.readyz()
        return str(body.get("details", {}).get("leadership")) if code == 200 else None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@contextlib.asynccontextmanager
async def leader_and_standby_processes(
    *, database: Database, kubeconfig: Path, namespace: str, token_file: Path, log_dir: Path
) -> AsyncIterator[tuple[ControllerProcess, ControllerProcess]]:
    """Two controller processes (production lease timings): the first leads, the second is a ready standby.
    Both are killed on exit (a SIGSTOPped one is continued first so it can die)."""

    def start(name: str) -> ControllerProcess:
        return ControllerProcess.start(
            database=database,
            kubeconfig=kubeconfig,
            namespace=namespace,
            token_file=token_file,
            log_path=log_dir / f"{name}.log",
        )

    async def role(process: ControllerProcess, wanted: str) -> bool:
        return await process.leadership() == wanted

    first = start("first")
    second: ControllerProcess | None = None
    try:
        await wait_for(lambda: role(first, "leader"), "first process leads", timeout=60)
        second = start("second")
        standby = second
        await wait_for(lambda: role(standby, "standby"), "second process is a ready standby", timeout=60)
        yield first, standby
    finally:
        for process in (first, second):
            if process is not None:
                if process.proc.poll() is None:
                    os.kill(process.proc.pid, signal.SIGCONT)
                process.kill()
