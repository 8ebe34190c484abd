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


async def find_subnet(
    get_json: JsonGetter,
    network_url: str,
    name: str,
    *,
    project_id: str | None = None,
    page_size: int | None = None,
) -> SubnetRecord:
    """The subnet called `name` as the scoped project sees it.

    With admin credentials Neutron returns same-named subnets of *every* project, so a name alone is not
    enough. Preference: the subnet owned by `project_id` (the token's scope), then a unique subnet shared with
    it (`shared=True` is evaluated by Neutron for the requesting project: RBAC `access_as_shared` to it or to
    `*`), else `AmbiguousSubnet` with the candidates, or `SubnetNotFound`.

    Two server-side filters rather than one name-only query and a choice here: `shared` is filter-only on
    subnets (Neutron never returns it), so a client-side choice would need a second call anyway (networks),
    and the name-only answer would carry every project's subnets. The common case (an owned subnet) is one
    call, like before; the `shared` query runs only when the project owns none. Both follow pagination
    (`pagination_max_limit` pages even these listings). A token without a project scope falls back to the
    name alone.
    """
    if not project_id:
        return _one(name, await _subnets(get_json, network_url, [("name", name)], page_size), scope=None)
    owned = await _subnets(get_json, network_url, [("name", name), ("project_id", project_id)], page_size)
    if owned:
        return _one(name, owned, scope=f"owned by project {project_id}")
    shared = await _subnets(get_json, network_url, [("name", name), ("shared", "True")], page_size)
    if shared:
        return _one(name, shared, scope=f"shared with project {project_id}")
    raise SubnetNotFound(name, project_id=project_id)


async def _subnets(
    get_json: JsonGetter, network_url: str, filters: list[tuple[str, str]], page_size: int | None
) -> list[dict[str, Any]]:
    params = [*filters, *(("fields", f) for f in ("id", "name", "cidr", "network_id", "project_id"))]
    if page_size:
        params.append(("limit", str(page_size)))
    url = network_url + "/subnets"

    async def fetch(p: Sequence[tuple[str, str]]) -> Any:
        return await get_json(SERVICE, "list_subnets", url, p)

    items = await collect(
        fetch, params, service=SERVICE, operation="list_subnets", collection_key="subnets", links_key="subnets_links"
    )
    # Neutron's name filter is exact, but be strict in case a proxy or old release is not.
    name = filters[0][1]
    return list({str(s.get("id")): s for s in items if s.get("name") == name and "id" in s}.values())


def _one(name: str, matches: list[dict[str, Any]], *, scope: str | None) -> SubnetRecord:
    if not matches:
        raise SubnetNotFound(name)
    if len(matches) > 1:
        candidates = sorted(
            (str(s.get("id")), str(s.get("network_id")), str(s.get("project_id") or "?")) for s in matches
        )
        raise AmbiguousSubnet(name, candidates, scope=scope)
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
