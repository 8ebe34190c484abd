"""The reconcile-shaped lookup: one subnet, some VMs, their ports on that subnet, the MTU.

Call budget with a warm token, independent of the number of VMs:
  1 subnets query (a 2nd, `shared=True`, only when the project owns no such subnet)
  ∥  one servers query per name family (see `names.py`), each paginated
     (+ only while a requested VM is missing: 1 unfiltered servers listing at microversion 2.69, and the
      compute version document once per endpoint and hour, see `compute.py`)
  then 1 ports query (paginated)  ∥  1 network GET (MTU).
The two independent pairs run concurrently; a TaskGroup cancels the sibling when one fails.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from .compute import Getter, NegotiateMicroversion, find_servers
from .http import Params
from .models import Observation, Port, Server, Subnet
from .names import DEFAULT_MAX_QUERIES
from .network import find_subnet, get_network_mtu, list_ports


async def observe(
    get: Getter,
    *,
    compute_url: str,
    network_url: str,
    vm_names: Sequence[str],
    subnet_name: str,
    project_id: str | None = None,
    microversion: NegotiateMicroversion | None = None,
    page_size: int | None = None,
    max_server_queries: int = DEFAULT_MAX_QUERIES,
) -> Observation:
    """`project_id` is the token's scope (the subnet is resolved in it); `microversion` negotiates the compute
    microversion on demand (None: the endpoint is treated as not offering one)."""

    async def get_json(service: str, operation: str, url: str, params: Params) -> object:
        return (await get(service, operation, url, params)).body

    async with asyncio.TaskGroup() as tg:
        subnet_task = tg.create_task(
            find_subnet(get_json, network_url, subnet_name, project_id=project_id, page_size=page_size)
        )
        servers_task = tg.create_task(
            find_servers(
                get,
                compute_url,
                vm_names,
                microversion=microversion,
                page_size=page_size,
                max_queries=max_server_queries,
            )
        )
    subnet_rec = subnet_task.result()
    lookup = servers_task.result()
    servers = lookup.servers
    async with asyncio.TaskGroup() as tg:
        ports_task = tg.create_task(
            list_ports(get_json, network_url, subnet_rec.id, [s.id for s in servers], page_size=page_size)
        )
        mtu_task = tg.create_task(get_network_mtu(get_json, network_url, subnet_rec.network_id))
    subnet = Subnet(
        id=subnet_rec.id,
        name=subnet_rec.name,
        cidr=subnet_rec.cidr,
        network_id=subnet_rec.network_id,
        mtu=mtu_task.result(),
    )
    # A missing name is unproven when Nova's answer may lack servers, or when it reported servers it could not
    # name (any of them may be that VM).
    unproven = not lookup.complete or bool(lookup.unknown)
    return Observation(
        subnet=subnet,
        servers=servers,
        missing_vms=lookup.missing,
        ports=_order_ports(ports_task.result(), servers),
        unknown_servers=lookup.unknown,
        listing_complete=lookup.complete,
        incomplete_vms=lookup.missing if unproven else (),
        compute_microversion=str(lookup.microversion) if lookup.microversion else None,
    )


def _order_ports(ports: Sequence[Port], servers: Sequence[Server]) -> tuple[Port, ...]:
    rank = {s.id: i for i, s in enumerate(servers)}
    return tuple(sorted(ports, key=lambda p: (rank.get(p.device_id, len(rank)), p.id)))
