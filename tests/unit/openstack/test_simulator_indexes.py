"""The simulator's indexes (servers by name prefix, ports by device) change how fast it answers, never what.

Each listing is compared with a brute-force answer over every server or port, on random states that include
the awkward cases: mixed case, non-ASCII names that match ASCII letters case-insensitively (KELVIN SIGN, long
s), `|` (escaped as Nova does), quantifiers that make a literal optional, classes, unanchored patterns; and on
states mutated behind the indexes' back (attribute writes, dict assignment and deletion).
"""

from __future__ import annotations

import random
import re
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aiohttp
import pytest

from tests.fakes.openstack import SimState, Simulator, running_simulator
from tests.fakes.openstack.app import _literal_prefix
from tests.fakes.openstack.state import Port

SUBNET = "sub-1"
ALPHABET = ["a", "b", "B", "k", "K", "s", "-", ".", "1", "|", "\u212a", "\u017f", "\u00e9"]
PATTERNS = [
    "^{p}",
    "^{p}$",
    "{p}",
    "^{p}*",
    "^{p}?x",
    "^{p}{{0}}a",
    "^{p}.",
    "^\\d",
    "^({p})",
    "^{p}|x",
    "^{esc}",
    "^{esc}$",
]


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    state = SimState()
    state.add_project("your-project-id", "admin")
    state.add_project("other", "other")
    state.add_user("admin", "admin")
    state.add_subnet(SUBNET, state.add_network("net").id, "10.0.0.0/8", id=SUBNET)
    async with running_simulator(state) as s:
        yield s


async def _get(sim: Simulator, session: aiohttp.ClientSession, path: str, params: Sequence[tuple[str, str]]) -> Any:
    token = sim.state.issue_token(sim.state.users[0], sim.state.projects[0]).value
    async with session.get(sim.url + path, params=list(params), headers={"X-Auth-Token": token}) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


def _random_name(rng: random.Random) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 5)))


def _fill(state: SimState, rng: random.Random, *, ascii_only: bool) -> None:
    state.servers.clear()
    state.ports.clear()
    for n in range(rng.randint(0, 25)):
        name = _random_name(rng)
        if ascii_only:
            name = name.encode("ascii", "ignore").decode() or "a"
        server = state.add_server(name, project_id=rng.choice(["your-project-id", "other"]))
        server.down_cell = rng.random() < 0.1
        for _ in range(rng.randint(0, 2)):
            state.add_port(SUBNET, f"10.0.{n}.{rng.randint(1, 250)}", device_id=server.id)
    for _ in range(rng.randint(0, 3)):
        state.add_port(SUBNET, f"10.1.0.{rng.randint(1, 250)}", device_id=rng.choice(["", "gone"]))


def _expected_servers(state: SimState, pattern: str) -> list[str]:
    regex = re.compile(pattern.replace("|", "\\|"), re.IGNORECASE)
    found = [
        s
        for s in state.servers.values()
        if s.project_id == "your-project-id" and not s.down_cell and regex.search(s.name)
    ]
    return [s.id for s in sorted(found, key=lambda s: (s.created, s.id), reverse=True)]


def _expected_ports(state: SimState, devices: Sequence[str]) -> list[str]:
    return sorted(p.id for p in state.ports.values() if p.device_id in devices)


def _random_pattern(rng: random.Random, state: SimState) -> str:
    names = [s.name for s in state.servers.values()] or ["a"]
    base = rng.choice(names)
    prefix = base[: rng.randint(1, len(base))]
    escaped = re.escape(prefix).replace("\\|", "|")  # `|` stays bare: the simulator escapes it, as Nova does
    try:
        return rng.choice(PATTERNS).format(p=re.escape(prefix[0]) if prefix[0] != "|" else "x", esc=escaped)
    except (IndexError, KeyError):
        return "^" + escaped


@pytest.mark.parametrize("ascii_only", [True, False])
async def test_listings_match_brute_force(sim: Simulator, ascii_only: bool) -> None:
    rng = random.Random(15 + ascii_only)
    async with aiohttp.ClientSession() as session:
        for _ in range(120):
            _fill(sim.state, rng, ascii_only=ascii_only)
            pattern = _random_pattern(rng, sim.state)
            try:
                re.compile(pattern.replace("|", "\\|"))
            except re.error:
                continue
            body = await _get(sim, session, "/v2.1/servers/detail", [("name", pattern)])
            assert [s["id"] for s in body["servers"]] == _expected_servers(sim.state, pattern), pattern

            devices = rng.sample([*sim.state.servers, "", "gone", "nothing"], k=min(3, len(sim.state.servers) + 3))
            params = [("fixed_ips", f"subnet_id={SUBNET}"), *(("device_id", d) for d in devices)]
            body = await _get(sim, session, "/v2.0/ports", params)
            assert [p["id"] for p in body["ports"]] == _expected_ports(sim.state, devices), devices


async def test_indexes_follow_changes_made_behind_their_back(sim: Simulator) -> None:
    state = sim.state
    server = state.add_server("alpha-1")
    other = state.add_server("beta-1")
    port = state.add_port(SUBNET, "10.0.0.5", device_id=server.id)
    async with aiohttp.ClientSession() as session:

        async def servers(pattern: str) -> list[str]:
            body = await _get(sim, session, "/v2.1/servers/detail", [("name", pattern)])
            return [s["name"] for s in body["servers"]]

        async def ports(device: str) -> list[str]:
            body = await _get(sim, session, "/v2.0/ports", [("device_id", device)])
            return [p["id"] for p in body["ports"]]

        assert await servers("^alpha") == ["alpha-1"]
        assert await ports(server.id) == [port.id]

        server.name = "gamma-1"  # a plain attribute write
        assert await servers("^alpha") == []
        assert await servers("^GAMMA") == ["gamma-1"]

        port.device_id = other.id
        assert await ports(server.id) == []
        assert await ports(other.id) == [port.id]

        del state.servers[other.id]
        assert await servers("^beta") == []

        loose = Port(id="p-loose", network_id=port.network_id, mac_address="fa:16:3e:00:00:01", device_id="dev")
        state.ports[loose.id] = loose  # dict assignment, no add_port
        assert await ports("dev") == ["p-loose"]
        state.ports.pop(loose.id)
        assert await ports("dev") == []

        state.remove_server(server.id)
        assert await ports(other.id) == [port.id]  # remove_server detaches only its own ports


def test_index_answers_candidates_only() -> None:
    """What makes the simulator fast: a prefix query touches the servers named so, a device query its ports."""
    state = SimState()
    net = state.add_network("n")
    subnet = state.add_subnet("s", net.id, "10.0.0.0/8")
    for i in range(2000):
        server = state.add_server(f"bench-{i:05d}")
        state.add_port(subnet.id, f"10.0.{i // 256}.{i % 256}", device_id=server.id)
    found = state.servers_with_prefix("BENCH-0012")
    assert found is not None and sorted(s.name for s in found) == [f"bench-{i:05d}" for i in range(120, 130)]
    target = state.find_server("bench-01999")
    assert [p.device_id for p in state.ports_of_devices([target.id, target.id])] == [target.id]
    state.add_server("caf\u00e9")
    assert state.servers_with_prefix("bench") is None  # a non-ASCII name: the handler scans everything


@pytest.mark.parametrize(
    ("pattern", "prefix"),
    [
        ("^bench\\-00012$", "bench-00012"),
        ("^bench-0", "bench-0"),
        ("bench", ""),
        ("^ab*", "a"),
        ("^ab?c", "a"),
        ("^ab{2}", "a"),
        ("^ab+", "ab"),
        ("^a.b", "a"),
        ("^a\\.b", "a.b"),
        ("^a\\|b", "a|b"),
        ("^a\\db", "a"),
        ("^(ab)", ""),
        ("^a[bc]", "a"),
        ("^", ""),
        ("^a\\", "a"),
    ],
)
def test_literal_prefix(pattern: str, prefix: str) -> None:
    assert _literal_prefix(pattern) == prefix
