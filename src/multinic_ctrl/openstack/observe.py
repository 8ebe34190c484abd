"""The reconcile-shaped lookup: one subnet, some VMs, their ports on that subnet, the MTU.

Call budget with a warm token, independent of the number of VMs:
  1 subnets query  ∥  one servers query per name family (see `names.py`), each paginated
  then 1 ports query (paginated)  ∥  1 network GET (MTU).
The two independent pairs run concurrently; a TaskGroup cancels the sibling when one fails.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from .compute import JsonGetter, find_servers
from .models import Observation, Port, Server, Subnet
from .names import DEFAULT_MAX_QUERIES
from .network import find_subnet, get_network_mtu, list_ports


async def observe(
    get_json: JsonGetter,
    *,
    compute_url: str,
    network_url: str,
    vm_names: Sequence[str],
    subnet_name: str,
    page_size: int | None = None,
    max_server_queries: int = DEFAULT_MAX_QUERIES,
) -> Observation:
    async with asyncio.TaskGroup() as tg:
        subnet_task = tg.create_task(find_subnet(get_json, network_url, subnet_name))
        servers_task = tg.create_task(
            find_servers(get_json, compute_url, vm_names, page_size=page_size, max_queries=max_server_queries)
        )
    subnet_rec = subnet_task.result()
    servers, missing = servers_task.result()
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
    return Observation(
        subnet=subnet, servers=servers, missing_vms=missing, ports=_order_ports(ports_task.result(), servers)
    )


def _order_ports(ports: Sequence[Port], servers: Sequence[Server]) -> tuple[Port, ...]:
    rank = {s.id: i for i, s in enumerate(servers)}
    return tuple(sorted(ports, key=lambda p: (rank.get(p.device_id, len(rank)), p.id)))
