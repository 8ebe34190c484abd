"""Neutron: subnets by name, ports of many servers on some subnets, the networks' MTUs - each in one query.

Neutron filters: repeated query parameters are ORed (`name=a&name=b`, `device_id=a&device_id=b`,
`fixed_ips=subnet_id=X&fixed_ips=subnet_id=Y`, `id=a&id=b`), different keys are ANDed, `fixed_ips=subnet_id=X`
keeps ports with an address on subnet X, and `fields=` trims each object to what we read.

Each lookup takes many values so that one observation can serve many configs (see `observe.py`); the
one-value functions (`find_subnet`, `list_ports`, `get_network_mtu`) are the same queries with one value, so a
single config costs exactly what it did before batching existed. Value lists are cut into chunks so that no
request line outgrows what front ends accept (~8 KiB).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from .compute import JsonGetter
from .errors import (
    AmbiguousSubnet,
    OpenStackError,
    OpenStackRequestError,
    PermissionDenied,
    ResourceNotFound,
    SubnetNotFound,
)
from .models import Port
from .paging import collect
from .tasks import gather_all

SERVICE = "network"

# Request lines longer than ~8 KiB are refused by many front ends (aiohttp, eventlet, nginx, Apache), and uwsgi
# even drops every filter of a query past its buffer and answers 200 with the whole collection (measured on the
# real testbed). So the repeated values of one query (`&key=value` characters, percent-encoded) stay within
# QUERY_BUDGET. Past it we drop the device_id filter and keep only fixed_ips=subnet_id=…, filtering devices
# client-side: still one (paginated) query, just a wider one. Every answer is filtered again client-side anyway.
QUERY_BUDGET = DEVICE_ID_QUERY_BUDGET = 6000
SUBNET_QUERY_BUDGET = 1500  # subnets per ports query (~25), leaving room for device IDs
NAME_QUERY_BUDGET = 4000


@dataclass(frozen=True)
class SubnetRecord:
    id: str
    name: str
    cidr: str
    network_id: str


def chunked(values: Sequence[str], cost: Callable[[str], int], budget: int) -> list[list[str]]:
    """Consecutive chunks whose summed cost stays within `budget` (a value costlier than that gets its own)."""
    chunks: list[list[str]] = []
    current: list[str] = []
    used = 0
    for value in values:
        c = cost(value)
        if current and used + c > budget:
            chunks.append(current)
            current, used = [], 0
        current.append(value)
        used += c
    if current:
        chunks.append(current)
    return chunks


def _param_cost(key: str) -> Callable[[str], int]:
    """Characters one `&key=value` adds to the query (percent-encoding of the value counted)."""
    return lambda value: len(key) + 2 + len(quote(value, safe=""))


async def find_subnets(
    get_json: JsonGetter,
    network_url: str,
    names: Iterable[str],
    *,
    project_id: str | None = None,
    page_size: int | None = None,
) -> dict[str, SubnetRecord | OpenStackError]:
    """Each subnet called one of `names` as the scoped project sees it, or the config error for that name.

    With admin credentials Neutron returns same-named subnets of *every* project, so a name alone is not
    enough. Preference: the subnet owned by `project_id` (the token's scope), then a unique subnet shared with
    it (`shared=True` is evaluated by Neutron for the requesting project: RBAC `access_as_shared` to it or to
    `*`), else `AmbiguousSubnet` with the candidates, or `SubnetNotFound` - returned per name, so one config's
    unknown subnet does not fail another's lookup.

    Two server-side filters rather than one name-only query and a choice here: `shared` is filter-only on
    subnets (Neutron never returns it), so a client-side choice would need a second call anyway (networks),
    and the name-only answer would carry every project's subnets. The common case (owned subnets) is one
    call for all names; the `shared` query runs only for the names the project owns none of. Both follow
    pagination (`pagination_max_limit` pages even these listings). A token without a project scope falls back
    to the names alone. Outages raise (they concern every name alike).
    """
    wanted = list(dict.fromkeys(names))
    if not wanted:
        return {}
    if not project_id:
        found = await _subnets_named(get_json, network_url, wanted, [], page_size)
        return {n: _settle(n, found.get(n, []), scope=None) for n in wanted}
    owned = await _subnets_named(get_json, network_url, wanted, [("project_id", project_id)], page_size)
    # Server-side filters are not to be trusted blindly (a front end may drop them): owned means owned.
    owned = {n: [s for s in found if s.get("project_id", project_id) == project_id] for n, found in owned.items()}
    rest = [n for n in wanted if not owned.get(n)]
    shared = await _subnets_named(get_json, network_url, rest, [("shared", "True")], page_size) if rest else {}
    result: dict[str, SubnetRecord | OpenStackError] = {}
    for name in wanted:
        if owned.get(name):
            result[name] = _settle(name, owned[name], scope=f"owned by project {project_id}")
        elif shared.get(name):
            result[name] = _settle(name, shared[name], scope=f"shared with project {project_id}")
        else:
            result[name] = SubnetNotFound(name, project_id=project_id)
    return result


async def find_subnet(
    get_json: JsonGetter,
    network_url: str,
    name: str,
    *,
    project_id: str | None = None,
    page_size: int | None = None,
) -> SubnetRecord:
    """The subnet called `name` (see `find_subnets`); raises its config error."""
    outcome = (await find_subnets(get_json, network_url, [name], project_id=project_id, page_size=page_size))[name]
    if isinstance(outcome, OpenStackError):
        raise outcome
    return outcome


async def _subnets_named(
    get_json: JsonGetter,
    network_url: str,
    names: Sequence[str],
    filters: list[tuple[str, str]],
    page_size: int | None,
) -> dict[str, list[dict[str, Any]]]:
    """Subnets by requested name (deduplicated by ID), one query per chunk of names."""
    url = network_url + "/subnets"

    async def fetch(p: Sequence[tuple[str, str]]) -> Any:
        return await get_json(SERVICE, "list_subnets", url, p)

    async def query(chunk: list[str]) -> list[dict[str, Any]]:
        params = [*(("name", n) for n in chunk), *filters]
        params.extend(("fields", f) for f in ("id", "name", "cidr", "network_id", "project_id"))
        if page_size:
            params.append(("limit", str(page_size)))
        return await collect(
            fetch,
            params,
            service=SERVICE,
            operation="list_subnets",
            collection_key="subnets",
            links_key="subnets_links",
        )

    pages = await gather_all([query(c) for c in chunked(names, _param_cost("name"), NAME_QUERY_BUDGET)])
    # Neutron's name filter is exact, but be strict in case a proxy or old release is not.
    wanted = set(names)
    by_name: dict[str, dict[str, dict[str, Any]]] = {}
    for items in pages:
        for s in items:
            name = s.get("name")
            if isinstance(name, str) and name in wanted and "id" in s:
                by_name.setdefault(name, {})[str(s.get("id"))] = s
    return {name: list(found.values()) for name, found in by_name.items()}


def _settle(name: str, matches: list[dict[str, Any]], *, scope: str | None) -> SubnetRecord | OpenStackError:
    try:
        return _one(name, matches, scope=scope)
    except (SubnetNotFound, AmbiguousSubnet) as exc:
        return exc


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


async def list_ports_on_subnets(
    get_json: JsonGetter,
    network_url: str,
    subnet_ids: Iterable[str],
    device_ids: Iterable[str],
    *,
    page_size: int | None = None,
) -> dict[str, tuple[Port, ...]]:
    """Per subnet: the ports of `device_ids` that have an address on it, with that address.

    One query for all subnets and devices while the filters fit in a request line. Past that: a device list
    that does not fit is dropped (every port of the subnets, filtered here); subnets that do not fit one query
    are dropped instead when the devices fit (every port of the devices, filtered here); else one query per
    chunk of subnets.
    """
    devices = list(dict.fromkeys(device_ids))
    subnets = list(dict.fromkeys(subnet_ids))
    if not devices or not subnets:
        return {s: () for s in subnets}
    device_filter = [("device_id", d) for d in devices]
    device_cost = sum(len(d) + len("&device_id=") for d in devices)
    subnet_cost = _param_cost("fixed_ips")
    chunks = chunked(subnets, lambda s: subnet_cost(f"subnet_id={s}"), SUBNET_QUERY_BUDGET)
    queries: list[list[tuple[str, str]]]
    if len(chunks) > 1 and device_cost <= QUERY_BUDGET:
        queries = [device_filter]
    else:
        queries = []
        for chunk in chunks:
            subnet_filter = [("fixed_ips", f"subnet_id={s}") for s in chunk]
            fits = device_cost + sum(subnet_cost(v) for _, v in subnet_filter) <= QUERY_BUDGET
            queries.append([*subnet_filter, *(device_filter if fits else ())])
    url = network_url + "/ports"

    async def fetch(p: Sequence[tuple[str, str]]) -> Any:
        return await get_json(SERVICE, "list_ports", url, p)

    async def query(params: list[tuple[str, str]]) -> list[dict[str, Any]]:
        params = [*params, *(("fields", f) for f in ("id", "mac_address", "fixed_ips", "device_id", "network_id"))]
        if page_size:
            params.append(("limit", str(page_size)))
        return await collect(
            fetch, params, service=SERVICE, operation="list_ports", collection_key="ports", links_key="ports_links"
        )

    pages = await gather_all([query(q) for q in queries])
    wanted_devices, wanted_subnets = set(devices), set(subnets)
    found: dict[str, dict[str, Port]] = {s: {} for s in subnets}
    for items in pages:
        for item in items:
            on = {
                fip.get("subnet_id")
                for fip in item.get("fixed_ips") or ()
                if isinstance(fip, dict) and fip.get("subnet_id") in wanted_subnets
            }
            for subnet_id in on:
                port = _port(item, str(subnet_id))
                if port is not None and port.device_id in wanted_devices:
                    found[str(subnet_id)][port.id] = port
    return {s: tuple(ports.values()) for s, ports in found.items()}


async def list_ports(
    get_json: JsonGetter,
    network_url: str,
    subnet_id: str,
    device_ids: Sequence[str],
    *,
    page_size: int | None = None,
) -> tuple[Port, ...]:
    """Ports of `device_ids` that have an address on `subnet_id`, with that address."""
    found = await list_ports_on_subnets(get_json, network_url, [subnet_id], device_ids, page_size=page_size)
    return found.get(subnet_id, ())


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


def _mtu_of(network: object) -> int | None:
    mtu = network.get("mtu") if isinstance(network, Mapping) else None
    return mtu if isinstance(mtu, int) and not isinstance(mtu, bool) else None


async def get_network_mtu(get_json: JsonGetter, network_url: str, network_id: str) -> int:
    params = [("fields", "id"), ("fields", "mtu")]
    body = await get_json(SERVICE, "get_network", f"{network_url}/networks/{quote(network_id, safe='')}", params)
    mtu = _mtu_of(body.get("network") if isinstance(body, dict) else None)
    if mtu is None:
        raise OpenStackRequestError(SERVICE, "get_network", 200, f"network {network_id} has no integer 'mtu'")
    return mtu


_PER_NETWORK_ERRORS = (ResourceNotFound, PermissionDenied, OpenStackRequestError)
"""Refusals about one network (gone, hidden, malformed): they fail the configs on it, not the others."""


async def get_network_mtus(
    get_json: JsonGetter, network_url: str, network_ids: Iterable[str], *, page_size: int | None = None
) -> dict[str, int | OpenStackError]:
    """Each network's MTU, or the error that network's own `GET /networks/{id}` gives.

    One network: that GET (what a single config always asked). Several: one listing filtered by `id`, and the
    GET only for a network the listing did not answer for (it is hidden, gone, or has no integer MTU), so each
    network's outcome is exactly the one its own GET would give. Outages raise.
    """
    ids = list(dict.fromkeys(network_ids))
    if not ids:
        return {}
    mtus: dict[str, int | OpenStackError] = {}
    if len(ids) > 1:
        url = network_url + "/networks"

        async def fetch(p: Sequence[tuple[str, str]]) -> Any:
            return await get_json(SERVICE, "list_networks", url, p)

        async def query(chunk: list[str]) -> list[dict[str, Any]]:
            params = [*(("id", n) for n in chunk), ("fields", "id"), ("fields", "mtu")]
            if page_size:
                params.append(("limit", str(page_size)))
            return await collect(
                fetch,
                params,
                service=SERVICE,
                operation="list_networks",
                collection_key="networks",
                links_key="networks_links",
            )

        try:
            pages = await gather_all([query(c) for c in chunked(ids, _param_cost("id"), QUERY_BUDGET)])
        except _PER_NETWORK_ERRORS:
            pages = []  # the listing itself refused: ask network by network, as single configs do
        wanted = set(ids)
        for items in pages:
            for net in items:
                nid, mtu = net.get("id"), _mtu_of(net)
                if isinstance(nid, str) and nid in wanted and mtu is not None:
                    mtus[nid] = mtu

    async def one(network_id: str) -> None:
        try:
            mtus[network_id] = await get_network_mtu(get_json, network_url, network_id)
        except _PER_NETWORK_ERRORS as exc:
            mtus[network_id] = exc

    await gather_all([one(n) for n in ids if n not in mtus])
    return {n: mtus[n] for n in ids}
