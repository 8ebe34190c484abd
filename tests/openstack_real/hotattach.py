"""Hot-attaching ports to a VM of the real testbed: what the notification test and `scripts/bench-hot-attach` do.

Everything lives apart from the seeded layout that the contract tests assert on (they count every port of
`k8s-subnet`, the servers named `test-vm-*`): a network `notify-net` / `notify-subnet` (192.168.130.0/24,
created once, kept) and per run a VM `notify-vm-<random>` booted without any NIC, whose ports are created,
attached, detached and deleted here. `cleanup()` removes what a killed run left behind.

Admin operations over plain aiohttp with a project-scoped Keystone token; Nova's `os-interface` POST with an
existing `port_id` is the hot-attach operators do (`openstack server add port`).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

NETWORK, SUBNET, CIDR = "notify-net", "notify-subnet", "192.168.130.0/24"
PREFIX = "notify-"
NOVA_VERSION = {"X-OpenStack-Nova-API-Version": "2.37"}  # networks "none" at boot


class CloudError(RuntimeError):
    pass


@dataclass
class Cloud:
    session: aiohttp.ClientSession
    token: str
    project_id: str
    compute: str
    network: str
    image: str

    @classmethod
    async def connect(cls, env: Mapping[str, str]) -> Cloud:
        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120))
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
        async with session.post(env["OS_AUTH_URL"].rstrip("/") + "/auth/tokens", json=body) as resp:
            if resp.status != 201:
                await session.close()
                raise CloudError(f"Keystone: {resp.status}")
            token = resp.headers["X-Subject-Token"]
        return cls(
            session,
            token,
            env["OS_PROJECT_ID"],
            env["OS_COMPUTE_ENDPOINT"].rstrip("/"),
            env["OS_NETWORK_ENDPOINT"].rstrip("/") + "/v2.0",
            env["OS_IMAGE_ENDPOINT"].rstrip("/"),
        )

    async def close(self) -> None:
        await self.session.close()

    async def call(
        self, method: str, url: str, body: Any = None, *, ok: tuple[int, ...] = (200, 201, 202, 204), **headers: str
    ) -> Any:
        async with self.session.request(
            method, url, json=body, headers={"X-Auth-Token": self.token, **headers}
        ) as resp:
            text = await resp.text()
            if resp.status not in ok:
                raise CloudError(f"{method} {url}: {resp.status} {text[:300]}")
            return await resp.json(content_type=None) if text else None

    async def list_all(self, url: str, key: str) -> list[dict[str, Any]]:
        """Every page (the testbed pages Nova and Neutron listings at 2 items)."""
        items: list[dict[str, Any]] = []
        next_url: str | None = url
        while next_url:
            page = await self.call("GET", next_url)
            items += page[key]
            links = page.get(f"{key}_links") or []
            next_url = next((link["href"] for link in links if link.get("rel") == "next"), None)
        return items

    # ------------------------------------------------------------------------------------------- layout
    async def ensure_network(self) -> tuple[str, str]:
        """`notify-net` / `notify-subnet` of the admin project: (network ID, subnet ID)."""
        found = await self.call("GET", f"{self.network}/networks?name={NETWORK}&project_id={self.project_id}")
        if found["networks"]:
            net = found["networks"][0]
        else:
            net = (await self.call("POST", f"{self.network}/networks", {"network": {"name": NETWORK}}))["network"]
        subnets = await self.call("GET", f"{self.network}/subnets?network_id={net['id']}&name={SUBNET}")
        if subnets["subnets"]:
            return net["id"], subnets["subnets"][0]["id"]
        subnet = {
            "name": SUBNET,
            "network_id": net["id"],
            "ip_version": 4,
            "cidr": CIDR,
            "enable_dhcp": False,
            "gateway_ip": "192.168.130.1",
        }
        created = await self.call("POST", f"{self.network}/subnets", {"subnet": subnet})
        return net["id"], created["subnet"]["id"]

    async def boot(self, name: str | None = None, timeout: float = 180) -> tuple[str, str]:
        """A VM with no NIC, ACTIVE: (ID, name)."""
        name = name or f"{PREFIX}vm-{secrets.token_hex(3)}"
        images = await self.call("GET", f"{self.image}/v2/images?name=testbed-image")
        flavor = next(
            f["id"] for f in await self.list_all(f"{self.compute}/flavors", "flavors") if f["name"] == "testbed.tiny"
        )
        server = {"name": name, "imageRef": images["images"][0]["id"], "flavorRef": flavor, "networks": "none"}
        created = await self.call("POST", f"{self.compute}/servers", {"server": server}, **NOVA_VERSION)
        server_id = created["server"]["id"]
        deadline = time.monotonic() + timeout
        while True:
            status = (await self.call("GET", f"{self.compute}/servers/{server_id}"))["server"]["status"]
            if status == "ACTIVE":
                return server_id, name
            if status == "ERROR" or time.monotonic() > deadline:
                raise CloudError(f"server {name} is {status}")
            await asyncio.sleep(1)

    async def delete_server(self, server_id: str, timeout: float = 120) -> None:
        await self.call("DELETE", f"{self.compute}/servers/{server_id}", ok=(204, 404))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = await self.call("GET", f"{self.compute}/servers/{server_id}", ok=(200, 404))
            if found is None or "itemNotFound" in found or found.get("server", {}).get("status") == "DELETED":
                return
            await asyncio.sleep(1)
        raise CloudError(f"server {server_id} was not deleted")

    # --------------------------------------------------------------------------------------------- ports
    async def create_port(self, network_id: str) -> dict[str, Any]:
        body = {"port": {"network_id": network_id, "name": f"{PREFIX}port-{secrets.token_hex(3)}"}}
        port: dict[str, Any] = (await self.call("POST", f"{self.network}/ports", body))["port"]
        return port

    async def attach(self, server_id: str, port_id: str) -> None:
        """Nova's hot-attach of an existing port; returns once Nova answered (the attach is done)."""
        body = {"interfaceAttachment": {"port_id": port_id}}
        await self.call("POST", f"{self.compute}/servers/{server_id}/os-interface", body)

    async def detach(self, server_id: str, port_id: str, timeout: float = 60) -> None:
        """Nova's detach (asynchronous: 202); returns once Neutron shows the port unbound."""
        await self.call("DELETE", f"{self.compute}/servers/{server_id}/os-interface/{port_id}", ok=(202, 404))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            port = await self.call("GET", f"{self.network}/ports/{port_id}", ok=(200, 404))
            if port is None or "port" not in port or not port["port"]["device_id"]:
                return
            await asyncio.sleep(0.5)
        raise CloudError(f"port {port_id} still bound {timeout:.0f}s after the detach")

    async def delete_port(self, port_id: str) -> None:
        await self.call("DELETE", f"{self.network}/ports/{port_id}", ok=(204, 404))

    async def cleanup(self) -> None:
        """Remove the VMs and ports of earlier runs (a run killed half-way leaves them behind)."""
        for server in await self.list_all(f"{self.compute}/servers?name=%5E{PREFIX}vm-", "servers"):
            await self.delete_server(server["id"])
        for port in await self.list_all(f"{self.network}/ports?project_id={self.project_id}", "ports"):
            if port["name"].startswith(f"{PREFIX}port-"):
                await self.delete_port(port["id"])
