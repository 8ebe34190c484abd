"""ObservationCoalescer against the simulator: who shares an observation, freshness, failures, memory."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest

from multinic_ctrl import metrics
from multinic_ctrl.openstack import (
    AmbiguousServer,
    Credentials,
    ObservationCoalescer,
    OpenStackClient,
    OpenStackUnavailable,
    Peer,
    SubnetNotFound,
)
from tests.fakes.openstack import SimState, Simulator, running_simulator

from .conftest import make_client

WINDOW = 0.02


def world(projects: int = 1, vms: int = 100) -> SimState:
    """`projects` projects with a user each (`user-k`/`pw-k`), every project `vms` servers on its own subnet."""
    state = SimState()
    for k in range(projects):
        pid = f"project-{k}"
        state.add_project(pid, f"p{k}")
        state.add_user(f"user-{k}", f"pw-{k}", projects=[pid], admin=False)
        net = state.add_network(f"net-{k}", 1450, project_id=pid)
        sub = state.add_subnet("nodes", net.id, f"10.{k}.0.0/16")
        for i in range(vms):
            server = state.add_server(f"node-{i}", project_id=pid)
            state.add_port(sub.id, f"10.{k}.{i // 250}.{i % 250 + 1}", server.id)
    state.add_server("dup", project_id="project-0")
    state.add_server("dup", project_id="project-0")
    return state


def creds(sim: Simulator, k: int = 0) -> Credentials:
    return sim.credentials(username=f"user-{k}", password=f"pw-{k}", project_id=f"project-{k}")


def served() -> dict[str, float]:
    """multinic_openstack_observe_requests_total by what served the request."""
    return {
        how: metrics.OPENSTACK_OBSERVE_REQUESTS.labels(served_by=how)._value.get()
        for how in ("new", "joined", "in_flight", "cached")
    }


def observations(sim: Simulator) -> int:
    """Observations the simulator saw: each asks for its networks' MTU exactly once."""
    return sim.request_log.count("network.networks")


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with running_simulator(world(projects=3)) as s:
        yield s


@pytest.fixture
async def client() -> AsyncIterator[OpenStackClient]:
    c = make_client()
    yield c
    await c.close()


async def warm(client: OpenStackClient, sim: Simulator, projects: int = 1) -> None:
    for k in range(projects):
        await client.observe(creds(sim, k), ["node-0"], "nodes")
    sim.request_log.clear()


@pytest.mark.parametrize("configs", [1, 10, 50])
async def test_concurrent_requests_of_one_project_share_one_observation(
    sim: Simulator, client: OpenStackClient, configs: int
) -> None:
    await warm(client, sim)
    co = ObservationCoalescer(client, window=WINDOW)
    results = await asyncio.gather(
        *(co.observe(creds(sim), [f"node-{i}"], "nodes", key=f"ns/c{i}") for i in range(configs))
    )
    assert observations(sim) == 1
    assert sum(sim.request_log.counts().values()) == 4  # subnets, servers, ports, network: whatever the count
    alone = [await client.observe(creds(sim), [f"node-{i}"], "nodes") for i in range(configs)]
    assert list(results) == alone


async def test_projects_are_observed_separately(sim: Simulator, client: OpenStackClient) -> None:
    await warm(client, sim, projects=3)
    co = ObservationCoalescer(client, window=WINDOW)
    results = await asyncio.gather(
        *(co.observe(creds(sim, k), [f"node-{i}"], "nodes") for k in range(3) for i in range(10))
    )
    assert observations(sim) == 3  # one per identity: linear in projects, constant in configs
    for k in range(3):
        subnets = {r.subnet.cidr for r in results[k * 10 : (k + 1) * 10]}
        assert subnets == {f"10.{k}.0.0/16"}  # nobody sees another identity's answer


class Queue:
    """Stands in for the controller: which configs are queued, and when each became due."""

    def __init__(self) -> None:
        self.due: dict[str, float] = {}
        self.asked: list[str] = []

    def enqueue(self, keys: Sequence[str]) -> None:
        now = asyncio.get_running_loop().time()
        for key in keys:
            self.due[key] = now

    def peers(self, group: str) -> list[Peer]:
        self.asked.append(group)
        return [Peer(key, (f"node-{key.split('-')[1]}",), "nodes") for key in self.due]


async def test_queued_peers_are_served_without_calls(sim: Simulator, client: OpenStackClient) -> None:
    await warm(client, sim)
    queue = Queue()
    co = ObservationCoalescer(client, window=WINDOW, peers=queue.peers)
    keys = [f"c-{i}" for i in range(100)]
    queue.enqueue(keys)
    before = served()
    # Workers take the queued configs one at a time: the first observation takes every due peer along.
    results = []
    for key in keys:
        due = queue.due.pop(key)
        results.append(await co.observe(creds(sim), [f"node-{key[2:]}"], "nodes", due=due, key=key, group="g"))
    assert observations(sim) == 1
    assert queue.asked == ["g"]
    assert {k: v - before[k] for k, v in served().items()} == {"new": 1, "joined": 0, "in_flight": 0, "cached": 99}
    assert [p.ip for r in results for p in r.ports] == [f"10.0.{i // 250}.{i % 250 + 1}" for i in range(100)]
    assert co.kept_batches() == 1
    await asyncio.sleep(WINDOW * 2)
    await co.observe(creds(sim), ["node-0"], "nodes", key="c-0")  # due now: a new observation
    assert observations(sim) == 2
    assert co.kept_batches() == 1  # the first one was let go once all its peers were served


async def test_a_result_older_than_the_due_time_is_never_used(sim: Simulator, client: OpenStackClient) -> None:
    await warm(client, sim)
    co = ObservationCoalescer(client, window=WINDOW, peers=lambda _group: [Peer("b", ("node-1",), "nodes")])
    first = await co.observe(creds(sim), ["node-0"], "nodes", key="a", group="g")
    assert len(first.ports) == 1
    # A NIC is hot-attached after that observation started; config b becomes due afterwards.
    server = sim.state.find_server("node-1", "project-0")
    subnet = sim.state.find_subnet("nodes", "project-0")
    sim.state.add_port(subnet.id, "10.0.9.9", server.id)
    later = asyncio.get_running_loop().time()
    second = await co.observe(creds(sim), ["node-1"], "nodes", due=later, key="b", group="g")
    assert observations(sim) == 2
    assert sorted(p.ip for p in second.ports) == ["10.0.0.2", "10.0.9.9"]


async def test_requests_not_covered_by_a_result_get_their_own(sim: Simulator, client: OpenStackClient) -> None:
    await warm(client, sim)
    co = ObservationCoalescer(client, window=WINDOW)
    start = asyncio.get_running_loop().time()
    await co.observe(creds(sim), ["node-0"], "nodes", due=start)
    again = await co.observe(creds(sim), ["node-0"], "nodes", due=start)  # fresh enough and covered
    assert observations(sim) == 1 and len(again.ports) == 1
    await co.observe(creds(sim), ["node-5"], "nodes", due=start)  # a VM that batch did not ask for
    assert observations(sim) == 2


async def test_one_configs_error_stays_with_it(sim: Simulator, client: OpenStackClient) -> None:
    await warm(client, sim)
    co = ObservationCoalescer(client, window=WINDOW)
    ok, unknown, ambiguous, missing = await asyncio.gather(
        co.observe(creds(sim), ["node-1"], "nodes"),
        co.observe(creds(sim), ["node-2"], "no-such-subnet"),
        co.observe(creds(sim), ["node-3", "dup"], "nodes"),
        co.observe(creds(sim), ["node-4", "ghost"], "nodes"),
        return_exceptions=True,
    )
    assert observations(sim) == 1
    assert not isinstance(ok, BaseException) and len(ok.ports) == 1
    assert isinstance(unknown, SubnetNotFound)
    assert isinstance(ambiguous, AmbiguousServer)
    assert not isinstance(missing, BaseException) and missing.missing_vms == ("ghost",)


async def test_an_outage_fails_the_batch_and_the_queued_peers_without_more_calls(sim: Simulator) -> None:
    client = make_client(attempts=2)
    try:
        await warm(client, sim)
        queue = Queue()
        co = ObservationCoalescer(client, window=WINDOW, peers=queue.peers)
        keys = [f"c-{i}" for i in range(20)]
        queue.enqueue(keys)
        sim.faults.fail_next("network.subnets", 2)
        outcomes = await asyncio.gather(
            *(
                co.observe(creds(sim), [f"node-{i}"], "nodes", due=queue.due[f"c-{i}"], key=f"c-{i}", group="g")
                for i in range(4)
            ),
            return_exceptions=True,
        )
        assert all(isinstance(o, OpenStackUnavailable) for o in outcomes)
        calls = len(sim.request_log)
        # The other queued configs were due before that observation started: they fail at once, and back off.
        for i in range(4, 20):
            with pytest.raises(OpenStackUnavailable):
                await co.observe(creds(sim), [f"node-{i}"], "nodes", due=queue.due[f"c-{i}"], key=f"c-{i}", group="g")
        assert len(sim.request_log) == calls
        # Their retry is due after the failure: a new observation, which succeeds now.
        retry = await co.observe(creds(sim), ["node-7"], "nodes", key="c-7", group="g")
        assert len(retry.ports) == 1
    finally:
        await client.close()


async def test_window_zero_observes_each_request_alone(sim: Simulator, client: OpenStackClient) -> None:
    await warm(client, sim)
    co = ObservationCoalescer(client, window=0)
    await asyncio.gather(*(co.observe(creds(sim), [f"node-{i}"], "nodes") for i in range(5)))
    assert observations(sim) == 5
    assert co.kept_batches() == 0


async def test_finished_batches_are_let_go(sim: Simulator, client: OpenStackClient) -> None:
    await warm(client, sim)
    co = ObservationCoalescer(
        client, window=WINDOW, retain=0.2, peers=lambda _g: [Peer("never-comes", ("node-9",), "nodes")]
    )
    await co.observe(creds(sim), ["node-0"], "nodes", group="g")
    await asyncio.sleep(WINDOW * 2)
    await co.observe(creds(sim, 1), ["node-0"], "nodes")  # any request prunes
    assert co.kept_batches(creds(sim)) == 1  # its peer has not come for its slice yet
    await asyncio.sleep(0.25)
    await co.observe(creds(sim, 1), ["node-0"], "nodes")
    assert co.kept_batches(creds(sim)) == 0  # not kept longer than `retain`
    assert co.kept_batches() == 1  # the last one, without peers, until one window has passed


async def test_close_fails_waiting_requests(sim: Simulator, client: OpenStackClient) -> None:
    await warm(client, sim)
    co = ObservationCoalescer(client, window=1.0)
    waiting = asyncio.ensure_future(co.observe(creds(sim), ["node-0"], "nodes"))
    await asyncio.sleep(0.05)
    await co.close()
    with pytest.raises(OpenStackUnavailable, match="shutting down"):
        await waiting
    assert observations(sim) == 0
