"""Neutron: subnet by name, ports of many servers on one subnet in one query, the network's MTU.

Neutron filters: repeated query parameters are ORed (`device_id=a&device_id=b`), `fixed_ips=subnet_id=X`
keeps ports with an address on subnet X, and `fields=` trims each object to what we read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from .compute import JsonGetter
from .errors import AmbiguousSubnet, OpenStackRequestError, SubnetNotFound
from .models import Port
from .paging import collect

SERVICE = "network"

# Request lines longer than ~8 KiB are refused by many front ends (aiohttp, eventlet, some proxies). Past this
# budget we drop the device_id filter and keep only fixed_ips=subnet_id=…, filtering devices client-side:
# still one (paginated) query, just a wider one.
DEVICE_ID_QUERY_BUDGET = 6000


@dataclass(frozen=True)
class SubnetRecord:
    id: str
    name: str
    cidr: str
    network_id: str


async def find_subnet(get_json: JsonGetter, network_url: str, name: str) -> SubnetRecord:
    params = [
        ("name", name),
        ("fields", "id"),
        ("fields", "name"),
        ("fields", "cidr"),
        ("fields", "network_id"),
    ]
    body = await get_json(SERVICE, "list_subnets", network_url + "/subnets", params)
    items = body.get("subnets") if isinstance(body, dict) else None
    if not isinstance(items, list):
        raise OpenStackRequestError(SERVICE, "list_subnets", 200, "response has no 'subnets' list")
    # Neutron's name filter is exact, but be strict in case a proxy or old release is not.
    matches = [s for s in items if isinstance(s, dict) and s.get("name") == name]
    if not matches:
        raise SubnetNotFound(name)
    if len(matches) > 1:
        raise AmbiguousSubnet(name, sorted((str(s.get("id")), str(s.get("network_id"))) for s in matches))
    s = matches[0]
    return SubnetRecord(id=str(s["id"]), name=name, cidr=str(s.get("cidr", "")), network_id=str(s["network_id"]))


async def list_ports(
    get_json: JsonGetter,
    network_url: str,
    subnet_id: str,
    device_ids: Sequence[str],
    *,
    page_size: int | None = None,
) -> tuple[Port, ...]:
    """Ports of `device_ids` that have an address on `subnet_id`, with that address."""
    devices = list(dict.fromkeys(device_ids))
    if not devices:
        return ()
    params: list[tuple[str, str]] = [("fixed_ips", f"subnet_id={subnet_id}")]
    if sum(len(d) + len("&device_id=") for d in devices) <= DEVICE_ID_QUERY_BUDGET:
        params.extend(("device_id", d) for d in devices)
    params.extend(("fields", f) for f in ("id", "mac_address", "fixed_ips", "device_id", "network_id"))
    if page_size:
        params.append(("limit", str(page_size)))
    url = network_url + "/ports"

    async def fetch(p: Sequence[tuple[str, str]]) -> Any:
        return await get_json(SERVICE, "list_ports", url, p)

    items = await collect(
        fetch,
        params,
        service=SERVICE,
        operation="list_ports",
        collection_key="ports",
        links_key="ports_links",
    )
    wanted = set(devices)
    ports: dict[str, Port] = {}
    for item in items:
        port = _port(item, subnet_id)
        if port is not None and port.device_id in wanted:
            ports[port.id] = port
    return tuple(ports.values())


def _port(item: dict[str, Any], subnet_id: str) -> Port | None:
    ip = next(
        (
            fip.get("ip_address")
            for fip in item.get("fixed_ips") or ()
            if isinstance(fip, dict) and fip.get("subnet_id") == subnet_id
        ),
        None,
    )
    pid, mac = item.get("id"), item.get("mac_address")
    if not isinstance(ip, str) or not isinstance(pid, str) or not isinstance(mac, str):
        return None
    return Port(
        id=pid,
        mac=mac.lower(),
        ip=ip,
        device_id=str(item.get("device_id", "")),
        network_id=str(item.get("network_id", "")),
    )


async def get_network_mtu(get_json: JsonGetter, network_url: str, network_id: str) -> int:
    params = [("fields", "id"), ("fields", "mtu")]
    body = await get_json(SERVICE, "get_network", f"{network_url}/networks/{quote(network_id, safe='')}", params)
    network = body.get("network") if isinstance(body, dict) else None
    mtu = network.get("mtu") if isinstance(network, dict) else None
    if not isinstance(mtu, int) or isinstance(mtu, bool):
        raise OpenStackRequestError(SERVICE, "get_network", 200, f"network {network_id} has no integer 'mtu'")
    return mtu
