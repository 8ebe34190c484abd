"""The simulator's aiohttp application: Keystone v3, Nova v2.1 and Neutron v2.0, the subset we use.

Shapes follow the public API reference:
- Keystone `POST /v3/auth/tokens` (password method) → 201, token in `X-Subject-Token`, body `{"token": ...}`
  with `expires_at`/`issued_at` and a catalog pointing back at this server; failures are
  `{"error": {"code", "title", "message"}}`.
- Nova `GET /v2.1/servers[/detail]`: the token's project only (`all_tenants`: every project, admins only);
  `name` is a regex *search*, `|` escaped as nova's `_safe_regex_mysql` does, case-insensitive like MySQL's
  default collation, the last of a repeated `name` counts; `uuid` for admins only (dropped otherwise); newest
  first; `limit`/`marker`, and a next link in `servers_links` whenever a page is full (so the last page can be
  empty, as in Nova).
- Nova microversions: `GET /v2.1[/]` is the (unauthenticated) version document with `min_version` 2.1 and a
  configurable maximum; requests choose one with `OpenStack-API-Version: compute X` (or the legacy
  `X-OpenStack-Nova-API-Version`), `latest` allowed; out of range is a 406, malformed a 400; responses echo
  it in both headers.
- Nova down cells (`Server.down_cell`): skipped from every listing (`list_records_by_skipping_down_cells`),
  except that from 2.69 on a listing *without any query parameter* (a filter, `limit`, `marker` or sorting
  turns it off: `servers.py` `_is_cell_down_supported`) returns them as partial records
  (`{"id", "status": "UNKNOWN", "links"}`, detail adds `tenant_id` and `created`), after the reachable
  servers have taken their share of the page (`compute/api.py` `get_all`).
- Neutron `GET /v2.0/{subnets,ports,networks}`, `/v2.0/networks/{id}`: repeated filter parameters are ORed
  (but `shared` keeps its first), different ones ANDed, strings compared like MariaDB's *_general_ci;
  `fixed_ips=subnet_id=…`/`ip_address=…` each a separate condition on the port, `fields`; a filter that is
  no attribute of the collection is a 400 (`['x'] is invalid attribute for filtering`), so is `changed_since`.
  Listings are sorted by id and always paged, like `pagination_max_limit` does: page size
  min(limit or max, max), `limit`/`marker`/`page_reverse`, a next link while items remain and a previous link
  on every forward page (`api_common.get_pagination_links`). Ports are ACTIVE when bound to a server, DOWN
  otherwise. Errors are `{"NeutronError": {"type", "message", "detail"}}`.
  Ownership: an admin token sees every project's networks, subnets and ports, any other token its project's
  plus networks (and their subnets) shared with it; `shared` (and the `shared` filter) is evaluated for the
  token's project; subnets accept `shared` as a filter but never show it (`is_visible: False` in neutron-lib).
- Services reject missing/expired/revoked tokens like keystonemiddleware: 401 with the Keystone error body.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from multidict import MultiMapping

from .faults import Faults, RequestLog
from .state import Network, Port, Server, SimState, Token, collate

STATE = web.AppKey("state", SimState)
FAULTS = web.AppKey("faults", Faults)
LOG = web.AppKey("log", RequestLog)
CONFIG = web.AppKey("config", dict)
TOKEN = web.RequestKey("token", Token)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_NEUTRON_SPECIAL = frozenset({"fields", "limit", "marker", "page_reverse", "sort_key", "sort_dir"})
# Attributes Neutron accepts as filters on each collection (our subset); anything else is a 400.
_COMMON_FILTERS = frozenset({"id", "name", "tenant_id", "project_id"})
PORT_FILTERS = _COMMON_FILTERS | {
    "network_id",
    "mac_address",
    "device_id",
    "device_owner",
    "fixed_ips",
    "status",
    "admin_state_up",
}
SUBNET_FILTERS = _COMMON_FILTERS | {"network_id", "cidr", "ip_version", "enable_dhcp", "gateway_ip", "shared"}
NETWORK_FILTERS = _COMMON_FILTERS | {"status", "shared", "mtu", "admin_state_up"}


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --------------------------------------------------------------------------------------------- error bodies
def keystone_error(status: int, title: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": status, "title": title, "message": message}}, status=status)


def unauthorized() -> web.Response:
    return keystone_error(401, "Unauthorized", "The request you have made requires authentication.")


def nova_error(status: int, kind: str, message: str) -> web.Response:
    return web.json_response({kind: {"code": status, "message": message}}, status=status)


def neutron_error(status: int, kind: str, message: str) -> web.Response:
    return web.json_response({"NeutronError": {"type": kind, "message": message, "detail": ""}}, status=status)


def fault_response(endpoint: str, status: int, retry_after: str | None) -> web.Response:
    service = endpoint.split(".", 1)[0]
    titles = {
        429: "Too Many Requests",
        500: "Internal Server Error",
        502: "Bad Gateway",
        503: "Service Unavailable",
    }
    title = titles.get(status, "Error")
    if service == "identity":
        resp = keystone_error(status, title, f"Simulated {title.lower()}.")
    elif service == "compute":
        kind = {429: "overLimit", 503: "serviceUnavailable"}.get(status, "computeFault")
        resp = nova_error(status, kind, f"Simulated {title.lower()}.")
    else:
        resp = neutron_error(status, "HTTP" + title.replace(" ", ""), f"Simulated {title.lower()}.")
    if retry_after is not None:
        resp.headers["Retry-After"] = retry_after
    return resp


# ---------------------------------------------------------------------------------------------- middleware
_UNAUTHENTICATED = frozenset({"compute.versions"})  # Nova's version documents need no token


@web.middleware
async def simulate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Request log, injected latency/faults, and token checks for Nova/Neutron."""
    route = request.match_info.route
    endpoint = (route.name or "other").split("_", 1)[0]  # detail/legacy variants share one key
    faults, log = request.app[FAULTS], request.app[LOG]
    query = tuple(request.query.items())
    asked = request.headers.get("OpenStack-API-Version") or request.headers.get("X-OpenStack-Nova-API-Version")

    def record(status: int) -> None:
        log.record(endpoint, request.method, request.path, query, status, asked)

    delay = faults.delay_for(endpoint)
    if delay:
        await asyncio.sleep(delay)
    fault = faults.take(endpoint)
    if fault is not None:
        if fault.drop:
            record(0)
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError  # nothing more to send on an aborted connection
        record(fault.status)
        return fault_response(endpoint, fault.status, fault.retry_after)
    if endpoint.startswith(("compute.", "network.")) and endpoint not in _UNAUTHENTICATED:
        token = request.app[STATE].valid_token(request.headers.get("X-Auth-Token"))
        if token is None:
            record(401)
            return unauthorized()
        request[TOKEN] = token
    try:
        resp = await handler(request)
    except web.HTTPException as exc:
        record(exc.status)
        raise
    record(resp.status)
    return resp


# ------------------------------------------------------------------------------------------------ keystone
def _catalog(origin: str, region: str) -> list[dict[str, Any]]:
    services = [
        ("identity", "keystone", f"{origin}/v3"),
        ("compute", "nova", f"{origin}/v2.1"),
        ("network", "neutron", origin),  # Neutron is usually registered without a version
    ]
    catalog = []
    for i, (stype, name, url) in enumerate(services):
        endpoints = [
            {
                "id": f"{i}{j}" + "0" * 30,
                "interface": iface,
                "region": region,
                "region_id": region,
                "url": url,
            }
            for j, iface in enumerate(("public", "internal", "admin"))
        ]
        catalog.append({"type": stype, "name": name, "id": f"{i}" + "f" * 31, "endpoints": endpoints})
    return catalog


async def create_token(request: web.Request) -> web.Response:
    state = request.app[STATE]
    try:
        body = await request.json()
        identity = body["auth"]["identity"]
        methods = identity["methods"]
    except (ValueError, KeyError, TypeError):
        return keystone_error(400, "Bad Request", "Expecting to find auth in request body.")
    if "password" not in methods:
        return unauthorized()
    try:
        u = identity["password"]["user"]
        password = u["password"]
    except (KeyError, TypeError):
        return keystone_error(400, "Bad Request", "Expecting to find password in identity.")
    user = None
    for candidate in state.users:
        if ("id" in u and candidate.id == u["id"]) or (
            "name" in u and candidate.name == u["name"] and _domain_matches(u.get("domain"), candidate.domain)
        ):
            user = candidate
    if user is None or user.password != password:
        return unauthorized()
    project = None
    scope = body["auth"].get("scope")
    if isinstance(scope, dict) and "project" in scope:
        p = scope["project"]
        for candidate_project in state.projects:
            if ("id" in p and candidate_project.id == p["id"]) or (
                "name" in p
                and candidate_project.name == p["name"]
                and _domain_matches(p.get("domain"), candidate_project.domain)
            ):
                project = candidate_project
        if project is None or (user.projects and project.id not in user.projects):
            return unauthorized()
    token = state.issue_token(user, project)
    resp = web.json_response(_token_body(token, request), status=201)
    resp.headers["X-Subject-Token"] = token.value
    return resp


def _domain_matches(spec: Any, domain: str) -> bool:
    if not isinstance(spec, dict):
        return False
    if "id" in spec:
        return bool(spec["id"] == domain.lower() or spec["id"] == domain)
    return bool(spec.get("name") == domain)


def _token_body(token: Token, request: web.Request) -> dict[str, Any]:
    domain = {"id": token.user.domain.lower(), "name": token.user.domain}
    body: dict[str, Any] = {
        "methods": ["password"],
        "user": {"id": token.user.id, "name": token.user.name, "domain": domain, "password_expires_at": None},
        "audit_ids": [token.value[-22:]],
        "expires_at": _iso(token.expires_at),
        "issued_at": _iso(token.issued_at),
        "is_domain": False,
    }
    if token.project is not None:
        body["project"] = {
            "id": token.project.id,
            "name": token.project.name,
            "domain": {"id": token.project.domain.lower(), "name": token.project.domain},
        }
        role = (
            ("fa454288e5a34b45b1286aa3a3cf90b6", "admin")
            if token.user.admin
            else ("9fe2ff9ee4384b1894a90878d3e92bab", "member")
        )
        body["roles"] = [{"id": role[0], "name": role[1]}]
        body["catalog"] = _catalog(str(request.url.origin()), request.app[CONFIG].get("region", "RegionOne"))
    else:
        body["catalog"] = []
    return {"token": body}


async def identity_version(request: web.Request) -> web.Response:
    origin = str(request.url.origin())
    return web.json_response(
        {
            "version": {
                "id": "v3.14",
                "status": "stable",
                "updated": "2020-04-07T00:00:00Z",
                "links": [{"rel": "self", "href": f"{origin}/v3/"}],
                "media-types": [{"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}],
            }
        }
    )


# ---------------------------------------------------------------------------------------------------- nova
def _nova_escaped(pattern: str) -> str:
    # nova.db.utils._safe_regex_mysql: on MySQL every '|' is escaped before REGEXP, so no alternation.
    return pattern.replace("|", "\\|")


def _nova_regex(pattern: str) -> re.Pattern[str]:
    return re.compile(_nova_escaped(pattern), re.IGNORECASE)


_REGEX_SPECIAL = frozenset(".^$*+?()[]{}\\|")
_OPTIONAL_AFTER = frozenset("*?{")


def _literal_prefix(pattern: str) -> str:
    """The literal text every match of `pattern` (searched, as Nova does) starts with; "" when not anchored
    with `^` or when nothing literal follows. Stops at the first special character, and leaves out a literal
    that a quantifier after it makes optional. Only narrows the servers looked at (see `SimState`)."""
    if not pattern.startswith("^"):
        return ""
    literal: list[str] = []
    at = 1
    while at < len(pattern):
        char = pattern[at]
        if char == "\\":
            if at + 1 >= len(pattern) or pattern[at + 1].isalnum() or not pattern[at + 1].isascii():
                break  # a class (\d, \w ...) or an escape we do not model
            char, step = pattern[at + 1], 2
        elif char in _REGEX_SPECIAL:
            break
        else:
            step = 1
        if pattern[at + step : at + step + 1] in _OPTIONAL_AFTER:
            break
        literal.append(char)
        at += step
    return "".join(literal)


MICROVERSION = re.compile(r"^([1-9]\d*)\.(0|[1-9]\d*)$")
PARTIAL_SERVERS = (2, 69)
_PAGING_SORTING = frozenset({"limit", "marker", "sort_key", "sort_dir"})


def _version_text(version: tuple[int, int]) -> str:
    return f"{version[0]}.{version[1]}"


def _microversion_range(config: dict[str, Any]) -> tuple[tuple[int, int], tuple[int, int]] | None:
    maximum = config.get("nova_max_microversion")
    if maximum is None:
        return None
    major, minor = (int(x) for x in str(maximum).split("."))
    return (2, 1), (major, minor)


def _requested_microversion(request: web.Request) -> tuple[int, int] | web.Response | None:
    """The microversion a request asks for (nova.api.openstack.wsgi): the minimum when it asks for none."""
    offered = _microversion_range(request.app[CONFIG])
    if offered is None:
        return None  # no microversions at all: headers are ignored
    minimum, maximum = offered
    text = None
    header = request.headers.get("OpenStack-API-Version")
    if header is not None:
        for part in header.split(","):
            service, _, value = part.strip().partition(" ")
            if service.lower() == "compute":
                text = value.strip()
    if text is None:
        text = request.headers.get("X-OpenStack-Nova-API-Version")
    if text is None:
        return minimum
    if text.lower() == "latest":
        return maximum
    match = MICROVERSION.match(text.strip())
    if match is None:
        return nova_error(
            400, "badRequest", f"API Version String {text} is of invalid format. Must be of format MajorNum.MinorNum."
        )
    version = (int(match.group(1)), int(match.group(2)))
    if not minimum <= version <= maximum:
        refused = nova_error(
            406,
            "computeFault",
            f"Version {text} is not supported by the API. Minimum is {_version_text(minimum)} and maximum is "
            f"{_version_text(maximum)}.",
        )
        return _echo_microversion(refused, version)  # Nova names the version it refused
    return version


def _echo_microversion(resp: web.Response, version: tuple[int, int] | None) -> web.Response:
    if version is not None:
        resp.headers["OpenStack-API-Version"] = f"compute {_version_text(version)}"
        resp.headers["X-OpenStack-Nova-API-Version"] = _version_text(version)
        resp.headers.add("Vary", "OpenStack-API-Version")
        resp.headers.add("Vary", "X-OpenStack-Nova-API-Version")
    return resp


async def compute_version(request: web.Request) -> web.Response:
    """`GET /v2.1` and `/v2.1/`: Nova's version document (no token needed)."""
    origin = str(request.url.origin())
    offered = _microversion_range(request.app[CONFIG])
    doc = {
        "id": "v2.1",
        "status": "CURRENT",
        "version": _version_text(offered[1]) if offered else "",
        "min_version": _version_text(offered[0]) if offered else "",
        "updated": "2013-07-23T11:33:21Z",
        "links": [
            {"rel": "self", "href": f"{origin}/v2.1/"},
            {"rel": "describedby", "type": "text/html", "href": "http://docs.openstack.org/"},
        ],
        "media-types": [{"base": "application/json", "type": "application/vnd.openstack.compute+json;version=2.1"}],
    }
    return web.json_response({"version": doc})


def _server_links(server: Server, origin: str) -> list[dict[str, str]]:
    return [
        {"rel": "self", "href": f"{origin}/v2.1/servers/{server.id}"},
        {"rel": "bookmark", "href": f"{origin}/servers/{server.id}"},
    ]


def _server_view(server: Server, origin: str, detail: bool) -> dict[str, Any]:
    view: dict[str, Any] = {"id": server.id, "name": server.name, "links": _server_links(server, origin)}
    if detail:
        view.update(
            {
                "status": server.status,
                "tenant_id": server.project_id,
                "user_id": "d1b19dd2b7b04850a0d7c7de8a9aad02",
                "metadata": {},
                "addresses": {},
                "OS-EXT-STS:vm_state": server.status.lower(),
                "created": "2024-01-01T00:00:00Z",
                "updated": "2024-01-01T00:00:00Z",
            }
        )
    return view


def _partial_server_view(server: Server, origin: str, detail: bool) -> dict[str, Any]:
    """nova views/servers.py for a down cell: `basic` (id, status, links) or `_show_from_down_cell`."""
    view: dict[str, Any] = {"id": server.id, "status": "UNKNOWN", "links": _server_links(server, origin)}
    if detail:
        view |= {"tenant_id": server.project_id, "created": "2024-01-01T00:00:00Z"}
    return view


def _all_tenants(q: MultiMapping[str], *, detail: bool, admin: bool) -> bool | web.Response:
    """nova `common.is_all_tenants` (oslo strict booleans; present but empty means true) and its policy:
    admins only, a 403 for anyone else."""
    if "all_tenants" not in q:
        return False
    value = q.getall("all_tenants")[-1].strip().lower()
    if value and value not in _TRUE and value not in _FALSE:
        accepted = ", ".join(f"'{v}'" for v in sorted(_TRUE | _FALSE))
        return nova_error(400, "badRequest", f"Unrecognized value '{value}', acceptable values are: {accepted}")
    if value in _FALSE:
        return False
    if not admin:
        rule = "detail:get_all_tenants" if detail else "index:get_all_tenants"
        return nova_error(403, "forbidden", f"Policy doesn't allow os_compute_api:servers:{rule} to be performed.")
    return True


async def list_servers(request: web.Request) -> web.Response:
    state, config = request.app[STATE], request.app[CONFIG]
    version = _requested_microversion(request)
    if isinstance(version, web.Response):
        return version
    q = request.query
    token = request[TOKEN]
    project_id = token.project.id if token.project else ""
    all_tenants = _all_tenants(q, detail=request.path.endswith("/detail"), admin=token.user.admin)
    if isinstance(all_tenants, web.Response):
        return all_tenants
    # Nova copies the query into a dict (`search_opts.update(req.GET)`): of a repeated filter the last counts.
    name = q.getall("name")[-1] if "name" in q else None
    # A name filter with a literal anchored prefix (what the controller sends) needs only the servers named so.
    prefix = _literal_prefix(_nova_escaped(name)) if name else ""
    candidates = state.servers_with_prefix(prefix) if prefix else None
    mine = sorted(
        (
            s
            for s in (state.servers.values() if candidates is None else candidates)
            if all_tenants or s.project_id == project_id
        ),
        key=lambda s: (s.created, s.id),
        reverse=True,
    )
    # Partial records only for an unfiltered, unpaged listing at >= 2.69 (all_tenants is the one exception).
    cell_down_support = version is not None and version >= PARTIAL_SERVERS and not (set(q.keys()) - {"all_tenants"})
    servers = [s for s in mine if not s.down_cell]
    down = [s for s in mine if s.down_cell]
    if name is not None:
        try:
            if not name:
                raise re.error("empty")  # the query schema's `regex` format refuses an empty pattern too
            regex = _nova_regex(name)
        except re.error:
            msg = f"Invalid input for query parameters name. Value: {name}. '{name}' is not a 'regex'"
            return nova_error(400, "badRequest", msg)
        servers = [s for s in servers if regex.search(s.name)]
    if "uuid" in q and token.user.admin:  # admins may use every filter; for anyone else `uuid` is dropped
        wanted_id = q.getall("uuid")[-1].lower()
        servers = [s for s in servers if s.id.lower() == wanted_id]
    if "status" in q:
        wanted = {v.upper() for v in q.getall("status")}
        servers = [s for s in servers if s.status in wanted]
    max_limit = int(config.get("nova_max_limit", 1000))
    try:
        limit = min(int(q["limit"]), max_limit) if "limit" in q else max_limit
    except ValueError:
        return nova_error(400, "badRequest", "limit param must be an integer")
    if limit < 0:
        return nova_error(400, "badRequest", "limit param must be positive")
    start = 0
    endpoint = "compute.servers"
    if "marker" in q and endpoint not in request.app[FAULTS].looping_pagination:
        ids = [s.id for s in servers]
        if q["marker"] not in ids:
            return nova_error(400, "badRequest", f"marker [{q['marker']}] not found")
        start = ids.index(q["marker"]) + 1
    page = servers[start : start + limit]
    origin = str(request.url.origin())
    detail = request.path.endswith("/detail")
    views = [_server_view(s, origin, detail) for s in page]
    if cell_down_support:
        # compute/api.py get_all: the reachable servers take the page first, partial records fill the rest.
        room = max(limit - len(page), 0)
        views = [_partial_server_view(s, origin, detail) for s in down[:room]] + views
    body: dict[str, Any] = {"servers": views}
    if views and len(views) == limit:  # Nova: a full page always gets a next link
        params = [(k, v) for k, v in q.items() if k != "marker"] + [("marker", views[-1]["id"])]
        body["servers_links"] = [{"rel": "next", "href": f"{origin}{request.path}?{urlencode(params)}"}]
    return _echo_microversion(web.json_response(body), version)


# ------------------------------------------------------------------------------------------------- neutron
def _port_view(port: Port, state: SimState) -> dict[str, Any]:
    return {
        "id": port.id,
        "name": port.name,
        "network_id": port.network_id,
        "mac_address": port.mac_address,
        "device_id": port.device_id,
        "device_owner": port.device_owner,
        "status": state.port_status(port),
        "admin_state_up": True,
        "fixed_ips": [{"subnet_id": f.subnet_id, "ip_address": f.ip_address} for f in port.fixed_ips],
        "tenant_id": port.project_id,
        "project_id": port.project_id,
    }


def _scope(request: web.Request) -> tuple[bool, str | None]:
    """(admin?, project ID) of the request's token."""
    token = request[TOKEN]
    return token.user.admin, token.project.id if token.project else None


def _network_visible(net: Network, request: web.Request) -> bool:
    admin, project_id = _scope(request)
    return admin or net.project_id == project_id or net.shared_to(project_id)


def _bad_filters(query: MultiMapping[str], allowed: frozenset[str]) -> web.Response | None:
    """Neutron (filter validation on, the default since Rocky) refuses filters that are no attribute."""
    invalid = list(dict.fromkeys(k for k in query if k not in allowed and k not in _NEUTRON_SPECIAL))
    if not invalid:
        return None
    return neutron_error(400, "HTTPBadRequest", f"{invalid} is invalid attribute for filtering")


class _InvalidFilter(Exception):
    """A filter value Neutron's converters refuse (400 InvalidInput)."""


_TRUE = frozenset({"1", "t", "true", "on", "y", "yes"})
_FALSE = frozenset({"0", "f", "false", "off", "n", "no"})
_BOOLEAN = frozenset({"shared", "admin_state_up", "enable_dhcp"})


def _boolean(value: str) -> bool:
    """neutron-lib convert_to_boolean (oslo strutils, strict)."""
    text = value.strip().lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise _InvalidFilter(f"Invalid input for operation: '{value}' cannot be converted to boolean.")


def _matcher(query: MultiMapping[str]) -> Callable[[dict[str, Any]], bool]:
    """The filters of one request, compiled once: values of a key are ORed, keys are ANDed, strings are
    collated like the database does; `shared` keeps its first value only (neutron-lib `model_query` turns it
    into an RBAC condition on `value[0]`). Raises `_InvalidFilter` for values Neutron refuses."""
    conditions: list[Callable[[dict[str, Any]], bool]] = []
    for key in set(query.keys()) - _NEUTRON_SPECIAL:
        values = query.getall(key)
        if key == "fixed_ips":
            conditions.append(_fixed_ips_matcher(values))
            continue
        strings = frozenset(collate(v) for v in values)
        bools = frozenset(_boolean(v) for v in (values[:1] if key == "shared" else values)) if key in _BOOLEAN else None

        def condition(
            item: dict[str, Any], key: str = key, strings: frozenset[str] = strings, bools: Any = bools
        ) -> bool:
            if key not in item:
                return True  # a valid attribute this view does not carry
            actual = item[key]
            if isinstance(actual, bool):
                return bools is not None and actual in bools
            return collate(str(actual)) in strings

        conditions.append(condition)
    return lambda item: all(c(item) for c in conditions)


def _fixed_ips_matcher(values: Iterable[str]) -> Callable[[dict[str, Any]], bool]:
    """`fixed_ips=subnet_id=X&fixed_ips=ip_address=Y` (db_base_plugin_v2._get_ports_query): each key is its own
    condition on the port (`Port.fixed_ips.any(...)`), so subnet X and address Y may be two different
    allocations; values of one key are ORed; `ip_address_substr` is a substring; other keys are ignored."""
    wanted: dict[str, set[str]] = {}
    for v in values:
        key, sep, val = v.partition("=")
        if not sep:
            raise _InvalidFilter(f"Invalid input for operation: '{v}' is not of the form <key>=[value].")
        wanted.setdefault(key, set()).add(val)
    subnets = {collate(v) for v in wanted.get("subnet_id", ())}
    addresses = {collate(v) for v in wanted.get("ip_address", ())}
    substrings = [v.lower() for v in wanted.get("ip_address_substr", ())]

    def match(item: dict[str, Any]) -> bool:
        fips = item.get("fixed_ips", [])
        if subnets and not any(collate(f.get("subnet_id", "")) in subnets for f in fips):
            return False
        if addresses and not any(collate(f.get("ip_address", "")) in addresses for f in fips):
            return False
        return not substrings or any(s in f.get("ip_address", "").lower() for f in fips for s in substrings)

    return match


def _page_link(request: web.Request, rel: str, marker: str | None, *, reverse: bool) -> dict[str, str]:
    """neutron.api.api_common.get_{next,previous}_link: the query minus `marker` (and, for next, minus
    `page_reverse`), plus the new marker; previous links add `page_reverse=True`."""
    params = [(k, v) for k, v in request.query.items() if k not in ("marker", "page_reverse")]
    if marker is not None:
        params.append(("marker", marker))
    if reverse:
        params.append(("page_reverse", "True"))
    return {"rel": rel, "href": f"{request.url.origin()}{request.path}?{urlencode(params)}"}


def _neutron_list(
    request: web.Request,
    collection: str,
    items: list[dict[str, Any]],
    endpoint: str,
    allowed_filters: frozenset[str],
    hidden: frozenset[str] = frozenset(),
) -> web.Response:
    q = request.query
    bad = _bad_filters(q, allowed_filters)
    if bad is not None:
        return bad
    try:
        requested = int(q.get("limit", "0"))
    except ValueError:
        requested = -1
    if requested < 0:
        msg = f"Bad limit request: Limit must be an integer 0 or greater and not '{q['limit']}'."
        return neutron_error(400, "BadRequest", msg)
    # api_common.get_limit_and_marker: `limit = min(max_limit, limit) or max_limit` (no max: no paging).
    max_limit: int | None = request.app[CONFIG].get("neutron_max_limit")
    limit = (min(max_limit, requested) or max_limit) if max_limit else requested
    try:
        match = _matcher(q)
    except _InvalidFilter as exc:
        return neutron_error(400, "InvalidInput", str(exc))
    items = sorted((i for i in items if match(i)), key=lambda i: str(i["id"]))
    links: list[dict[str, str]] = []
    if limit:
        reverse = q.get("page_reverse", "False").lower() == "true"
        marker = q.get("marker")
        ids = [str(i["id"]) for i in items]
        if marker and endpoint in request.app[FAULTS].looping_pagination:
            marker = None  # a broken server: every marker gets the first page again
        if marker and marker not in ids:
            kind = collection[:-1].capitalize()
            return neutron_error(404, f"{kind}NotFound", f"{kind} {marker} could not be found.")
        if reverse:
            end = ids.index(marker) if marker else len(items)
            page = items[max(end - limit, 0) : end]
            has_next = True  # a reverse page always links forward
        else:
            start = ids.index(marker) + 1 if marker else 0
            page = items[start : start + limit]
            # Real Neutron links every full page (so its last page may come back empty); we link only while
            # items remain, which a client must handle just the same.
            has_next = start + limit < len(items)
        first = str(page[0]["id"]) if page else None
        last = str(page[-1]["id"]) if page else None
        # api_common.get_pagination_links: a forward listing always links back, even from its first page.
        if has_next:
            links.append(_page_link(request, "next", last, reverse=False))
        if not reverse or len(page) >= limit:
            links.append(_page_link(request, "previous", first, reverse=True))
        items = page
    fields = q.getall("fields", [])
    if fields:
        items = [{k: v for k, v in i.items() if k in fields} for i in items]
    if hidden:  # filter-only attributes (is_visible False) never leave the server
        items = [{k: v for k, v in i.items() if k not in hidden} for i in items]
    body: dict[str, Any] = {collection: items}
    if links:
        body[f"{collection}_links"] = links
    return web.json_response(body)


async def list_subnets(request: web.Request) -> web.Response:
    state = request.app[STATE]
    _, project_id = _scope(request)
    items = []
    for s in state.subnets.values():
        net = state.networks[s.network_id]
        if not _network_visible(net, request) and s.project_id != project_id:
            continue
        items.append(
            {
                "id": s.id,
                "name": s.name,
                "network_id": s.network_id,
                "cidr": s.cidr,
                "ip_version": s.ip_version,
                "enable_dhcp": True,
                "gateway_ip": None,
                "tenant_id": s.project_id,
                "project_id": s.project_id,
                # The subnet's `shared` is its network's, for the requesting project; filter-only.
                "shared": net.shared_to(project_id),
            }
        )
    return _neutron_list(request, "subnets", items, "network.subnets", SUBNET_FILTERS, hidden=frozenset({"shared"}))


async def list_ports(request: web.Request) -> web.Response:
    state = request.app[STATE]
    admin, project_id = _scope(request)
    # A device filter (what the controller sends) needs only those devices' ports; `_neutron_list` filters them.
    devices = request.query.getall("device_id", [])
    candidates = state.ports_of_devices(devices) if devices else state.ports.values()
    items = [_port_view(p, state) for p in candidates if admin or p.project_id == project_id]
    return _neutron_list(request, "ports", items, "network.ports", PORT_FILTERS)


def _network_view(net: Network, state: SimState, project_id: str | None) -> dict[str, Any]:
    return {
        "id": net.id,
        "name": net.name,
        "mtu": net.mtu,
        "status": net.status,
        "admin_state_up": True,
        "shared": net.shared_to(project_id),
        "subnets": [s.id for s in state.subnets.values() if s.network_id == net.id],
        "tenant_id": net.project_id,
        "project_id": net.project_id,
    }


async def list_networks(request: web.Request) -> web.Response:
    state = request.app[STATE]
    _, project_id = _scope(request)
    items = [_network_view(n, state, project_id) for n in state.networks.values() if _network_visible(n, request)]
    return _neutron_list(request, "networks", items, "network.networks", NETWORK_FILTERS)


async def show_network(request: web.Request) -> web.Response:
    state = request.app[STATE]
    net = state.networks.get(request.match_info["network_id"])
    if net is None or not _network_visible(net, request):
        nid = request.match_info["network_id"]
        return neutron_error(404, "NetworkNotFound", f"Network {nid} could not be found.")
    view = _network_view(net, state, _scope(request)[1])
    fields = request.query.getall("fields", [])
    if fields:
        view = {k: v for k, v in view.items() if k in fields}
    return web.json_response({"network": view})


# ----------------------------------------------------------------------------------------------------- app
def build_app(
    state: SimState,
    faults: Faults,
    log: RequestLog,
    *,
    region: str = "RegionOne",
    nova_max_limit: int = 1000,
    neutron_max_limit: int | None = 1000,
    nova_max_microversion: str | None = "2.96",
) -> web.Application:
    """`neutron_max_limit` is Neutron's `pagination_max_limit`: every listing pages at
    min(limit or max, max); None is its `-1` (no server-side cap; paging only with `limit`).
    `nova_max_microversion` is the highest compute microversion offered (below 2.69: no partial records of
    down cells); None models an endpoint without microversions (empty version document, headers ignored)."""
    if nova_max_microversion is not None and not MICROVERSION.match(nova_max_microversion):
        raise ValueError(f"nova_max_microversion must look like 2.69, not {nova_max_microversion!r}")
    if neutron_max_limit is not None and neutron_max_limit <= 0:
        raise ValueError(f"neutron_max_limit must be positive or None, not {neutron_max_limit}")
    app = web.Application(middlewares=[simulate])
    app[STATE] = state
    app[FAULTS] = faults
    app[LOG] = log
    app[CONFIG] = {
        "region": region,
        "nova_max_limit": nova_max_limit,
        "neutron_max_limit": neutron_max_limit,
        "nova_max_microversion": nova_max_microversion,
    }
    r = app.router
    r.add_post("/v3/auth/tokens", create_token, name="identity.tokens")
    r.add_get("/v3", identity_version, name="identity.version")
    r.add_get("/v3/", identity_version, name="identity.version_slash")
    r.add_get("/v2.1", compute_version, name="compute.versions")
    r.add_get("/v2.1/", compute_version, name="compute.versions_slash")
    r.add_get("/v2.1/servers", list_servers, name="compute.servers")
    r.add_get("/v2.1/servers/detail", list_servers, name="compute.servers_detail")
    r.add_get("/v2.1/{project_id}/servers", list_servers, name="compute.servers_legacy")
    r.add_get("/v2.1/{project_id}/servers/detail", list_servers, name="compute.servers_detail_legacy")
    r.add_get("/v2.0/subnets", list_subnets, name="network.subnets")
    r.add_get("/v2.0/ports", list_ports, name="network.ports")
    r.add_get("/v2.0/networks", list_networks, name="network.networks_list")
    r.add_get("/v2.0/networks/{network_id}", show_network, name="network.networks")
    return app
