"""The reconcile-shaped lookup, for one config or many at once: subnets, VMs, their ports on the subnets, MTUs.

A *batch* observes what several configs of one identity (same credentials) ask for with the calls one config
needs; each config then takes exactly its slice (`BatchObservation.slice`), equal to what observing it alone
would have returned - errors included. That is what lets the controller observe a project once per round
instead of once per config (see `coalesce.py`).

Call budget with a warm token, independent of the number of VMs *and* of configs:
  1 subnets query for every subnet name (a 2nd, `shared=True`, only for names the project owns none of)
  ∥  one servers query per name family of the union of VM names (see `names.py`), each paginated
     (+ only while a requested VM is missing: 1 unfiltered servers listing at microversion 2.69, and the
      compute version document once per endpoint and hour, see `compute.py`)
  then 1 ports query for the union of found servers on the union of subnets (paginated)
  ∥  the networks' MTUs: `GET /networks/{id}` for one network, one `id=`-filtered listing for several.
Value lists are chunked so request lines stay bounded (see `network.py`); a batch of one config makes exactly
the calls a single observation always made. The two independent pairs run concurrently; a TaskGroup cancels
the sibling when one fails.

Failures are split the way a config's outcome needs: an outage, a refused token or a broken listing fails the
whole batch (raised); what concerns one config - its subnet unknown or ambiguous, a VM name two servers share,
its network's MTU unavailable - is kept per subnet, name or network and raised only by the slices it touches.
When a subnet lookup and a server name both fail for one config, the subnet's error is the one reported.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .compute import (
    CellsCheck,
    Getter,
    NegotiateMicroversion,
    check_cells,
    list_servers_named,
    needs_cells_check,
    settle_servers,
)
from .errors import AmbiguousServer, OpenStackError
from .http import Params
from .models import Observation, Port, Server, Subnet
from .names import DEFAULT_MAX_QUERIES
from .network import SubnetRecord, find_subnets, get_network_mtus, list_ports_on_subnets
from .tasks import both


@dataclass(frozen=True)
class ObserveRequest:
    """What one config asks OpenStack about."""

    vm_names: tuple[str, ...]
    subnet_name: str


@dataclass(frozen=True)
class BatchObservation:
    """Everything one batch learned; `slice` cuts out one config's `Observation`.

    `covers` says whether a request can be answered from it: its names and subnet were asked for, and - for a
    request that would not end in its own config error - its subnet's ports, its servers, its network's MTU and
    (when a name is missing) the cells evidence were fetched.
    """

    names: frozenset[str]
    subnets: Mapping[str, SubnetRecord | OpenStackError]
    servers: Mapping[str, Mapping[str, Server]]
    cells: CellsCheck | None
    ports: Mapping[str, tuple[Port, ...]]
    """By subnet ID: the ports of `port_devices` with an address on it."""
    port_devices: frozenset[str]
    mtus: Mapping[str, int | OpenStackError]
    plaintext_endpoints: tuple[str, ...] = ()
    _ambiguous: dict[str, AmbiguousServer] = field(default_factory=dict, compare=False, repr=False)
    _by_device: dict[str, dict[str, list[Port]]] = field(default_factory=dict, compare=False, repr=False)
    """Per subnet, its ports by device, built on first use: a slice costs its own VMs, not the subnet's ports."""

    def covers(self, vm_names: Sequence[str], subnet_name: str) -> bool:
        if subnet_name not in self.subnets or not self.names.issuperset(vm_names):
            return False
        subnet = self.subnets[subnet_name]
        if isinstance(subnet, OpenStackError) or _ambiguous_name(vm_names, self.servers) is not None:
            return True  # the slice is that error: nothing else is needed
        if subnet.id not in self.ports or subnet.network_id not in self.mtus:
            return False
        found = {sid for name in vm_names for sid in self.servers.get(name, {})}
        if not found <= self.port_devices:
            return False
        return self.cells is not None or not needs_cells_check(vm_names, self.servers)

    def slice(self, vm_names: Sequence[str], subnet_name: str) -> Observation:
        """One config's observation, as observing it alone gives it; raises that config's error."""
        if not self.covers(vm_names, subnet_name):
            raise ValueError("the batch did not observe this request")
        subnet = self.subnets[subnet_name]
        if isinstance(subnet, OpenStackError):
            raise subnet
        ambiguous = _ambiguous_name(vm_names, self.servers)
        if ambiguous is not None:
            # One instance per name: every config that asks for it raises the same error.
            raise self._ambiguous.setdefault(ambiguous, AmbiguousServer(ambiguous, sorted(self.servers[ambiguous])))
        lookup = settle_servers(vm_names, self.servers, self.cells)
        mtu = self.mtus[subnet.network_id]
        if isinstance(mtu, OpenStackError):
            raise mtu
        servers = lookup.servers
        ports = self._ports_of(subnet.id, [s.id for s in servers])
        # A missing name is unproven when Nova's answer may lack servers, or when it reported servers it could
        # not name (any of them may be that VM).
        unproven = not lookup.complete or bool(lookup.unknown)
        return Observation(
            subnet=Subnet(id=subnet.id, name=subnet.name, cidr=subnet.cidr, network_id=subnet.network_id, mtu=mtu),
            servers=servers,
            missing_vms=lookup.missing,
            ports=_order_ports(ports, servers),
            plaintext_endpoints=self.plaintext_endpoints,
            unknown_servers=lookup.unknown,
            listing_complete=lookup.complete,
            incomplete_vms=lookup.missing if unproven else (),
            compute_microversion=str(lookup.microversion) if lookup.microversion else None,
        )

    def _ports_of(self, subnet_id: str, device_ids: Sequence[str]) -> list[Port]:
        index = self._by_device.get(subnet_id)
        if index is None:
            index = {}
            for port in self.ports[subnet_id]:
                index.setdefault(port.device_id, []).append(port)
            self._by_device[subnet_id] = index
        return [p for d in dict.fromkeys(device_ids) for p in index.get(d, ())]


def _ambiguous_name(names: Sequence[str], servers: Mapping[str, Mapping[str, Server]]) -> str | None:
    return next((n for n in names if len(servers.get(n) or ()) > 1), None)


async def observe_batch(
    get: Getter,
    *,
    compute_url: str,
    network_url: str,
    requests: Sequence[ObserveRequest],
    project_id: str | None = None,
    microversion: NegotiateMicroversion | None = None,
    page_size: int | None = None,
    max_server_queries: int = DEFAULT_MAX_QUERIES,
) -> BatchObservation:
    """Observe every request at once (see the module docstring); raises only what fails them all.

    `project_id` is the token's scope (subnets are resolved in it); `microversion` negotiates the compute
    microversion on demand (None: the endpoint is treated as not offering one).
    """

    async def get_json(service: str, operation: str, url: str, params: Params) -> object:
        return (await get(service, operation, url, params)).body

    names = list(dict.fromkeys(n for r in requests for n in r.vm_names))
    subnet_names = list(dict.fromkeys(r.subnet_name for r in requests))

    async def servers_phase() -> tuple[dict[str, dict[str, Server]], CellsCheck | None]:
        by_name = await list_servers_named(get, compute_url, names, page_size=page_size, max_queries=max_server_queries)
        cells = None
        if any(needs_cells_check(r.vm_names, by_name) for r in requests):
            missing = [n for n in names if not by_name.get(n)]
            cells = await check_cells(get, compute_url, microversion, missing)
        return by_name, cells

    async def subnets_phase() -> dict[str, SubnetRecord | OpenStackError]:
        return await find_subnets(get_json, network_url, subnet_names, project_id=project_id, page_size=page_size)

    subnets, (by_name, cells) = await both(subnets_phase(), servers_phase())

    # Only what a config that is not already failing needs: a lone config costs what it always did.
    live_subnets: dict[str, SubnetRecord] = {}
    live_servers: dict[str, None] = {}
    for r in requests:
        subnet = subnets[r.subnet_name]
        if isinstance(subnet, OpenStackError) or _ambiguous_name(r.vm_names, by_name) is not None:
            continue
        live_subnets[subnet.id] = subnet
        for name in r.vm_names:
            for sid in by_name.get(name, {}):
                live_servers[sid] = None
    ports: dict[str, tuple[Port, ...]] = {}
    mtus: dict[str, int | OpenStackError] = {}
    if live_subnets:
        ports, mtus = await both(
            list_ports_on_subnets(get_json, network_url, list(live_subnets), list(live_servers), page_size=page_size),
            get_network_mtus(get_json, network_url, [s.network_id for s in live_subnets.values()], page_size=page_size),
        )
    return BatchObservation(
        names=frozenset(names),
        subnets=subnets,
        servers=by_name,
        cells=cells,
        ports=ports,
        port_devices=frozenset(live_servers),
        mtus=mtus,
    )


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
    """One config's observation: a batch of one."""
    request = ObserveRequest(tuple(vm_names), subnet_name)
    batch = await observe_batch(
        get,
        compute_url=compute_url,
        network_url=network_url,
        requests=[request],
        project_id=project_id,
        microversion=microversion,
        page_size=page_size,
        max_server_queries=max_server_queries,
    )
    return batch.slice(request.vm_names, request.subnet_name)


def _order_ports(ports: Sequence[Port], servers: Sequence[Server]) -> tuple[Port, ...]:
    rank = {s.id: i for i, s in enumerate(servers)}
    return tuple(sorted(ports, key=lambda p: (rank.get(p.device_id, len(rank)), p.id)))
