"""The whole installation on the real node, installed and removed the way a user does it (issue 14, item 5).

One scenario, one installation for the module, steps in order (each test asserts one thing; a step whose
predecessor failed fails at once, naming it):

1. ``scripts/deploy-operator.sh --image localhost/multinic:v1alpha1`` with the cluster's kubeconfig installs the
   operator from the locally built image (checked in the node's containerd) and waits until it is available;
2. the sample MultiNicOperator (its image and the simulator's URL set) brings up the controller Deployment
   (2 replicas) and the MariaDB StatefulSet on a local volume: every pod Running and Ready on the node;
3. an OpenstackConfig pointed at the OpenStack simulator - on the host, at the node IP, reached from pods -
   is Synced, and the node agent's query (MISSION.md, verbatim, as a prepared statement) run inside the MariaDB
   pod returns exactly the expected rows;
4. SIGKILL of the leader's container (then a forced delete of its pod) hands the Lease to the other replica; a
   NIC hot-attached in the simulator and a trigger request are handled by the new leader: the new row appears,
   the old rows keep their ids and the ``netplan_success`` the agent wrote;
5. a backup Job created from the operator's CronJob completes and its dump, restored into a scratch database
   inside the MariaDB pod, has the same rows;
6. ``kubectl scale`` and ``kubectl set image`` on the running controller Deployment are denied by the
   protection webhook, naming the MultiNicOperator field to change, and the Deployment is unchanged;
7. every line of the controller and operator pods' logs is a JSON object, and no secret (OpenStack password,
   database passwords, any token the simulator issued) is in the logs, the events or the statuses;
8. ``scripts/cleanup-operator.sh --delete-data`` leaves nothing: no object of ours in any namespace, no CRDs,
   no webhook configuration, no cluster roles or bindings, the namespace gone.

The cluster runs kube-controller-manager and kube-scheduler under their own identities (conftest), so the
protection webhook sees Kubernetes' controllers as a real cluster shows them.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import os
import re
import secrets
import subprocess
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from tests.fakes.openstack import DEFAULT_SEED, SimState, Simulator
from tests.support.control_plane import REPO_ROOT
from tests.support.node import NODE_IP, NODE_NAME

from .conftest import Cluster

NS = "multinic-system"
IMAGE = "localhost/multinic:v1alpha1"
DEPLOY = REPO_ROOT / "scripts" / "deploy-operator.sh"
CLEANUP = REPO_ROOT / "scripts" / "cleanup-operator.sh"
SAMPLES = REPO_ROOT / "manifests" / "samples"
MARIADB_POD = "multinic-mariadb-0"
CONTROLLER_PODS = "app.kubernetes.io/name=multinic-controller"
OPERATOR_PODS = "app.kubernetes.io/name=multinic-operator"
PROTECTION_WEBHOOK = "vprotection.multinic.example.com"
DATA_LABEL = "multinic.example.com/managed-by-operator"
TRIGGER_ANNOTATION = "multinic.example.com/trigger-request"
SECRETS_DIR = "/var/run/secrets/multinic/database"

#: The node agent's query, verbatim from MISSION.md ("Agent contract"); `?` is its node name.
AGENT_QUERY = """SELECT mi.id, mi.macaddress, mi.attached_node_name, mi.netplan_success, mi.address, mi.mtu, ms.cidr
FROM multi_interface mi LEFT JOIN multi_subnet ms ON mi.subnet_id = ms.subnet_id
WHERE mi.attached_node_name = ?"""
#: ... and its only write.
AGENT_WRITE = "UPDATE multi_interface SET netplan_success=?, modified_at=NOW() WHERE id=?"

VMS = ("test-vm-1", "test-vm-2", "test-vm-3")
#: What the agent must read per VM from the default seed: (mac, node, netplan_success, address, mtu, cidr) - only
#: the k8s-subnet ports (not test-vm-1's mgmt port), MACs in lower case, the look-alikes test-vm-10 and
#: test-vm-1.backup nowhere.
EXPECTED_ROWS = {
    "test-vm-1": [("fa:16:3e:00:01:01", "test-vm-1", "0", "192.168.100.11", "1450", "192.168.100.0/24")],
    "test-vm-2": [("fa:16:3e:00:01:02", "test-vm-2", "0", "192.168.100.12", "1450", "192.168.100.0/24")],
    "test-vm-3": [("fa:16:3e:00:01:03", "test-vm-3", "0", "192.168.100.13", "1450", "192.168.100.0/24")],
}
K8S_SUBNET_ID = "0c2f4b6d-2222-4e5f-8a9b-000000000001"
TEST_VM_2_ID = "1d5e0c6a-3333-4b7a-8c9d-000000000002"
HOT_NIC = ("fa:16:3e:00:04:02", "192.168.100.42")

T = TypeVar("T")


# ----------------------------------------------------------------------------------------- the simulator


class HostSimulator:
    """The OpenStack simulator on the host at the node IP (pods reach it through their gateway), served by an
    event loop in a thread of its own so the synchronous tests can change its state while pods call it."""

    def __init__(self, seed: dict[str, Any]) -> None:
        self._seed = seed
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="openstack-simulator", daemon=True)
        self._sim: Simulator | None = None

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    def start(self) -> None:
        self._thread.start()

        async def start() -> Simulator:
            sim = Simulator(self._seed)
            await sim.start(NODE_IP, 0)
            return sim

        self._sim = self._call(start())

    @property
    def url(self) -> str:
        assert self._sim is not None
        return self._sim.url

    def with_state(self, change: Callable[[SimState], T]) -> T:
        """Run ``change`` on the simulator's state inside its loop (no request sees half a change)."""
        assert self._sim is not None
        sim = self._sim

        async def run() -> T:
            return change(sim.state)

        return self._call(run())

    def stop(self) -> None:
        if self._sim is not None:
            self._call(self._sim.stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


# ------------------------------------------------------------------------------------------ the scenario


@dataclass
class Scenario:
    cluster: Cluster
    sim: HostSimulator
    os_password: str
    env: dict[str, str]
    done: list[str] = field(default_factory=list)
    rows: dict[str, list[tuple[str, ...]]] = field(default_factory=dict)  # agent view by VM, with ids

    def require(self, step: str) -> None:
        if step not in self.done:
            pytest.fail(f"an earlier step did not complete: {step} (see its failure above)", pytrace=False)

    def kubectl(self, *args: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        result: subprocess.CompletedProcess[str] = self.cluster.kubectl(*args, check=check, stdin=stdin)
        return result

    def get(self, *args: str) -> Any:
        return json.loads(self.kubectl("-n", NS, "get", *args, "-o", "json").stdout)

    def script(self, script: Path, *args: str) -> subprocess.CompletedProcess[str]:
        argv = [str(script), *args, "--kubeconfig", str(self.cluster.cp.kubeconfig_path)]
        begin = time.monotonic()
        done = subprocess.run(argv, capture_output=True, text=True, env=self.env, timeout=420, check=False)
        took = self.cluster.steps[script.name] = time.monotonic() - begin
        print(f"$ {' '.join(argv)} -> {done.returncode} in {took:.1f}s\n{done.stdout}{done.stderr}")
        return done

    def sql(self, statement: str, *, root: bool = False, stdin: str | None = None) -> list[tuple[str, ...]]:
        """Run SQL inside the MariaDB pod with its own client and the installation's credentials (files of its
        credentials volume); rows as tuples of strings (NULL as "NULL")."""
        user, password_file = ("root", "root-password") if root else ('"$MARIADB_USER"', "password")
        script = (
            f'MYSQL_PWD="$(cat {SECRETS_DIR}/{password_file})" exec mariadb --protocol=tcp --host=127.0.0.1 '
            f'--user={user} --batch --skip-column-names "$@"'
        )
        database = [] if root else ['"$MARIADB_DATABASE"']
        argv = ["-n", NS, "exec", *(["-i"] if stdin is not None else []), MARIADB_POD, "-c", "mariadb", "--"]
        argv += ["sh", "-c", f"{script} {' '.join(database)}", "sh", *(["--execute", statement] if statement else [])]
        done = self.kubectl(*argv, stdin=stdin)
        return [tuple(line.split("\t")) for line in done.stdout.splitlines() if line]

    def agent_rows(self, node: str) -> list[tuple[str, ...]]:
        """The agent's query for ``node``, the exact text as a prepared statement."""
        quoted = AGENT_QUERY.replace("'", "''")
        return sorted(
            self.sql(f"PREPARE agent FROM '{quoted}'; SET @node = '{node}'; EXECUTE agent USING @node;"),
            key=lambda row: int(row[0]),
        )

    def controller_pods(self) -> list[dict[str, Any]]:
        pods = self.get("pods", "-l", CONTROLLER_PODS)["items"]
        return [p for p in pods if not p["metadata"].get("deletionTimestamp")]

    def lease_holder(self) -> str:
        """The controller pod holding the Lease (identity: pod hostname, `_`, a random suffix)."""
        identity = self.get("lease", "multinic-controller")["spec"].get("holderIdentity") or ""
        return str(identity).split("_", 1)[0]


def wait_for(what: str, check: Callable[[], T | None], timeout: float, interval: float = 1.0) -> T:
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {timeout:.0f}s (last seen: {last!r})")


def _seed(os_password: str) -> dict[str, Any]:
    seed = yaml.safe_load(Path(DEFAULT_SEED).read_text())
    for user in seed["users"]:
        if user["name"] == "admin":
            user["password"] = os_password  # distinctive: a leak would be found in the logs
    return dict(seed)


@pytest.fixture(scope="module")
def scenario(cluster: Cluster) -> Iterator[Scenario]:
    """Simulator on the host, two local volumes (MariaDB's data and the backups); afterwards - whatever
    happened - no installation left behind on the shared cluster."""
    os_password = f"os-{secrets.token_hex(12)}"
    sim = HostSimulator(_seed(os_password))
    sim.start()
    volumes = ["multinic-data", "multinic-backups"]
    for name in volumes:
        cluster.node.add_local_volume(name, "20Gi")
    env = {
        **os.environ,
        "KUBECTL": str(cluster.cp.assets_dir / "kubectl"),
        # deploy-operator.sh looks for the image in "the local containerd": this node's.
        "CONTAINERD_ADDRESS": str(cluster.node.socket),
    }
    state = Scenario(cluster, sim, os_password, env)
    cluster.diagnose.append(NS)
    try:
        yield state
    finally:
        cluster.diagnose.remove(NS)
        if "cleanup" not in state.done:
            state.script(CLEANUP, "--delete-data", "--timeout=120s")
        cluster.kubectl("delete", "persistentvolume", *volumes, "--ignore-not-found", "--wait=false", check=False)
        sim.stop()


def _running_and_ready(pod: dict[str, Any]) -> bool:
    statuses = pod["status"].get("containerStatuses") or []
    return (
        pod["status"].get("phase") == "Running"
        and bool(statuses)
        and all(s.get("ready") and "running" in (s.get("state") or {}) for s in statuses)
    )


def _pods_summary(pods: list[dict[str, Any]]) -> list[tuple[str, str, str, bool]]:
    return [
        (p["metadata"]["name"], p["spec"].get("nodeName", ""), p["status"].get("phase", ""), _running_and_ready(p))
        for p in pods
    ]


# ---------------------------------------------------------------------------------------------- 1 install


def test_deploy_script_installs_the_operator_from_the_local_image(scenario: Scenario) -> None:
    done = scenario.script(DEPLOY, "--image", IMAGE)
    assert done.returncode == 0, done.stderr
    assert f"image: {IMAGE} is in this node's containerd" in done.stdout
    assert "operator available" in done.stdout
    # Every pod of the installation runs under Pod Security `restricted`, enforced by the apiserver.
    labels = json.loads(scenario.kubectl("get", "namespace", NS, "-o", "json").stdout)["metadata"]["labels"]
    assert labels.get("pod-security.kubernetes.io/enforce") == "restricted", labels
    operator = scenario.get("deployment", "multinic-operator")
    assert operator["status"].get("availableReplicas") == 2, operator["status"]
    pods = scenario.get("pods", "-l", OPERATOR_PODS)["items"]
    assert len(pods) == 2 and all(
        _running_and_ready(p) and p["spec"]["nodeName"] == NODE_NAME and p["spec"]["containers"][0]["image"] == IMAGE
        for p in pods
    ), _pods_summary(pods)
    scenario.done.append("deploy")


# ------------------------------------------------------------------------------------------ 2 installation


def test_multinicoperator_runs_controller_and_mariadb_on_the_node(scenario: Scenario) -> None:
    scenario.require("deploy")
    mno = yaml.safe_load((SAMPLES / "multinicoperator.yaml").read_text())
    assert mno["spec"]["controller"]["replicas"] == 2
    mno["spec"]["controller"]["image"] = IMAGE
    # The simulator speaks plain http: the admin allows exactly its URL (else SecureTransport warns).
    mno["spec"]["controller"]["env"].append({"name": "OPENSTACK_ALLOWED_URLS", "value": scenario.sim.url})
    begin = time.monotonic()
    scenario.kubectl("apply", "--filename=-", stdin=yaml.safe_dump(mno))
    name = mno["metadata"]["name"]
    scenario.kubectl("-n", NS, "wait", "--for=jsonpath={.status.phase}=Ready", f"mno/{name}", "--timeout=240s")
    scenario.cluster.steps["installation ready"] = time.monotonic() - begin

    status = scenario.get("mno", name)["status"]
    assert status["controllerStatus"]["readyReplicas"] == 2 and status["databaseStatus"]["phase"] == "Ready", status
    controllers = scenario.controller_pods()
    database = scenario.get("pod", MARIADB_POD)
    pods = [*controllers, database]
    assert len(controllers) == 2, _pods_summary(pods)
    assert all(_running_and_ready(p) and p["spec"]["nodeName"] == NODE_NAME for p in pods), _pods_summary(pods)
    assert all(s["restartCount"] == 0 for p in pods for s in p["status"]["containerStatuses"]), _pods_summary(pods)
    claim = scenario.get("pvc", f"data-{MARIADB_POD}")
    assert claim["status"]["phase"] == "Bound", claim["status"]
    # Protection let Kubernetes' controllers do their work on the protected objects, under the identities a
    # real cluster gives them (the claim from the StatefulSet's template above all), and denied none of it.
    creators = {
        e["user"]["username"]
        for e in scenario.cluster.cp.audit_events()
        if e.get("verb") == "create"
        and e.get("objectRef", {}).get("resource") == "persistentvolumeclaims"
        and e.get("objectRef", {}).get("name") == f"data-{MARIADB_POD}"
        and e.get("responseStatus", {}).get("code") == 201
    }
    assert creators == {"system:serviceaccount:kube-system:statefulset-controller"}, creators
    denials = scenario.get("events", "--field-selector=reason=MutationPrevented")["items"]
    assert denials == [], [e["message"] for e in denials]
    # The operator made the protection webhook's configuration with its first installation.
    scenario.kubectl("get", "validatingwebhookconfiguration", PROTECTION_WEBHOOK)
    scenario.done.append("installation")


# ---------------------------------------------------------------------------------------------- 3 synced


def test_openstackconfig_syncs_and_the_agent_query_returns_the_rows(scenario: Scenario) -> None:
    scenario.require("installation")
    secret, config = yaml.safe_load_all((SAMPLES / "openstackconfig.yaml").read_text())
    secret["stringData"]["password"] = scenario.os_password
    assert config["spec"]["vmNames"] == list(VMS)
    config["spec"]["credentials"]["authURL"] = scenario.sim.url
    begin = time.monotonic()
    scenario.kubectl("-n", NS, "apply", "--filename=-", stdin=yaml.safe_dump_all([secret, config]))
    name = config["metadata"]["name"]
    scenario.kubectl("-n", NS, "wait", "--for=jsonpath={.status.phase}=Synced", f"osc/{name}", "--timeout=120s")
    scenario.cluster.steps["config synced"] = time.monotonic() - begin
    conditions = {c["type"]: c["status"] for c in scenario.get("osc", name)["status"]["conditions"]}
    assert conditions == {
        "Ready": "True",
        "CredentialsValid": "True",
        "SubnetFound": "True",
        "AllVMsFound": "True",
        "SecureTransport": "True",  # the http URL is allowed explicitly
    }

    for vm in VMS:
        rows = scenario.agent_rows(vm)
        assert [row[1:] for row in rows] == EXPECTED_ROWS[vm], (vm, rows)
        scenario.rows[vm] = rows
    for stranger in ("test-vm-10", "test-vm-1.backup", "test-vm-1.example.com"):
        assert scenario.agent_rows(stranger) == [], stranger
    ids = [row[0] for rows in scenario.rows.values() for row in rows]
    assert len(set(ids)) == len(ids) == 3
    scenario.done.append("synced")


# -------------------------------------------------------------------------------------------- 4 failover


def test_killing_the_leader_hands_over_and_the_rows_stay_right(scenario: Scenario) -> None:
    scenario.require("synced")
    # The node agents have applied their netplan: their one write, on every row.
    for rows in scenario.rows.values():
        for row in rows:
            quoted = AGENT_WRITE.replace("'", "''")
            scenario.sql(f"PREPARE w FROM '{quoted}'; SET @ok = 1, @id = {int(row[0])}; EXECUTE w USING @ok, @id;")
    applied = {vm: [(*row[:3], "1", *row[4:]) for row in rows] for vm, rows in scenario.rows.items()}

    pods = {p["metadata"]["name"]: p for p in scenario.controller_pods()}
    leader = scenario.lease_holder()
    assert leader in pods, (leader, sorted(pods))
    (standby,) = set(pods) - {leader}
    # A crash, not a shutdown: SIGKILL, so the Lease is not released and must expire; then the pod goes.
    killed_at = time.monotonic()
    scenario.cluster.node.kill_container(pods[leader]["status"]["containerStatuses"][0]["containerID"])
    scenario.kubectl("-n", NS, "delete", "pod", leader, "--grace-period=0", "--force")
    holder = wait_for("a new Lease holder", lambda: h if (h := scenario.lease_holder()) != leader else None, 90)
    scenario.cluster.steps["leader handover"] = time.monotonic() - killed_at
    assert holder == standby, f"the Lease went to {holder}, not to the standby replica {standby}"

    # A NIC hot-attached in OpenStack, and a reconcile asked for (what POST /trigger records on the config).
    scenario.sim.with_state(
        lambda s: s.add_port(K8S_SUBNET_ID, HOT_NIC[1], device_id=TEST_VM_2_ID, mac_address=HOT_NIC[0])
    )
    request = f"failover-{secrets.token_hex(4)}"
    scenario.kubectl("-n", NS, "annotate", "--overwrite", "osc/openstack-config", f"{TRIGGER_ANNOTATION}={request}")
    wait_for(
        "the trigger handled by the new leader",
        lambda: scenario.get("osc", "openstack-config")["status"].get("lastHandledTrigger") == request,
        90,
    )
    assert scenario.get("osc", "openstack-config")["status"]["phase"] == "Synced"

    for vm in ("test-vm-1", "test-vm-3"):
        assert scenario.agent_rows(vm) == applied[vm], vm
    rows = scenario.agent_rows("test-vm-2")
    assert rows[0] == applied["test-vm-2"][0], rows  # same id, netplan_success kept: the agent re-applies nothing
    assert len(rows) == 2 and rows[1][1:] == (HOT_NIC[0], "test-vm-2", "0", HOT_NIC[1], "1450", "192.168.100.0/24")
    logs = scenario.kubectl("-n", NS, "logs", f"pod/{holder}").stdout
    assert '"Reconcile completed successfully"' in logs
    scenario.done.append("failover")


# ---------------------------------------------------------------------------------------------- 5 backup


def test_backup_job_on_demand_writes_a_dump_that_restores(scenario: Scenario) -> None:
    scenario.require("synced")
    job = f"backup-{secrets.token_hex(3)}"
    begin = time.monotonic()
    scenario.kubectl("-n", NS, "create", "job", job, "--from=cronjob/multinic-mariadb-backup")
    scenario.kubectl("-n", NS, "wait", "--for=condition=Complete", f"job/{job}", "--timeout=180s")
    scenario.cluster.steps["backup job"] = time.monotonic() - begin
    log = scenario.kubectl("-n", NS, "logs", f"job/{job}").stdout
    written = re.search(r"backup: wrote (multinic-\d{8}T\d{6}Z\.sql\.gz) \((\d+) bytes\)", log)
    assert written, log

    # The dump on the backup volume (a local volume: its directory is on this host).
    claim = scenario.get("pvc", "multinic-mariadb-backup")
    volume = json.loads(scenario.kubectl("get", "pv", claim["spec"]["volumeName"], "-o", "json").stdout)
    dump_file = Path(volume["spec"]["local"]["path"]) / written.group(1)
    assert dump_file.stat().st_size == int(written.group(2))
    dump = gzip.decompress(dump_file.read_bytes()).decode()

    tables = ("multi_interface", "multi_subnet", "node_table")
    scratch = "restore_check"
    scenario.sql(f"DROP DATABASE IF EXISTS {scratch}; CREATE DATABASE {scratch};", root=True)
    try:
        scenario.sql("", root=True, stdin=f"USE {scratch};\n{dump}")
        # One round trip: every row of both databases, each labelled with its database and table, and the
        # number of tables of each.
        databases = ("multinic", scratch)
        selects = [f"SELECT '{db}', '{t}', t.* FROM {db}.{t} t ORDER BY 3;" for db in databases for t in tables]
        selects += [
            f"SELECT '{db}', 'tables', COUNT(*) FROM information_schema.tables WHERE table_schema = '{db}';"
            for db in databases
        ]
        rows = scenario.sql(" ".join(selects), root=True)
        live = [row[1:] for row in rows if row[0] == "multinic"]
        restored = [row[1:] for row in rows if row[0] == scratch]
        assert {row[0] for row in live} == {*tables, "tables"}, live  # every table has rows
        assert restored == live
    finally:
        scenario.sql(f"DROP DATABASE IF EXISTS {scratch}", root=True)
    scenario.done.append("backup")


# ------------------------------------------------------------------------------------------ 6 protection


def test_protection_denies_direct_edits_of_the_controller_deployment(scenario: Scenario) -> None:
    scenario.require("installation")
    before = scenario.get("deployment", "multinic-controller")
    owner = f"multinic-controller is managed by MultiNicOperator {NS}/production-system"

    scaled = scenario.kubectl("-n", NS, "scale", "deployment/multinic-controller", "--replicas=3", check=False)
    assert scaled.returncode != 0
    assert "admission webhook" in scaled.stderr and "denied the request" in scaled.stderr, scaled.stderr
    assert f"{owner}; change spec.controller.replicas there" in scaled.stderr, scaled.stderr

    edited = scenario.kubectl(
        "-n", NS, "set", "image", "deployment/multinic-controller", "controller=localhost/multinic:other", check=False
    )
    assert edited.returncode != 0
    assert f"{owner}; change spec.controller.image there" in edited.stderr, edited.stderr

    after = scenario.get("deployment", "multinic-controller")
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert after["spec"]["replicas"] == 2
    assert after["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE
    events = scenario.get("events", "--field-selector=reason=MutationPrevented")["items"]
    assert any("multinic-controller" in e["message"] for e in events), [e["message"] for e in events]
    scenario.done.append("protection")


# ------------------------------------------------------------------------------------------------ 7 logs


def test_pod_logs_are_json_lines_without_secrets(scenario: Scenario) -> None:
    scenario.require("synced")
    # Every replica's log, the one that replaced the killed leader too (it started meanwhile).
    scenario.kubectl("-n", NS, "rollout", "status", "deployment/multinic-controller", "--timeout=120s")
    credentials = scenario.get("secret", "multinic-mariadb-credentials")["data"]
    tokens = scenario.sim.with_state(lambda s: list(s.tokens))
    assert tokens, "the simulator issued no token: the controller never authenticated"
    forbidden = {
        "the OpenStack password": [scenario.os_password],
        "the database passwords": [base64.b64decode(v).decode() for v in credentials.values()],
        "a Keystone token": tokens,
    }
    assert all(len(v) >= 8 for values in forbidden.values() for v in values), "a secret too short to search for"

    texts: dict[str, str] = {}
    for selector in (CONTROLLER_PODS, OPERATOR_PODS):
        for pod in scenario.get("pods", "-l", selector)["items"]:
            name = pod["metadata"]["name"]
            texts[f"logs of {name}"] = log = scenario.kubectl("-n", NS, "logs", f"pod/{name}").stdout
            lines = [line for line in log.splitlines() if line.strip()]
            assert lines, name
            for line in lines:
                try:
                    entry = json.loads(line)
                except ValueError:
                    pytest.fail(f"{name}: not a JSON line: {line[:300]}")
                assert isinstance(entry, dict) and "event" in entry and "level" in entry, (name, line[:300])
    assert sum('"Reconcile completed successfully"' in t for t in texts.values()) >= 1
    texts["events"] = scenario.kubectl("-n", NS, "get", "events", "-o", "json").stdout
    texts["statuses"] = scenario.kubectl("-n", NS, "get", "mno,osc", "-o", "json").stdout
    for where, text in texts.items():
        for what, values in forbidden.items():
            assert not any(v in text for v in values), f"{what} is in the {where}"
    scenario.done.append("logs")


# --------------------------------------------------------------------------------------------- 8 cleanup


def test_cleanup_script_leaves_nothing_behind(scenario: Scenario) -> None:
    scenario.require("deploy")
    done = scenario.script(CLEANUP, "--delete-data")
    assert done.returncode == 0, done.stderr
    scenario.done.append("cleanup")

    def namespace_gone() -> bool:
        return scenario.kubectl("get", "namespace", NS, check=False).returncode != 0

    wait_for(f"namespace {NS} deleted", namespace_gone, 120)
    crds = scenario.kubectl("get", "crd", "-o", "name").stdout.split()
    assert not [c for c in crds if "multinic" in c], crds
    webhooks = scenario.kubectl("get", "validatingwebhookconfigurations", "-o", "name").stdout.split()
    assert not [w for w in webhooks if "multinic" in w], webhooks
    cluster_rbac = scenario.kubectl("get", "clusterroles,clusterrolebindings", "-o", "name").stdout.split()
    assert not [r for r in cluster_rbac if "multinic" in r], cluster_rbac
    kinds = "all,pvc,secrets,configmaps,serviceaccounts,roles,rolebindings,cronjobs,jobs,leases,networkpolicies"
    for selector in (DATA_LABEL, "app.kubernetes.io/part-of=multinic"):
        left = scenario.kubectl("get", kinds, "--all-namespaces", "-l", selector, "-o", "name").stdout.split()
        assert left == [], (selector, left)
    pods = scenario.kubectl("get", "pods", "--all-namespaces", "-o", "name").stdout.split()
    assert not [p for p in pods if "multinic" in p], pods
