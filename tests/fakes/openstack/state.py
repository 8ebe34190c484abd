"""Mutable simulator state: identity (users, projects, tokens), Nova servers, Neutron networks/subnets/ports.

Tests mutate it at runtime through `SimState` methods (add/remove servers and ports, revoke tokens).
"""

from __future__ import annotations

import itertools
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any


def _uuid() -> str:
    return str(uuid.uuid4())


@dataclass
class User:
    name: str
    password: str = field(repr=False)
    domain: str = "Default"
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    projects: list[str] = field(default_factory=list)  # project IDs this user has a role on ([] = all)


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


@dataclass
class Subnet:
    id: str
    name: str
    network_id: str
    cidr: str
    ip_version: int = 4


@dataclass
class Server:
    id: str
    name: str
    status: str = "ACTIVE"
    created: int = 0  # monotonic creation order: Nova lists newest first


@dataclass
class FixedIP:
    subnet_id: str
    ip_address: str


@dataclass
class Port:
    id: str
    network_id: str
    mac_address: str
    device_id: str = ""
    device_owner: str = "compute:nova"
    name: str = ""
    fixed_ips: list[FixedIP] = field(default_factory=list)
    status: str | None = None  # None: derived (see SimState.port_status); a string pins it


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
        self.servers: dict[str, Server] = {}
        self.ports: dict[str, Port] = {}
        self._created = itertools.count(1)
        self._macs = itertools.count(0x100000)

    # -- identity -----------------------------------------------------------------------------------------
    def add_user(self, name: str, password: str, domain: str = "Default", projects: list[str] | None = None) -> User:
        user = User(name=name, password=password, domain=domain, projects=list(projects or []))
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
    def add_network(self, name: str, mtu: int = 1500, id: str | None = None) -> Network:
        net = Network(id=id or _uuid(), name=name, mtu=mtu)
        self.networks[net.id] = net
        return net

    def add_subnet(self, name: str, network_id: str, cidr: str, id: str | None = None) -> Subnet:
        sub = Subnet(id=id or _uuid(), name=name, network_id=network_id, cidr=cidr)
        self.subnets[sub.id] = sub
        return sub

    def add_server(self, name: str, status: str = "ACTIVE", id: str | None = None) -> Server:
        server = Server(id=id or _uuid(), name=name, status=status, created=next(self._created))
        self.servers[server.id] = server
        return server

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
        port = Port(
            id=id or _uuid(),
            network_id=subnet.network_id,
            mac_address=mac_address or _mac(next(self._macs)),
            device_id=device_id,
            device_owner="compute:nova" if device_id else "",
            name=name,
            fixed_ips=[FixedIP(subnet_id=subnet_id, ip_address=ip_address)],
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

    def find_server(self, name: str) -> Server:
        return next(s for s in self.servers.values() if s.name == name)

    def find_subnet(self, name: str) -> Subnet:
        return next(s for s in self.subnets.values() if s.name == name)

    # -- seeding ------------------------------------------------------------------------------------------
    @classmethod
    def from_seed(cls, seed: dict[str, Any]) -> SimState:
        """Build state from a seed mapping (see default_seed.yaml for the schema)."""
        state = cls(token_lifetime=float(seed.get("token_lifetime", 3600)))
        for p in seed.get("projects", []):
            state.add_project(p["id"], p["name"], p.get("domain", "Default"))
        for u in seed.get("users", []):
            state.add_user(u["name"], u["password"], u.get("domain", "Default"), u.get("projects"))
        for n in seed.get("networks", []):
            net = state.add_network(n["name"], int(n.get("mtu", 1500)), n.get("id"))
            for s in n.get("subnets", []):
                state.add_subnet(s["name"], net.id, s["cidr"], s.get("id"))
        for s in seed.get("servers", []):
            server = state.add_server(s["name"], s.get("status", "ACTIVE"), s.get("id"))
            for p in s.get("ports", []):
                state.add_port(state.find_subnet(p["subnet"]).id, p["ip"], server.id, p.get("mac"), p.get("id"))
        for p in seed.get("ports", []):  # ports not attached to a seeded server
            state.add_port(
                state.find_subnet(p["subnet"]).id, p["ip"], p.get("device_id", ""), p.get("mac"), p.get("id")
            )
        return state
