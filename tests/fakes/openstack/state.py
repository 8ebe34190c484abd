"""Mutable simulator state: identity (users, projects, tokens), Nova servers, Neutron networks/subnets/ports.

Tests mutate it at runtime through `SimState` methods (add/remove servers and ports, revoke tokens, put a
server's cell down).

Ownership: every network, subnet, server and port belongs to a project (`project_id`; by default the first
project added, the seed's default scope). Nova lists the token's project only; Neutron shows an admin every
project's resources and anyone else their own plus networks shared with them (`shared_with`: project IDs,
`*` for every project - Neutron's `shared=True`), like its RBAC `access_as_shared`.

Indexes (servers by name, ports by device): benchmarks run the simulator in their own process with 10,000
servers and ports, and a listing that looks at every one of them makes the benchmark measure the simulator
rather than the controller. The indexes only narrow down the candidates the handlers then filter exactly as
before, so answers do not change. Tests may mutate state any way they like (methods, dict assignment, plain
attribute writes): every change to what an index is built from (the `servers`/`ports` mappings, a server's
`name`, a port's `device_id`) bumps a counter, and a stale index is rebuilt on its next use.
"""

from __future__ import annotations

import bisect
import functools
import ipaddress
import itertools
import secrets
import unicodedata
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

V = TypeVar("V")

_version = [0]
"""Changes to indexed inputs so far (process-wide: one state's change only costs another a rebuild)."""


@functools.lru_cache(maxsize=1 << 16)
def collate(value: str) -> str:
    """A string as MariaDB's utf8 *_general_ci compares it, which is how Neutron's `=`/`IN` filters match:
    case and trailing spaces do not count (PAD SPACE), accents are folded; leading spaces do count."""
    if not value.isascii():
        value = "".join(c for c in unicodedata.normalize("NFD", value) if not unicodedata.combining(c))
    return value.lower().rstrip(" ")


def _changed() -> None:
    _version[0] += 1


class _Tracked(dict[str, V]):
    """The `servers`/`ports` mapping: any insertion or removal marks the indexes stale."""

    def __setitem__(self, key: str, value: V) -> None:
        _changed()
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        _changed()
        super().__delitem__(key)

    def __ior__(self, other: Any) -> _Tracked[V]:
        _changed()
        super().update(other)
        return self

    def pop(self, *args: Any) -> Any:
        _changed()
        return super().pop(*args)

    def popitem(self) -> tuple[str, V]:
        _changed()
        return super().popitem()

    def clear(self) -> None:
        _changed()
        super().clear()

    def update(self, *args: Any, **kwargs: Any) -> None:
        _changed()
        super().update(*args, **kwargs)

    def setdefault(self, key: str, default: Any = None) -> Any:
        _changed()
        return super().setdefault(key, default)


class _Indexed:
    """Marks the indexes stale when one of `_INDEXED` is assigned (dataclass `__init__` included)."""

    _INDEXED: frozenset[str] = frozenset()

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self._INDEXED:
            _changed()
        object.__setattr__(self, name, value)


def _uuid() -> str:
    return str(uuid.uuid4())


@dataclass
class User:
    name: str
    password: str = field(repr=False)
    domain: str = "Default"
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    projects: list[str] = field(default_factory=list)  # project IDs this user has a role on ([] = all)
    admin: bool = False  # the admin role: Neutron shows every project's resources


@dataclass
class Project:
    id: str
    name: str
    domain: str = "Default"


@dataclass
class Token:
    value: str = field(repr=False)
    user: User
    project: Project | None
    issued_at: datetime
    expires_at: datetime


@dataclass
class Network:
    id: str
    name: str
    mtu: int = 1500
    status: str = "ACTIVE"
    project_id: str = ""
    shared_with: list[str] = field(default_factory=list)  # project IDs, "*" for all (Neutron shared=True)

    def shared_to(self, project_id: str | None) -> bool:
        """Neutron's `shared` as the requesting project sees it (RBAC access_as_shared to it or to `*`)."""
        return "*" in self.shared_with or (project_id is not None and project_id in self.shared_with)


@dataclass
class Subnet:
    id: str
    name: str
    network_id: str
    cidr: str
    ip_version: int = 4
    project_id: str = ""


@dataclass
class Server(_Indexed):
    _INDEXED = frozenset({"name"})

    id: str
    name: str
    status: str = "ACTIVE"
    created: int = 0  # monotonic creation order: Nova lists newest first
    project_id: str = ""
    down_cell: bool = False  # its cell does not answer: skipped, or a partial record at microversion >= 2.69


@dataclass
class FixedIP:
    subnet_id: str
    ip_address: str


@dataclass
class Port(_Indexed):
    _INDEXED = frozenset({"device_id"})

    id: str
    network_id: str
    mac_address: str
    device_id: str = ""
    device_owner: str = "compute:nova"
    name: str = ""
    fixed_ips: list[FixedIP] = field(default_factory=list)
    status: str | None = None  # None: derived (see SimState.port_status); a string pins it
    project_id: str = ""


def _mac(n: int) -> str:
    return "fa:16:3e:" + ":".join(f"{b:02x}" for b in n.to_bytes(3, "big"))


class SimState:
    def __init__(self, token_lifetime: float = 3600.0) -> None:
        self.token_lifetime = token_lifetime
        self.users: list[User] = []
        self.projects: list[Project] = []
        self.tokens: dict[str, Token] = {}
        self.networks: dict[str, Network] = {}
        self.subnets: dict[str, Subnet] = {}
        self.servers: dict[str, Server] = _Tracked()
        self.ports: dict[str, Port] = _Tracked()
        self._created = itertools.count(1)
        self._macs = itertools.count(0x100000)
        self._indexed_at = -1  # `_version` the indexes below were built at
        self._names: list[str] = []  # lower-cased server names, sorted
        self._named: list[Server] = []  # the servers, in `_names` order
        self._ascii_names = True
        self._by_device: dict[str, list[Port]] = {}

    # -- indexes (candidates only: handlers still apply every filter) --------------------------------------
    def _fresh_indexes(self) -> None:
        if self._indexed_at == _version[0]:
            return
        entries = sorted((s.name.lower(), n, s) for n, s in enumerate(self.servers.values()))
        self._names = [name for name, _, _ in entries]
        self._named = [server for _, _, server in entries]
        self._ascii_names = all(s.name.isascii() for s in self._named)
        self._by_device = {}
        for port in self.ports.values():
            self._by_device.setdefault(collate(port.device_id), []).append(port)
        self._indexed_at = _version[0]

    def servers_with_prefix(self, prefix: str) -> list[Server] | None:
        """Servers (any project) whose name starts with the ASCII `prefix`, ignoring ASCII case: a superset of
        what an anchored case-insensitive pattern with that literal prefix matches. None when some name is not
        ASCII (Unicode case-insensitive matching has cases `lower()` does not reproduce): scan everything."""
        self._fresh_indexes()
        if not self._ascii_names or not prefix.isascii():
            return None
        key = prefix.lower()
        found = []
        for position in range(bisect.bisect_left(self._names, key), len(self._names)):
            if not self._names[position].startswith(key):
                break
            found.append(self._named[position])
        return found

    def ports_of_devices(self, device_ids: Iterable[str]) -> list[Port]:
        """Ports (any project) whose `device_id` is one of `device_ids`, compared as Neutron does (`collate`)."""
        self._fresh_indexes()
        keys = dict.fromkeys(collate(d) for d in device_ids)
        return [port for device in keys for port in self._by_device.get(device, ())]

    # -- identity -----------------------------------------------------------------------------------------
    @property
    def default_project(self) -> str:
        """The project resources belong to unless told otherwise: the first one added."""
        return self.projects[0].id if self.projects else "your-project-id"

    def project_id_of(self, ref: str | None) -> str:
        """A project given by ID or name (seeds may use either); None: the default project."""
        if ref is None:
            return self.default_project
        for project in self.projects:
            if ref in (project.id, project.name):
                return project.id
        return ref

    def add_user(
        self,
        name: str,
        password: str,
        domain: str = "Default",
        projects: list[str] | None = None,
        admin: bool | None = None,
    ) -> User:
        """`admin` defaults to True for a user named admin (the seeds' cloud administrator)."""
        user = User(
            name=name,
            password=password,
            domain=domain,
            projects=list(projects or []),
            admin=name == "admin" if admin is None else admin,
        )
        self.users.append(user)
        return user

    def add_project(self, id: str, name: str, domain: str = "Default") -> Project:
        project = Project(id=id, name=name, domain=domain)
        self.projects.append(project)
        return project

    def issue_token(self, user: User, project: Project | None) -> Token:
        now = datetime.now(UTC)
        token = Token(
            value="gAAAA" + secrets.token_urlsafe(48),
            user=user,
            project=project,
            issued_at=now,
            expires_at=now + timedelta(seconds=self.token_lifetime),
        )
        self.tokens[token.value] = token
        return token

    def valid_token(self, value: str | None) -> Token | None:
        token = self.tokens.get(value or "")
        if token is None or token.expires_at <= datetime.now(UTC):
            return None
        return token

    def revoke_all_tokens(self) -> None:
        self.tokens.clear()

    # -- compute / network --------------------------------------------------------------------------------
    def add_network(
        self,
        name: str,
        mtu: int = 1500,
        id: str | None = None,
        project_id: str | None = None,
        shared: bool | list[str] = False,
    ) -> Network:
        """`shared`: True for every project (Neutron's `shared=True`), or the project IDs it is shared with."""
        shared_with = ["*"] if shared is True else list(shared or [])
        net = Network(
            id=id or _uuid(), name=name, mtu=mtu, project_id=self.project_id_of(project_id), shared_with=shared_with
        )
        self.networks[net.id] = net
        return net

    def add_subnet(self, name: str, network_id: str, cidr: str, id: str | None = None) -> Subnet:
        """A subnet belongs to its network's project (Neutron allows otherwise only for admins)."""
        net = self.networks[network_id]
        sub = Subnet(id=id or _uuid(), name=name, network_id=network_id, cidr=cidr, project_id=net.project_id)
        self.subnets[sub.id] = sub
        return sub

    def add_server(
        self, name: str, status: str = "ACTIVE", id: str | None = None, project_id: str | None = None
    ) -> Server:
        server = Server(
            id=id or _uuid(),
            name=name,
            status=status,
            created=next(self._created),
            project_id=self.project_id_of(project_id),
        )
        self.servers[server.id] = server
        return server

    def set_cell_down(self, server_id: str, down: bool = True) -> None:
        """Put a server's cell out of reach (or back): Nova then skips it, or at >= 2.69 shows a partial record."""
        self.servers[server_id].down_cell = down

    def remove_server(self, server_id: str) -> None:
        """Delete a server; like Nova, its ports are detached (device_id cleared), not deleted."""
        self.servers.pop(server_id, None)
        for port in self.ports.values():
            if port.device_id == server_id:
                port.device_id = ""
                port.device_owner = ""

    def add_port(
        self,
        subnet_id: str,
        ip_address: str,
        device_id: str = "",
        mac_address: str | None = None,
        id: str | None = None,
        name: str = "",
    ) -> Port:
        subnet = self.subnets[subnet_id]
        if ipaddress.ip_address(ip_address) not in ipaddress.ip_network(subnet.cidr):
            # Neutron refuses it too ("IP address ... is not a valid IP for the specified subnet").
            raise ValueError(f"{ip_address} is not in subnet {subnet.name} ({subnet.cidr})")
        server = self.servers.get(device_id)
        port = Port(
            id=id or _uuid(),
            network_id=subnet.network_id,
            mac_address=mac_address or _mac(next(self._macs)),
            device_id=device_id,
            device_owner="compute:nova" if device_id else "",
            name=name,
            fixed_ips=[FixedIP(subnet_id=subnet_id, ip_address=ip_address)],
            # Nova creates a server's ports in the server's project; a loose port in its subnet's.
            project_id=server.project_id if server is not None else subnet.project_id,
        )
        self.ports[port.id] = port
        return port

    def port_status(self, port: Port) -> str:
        """Neutron's port status: ACTIVE once bound to a (still existing) server; an unbound port, such as an
        orphan whose device_id names no server or one detached when its server was deleted, is DOWN."""
        if port.status is not None:
            return port.status
        return "ACTIVE" if port.device_id and port.device_id in self.servers else "DOWN"

    def remove_port(self, port_id: str) -> None:
        self.ports.pop(port_id, None)

    def find_server(self, name: str, project_id: str | None = None) -> Server:
        """By name (in `project_id`, by ID or name, when given: names repeat across projects)."""
        pid = None if project_id is None else self.project_id_of(project_id)
        return next(s for s in self.servers.values() if s.name == name and pid in (None, s.project_id))

    def find_subnet(self, name: str, project_id: str | None = None) -> Subnet:
        pid = None if project_id is None else self.project_id_of(project_id)
        return next(s for s in self.subnets.values() if s.name == name and pid in (None, s.project_id))

    # -- seeding ------------------------------------------------------------------------------------------
    @classmethod
    def from_seed(cls, seed: dict[str, Any]) -> SimState:
        """Build state from a seed mapping (see default_seed.yaml for the schema).

        `project` (ID or name) on a network, server or loose port places it in that project (default: the
        first project); a network's `shared` is true or a list of projects; a server's `down_cell: true` puts
        its cell out of reach; a user's `admin` defaults to true for the user named admin. A port's `subnet`
        is looked up in the server's (or the port's) project first, since names repeat across projects.
        """
        state = cls(token_lifetime=float(seed.get("token_lifetime", 3600)))
        for p in seed.get("projects", []):
            state.add_project(p["id"], p["name"], p.get("domain", "Default"))
        for u in seed.get("users", []):
            state.add_user(u["name"], u["password"], u.get("domain", "Default"), u.get("projects"), u.get("admin"))
        for n in seed.get("networks", []):
            shared = n.get("shared", False)
            if isinstance(shared, list):
                shared = [state.project_id_of(p) for p in shared]
            net = state.add_network(n["name"], int(n.get("mtu", 1500)), n.get("id"), n.get("project"), shared)
            for s in n.get("subnets", []):
                state.add_subnet(s["name"], net.id, s["cidr"], s.get("id"))
        for s in seed.get("servers", []):
            server = state.add_server(s["name"], s.get("status", "ACTIVE"), s.get("id"), s.get("project"))
            for p in s.get("ports", []):
                subnet = state._seed_subnet(p["subnet"], server.project_id)
                state.add_port(subnet.id, p["ip"], server.id, p.get("mac"), p.get("id"))
            if s.get("down_cell"):
                state.set_cell_down(server.id)
        for p in seed.get("ports", []):  # ports not attached to a seeded server
            subnet = state._seed_subnet(p["subnet"], state.project_id_of(p.get("project")))
            state.add_port(subnet.id, p["ip"], p.get("device_id", ""), p.get("mac"), p.get("id"))
        return state

    def _seed_subnet(self, name: str, project_id: str) -> Subnet:
        owned = [s for s in self.subnets.values() if s.name == name and s.project_id == project_id]
        return owned[0] if owned else self.find_subnet(name)
