"""Contract tests of the OpenStack client: the same assertions against the real testbed and the simulator.

`backend` is parametrised: `simulator` (tests/fakes/openstack, seeded with the testbed's layout) and `real`
(Keystone/Nova/Neutron brought up by `scripts/openstack-testbed up && scripts/openstack-testbed seed`).
The real backend never skips: when the testbed is not up the test fails and says how to bring it up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import subprocess
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from multinic_ctrl.openstack import Credentials, HttpSettings, OpenStackClient, RetryPolicy
from multinic_ctrl.openstack.http import HttpTransport, Params, Response
from tests.fakes.openstack import running_simulator

REPO = Path(__file__).resolve().parents[2]
TESTBED = REPO / "scripts" / "openstack-testbed"
HOW_TO = "bring it up with: scripts/openstack-testbed up && scripts/openstack-testbed seed"

# The layout `scripts/openstack_testbed/seed.py` creates (fixed addresses), mirrored in the simulator seed.
K8S_CIDR = "192.168.100.0/24"
OTHER_CIDR = "192.168.200.0/24"
K8S_IPS: dict[str, list[str]] = {
    "test-vm-1": ["192.168.100.11"],
    "test-vm-2": ["192.168.100.12"],
    "test-vm-3": ["192.168.100.13", "192.168.100.23"],  # .23 hot-attached after boot
    "test-vm-10": ["192.168.100.20"],
    "test-vm-1.backup": ["192.168.100.21"],
}
OTHER_IPS: dict[str, list[str]] = {"test-vm-2": ["192.168.200.12"]}
ORPHAN_IP = "192.168.100.99"
ORPHAN_DEVICE_ID = "00000000-0000-4000-8000-0000000000ff"
PAGE = 2  # nova [api] max_limit and neutron pagination_max_limit on the testbed

# Project scoping (seed.py): the admin user also holds the admin role on these two projects.
OTHER_PROJECT = "multinic-other"  # the same network, subnet and server names as the admin project
OTHER_K8S_CIDR = "192.168.110.0/24"
OTHER_PROJECT_IPS: dict[str, list[str]] = {"test-vm-1": ["192.168.110.11"], "test-vm-2": ["192.168.110.12"]}
SHARED_PROJECT = "multinic-shared"  # owns shared-net (shared with every project); no servers
SHARED_SUBNETS: list[tuple[str, str]] = [
    ("shared-subnet", "192.168.120.0/24"),
    ("twin-subnet", "192.168.121.0/24"),
    ("twin-subnet", "192.168.122.0/24"),
    ("k8s-subnet", "192.168.123.0/24"),
]
# A project whose one server sits in a Nova cell that does not answer, while `Backend.down_cell` is on
# (real: `seed.py down-cell on|off` maps a cell without a database; simulator: `Server.down_cell`).
CELLS_PROJECT = "multinic-cells"
DOWN_CELL_SERVER = "00000000-0000-4000-8000-00000000d0c1"
SEED = REPO / "scripts" / "openstack_testbed" / "seed.py"


def simulator_seed() -> dict[str, Any]:
    def ports(name: str) -> list[dict[str, str]]:
        out = [{"subnet": "k8s-subnet", "ip": ip} for ip in K8S_IPS[name]]
        out += [{"subnet": "other-subnet", "ip": ip} for ip in OTHER_IPS.get(name, [])]
        return out

    return {
        "token_lifetime": 3600,
        "projects": [
            {"id": "0123456789abcdef0123456789abcdef", "name": "admin", "domain": "Default"},
            {"id": "1111111111111111111111111111aaaa", "name": OTHER_PROJECT, "domain": "Default"},
            {"id": "2222222222222222222222222222bbbb", "name": SHARED_PROJECT, "domain": "Default"},
            {"id": "3333333333333333333333333333cccc", "name": CELLS_PROJECT, "domain": "Default"},
        ],
        "users": [{"name": "admin", "password": "admin", "domain": "Default", "admin": True}],
        "networks": [
            {"name": "k8s-net", "mtu": 1450, "subnets": [{"name": "k8s-subnet", "cidr": K8S_CIDR}]},
            # The testbed's other-net is a VXLAN network created without an MTU: Neutron gives it 1450 too.
            {"name": "other-net", "mtu": 1450, "subnets": [{"name": "other-subnet", "cidr": OTHER_CIDR}]},
            {
                "name": "k8s-net",
                "mtu": 1450,
                "project": OTHER_PROJECT,
                "subnets": [{"name": "k8s-subnet", "cidr": OTHER_K8S_CIDR}],
            },
            {
                "name": "shared-net",
                "mtu": 1450,
                "project": SHARED_PROJECT,
                "shared": True,
                "subnets": [{"name": name, "cidr": cidr} for name, cidr in SHARED_SUBNETS],
            },
        ],
        "servers": [{"name": name, "ports": ports(name)} for name in K8S_IPS]
        + [
            {"name": name, "project": OTHER_PROJECT, "ports": [{"subnet": "k8s-subnet", "ip": ip} for ip in ips]}
            for name, ips in OTHER_PROJECT_IPS.items()
        ],
        "ports": [{"subnet": "k8s-subnet", "ip": ORPHAN_IP, "device_id": ORPHAN_DEVICE_ID}],
    }


@dataclass
class Call:
    service: str
    operation: str
    method: str
    status: int
    params: list[tuple[str, str]]


class RecordingTransport(HttpTransport):
    """HttpTransport that remembers every request it made (the same bookkeeping for both backends)."""

    def __init__(self, settings: HttpSettings) -> None:
        super().__init__(settings, rng=random.Random(0))
        self.calls: list[Call] = []

    async def request(self, **kwargs: Any) -> Response:
        resp = await super().request(**kwargs)
        params: Params | None = kwargs.get("params")
        self.calls.append(
            Call(kwargs["service"], kwargs["operation"], kwargs["method"], resp.status, list(params or ()))
        )
        return resp

    def count(self, operation: str, status: int | None = None) -> int:
        return sum(1 for c in self.calls if c.operation == operation and (status is None or c.status == status))


def make_client(page_size: int | None = None) -> tuple[OpenStackClient, RecordingTransport]:
    settings = HttpSettings(
        request_timeout=30.0, connect_timeout=5.0, retry=RetryPolicy(attempts=2, backoff_base=0.05, backoff_max=0.1)
    )
    transport = RecordingTransport(settings)
    return OpenStackClient(transport=transport, page_size=page_size), transport


@dataclass
class Backend:
    name: str
    creds: Credentials
    revoke: Callable[[str], Awaitable[None]]
    # Neutron caps every listing at this many items even without `limit` (None: no server-side cap).
    neutron_max_limit: int | None
    # Put CELLS_PROJECT's server DOWN_CELL_SERVER in a cell that does not answer (True) or remove it (False).
    set_down_cell: Callable[[bool], Awaitable[None]]
    extra: dict[str, Any] = field(default_factory=dict)

    @contextlib.asynccontextmanager
    async def down_cell(self) -> AsyncIterator[str]:
        """While inside: one server of CELLS_PROJECT is in an unreachable cell; yields its ID."""
        await self.set_down_cell(True)
        try:
            yield DOWN_CELL_SERVER
        finally:
            await self.set_down_cell(False)

    def scoped_to(self, project_name: str) -> Credentials:
        """The same admin user, scoped to another project of the layout (by name, in Default)."""
        return replace(self.creds, project_id=None, project_name=project_name, project_domain_name="Default")


# ------------------------------------------------------------------------------------------- real testbed
def _testbed_env() -> dict[str, str]:
    """Connection info from `scripts/openstack-testbed env` (falls back to the state dir's env.json)."""
    env: dict[str, str] = {}
    try:
        out = subprocess.run([str(TESTBED), "env"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.fail(f"OpenStack testbed: cannot run {TESTBED} env ({exc}); {HOW_TO}")
    if out.returncode == 0:
        import shlex

        for line in out.stdout.splitlines():
            if line.startswith("export "):
                key, _, value = line[len("export ") :].partition("=")
                env[key] = shlex.split(value)[0] if value else ""
    else:
        state = Path(os.environ.get("MULTINIC_OS_STATE") or Path.home() / ".cache/multinic/openstack-state")
        f = state / "env.json"
        if not f.exists():
            pytest.fail(f"OpenStack testbed is not up (no {f}; `{TESTBED} env`: {out.stderr.strip()}); {HOW_TO}")
        env = json.loads(f.read_text())
    return env


def _keystone_token(env: Mapping[str, str]) -> str:
    body = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {
                        "name": env["OS_USERNAME"],
                        "domain": {"name": env.get("OS_USER_DOMAIN_NAME", "Default")},
                        "password": env["OS_PASSWORD"],
                    }
                },
            },
            "scope": {"project": {"id": env["OS_PROJECT_ID"]}},
        }
    }
    req = urllib.request.Request(  # noqa: S310 - loopback testbed URL
        env["OS_AUTH_URL"].rstrip("/") + "/auth/tokens",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=15) as resp:  # noqa: S310 - loopback testbed URL
        return str(resp.headers["X-Subject-Token"])


@pytest.fixture(scope="session")
def real_env() -> dict[str, str]:
    env = _testbed_env()
    try:
        token = _keystone_token(env)
    except (urllib.error.URLError, OSError, KeyError) as exc:
        pytest.fail(f"OpenStack testbed is not reachable at {env.get('OS_AUTH_URL')} ({exc}); {HOW_TO}")
    # Seeded? Nova must know test-vm-1 (exact-name regex).
    req = urllib.request.Request(  # noqa: S310 - loopback testbed URL
        env["OS_COMPUTE_ENDPOINT"].rstrip("/") + "/servers?name=%5Etest-vm-1%24",
        headers={"X-Auth-Token": token},
    )
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:  # noqa: S310
            servers = json.loads(resp.read())["servers"]
    except (urllib.error.URLError, OSError) as exc:
        pytest.fail(f"OpenStack testbed: Nova is not answering ({exc}); {HOW_TO}")
    if not servers:
        pytest.fail(f"OpenStack testbed is up but not seeded (no test-vm-1); run: {TESTBED} seed")
    return env


async def _revoke_real(env: Mapping[str, str], token: str) -> None:
    admin = _keystone_token(env)
    async with (
        aiohttp.ClientSession() as s,
        s.delete(
            env["OS_AUTH_URL"].rstrip("/") + "/auth/tokens",
            headers={"X-Auth-Token": admin, "X-Subject-Token": token},
        ) as resp,
    ):
        assert resp.status == 204, await resp.text()


async def set_real_down_cell(env: Mapping[str, str], on: bool) -> None:
    """`seed.py down-cell on|off` in the testbed's venv: map (unmap) a Nova cell that does not answer, holding
    DOWN_CELL_SERVER of CELLS_PROJECT, and recycle the nova-api worker. A seed run removes a leftover."""
    python = Path(env.get("MULTINIC_OS_VENV") or Path.home() / ".cache/multinic/openstack-venv") / "bin/python"
    proc = await asyncio.create_subprocess_exec(
        str(python),
        str(SEED),
        "down-cell",
        "on" if on else "off",
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=180)
    assert proc.returncode == 0, f"seed.py down-cell failed: {out.decode(errors='replace')[-2000:]}"


@contextlib.asynccontextmanager
async def real_down_cell(env: Mapping[str, str]) -> AsyncIterator[str]:
    await set_real_down_cell(env, True)
    try:
        yield DOWN_CELL_SERVER
    finally:
        await set_real_down_cell(env, False)


# ---------------------------------------------------------------------------------------------- backends
@pytest.fixture(params=["simulator", "real"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    if request.param == "real":
        env = request.getfixturevalue("real_env")
        creds = Credentials(
            auth_url=env["OS_AUTH_URL"].removesuffix("/v3"),  # as users write it; the client appends /v3
            username=env["OS_USERNAME"],
            password=env["OS_PASSWORD"],
            user_domain_name=env.get("OS_USER_DOMAIN_NAME", "Default"),
            project_id=env["OS_PROJECT_ID"],
        )

        async def revoke(token: str) -> None:
            await _revoke_real(env, token)

        async def set_down_cell(on: bool) -> None:
            await set_real_down_cell(env, on)

        yield Backend(
            "real",
            creds,
            revoke,
            neutron_max_limit=int(env.get("MULTINIC_OS_NEUTRON_PAGE_LIMIT", PAGE)),
            set_down_cell=set_down_cell,
        )
        return

    # Paged like the testbed (nova [api] max_limit and neutron pagination_max_limit both PAGE).
    async with running_simulator(simulator_seed(), nova_max_limit=PAGE, neutron_max_limit=PAGE) as sim:

        async def revoke_sim(token: str) -> None:
            sim.state.tokens.pop(token, None)

        async def set_down_cell_sim(on: bool) -> None:
            if on:
                sim.state.add_server("cell-vm", id=DOWN_CELL_SERVER, project_id=CELLS_PROJECT)
                sim.state.set_cell_down(DOWN_CELL_SERVER)
            else:
                sim.state.remove_server(DOWN_CELL_SERVER)

        yield Backend(
            "simulator",
            sim.credentials(project_id="0123456789abcdef0123456789abcdef"),
            revoke_sim,
            neutron_max_limit=PAGE,
            set_down_cell=set_down_cell_sim,
            extra={"sim": sim},
        )
