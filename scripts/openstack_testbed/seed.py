"""Seed the OpenStack testbed (idempotent). Runs with the testbed venv's Python.

Creates, in the admin project:
  networks  k8s-net (MTU 1450) / k8s-subnet 192.168.100.0/24
            other-net            / other-subnet 192.168.200.0/24
  servers   test-vm-1, test-vm-2, test-vm-3 (port on k8s-subnet), booted for real by
            nova-compute's fake driver; look-alikes test-vm-10 and test-vm-1.backup
            (also on k8s-subnet); test-vm-2 has a second NIC on other-subnet; test-vm-3
            gets a second k8s-subnet port hot-attached after boot (os-interface)
  ports     orphan-port on k8s-subnet whose device_id is no server
and, for project scoping (the admin user gets the admin role on both projects):
  multinic-other   k8s-net (MTU 1450) / k8s-subnet 192.168.110.0/24 (the same names as
                   in admin), servers test-vm-1 (.11) and test-vm-2 (.12) on it
  multinic-shared  shared-net, shared with every project, with subnets shared-subnet
                   192.168.120.0/24, k8s-subnet 192.168.123.0/24 and two called
                   twin-subnet (192.168.121.0/24, 192.168.122.0/24); no servers
  multinic-cells   nothing: the project of the unreachable cell (below)
The address layout is fixed so tests can assert exact IPs. Verifies that real Nova's
`GET /servers?name=test-vm-1` is a regex match (returns the look-alikes).

`seed.py down-cell on|off` (what tests/openstack_real does around its down-cell test) maps a Nova cell
whose database does not exist - Nova treats such a cell as "not responding" - and puts one instance of
multinic-cells in it, then recycles the nova-api worker (it caches the cell list). A plain seed run turns
it off again: a leftover cell makes `nova-manage cell_v2 discover_hosts` (and so `openstack-testbed up`)
fail, so if `up` ever dies there, run `openstack-testbed seed` and `up` again.

Connection details come from the OS_* variables set by `openstack-testbed seed`.
"""

from __future__ import annotations

import io
import os
import signal
import sys
import time
import urllib.request
import uuid

import openstack
import pymysql
from openstack import exceptions
from testbed import DB_PASS, DB_USER, HOST, PORTS, read_pid

K8S_CIDR = "192.168.100.0/24"
OTHER_CIDR = "192.168.200.0/24"
ORPHAN_DEVICE_ID = "00000000-0000-4000-8000-0000000000ff"

OTHER_PROJECT, SHARED_PROJECT, CELLS_PROJECT = "multinic-other", "multinic-shared", "multinic-cells"
DOWN_CELL = "multinic-down-cell"
DOWN_CELL_DB = "nova_multinic_unreachable"  # never created: Nova's scatter-gather gets an error, the cell is down
DOWN_CELL_SERVER = "00000000-0000-4000-8000-00000000d0c1"
OTHER_K8S_CIDR = "192.168.110.0/24"
# (name, cidr) of the subnets on multinic-shared's shared network
SHARED_SUBNETS = [
    ("shared-subnet", "192.168.120.0/24"),
    ("twin-subnet", "192.168.121.0/24"),
    ("twin-subnet", "192.168.122.0/24"),
    ("k8s-subnet", "192.168.123.0/24"),
]
OTHER_SERVERS = {
    "test-vm-1": [("k8s-net", "192.168.110.11")],
    "test-vm-2": [("k8s-net", "192.168.110.12")],
}

# name -> list of (network name, fixed ip) at boot
SERVERS = {
    "test-vm-1": [("k8s-net", "192.168.100.11")],
    "test-vm-2": [("k8s-net", "192.168.100.12"), ("other-net", "192.168.200.12")],
    "test-vm-3": [("k8s-net", "192.168.100.13")],
    "test-vm-10": [("k8s-net", "192.168.100.20")],
    "test-vm-1.backup": [("k8s-net", "192.168.100.21")],
}
HOT_ATTACH = {"test-vm-3": [("k8s-net", "192.168.100.23", "test-vm-3-extra")]}


def log(msg: str) -> None:
    print(f"[seed {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def connect(project_id: str | None = None) -> openstack.connection.Connection:
    return openstack.connect(
        auth_url=os.environ["OS_AUTH_URL"],
        username=os.environ["OS_USERNAME"],
        password=os.environ["OS_PASSWORD"],
        project_id=project_id or os.environ["OS_PROJECT_ID"],
        user_domain_name=os.environ.get("OS_USER_DOMAIN_NAME", "Default"),
        region_name=os.environ.get("OS_REGION_NAME", "RegionOne"),
        interface="public",
        identity_api_version="3",
    )


def ensure_project(conn, name: str):
    """A project in the Default domain on which the seeding (admin) user holds the admin role."""
    project = conn.identity.find_project(name, domain_id="default")
    if project is None:
        project = conn.identity.create_project(
            name=name, domain_id="default", description="MultiNic testbed: project scoping"
        )
        log(f"created project {name} ({project.id})")
    user = conn.identity.find_user(os.environ["OS_USERNAME"], domain_id="default")
    role = conn.identity.find_role("admin")
    if not conn.identity.validate_user_has_project_role(project, user, role):
        conn.identity.assign_project_role_to_user(project, user, role)
        log(f"granted admin on {name} to {user.name}")
    return project


def ensure_network(conn, name: str, subnet: str | None, cidr: str | None, mtu: int | None, **kw):
    """Network `name` of the connection's project (names repeat across projects: always filter by project)."""
    project_id = conn.current_project_id
    net = next(iter(conn.network.networks(name=name, project_id=project_id)), None)
    if net is None:
        net = conn.network.create_network(name=name, **({"mtu": mtu} if mtu else {}), **kw)
        log(f"created network {name} ({net.id}, mtu {net.mtu}, project {project_id})")
    elif mtu and net.mtu != mtu:
        net = conn.network.update_network(net, mtu=mtu)
    sub = ensure_subnet(conn, net, subnet, cidr) if subnet and cidr else None
    return net, sub


def ensure_subnet(conn, net, name: str, cidr: str):
    """Subnet `name` with `cidr` on `net` (the pair, not the name, identifies it: twins share a name)."""
    for sub in conn.network.subnets(network_id=net.id, name=name):
        if sub.cidr == cidr:
            return sub
    sub = conn.network.create_subnet(
        name=name,
        network_id=net.id,
        ip_version=4,
        cidr=cidr,
        enable_dhcp=False,
        gateway_ip=cidr.replace("0/24", "1"),
        allocation_pools=[{"start": cidr.replace("0/24", "100"), "end": cidr.replace("0/24", "200")}],
    )
    log(f"created subnet {name} {cidr} ({sub.id})")
    return sub


def ensure_image(conn):
    img = conn.image.find_image("testbed-image")
    if img is not None and img.status == "active":
        return img
    if img is not None:
        conn.image.delete_image(img)
    img = conn.image.create_image(
        name="testbed-image",
        disk_format="raw",
        container_format="bare",
        data=io.BytesIO(b"\0" * 1024 * 1024),
        visibility="public",
    )
    log(f"uploaded image testbed-image ({img.id})")
    return img


def ensure_flavor(conn):
    fl = conn.compute.find_flavor("testbed.tiny")
    if fl is None:
        fl = conn.compute.create_flavor(name="testbed.tiny", ram=64, vcpus=1, disk=1)
        log(f"created flavor testbed.tiny ({fl.id})")
    return fl


def exact_servers(conn, name: str):
    return [s for s in conn.compute.servers(name=f"^{name}$") if s.name == name]


def ensure_port(conn, net, subnet, ip: str, name: str, **kw):
    for p in conn.network.ports(network_id=net.id):
        if any(f["ip_address"] == ip for f in p.fixed_ips):
            return p
    return conn.network.create_port(
        name=name, network_id=net.id, fixed_ips=[{"subnet_id": subnet.id, "ip_address": ip}], **kw
    )


def boot_servers(conn, servers: dict, nets: dict, image, flavor) -> list:
    """Boot what is missing of `servers` in the connection's project; returns them all (to wait for)."""
    pending = []
    for name, nics in servers.items():
        existing = exact_servers(conn, name)
        for s in existing:
            if s.status == "ERROR":
                log(f"deleting {name} in ERROR")
                conn.compute.delete_server(s)
                conn.compute.wait_for_delete(s, wait=120)
        existing = [s for s in existing if s.status != "ERROR"]
        if existing:
            pending.append(existing[0])
            continue
        networks = []
        for net_name, ip in nics:
            net, sub = nets[net_name]
            port = ensure_port(conn, net, sub, ip, f"{name}-{net_name}")
            networks.append({"port": port.id})
        srv = conn.compute.create_server(name=name, image_id=image.id, flavor_id=flavor.id, networks=networks)
        log(f"booting {name} ({srv.id}, project {conn.current_project_id})")
        pending.append(srv)
    return pending


def seed_projects(conn, image, flavor) -> list:
    """The second project (same names as admin's) and the project holding the shared network."""
    other = ensure_project(conn, OTHER_PROJECT)
    shared = ensure_project(conn, SHARED_PROJECT)
    ensure_project(conn, CELLS_PROJECT)
    other_conn = connect(other.id)
    shared_conn = connect(shared.id)
    other_nets = {"k8s-net": ensure_network(other_conn, "k8s-net", "k8s-subnet", OTHER_K8S_CIDR, 1450)}
    shared_net, _ = ensure_network(shared_conn, "shared-net", None, None, None, is_shared=True)
    if not shared_net.is_shared:
        shared_net = shared_conn.network.update_network(shared_net, is_shared=True)
    for name, cidr in SHARED_SUBNETS:
        ensure_subnet(shared_conn, shared_net, name, cidr)
    return [(other_conn, srv) for srv in boot_servers(other_conn, OTHER_SERVERS, other_nets, image, flavor)]


def nova_api_db():
    return pymysql.connect(
        host=HOST, port=PORTS["mysql"], user=DB_USER, password=DB_PASS, database="nova_api", autocommit=True
    )


def set_down_cell(on: bool, project_id: str | None = None) -> bool:
    """Map (or unmap) the unreachable cell and its one instance; True when the cell list changed."""
    with nova_api_db() as db, db.cursor() as cur:
        cur.execute(
            "DELETE im FROM instance_mappings im JOIN cell_mappings cm ON im.cell_id = cm.id WHERE cm.name = %s",
            (DOWN_CELL,),
        )
        removed = cur.execute("DELETE FROM cell_mappings WHERE name = %s", (DOWN_CELL,))
        if not on:
            return bool(removed)
        cur.execute(
            "INSERT INTO cell_mappings (created_at, uuid, name, transport_url, database_connection, disabled) "
            "VALUES (NOW(), %s, %s, 'none:///', %s, 0)",
            (
                str(uuid.uuid4()),
                DOWN_CELL,
                f"mysql+pymysql://{DB_USER}:{DB_PASS}@{HOST}:{PORTS['mysql']}/{DOWN_CELL_DB}?charset=utf8mb4",
            ),
        )
        cur.execute(
            "INSERT INTO instance_mappings (created_at, instance_uuid, cell_id, project_id, queued_for_delete, "
            "user_id) VALUES (NOW(), %s, %s, %s, 0, 'multinic-testbed')",
            (DOWN_CELL_SERVER, cur.lastrowid, project_id),
        )
        return True


def recycle_nova_api() -> None:
    """nova-api caches the cell list per process: gracefully respawn its uwsgi worker (SIGHUP to the worker;
    never to the master, which would re-exec uwsgi outside the venv) and wait until the new one answers."""
    master = read_pid("nova-api")
    if not master:
        raise SystemExit("nova-api is not running")

    def workers() -> set[int]:
        found = set()
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as fh:
                        if int(fh.read().rsplit(")", 1)[1].split()[1]) == master:
                            found.add(int(entry))
                except (OSError, ValueError, IndexError):
                    continue
        return found

    old = workers()
    for pid in old:
        os.kill(pid, signal.SIGHUP)
    deadline = time.time() + 90
    while time.time() < deadline:
        fresh = workers() - old
        if fresh:
            try:
                with urllib.request.urlopen(f"http://{HOST}:{PORTS['nova']}/v2.1/", timeout=30) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
        time.sleep(0.5)
    raise SystemExit("nova-api did not come back after recycling its worker")


def down_cell(state: str) -> int:
    if state not in ("on", "off"):
        raise SystemExit("usage: seed.py down-cell on|off")
    conn = connect()
    project = conn.identity.find_project(CELLS_PROJECT, domain_id="default")
    if project is None:
        raise SystemExit(f"project {CELLS_PROJECT} missing: run `openstack-testbed seed` first")
    if set_down_cell(state == "on", project.id) or state == "on":
        recycle_nova_api()
    log(f"unreachable cell {DOWN_CELL} {state} (instance {DOWN_CELL_SERVER} of {CELLS_PROJECT})")
    return 0


def main() -> int:
    if sys.argv[1:2] == ["down-cell"]:
        return down_cell((sys.argv[2:3] or [""])[0])
    t0 = time.time()
    if set_down_cell(False):  # a leftover of an interrupted test breaks discover_hosts
        log(f"removed a leftover unreachable cell {DOWN_CELL}")
        recycle_nova_api()
    conn = connect()
    nets = {}
    nets["k8s-net"] = ensure_network(conn, "k8s-net", "k8s-subnet", K8S_CIDR, 1450)
    nets["other-net"] = ensure_network(conn, "other-net", "other-subnet", OTHER_CIDR, None)
    image = ensure_image(conn)
    flavor = ensure_flavor(conn)

    pending = [(conn, srv) for srv in boot_servers(conn, SERVERS, nets, image, flavor)]
    pending += seed_projects(conn, image, flavor)
    for owner, srv in pending:
        srv = owner.compute.wait_for_server(srv, status="ACTIVE", failures=["ERROR"], interval=1, wait=300)
        log(f"{srv.name} ACTIVE")

    for name, extra in HOT_ATTACH.items():
        srv = exact_servers(conn, name)[0]
        for net_name, ip, port_name in extra:
            net, sub = nets[net_name]
            port = ensure_port(conn, net, sub, ip, port_name)
            if port.device_id != srv.id:
                conn.compute.create_server_interface(srv, port_id=port.id)
                log(f"hot-attached {port_name} ({ip}) to {name}")
        deadline = time.time() + 60
        while time.time() < deadline:
            ips = {f["ip_address"] for p in conn.network.ports(device_id=srv.id) for f in p.fixed_ips}
            if all(ip in ips for _, ip, _ in extra):
                break
            time.sleep(1)
        else:
            raise SystemExit(f"hot-attach to {name} did not show up in Neutron")

    net, sub = nets["k8s-net"]
    orphan = ensure_port(
        conn, net, sub, "192.168.100.99", "orphan-port", device_id=ORPHAN_DEVICE_ID, device_owner="compute:nova"
    )
    try:
        conn.compute.get_server(ORPHAN_DEVICE_ID)
        raise SystemExit("orphan device id unexpectedly is a server")
    except exceptions.NotFoundException:
        pass
    log(f"orphan port {orphan.id} device_id={orphan.device_id}")

    # The fact the client must cope with: Nova's name filter is a regex match.
    names = sorted(s.name for s in conn.compute.servers(name="test-vm-1"))
    log(f"GET /servers?name=test-vm-1 -> {names}")
    for want in ("test-vm-1", "test-vm-10", "test-vm-1.backup"):
        if want not in names:
            raise SystemExit(f"expected {want} in Nova's answer to name=test-vm-1, got {names}")

    mtu = conn.network.get_network(nets["k8s-net"][0].id).mtu
    if mtu != 1450:
        raise SystemExit(f"k8s-net MTU is {mtu}, not 1450")
    log(f"seed complete in {time.time() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
