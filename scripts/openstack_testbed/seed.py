"""Seed the OpenStack testbed (idempotent). Runs with the testbed venv's Python.

Creates, in the admin project:
  networks  k8s-net (MTU 1450) / k8s-subnet 192.168.100.0/24
            other-net            / other-subnet 192.168.200.0/24
  servers   test-vm-1, test-vm-2, test-vm-3 (port on k8s-subnet), booted for real by
            nova-compute's fake driver; look-alikes test-vm-10 and test-vm-1.backup
            (also on k8s-subnet); test-vm-2 has a second NIC on other-subnet; test-vm-3
            gets a second k8s-subnet port hot-attached after boot (os-interface)
  ports     orphan-port on k8s-subnet whose device_id is no server
The address layout is fixed so tests can assert exact IPs. Verifies that real Nova's
`GET /servers?name=test-vm-1` is a regex match (returns the look-alikes).

Connection details come from the OS_* variables set by `openstack-testbed seed`.
"""

from __future__ import annotations

import io
import os
import sys
import time

import openstack
from openstack import exceptions

K8S_CIDR = "192.168.100.0/24"
OTHER_CIDR = "192.168.200.0/24"
ORPHAN_DEVICE_ID = "00000000-0000-4000-8000-0000000000ff"

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


def connect() -> openstack.connection.Connection:
    return openstack.connect(
        auth_url=os.environ["OS_AUTH_URL"],
        username=os.environ["OS_USERNAME"],
        password=os.environ["OS_PASSWORD"],
        project_id=os.environ["OS_PROJECT_ID"],
        user_domain_name=os.environ.get("OS_USER_DOMAIN_NAME", "Default"),
        region_name=os.environ.get("OS_REGION_NAME", "RegionOne"),
        interface="public",
        identity_api_version="3",
    )


def ensure_network(conn, name: str, subnet: str, cidr: str, mtu: int | None):
    net = conn.network.find_network(name)
    if net is None:
        kw = {"mtu": mtu} if mtu else {}
        net = conn.network.create_network(name=name, **kw)
        log(f"created network {name} ({net.id}, mtu {net.mtu})")
    elif mtu and net.mtu != mtu:
        net = conn.network.update_network(net, mtu=mtu)
    sub = conn.network.find_subnet(subnet)
    if sub is None:
        sub = conn.network.create_subnet(
            name=subnet,
            network_id=net.id,
            ip_version=4,
            cidr=cidr,
            enable_dhcp=False,
            gateway_ip=cidr.replace("0/24", "1"),
            allocation_pools=[{"start": cidr.replace("0/24", "100"), "end": cidr.replace("0/24", "200")}],
        )
        log(f"created subnet {subnet} ({sub.id})")
    return net, sub


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


def main() -> int:
    t0 = time.time()
    conn = connect()
    nets = {}
    nets["k8s-net"] = ensure_network(conn, "k8s-net", "k8s-subnet", K8S_CIDR, 1450)
    nets["other-net"] = ensure_network(conn, "other-net", "other-subnet", OTHER_CIDR, None)
    image = ensure_image(conn)
    flavor = ensure_flavor(conn)

    pending = []
    for name, nics in SERVERS.items():
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
        log(f"booting {name} ({srv.id})")
        pending.append(srv)
    for srv in pending:
        srv = conn.compute.wait_for_server(srv, status="ACTIVE", failures=["ERROR"], interval=1, wait=300)
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
