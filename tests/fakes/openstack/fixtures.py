"""Start/stop the simulator from tests.

    async with running_simulator() as sim:            # default seed (MISSION.md example)
        creds = sim.credentials()                      # admin/admin, project your-project-id
        obs = await client.observe(creds, ["test-vm-1"], "k8s-subnet")
        assert sim.request_log.count("network.ports") == 1
        sim.state.add_server("test-vm-4")              # mutate at runtime
        sim.faults.fail_next("compute.servers", 2)     # inject faults

`seed` may be a path (YAML/JSON), a mapping, or a ready `SimState`.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from multinic_ctrl.openstack import Credentials

from .app import build_app
from .faults import Faults, RequestLog
from .state import SimState

DEFAULT_SEED = Path(__file__).with_name("default_seed.yaml")


def load_seed(seed: str | Path | Mapping[str, Any] | SimState | None) -> SimState:
    if isinstance(seed, SimState):
        return seed
    if seed is None:
        seed = DEFAULT_SEED
    # YAML is a superset of JSON, so one loader reads both seed formats.
    data = yaml.safe_load(Path(seed).read_text()) if isinstance(seed, str | Path) else dict(seed)
    return SimState.from_seed(data or {})


class Simulator:
    def __init__(
        self,
        seed: str | Path | Mapping[str, Any] | SimState | None = None,
        *,
        rng_seed: int | None = None,
        token_lifetime: float | None = None,
        ssl_context: ssl.SSLContext | None = None,
        nova_max_limit: int = 1000,
        neutron_max_limit: int | None = 1000,
        nova_max_microversion: str | None = "2.96",
    ) -> None:
        self.state = load_seed(seed)
        if token_lifetime is not None:
            self.state.token_lifetime = token_lifetime
        self.faults = Faults(seed=rng_seed)
        self.request_log = RequestLog()
        self._ssl = ssl_context
        self.app = build_app(
            self.state,
            self.faults,
            self.request_log,
            nova_max_limit=nova_max_limit,
            neutron_max_limit=neutron_max_limit,
            nova_max_microversion=nova_max_microversion,
        )
        self._runner: web.AppRunner | None = None
        self.host = "127.0.0.1"
        self.port = 0

    @property
    def url(self) -> str:
        scheme = "https" if self._ssl else "http"
        return f"{scheme}://{self.host}:{self.port}"

    @property
    def auth_url(self) -> str:
        """Keystone URL without `/v3`, as users usually write it (the client appends it)."""
        return self.url

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, ssl_context=self._ssl)
        await site.start()
        self.host = host
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def credentials(self, **overrides: Any) -> Credentials:
        values: dict[str, Any] = {
            "auth_url": self.auth_url,
            "username": "admin",
            "password": "admin",
            "user_domain_name": "Default",
            "project_id": "your-project-id",
        }
        values.update(overrides)
        return Credentials(**values)

    def calls(self, endpoint: str | None = None) -> int:
        return self.request_log.count(endpoint)


@contextlib.asynccontextmanager
async def running_simulator(
    seed: str | Path | Mapping[str, Any] | SimState | None = None, **kwargs: Any
) -> AsyncIterator[Simulator]:
    sim = Simulator(seed, **kwargs)
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()
