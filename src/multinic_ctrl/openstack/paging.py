"""Pagination by `*_links` rel=next, shared by Nova and Neutron.

Both services page with `limit` + `marker` and advertise the next page as a link in `<collection>_links`.
Quirks handled here:
- The link's host is whatever the service thinks its public URL is (often an internal name behind a proxy),
  so we only take the `marker` from it and re-issue our own request against the endpoint we already use.
- Nova emits a next link whenever a page is full, so the last page may be empty.
- A buggy or hostile server can hand out a marker we have already followed; we raise instead of looping
  (a partial listing would make the controller delete rows for ports that still exist).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .errors import OpenStackRequestError, PaginationError
from .http import Params

MAX_PAGES = 10_000

FetchPage = Callable[[Params], Awaitable[Any]]


def next_marker(body: Mapping[str, Any], links_key: str) -> str | None:
    """The `marker` of the rel=next link, or None when there is no next page."""
    for link in body.get(links_key) or ():
        if isinstance(link, Mapping) and link.get("rel") == "next" and isinstance(link.get("href"), str):
            markers = parse_qs(urlsplit(link["href"]).query).get("marker")
            if markers:
                return markers[-1]
    return None


async def collect(
    fetch: FetchPage,
    params: Params,
    *,
    service: str,
    operation: str,
    collection_key: str,
    links_key: str,
) -> list[dict[str, Any]]:
    """Every item of a paginated listing, in server order, following rel=next links."""
    items: list[dict[str, Any]] = []
    seen_markers: set[str] = set()
    page_params: list[tuple[str, str]] = list(params)
    base = [(k, v) for k, v in params if k != "marker"]
    for _ in range(MAX_PAGES):
        body = await fetch(page_params)
        if not isinstance(body, Mapping) or not isinstance(body.get(collection_key), list):
            raise OpenStackRequestError(service, operation, 200, f"response has no '{collection_key}' list")
        page = [item for item in body[collection_key] if isinstance(item, dict)]
        items.extend(page)
        marker = next_marker(body, links_key)
        if marker is None or not page:
            return items
        if marker in seen_markers:
            raise PaginationError(
                f"{service} {operation}: the next link repeats marker '{marker}'; "
                "stopping instead of looping over the same pages"
            )
        seen_markers.add(marker)
        page_params = [*base, ("marker", marker)]
    raise PaginationError(f"{service} {operation}: more than {MAX_PAGES} pages; giving up")
