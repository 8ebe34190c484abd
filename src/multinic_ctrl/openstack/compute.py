"""Nova: find servers by exact name in a constant number of calls.

`GET /servers/detail?name=<regex>` does a partial regex match (see `names.py`), so each query is an anchored
prefix pattern and results are filtered to the exact requested names here. `/servers/detail` is used rather
than `/servers` because the short listing has no `status`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Protocol

from .errors import AmbiguousServer
from .http import Params
from .models import Server
from .names import DEFAULT_MAX_QUERIES, group_names
from .paging import collect

SERVICE = "compute"


class JsonGetter(Protocol):
    async def __call__(self, service: str, operation: str, url: str, params: Params) -> Any: ...


async def find_servers(
    get_json: JsonGetter,
    compute_url: str,
    names: Sequence[str],
    *,
    page_size: int | None = None,
    max_queries: int = DEFAULT_MAX_QUERIES,
) -> tuple[tuple[Server, ...], tuple[str, ...]]:
    """Servers whose name is exactly one of `names` (in that order), and the names not found."""
    wanted = list(dict.fromkeys(names))
    queries = group_names(wanted, max_queries=max_queries)
    url = compute_url + "/servers/detail"

    async def run(pattern: str) -> list[dict[str, Any]]:
        params: list[tuple[str, str]] = [("name", pattern)]
        if page_size:
            params.append(("limit", str(page_size)))

        async def fetch(p: Params) -> Any:
            return await get_json(SERVICE, "list_servers", url, p)

        return await collect(
            fetch,
            params,
            service=SERVICE,
            operation="list_servers",
            collection_key="servers",
            links_key="servers_links",
        )

    results = await asyncio.gather(*(run(q.pattern) for q in queries))
    by_name: dict[str, dict[str, Server]] = {}
    wanted_set = set(wanted)
    for page in results:
        for item in page:
            name, sid = item.get("name"), item.get("id")
            if isinstance(name, str) and isinstance(sid, str) and name in wanted_set:
                by_name.setdefault(name, {})[sid] = Server(id=sid, name=name, status=str(item.get("status", "")))
    found: list[Server] = []
    missing: list[str] = []
    for name in wanted:
        servers = by_name.get(name)
        if not servers:
            missing.append(name)
        elif len(servers) > 1:
            raise AmbiguousServer(name, sorted(servers))
        else:
            found.extend(servers.values())
    return tuple(found), tuple(missing)
