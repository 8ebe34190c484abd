"""The cluster tier: a real node (containerd + kubelet) joined to a real control plane, running our images.

One cluster for the whole tier (package-scoped; starting it takes ~10 s warm): etcd + kube-apiserver reachable
from pods, kube-controller-manager + kube-scheduler under their own identities as in a real cluster (controllers
as ``system:serviceaccount:kube-system:*``; no kwok), and :class:`tests.support.node.Node` (containerd, kubelet,
kube-proxy, CoreDNS, a default StorageClass of local volumes).
Tests isolate themselves by namespace.  Missing prerequisites FAIL the tier (never skip), with the command
that provides them: ``scripts/control-plane-assets`` (kubelet) and ``scripts/test-images`` (the images).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.control_plane import ControlPlane, ControlPlaneError, locate_assets
from tests.support.node import NODE_IP, Node

_HERE = Path(__file__).resolve().parent
_CLUSTER_KEY = pytest.StashKey["Cluster"]()


@dataclass
class Cluster:
    cp: ControlPlane
    node: Node
    timings: dict[str, float] = field(default_factory=dict)
    #: namespaces whose objects, pod descriptions and logs a failing test's report shows
    diagnose: list[str] = field(default_factory=list)
    #: seconds the tier's scenarios took per step (printed after the start-up timings)
    steps: dict[str, float] = field(default_factory=dict)

    def kubectl(self, *args: str, check: bool = True, stdin: str | None = None) -> Any:
        return self.cp.kubectl(*args, check=check, stdin=stdin)

    def namespace_report(self, namespace: str, log_lines: int = 40) -> str:
        """What someone debugging a failure looks at first: objects, events, pod descriptions, log tails."""

        def run(*args: str) -> str:
            try:
                done = self.cp.kubectl(*args, check=False)
            except Exception as exc:  # a report must not hide the failure it is attached to
                return f"$ kubectl {' '.join(args)}: {exc}"
            return f"$ kubectl {' '.join(args)}\n{done.stdout}{done.stderr}"

        parts = [
            run("-n", namespace, "get", "all,pvc,cronjobs,jobs,leases,events", "-o", "wide"),
            run("-n", namespace, "describe", "pods"),
        ]
        listed = self.cp.kubectl("-n", namespace, "get", "pods", "-o", "json", check=False)
        pods = json.loads(listed.stdout)["items"] if listed.returncode == 0 else []
        for pod in pods:
            name = f"pod/{pod['metadata']['name']}"
            parts.append(run("-n", namespace, "logs", name, "--all-containers", f"--tail={log_lines}"))
            if any(s.get("restartCount") for s in (pod.get("status") or {}).get("containerStatuses") or []):
                parts.append(
                    run("-n", namespace, "logs", name, "--all-containers", "--previous", f"--tail={log_lines}")
                )
        return "\n".join(parts)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test below tests/cluster with ``cluster`` (for ``-m`` selection)."""
    for item in items:
        if _HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.cluster)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    """Attach the node's and the plane's log tails to a failing cluster test."""
    report = yield
    cluster = item.config.stash.get(_CLUSTER_KEY, None)
    if report.failed and cluster is not None and "cluster" in getattr(item, "fixturenames", ()):
        report.sections.append(("node logs", cluster.node.format_log_tails()))
        report.sections.append(("control plane logs", cluster.cp.format_log_tails()))
        for namespace in cluster.diagnose:
            report.sections.append((f"namespace {namespace}", cluster.namespace_report(namespace)))
    return report


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    cluster_timings = config.stash.get(_TIMINGS_KEY, None)
    if cluster_timings:
        terminalreporter.write_line(
            "cluster tier start-up: " + ", ".join(f"{k} {v:.1f}s" for k, v in cluster_timings.items())
        )
    steps = config.stash.get(_STEPS_KEY, None)
    if steps:
        terminalreporter.write_line("cluster tier steps: " + ", ".join(f"{k} {v:.1f}s" for k, v in steps.items()))


_TIMINGS_KEY = pytest.StashKey[dict[str, float]]()
_STEPS_KEY = pytest.StashKey[dict[str, float]]()


@pytest.fixture(scope="package")
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """Package scope: the node goes away after the tier's last test, not at the end of `make test-all`."""
    try:
        assets = locate_assets()
    except ControlPlaneError as exc:
        pytest.fail(str(exc), pytrace=False)
    missing = [name for name in ("kubelet", "kube-proxy", "coredns") if not (assets / name).exists()]
    if missing:
        pytest.fail(
            f"{assets} has no {', '.join(missing)}: run scripts/control-plane-assets --node (builds them)",
            pytrace=False,
        )
    begin = time.monotonic()
    cp = ControlPlane(assets, kubelet_client=True, advertise_address=NODE_IP)
    node = Node(cp)
    try:
        cp.start()
        # As in a real cluster: controllers under their own identities (the protection webhook tells them from
        # users by name), no kwok (its volumes would be hostPaths on this host).
        cp.start_workloads(nodes=(), kwok=False, component_identities=True)
        plane_seconds = time.monotonic() - begin
        node.start()
    except ControlPlaneError as exc:
        logs = cp.format_log_tails()
        node.stop()
        cp.stop()
        pytest.fail(f"cluster did not start: {exc}\n{logs}", pytrace=False)
    timings = {"control plane": plane_seconds, **{f"node {k}": v for k, v in node.timings.items()}}
    request.config.stash[_TIMINGS_KEY] = timings
    cluster = Cluster(cp, node, timings)
    request.config.stash[_CLUSTER_KEY] = cluster
    request.config.stash[_STEPS_KEY] = cluster.steps
    try:
        yield cluster
    finally:
        del request.config.stash[_CLUSTER_KEY]
        mark = time.monotonic()
        node.stop()
        cp.stop()
        timings["teardown"] = time.monotonic() - mark


@pytest.fixture
def cluster_namespace(cluster: Cluster) -> Iterator[str]:
    """A fresh namespace per test; deleted afterwards without waiting (node teardown deletes leftover pods)."""
    name = f"c-{uuid.uuid4().hex[:10]}"
    cluster.kubectl("create", "namespace", name)
    # The ServiceAccount controller must have created `default` before pods can be admitted.
    deadline = time.monotonic() + 30
    while cluster.kubectl("-n", name, "get", "serviceaccount", "default", check=False).returncode != 0:
        if time.monotonic() > deadline:
            pytest.fail(f"no default ServiceAccount in {name} after 30s (kube-controller-manager down?)")
        time.sleep(0.2)
    cluster.diagnose.append(name)
    yield name
    cluster.diagnose.remove(name)
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)
