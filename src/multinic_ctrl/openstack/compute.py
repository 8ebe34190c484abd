"""Nova: find servers by exact name in a constant number of calls, and tell "gone" from "not answered".

`GET /servers/detail?name=<regex>` does a partial regex match (see `names.py`), so each query is an anchored
prefix pattern and results are filtered to the exact requested names here. `/servers/detail` is used rather
than `/servers` because the short listing has no `status`. Nova lists the token's project only (we never send
`all_tenants`), so same-named servers of other projects never show up, even for an admin.

A requested name that is not in the answer is not yet proof that the VM is gone: Nova skips servers whose
cell does not answer, silently, in every filtered listing (see `microversion.py`). So when names are missing
we ask once more, with microversion 2.69 and no parameters at all (the only form Nova answers with partial
records of unreachable cells: `{"id", "status": "UNKNOWN"}`, no name):
- partial records → those servers exist, state unknown; any missing name may be one of them;
- no partial records and the listing fit on one page → the missing names are really missing;
- a full first page (Nova fills it with reachable servers before partial ones), an endpoint without 2.69, or a
  response that does not echo 2.69 → inconclusive: the missing names' evidence is incomplete.
That extra call happens only while some requested VM is missing; a healthy config costs nothing more.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from .errors import AmbiguousServer, OpenStackRequestError
from .http import Params, Response
from .microversion import PARTIAL_SERVERS, Microversion, echoed
from .models import Server
from .names import DEFAULT_MAX_QUERIES, group_names
from .paging import collect
from .tasks import gather_all

log = structlog.get_logger(__name__)

SERVICE = "compute"
UNKNOWN = "UNKNOWN"


class JsonGetter(Protocol):
    async def __call__(self, service: str, operation: str, url: str, params: Params) -> Any: ...


class Getter(Protocol):
    """GET with the token (and extra headers); the whole response, already checked for errors."""

    async def __call__(
        self, service: str, operation: str, url: str, params: Params, headers: Mapping[str, str] | None = None
    ) -> Response: ...


NegotiateMicroversion = Callable[[], Awaitable[Microversion | None]]


@dataclass(frozen=True)
class ServerLookup:
    servers: tuple[Server, ...]
    """Servers whose name is exactly one of the requested names, in request order."""
    missing: tuple[str, ...]
    """Requested names with no server in Nova's answer."""
    unknown: tuple[str, ...] = ()
    """IDs of servers Nova could only report as partial records (their cell did not answer)."""
    complete: bool = True
    """Whether Nova's answer is known to include every server of the project (see the module docstring)."""
    microversion: Microversion | None = None
    """The microversion the completeness check ran with (None: not needed, or not offered)."""


async def list_servers_named(
    get: Getter,
    compute_url: str,
    names: Sequence[str],
    *,
    page_size: int | None = None,
    max_queries: int = DEFAULT_MAX_QUERIES,
) -> dict[str, dict[str, Server]]:
    """Servers whose name is exactly one of `names`: name → {server ID → server} (two IDs: ambiguous)."""
    wanted = list(dict.fromkeys(names))
    queries = group_names(wanted, max_queries=max_queries)
    url = compute_url + "/servers/detail"

    async def run(pattern: str) -> list[dict[str, Any]]:
        params: list[tuple[str, str]] = [("name", pattern)]
        if page_size:
            params.append(("limit", str(page_size)))

        async def fetch(p: Params) -> Any:
            return (await get(SERVICE, "list_servers", url, p)).body

        return await collect(
            fetch,
            params,
            service=SERVICE,
            operation="list_servers",
            collection_key="servers",
            links_key="servers_links",
        )

    results = await gather_all([run(q.pattern) for q in queries])
    by_name: dict[str, dict[str, Server]] = {}
    wanted_set = set(wanted)
    for page in results:
        for item in page:
            name, sid = item.get("name"), item.get("id")
            if isinstance(name, str) and isinstance(sid, str) and name in wanted_set:
                by_name.setdefault(name, {})[sid] = Server(id=sid, name=name, status=str(item.get("status", "")))
    return by_name


@dataclass(frozen=True)
class CellsCheck:
    """What Nova says about servers it could not list (see the module docstring)."""

    unknown: tuple[str, ...]
    complete: bool
    microversion: Microversion | None


def settle_servers(
    names: Sequence[str], by_name: Mapping[str, Mapping[str, Server]], cells: CellsCheck | None
) -> ServerLookup:
    """One request's lookup from a listing: found in request order, missing, and the cells evidence.

    Raises `AmbiguousServer` for the first requested name two servers share. `cells` must be given when a
    name is missing (`needs_cells_check`).
    """
    found: list[Server] = []
    missing: list[str] = []
    for name in dict.fromkeys(names):
        servers = by_name.get(name)
        if not servers:
            missing.append(name)
        elif len(servers) > 1:
            raise AmbiguousServer(name, sorted(servers))
        else:
            found.extend(servers.values())
    if not missing:
        return ServerLookup(tuple(found), ())
    if cells is None:
        raise ValueError("a lookup with missing names needs the cells check")
    return ServerLookup(tuple(found), tuple(missing), cells.unknown, cells.complete, cells.microversion)


def needs_cells_check(names: Sequence[str], by_name: Mapping[str, Mapping[str, Server]]) -> bool:
    """Whether this request's answer depends on the cells check: a name is missing and none is ambiguous."""
    missing = False
    for name in names:
        servers = by_name.get(name)
        if servers and len(servers) > 1:
            return False
        missing = missing or not servers
    return missing


async def check_cells(
    get: Getter, compute_url: str, microversion: NegotiateMicroversion | None, missing: Sequence[str] = ()
) -> CellsCheck:
    """Whether Nova's answer can be trusted about missing names: one extra call when it can tell."""
    chosen = await microversion() if microversion is not None else None
    if chosen is None or chosen < PARTIAL_SERVERS:
        log.info(
            "Nova may leave out servers of unreachable cells (no compute microversion 2.69): "
            "missing VMs are not proven gone",
            endpoint=compute_url,
            missing=list(missing),
        )
        return CellsCheck((), False, chosen)
    unknown, complete = await _unreachable_servers(get, compute_url, chosen)
    return CellsCheck(unknown, complete, chosen)


async def find_servers(
    get: Getter,
    compute_url: str,
    names: Sequence[str],
    *,
    microversion: NegotiateMicroversion | None = None,
    page_size: int | None = None,
    max_queries: int = DEFAULT_MAX_QUERIES,
) -> ServerLookup:
    """Find `names` exactly; when some are missing, check whether Nova's answer can be trusted about them."""
    by_name = await list_servers_named(get, compute_url, names, page_size=page_size, max_queries=max_queries)
    cells = None
    if needs_cells_check(names, by_name):
        missing = [n for n in dict.fromkeys(names) if not by_name.get(n)]
        cells = await check_cells(get, compute_url, microversion, missing)
    return settle_servers(names, by_name, cells)


async def _unreachable_servers(get: Getter, compute_url: str, version: Microversion) -> tuple[tuple[str, ...], bool]:
    """One unfiltered, unpaged `GET /servers` at `version`: the partial records, and whether the answer is whole."""
    resp = await get(SERVICE, "list_servers_cells", compute_url + "/servers", (), version.headers())
    body = resp.body
    if not isinstance(body, Mapping) or not isinstance(body.get("servers"), list):
        raise OpenStackRequestError(SERVICE, "list_servers_cells", resp.status, "response has no 'servers' list")
    served = echoed(resp.headers)
    unknown = tuple(
        str(item["id"])
        for item in body["servers"]
        if isinstance(item, Mapping) and isinstance(item.get("id"), str) and "name" not in item
    )
    full_page = any(isinstance(link, Mapping) and link.get("rel") == "next" for link in body.get("servers_links") or ())
    complete = served is not None and served >= PARTIAL_SERVERS and not full_page
    if not complete:
        log.info(
            "Nova's server listing is inconclusive about unreachable cells: missing VMs are not proven gone",
            endpoint=compute_url,
            served_microversion=str(served) if served else None,
            full_page=full_page,
        )
    if unknown:
        log.warning(
            "Nova reports servers in unreachable cells (state unknown)", endpoint=compute_url, servers=len(unknown)
        )
    return unknown, complete
